"""The Inspect task ``ffbench/haystack``: its samples are ``ffbench run --task haystack``'s reads asked in
the ``haystack_chat`` rendering (the haystack story with the rules and a question), and a model that
answers the most recent switch it read is always right, one that always says "on" wrong exactly on
the reads whose answer is off."""

from __future__ import annotations

import numpy as np
import pytest

from ffbench import language, prompting, render, scoring, sources
from ffbench.inspect_tasks import reads
from tests.inspect_logs import needs_inspect

ARGS = {"suite": "every", "length": 64, "num": 10}


def test_haystack_questions_are_ffbenchs_questions():
    spec = reads.source("haystack", "final", 48, 4, None)
    assert (spec.task, spec.label, spec.num) == ("haystack", "final", 4)
    arr, flat, _ = sources.SequenceStore().get(spec)
    qs = reads.questions(spec, reads.HAYSTACK_RENDERING)
    template = render.load_template("haystack_chat")
    expected = scoring.questions([render.render(s, template) for s in arr], np.arange(len(flat.target)), template,
                                 prompting.PromptFormat(), True)
    assert [q.input for q in qs] == expected and len(qs) == 4  # the final read of each
    assert template.filler == render.load_template("haystack").filler
    assert [q.target for q in qs] == [("off", "on")[t] for t in flat.target]


def _reply(answer: str):
    """A reply with its usage given (so Inspect counts no tokens itself, which would need a download)."""
    from inspect_ai.model import ModelOutput, ModelUsage

    out = ModelOutput.from_content("mockllm", answer)
    out.usage = ModelUsage(input_tokens=100, output_tokens=3, total_tokens=103)
    return out


def last_switch(input, tools, tool_choice, config):
    story = input[-1].text.rsplit("Story:\n", 1)[1].split("\n\n")[0]
    state = max((story.rfind("Alice turns the light on."), "on"), (story.rfind("Alice turns the light off."), "off"))[1]
    return _reply(f"It is {state}.")


@needs_inspect
@pytest.mark.parametrize("reply", ["last_switch", "always_on"])
def test_a_scripted_model_glitches_exactly_where_its_rule_is_wrong(reply, tmp_path):
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import get_model

    import ffbench.inspect_tasks._registry  # noqa: F401

    answer = last_switch if reply == "last_switch" else (lambda *a: _reply("on"))
    (log,) = inspect_eval("ffbench/haystack", task_args=ARGS, display="none",
                          model=get_model("mockllm/model", custom_outputs=answer), log_dir=str(tmp_path))
    assert log.status == "success", log.error
    flat = language.extract_reads(sources.load_sequences(reads.source("haystack", **ARGS)))
    assert len(log.samples) == len(flat.target) > 10
    want = 0.0 if reply == "last_switch" else float((flat.target == 0).mean())
    assert {k: v.value for k, v in log.results.scores[0].metrics.items()}["glitch_rate"] == pytest.approx(want)
    assert log.eval.task_registry_name == "ffbench/haystack"
