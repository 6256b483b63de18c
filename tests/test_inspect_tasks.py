"""The Inspect AI tasks end to end with real inspect-ai, offline: every read is a sample asked exactly
as ffbench asks a chat API, each reply judged by ffbench's strict rule, and the metrics (glitch rate,
exact interval, invalid rate) equal counts computed independently from the sequences."""

from __future__ import annotations

import numpy as np
import pytest

from ffbench import language, metrics, prompting, render, scoring, sources
from ffbench.inspect_tasks import reads
from tests.fault_server import garbage, reply_kind
from tests.inspect_logs import GLITCH_AFTER, MOCK_ARGS, SERVED_ARGS, mock_log, needs_inspect, served_log  # noqa: F401


def _metric(log, name):
    return log.results.scores[0].metrics[name].value


@pytest.mark.parametrize("rendering", ["chat", "lightswitch_chat", "symbolic"])
def test_questions_are_ffbenchs_own_questions_for_a_chat_api(rendering):
    spec = reads.source("flipflop", "sparse", 40, 5, None)
    assert (spec.kind, spec.label, spec.seed, spec.p_ignore) == ("suite", "sparse", 2000, 0.98)
    arr, flat, _ = sources.SequenceStore().get(spec)
    qs = reads.questions(spec, rendering)
    template = render.load_template(rendering)
    rendered = [render.render(s, template) for s in arr]
    expected = scoring.questions(rendered, np.arange(len(flat.target)), template, prompting.PromptFormat(), True)
    assert [q.input for q in qs] == expected
    assert [q.target for q in qs] == [template.choices()[t].strip() for t in flat.target.tolist()]
    assert [q.metadata["write_distance"] for q in qs] == flat.write_distance.tolist()
    assert len({q.id for q in qs}) == len(qs)


def test_stress_questions_carry_their_point():
    spec = reads.source("stress", length=16, num=1)
    qs = reads.questions(spec)
    arr, columns = sources.SequenceStore().get(spec)[0], sources.SequenceStore().columns(spec)
    assert len(qs) == len(language.extract_reads(arr).target)
    assert [q.metadata["point"] for q in qs] == [columns["point"][q.metadata["seq_index"]] for q in qs]


@pytest.mark.parametrize("reply, expected", [
    ("The answer is 1.", (1, False, False)), ("0", (0, False, False)), ("I do not know", (-1, True, False)),
    ("<think>maybe 1</think> 0", (0, False, False)), ("<think>1 or 0", (-1, True, False)),
])
def test_verdict_is_ffbenchs_rule(reply, expected):
    assert reads.verdict(reply, False, None, render.load_template("chat")) == expected


@needs_inspect
def test_mockllm_glitches_are_counted_exactly(mock_log):
    spec = reads.source("flipflop", **MOCK_ARGS)
    flat = language.extract_reads(sources.load_sequences(spec))
    wrong = flat.write_distance > GLITCH_AFTER
    invalid = (flat.write_distance == 1) & (flat.target == 1)
    errors, n = int((wrong | invalid).sum()), len(flat.target)
    assert 0 < errors < n and invalid.any() and len(mock_log.samples) == n
    assert _metric(mock_log, "glitch_rate") == pytest.approx(errors / n)
    assert (_metric(mock_log, "glitch_rate_ci_low"), _metric(mock_log, "glitch_rate_ci_high")) == \
        pytest.approx(metrics.clopper_pearson(errors, n))
    assert _metric(mock_log, "accuracy") == pytest.approx(1 - errors / n)
    assert _metric(mock_log, "invalid_rate") == pytest.approx(invalid.sum() / n)
    by_id = {s.id: s for s in mock_log.samples}
    for k, q in enumerate(reads.questions(spec)):
        score = by_id[q.id].scores["flipflop_read"]
        assert (score.value == "I") == bool(wrong[k] or invalid[k]) and score.metadata["invalid"] == bool(invalid[k])
    assert mock_log.eval.task_registry_name == "ffbench/flipflop"


@needs_inspect
def test_inspect_eval_on_the_command_line_against_an_openai_compatible_server(served_log):
    """The server answers the last written bit, except: no bit at all (garbage), cut at the token
    budget (truncated), or with a separate reasoning field naming the wrong bit first (right)."""
    spec = reads.source("flipflop", **SERVED_ARGS)
    qs = reads.questions(spec)
    kinds = [reply_kind(q.input) for q in qs]
    assert {"garbage", "cut", "think", "plain"} <= set(kinds)
    bad = sum(k in ("garbage", "cut") for k in kinds)
    assert len(served_log.samples) == len(qs) and served_log.status == "success"
    assert _metric(served_log, "glitch_rate") == pytest.approx(bad / len(qs))
    assert _metric(served_log, "invalid_rate") == pytest.approx(bad / len(qs))
    scores = {s.id: s.scores["flipflop_read"] for s in served_log.samples}
    assert [scores[q.id].metadata["truncated"] for q in qs] == [k == "cut" for k in kinds]
    assert sum(garbage(q.input) for q in qs) == kinds.count("garbage")
