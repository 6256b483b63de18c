"""Reading replies (reasoning, truncation), the prompt options and the dry run's arithmetic, without
models; the CLI's usage errors for the new flags, in process with exact exit codes."""

from __future__ import annotations

import pytest

from ffbench import api, preflight, prompting, render
from ffbench.backends.base import NO_CHOICE, Generation
from ffbench.errors import UsageError
from ffbench.scoring import interpret
from tests.conftest import needs_native
from tests.test_cli import run_main

CHAT = render.load_template("chat")
LIGHT = render.load_template("lightswitch_chat")
END = prompting.DEFAULT_REASONING_END


# ----------------------------------------------------------------------------- reasoning
@pytest.mark.parametrize("text, opened, answer", [
    ("1", False, "1"),  # no reasoning at all
    ("<think>it is 0... no</think>The bit is 1.", False, "The bit is 1."),
    ("<think>first</think> wait <think>again</think> 0", False, " 0"),  # after the last end marker
    ("<think>the last write was 1, so", False, None),  # still reasoning: no answer, whatever bits it holds
    ("the last write was 1, so", True, None),  # the template opened the reasoning block
    ("the last write was 1</think>0", True, "0"),
])
def test_the_answer_is_read_after_the_reasoning(text, opened, answer):
    assert prompting.answer_after_reasoning(text, END, opened) == answer


def test_a_custom_end_marker():
    assert prompting.answer_after_reasoning("hmm 0 or 1. Final answer: 1", "Final answer:") == " 1"
    assert prompting.opening_marker("Final answer:") is None and prompting.opening_marker("</reason>") == "<reason>"


@pytest.mark.parametrize("reply, expected", [
    (Generation("<think>w 1 ... r 0?</think>1"), (1, False)),
    (Generation("<think>w 1 ... so 1", truncated=True), (NO_CHOICE, True)),  # cut while reasoning
    (Generation("<think>w 1 ... so 1"), (NO_CHOICE, False)),  # ended while reasoning: invalid, not cut
    (Generation("I am not sure", truncated=True), (NO_CHOICE, True)),
    (Generation("0", truncated=True), (0, False)),  # the budget cut it after it answered
    (Generation("1", reasoning="w 1 ... <think> 0"), (1, False)),  # the API returned the reasoning apart
    (Generation("", reasoning="a long thought", truncated=True), (NO_CHOICE, True)),
])
def test_question_replies(reply, expected):
    assert interpret(reply, CHAT, (" 0", " 1"), True, END) == expected


def test_a_reply_to_a_template_that_opened_reasoning():
    assert interpret(Generation("so it is 1", truncated=True), CHAT, (" 0", " 1"), True, END, opened=True) \
        == (NO_CHOICE, True)
    assert interpret(Generation("so it is 1</think>0"), CHAT, (" 0", " 1"), True, END, opened=True) == (0, False)


@pytest.mark.parametrize("text, truncated, expected", [
    (" on.", False, (1, False)),
    (" o", True, (NO_CHOICE, True)),  # cut while it was still the beginning of " on" / " off"
    (" x", True, (NO_CHOICE, False)),  # left every answer: invalid, not truncated
    ("", True, (NO_CHOICE, True)),
])
def test_continuations_are_truncated_only_while_they_could_still_be_an_answer(text, truncated, expected):
    light = render.load_template("lightswitch")
    assert interpret(Generation(text, truncated), light, (" off", " on"), False, END) == expected


def test_lightswitch_chat_replies_in_any_case():
    for text, value in [("On.", 1), ("OFF", 0), ("The light is off.", 0), ("It is turned on", 1), ("no idea", None)]:
        assert LIGHT.parse_answer(text) == value, text
    assert LIGHT.chat and CHAT.chat and not render.load_template("lightswitch").chat


# ----------------------------------------------------------------------------- options
def test_reply_budgets():
    choices = (" off", " on")
    assert prompting.PromptOptions().budget(choices, asking=True) == prompting.ASKED_BUDGET
    assert prompting.PromptOptions().budget(choices, asking=False) == 4  # the longest answer, in characters
    assert prompting.PromptOptions(max_new_tokens=5, reasoning_budget=1000).budget(choices, asking=True) == 1005


def test_chat_template_values(tmp_path):
    assert prompting.resolve_chat_template("auto") == (None, None)
    assert prompting.resolve_chat_template(None) == (None, None)
    assert prompting.resolve_chat_template("none") == ("none", None)
    with pytest.raises(UsageError, match="no file"):
        prompting.resolve_chat_template(str(tmp_path / "missing.jinja"))
    bad = tmp_path / "bad.jinja"
    bad.write_text("{% for m in messages %}{{ m['content'] }")
    with pytest.raises(UsageError, match="not valid Jinja"):
        prompting.resolve_chat_template(str(bad))
    good = tmp_path / "good.jinja"
    good.write_text("{% for m in messages %}{{ m['content'] }}{% if loop.last %}{% break %}{% endif %}{% endfor %}")
    assert prompting.resolve_chat_template(str(good))[0] == str(good.resolve())  # transformers' extensions parse


def test_options_from_a_config_of_an_older_run():
    assert prompting.PromptOptions.from_config({"model": "hf/x"}) == prompting.PromptOptions()
    options = prompting.PromptOptions.from_config({"system_prompt": "S", "max_new_tokens": 7})
    assert options.system_prompt == "S" and options.max_new_tokens == 7 and options.end_marker == END


# ----------------------------------------------------------------------------- dry run arithmetic
def test_token_estimate_for_api_models():
    assert preflight.estimate_tokens("w0i1r0") == 6  # a digit and a letter never merge
    assert preflight.estimate_tokens("Alice turns the light on.") == 6
    assert preflight.estimate_tokens("w 0 i 1 r") == 5


def test_prices():
    from ffbench.cost import Prices

    assert not Prices(None, None).given
    prices = Prices(3.0, None)
    assert prices.cost(2_000_000, 10**6) == pytest.approx(6.0)
    with pytest.raises(UsageError, match="--price-out"):
        Prices(1.0, -2.0)


# ----------------------------------------------------------------------------- CLI usage errors
def _native(extra, fragment):
    """A case found once the ffbench/ provider is resolved (it needs torch installed)."""
    return pytest.param(extra, fragment, marks=needs_native)


@pytest.mark.parametrize("extra, fragment", [
    (["--chat-template", "no/such/file.jinja"], "--chat-template must be auto, none or a Jinja file"),
    _native(["--chat-template", "TEMPLATE"], "applies to models ffbench tokenizes"),
    _native(["--max-new-tokens", "0"], "--max-new-tokens must be a positive integer"),
    _native(["--reasoning-budget", "-1"], "--reasoning-budget must be zero or more"),
    _native(["--reasoning-end", " "], "--reasoning-end must be a non-empty marker"),
    _native(["--dry-run", "--price-in", "-1"], "--price-in must be a non-negative number of USD per million tokens"),
])
def test_usage_errors_are_one_line_and_exit_2(capsys, tmp_path, extra, fragment):
    template = tmp_path / "t.jinja"
    template.write_text("{{ messages[0]['content'] }}")
    extra = [str(template) if x == "TEMPLATE" else x for x in extra]
    code, _, err = run_main(capsys, "run", "--model", "ffbench/transformer-ref", "--suite", "in_dist", "--num", 2,
                            "--output-dir", tmp_path / "out", "--no-record", *extra)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and fragment in lines[0] and lines[0].startswith("ffbench: error:"), err
    assert not (tmp_path / "out").exists()
