"""Renderings: answer spans cover exactly the answer words; templates are data, not code."""

import re

import numpy as np
import pytest

from ffbench import language, render
from ffbench.errors import FFBenchError
from ffbench.language import FFL

ALL = render.available()


def test_shipped_renderings():
    assert {"symbolic", "symbolic_spaced", "lightswitch", "chat"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("fewshot", [False, True])
def test_spans_cover_exactly_the_answers(name, fewshot):
    from ffbench import tasks

    template = render.load_template(name)
    task = tasks.get("registers" if template.registers else "undo" if template.undo else "ffl")  # the rendering's task
    arr = task.sample(task.dist(0.5, 64 if task.unit == 2 else 96), 50, seed=3)
    demo = (render.demo_sequence() if task.name == "ffl" else task.demo()) if fewshot else None
    for seq in arr:
        out = render.render(seq, template, demo=demo)
        reads = task.extract_reads(seq[None])
        assert out.targets.tolist() == reads.target.tolist()
        assert len(out.spans) == len(reads)
        for (start, end), target in zip(out.spans.tolist(), out.targets.tolist()):
            assert out.text[start:end] == out.choices[target]
        # Spans are ordered, disjoint, and nothing else in the text is an answer slot.
        assert np.all(out.spans[1:, 0] >= out.spans[:-1, 1])
        if fewshot and not template.registers:  # a register read's text names its register: counted by spans
            demo_reads = len(task.extract_reads(demo[None]))
            head, tail = template.read.split("{answer}")
            assert out.text.count(head + out.choices[0] + tail) + out.text.count(head + out.choices[1] + tail) \
                == len(reads) + demo_reads


def test_symbolic_is_the_compact_string():
    s = "w0i1r0w1r1"
    out = render.render(s, "symbolic")
    assert out.text == s and out.spans.tolist() == [[5, 6], [9, 10]] and out.choices == ("0", "1")


def test_lightswitch_sentences_are_the_papers():
    out = render.render("w1i0r1w0i1r0", "lightswitch")
    assert out.text == ("Alice turns the light on. Bob eats a banana. The light is turned on. "
                        "Alice turns the light off. Bob eats an apple. The light is turned off.")
    assert [out.text[a:b] for a, b in out.spans.tolist()] == [" on", " off"]
    assert out.prompt(1).endswith("The light is turned")


def test_fewshot_demo_is_prepended_and_unscored():
    demo = render.demo_sequence()
    assert demo.shape == (16,) and language.first_violation(demo[None]) is None
    assert len(language.extract_reads(demo[None])) >= 2  # the demonstration shows reads
    plain = render.render("w0r0", "symbolic_spaced")
    shot = render.render("w0r0", "symbolic_spaced", demo=demo)
    assert shot.text.endswith("\n" + plain.text)
    assert len(shot.spans) == 1 and shot.text[slice(*shot.spans[0])] == " 0"


def test_chat_has_rules_ask_and_parser():
    t = render.load_template("chat")
    out = render.render("w1i0r1", t)
    assert out.text.startswith("You will read a sequence") and out.text.endswith("w 1 i 0 r 1")
    assert "Answer with the bit only" in t.ask
    assert t.parse_answer("The answer is 1.") == 1
    assert t.parse_answer("I am not sure.") is None


def test_lightswitch_parser():
    t = render.load_template("lightswitch")
    assert t.parse_answer(" off.") == 0 and t.parse_answer("on") == 1 and t.parse_answer("dim") is None
    assert t.parse_answer("offline") is None  # whole words only


def test_multi_value_alphabet_symbolic_and_refused_lightswitch():
    arr = language.sample(FFL.from_p_ignore(0.5, 32, alphabet=4), 20, seed=1)
    for seq in arr:
        out = render.render(seq, "symbolic_spaced", alphabet=4)
        assert out.choices == (" 0", " 1", " 2", " 3")
        assert all(out.text[a:b] == out.choices[t] for (a, b), t in zip(out.spans.tolist(), out.targets.tolist()))
    with pytest.raises(FFBenchError, match="rendering 'lightswitch' supports at most 2 data values, got --alphabet 4"):
        render.render(arr[0], "lightswitch", alphabet=4)


def test_a_new_rendering_is_a_file_not_code(tmp_path):
    path = tmp_path / "robot.yaml"
    path.write_text('write: "SET {value};"\nignore: "NOP {value};"\nread: "GET ->{answer};"\n'
                    'answers: ["zero", "one"]\nseparator: "\\n"\n')
    out = render.render("w1i0r1", str(path))
    assert out.text == "SET 1;\nNOP 0;\nGET ->one;"
    assert out.text[slice(*out.spans[0])] == "one"


@pytest.mark.parametrize(
    "content, fragment",
    [
        ('write: "w"\nignore: "i"\nread: "r"\nanswers: "{value}"\n', "exactly once"),
        ('write: "w"\nread: "r{answer}"\nanswers: "{value}"\n', "missing field"),
        ('write: "w"\nignore: "i"\nread: "r{answer}"\nanswers: "{value}"\ncolour: red\n', "unknown field"),
        ("write: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_template_files(tmp_path, content, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(FFBenchError, match=re.escape(fragment)):
        render.load_template(str(path))


def test_unknown_rendering():
    with pytest.raises(FFBenchError, match="unknown rendering 'klingon' \\(known: "):
        render.load_template("klingon")
