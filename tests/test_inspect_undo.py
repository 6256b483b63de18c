"""The Inspect task ``ffbench/undo``: its samples are ``ffbench run --task undo``'s reads asked in the
``chat_undo`` rendering, and a model that answers with the toggle heuristic (an undo flips the bit)
gets exactly the glitch rate of the toggle on those reads."""

from __future__ import annotations

import numpy as np
import pytest

from ffbench import metrics, prompting, render, scoring, sources, undo
from ffbench.inspect_tasks import reads
from tests.inspect_logs import needs_inspect

ARGS = {"suite": "in_dist", "length": 24, "num": 6, "p_ignore": 0.1}


def test_undo_questions_are_ffbenchs_questions():
    spec = reads.source("undo", "retraction", 24, 2, None)
    assert (spec.kind, spec.task, spec.num) == ("retraction", "undo", 6)
    arr, flat, _ = sources.SequenceStore().get(spec)
    qs = reads.questions(spec, reads.UNDO_RENDERING)
    template = render.load_template("chat_undo")
    expected = scoring.questions([render.render(s, template) for s in arr], np.arange(len(flat.target)), template,
                                 prompting.PromptFormat(), True)
    assert [q.input for q in qs] == expected and [q.metadata["family"] for q in qs] == ["retraction_chain"] * 6
    with pytest.raises(Exception, match="has no 'undo' piece"):
        reads.questions(spec, "chat")


def toggle_reply(input, tools, tool_choice, config):
    """mockllm answering with the toggle heuristic, read off the spaced sequence of the prompt."""
    from inspect_ai.model import ModelOutput, ModelUsage

    body = input[-1].text.rsplit("Sequence:\n", 1)[1].split("\n\n")[0].split()
    state = 0
    for op, bit in zip(body[0::2], body[1::2]):
        state = int(bit) if op == "w" else (1 - state if op == "u" else state)
    out = ModelOutput.from_content("mockllm", f"The answer is {state}.")
    out.usage = ModelUsage(input_tokens=len(body), output_tokens=5, total_tokens=len(body) + 5)
    return out


@needs_inspect
def test_a_toggle_model_glitches_exactly_where_the_toggle_is_wrong(tmp_path):
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import get_model

    import ffbench.inspect_tasks._registry  # noqa: F401

    (log,) = inspect_eval("ffbench/undo", task_args=ARGS, display="none",
                          model=get_model("mockllm/model", custom_outputs=toggle_reply), log_dir=str(tmp_path))
    assert log.status == "success", log.error
    arr = sources.load_sequences(reads.source("undo", **ARGS))
    flat = undo.extract_reads(arr)
    wrong = undo.toggle_predictions(arr) != flat.target
    assert 0 < wrong.sum() < len(wrong) and len(log.samples) == len(wrong)
    value = {k: v.value for k, v in log.results.scores[0].metrics.items()}
    assert value["glitch_rate"] == pytest.approx(wrong.mean())
    assert (value["glitch_rate_ci_low"], value["glitch_rate_ci_high"]) == \
        pytest.approx(metrics.clopper_pearson(int(wrong.sum()), len(wrong)))
    assert log.eval.task_registry_name == "ffbench/undo"
    # ffbench import: the log becomes a run directory of the same reads, in the undo task's own cells
    import json

    from ffbench.imports import import_log

    import_log(log.location, str(tmp_path / "run"))
    (cell,) = json.loads((tmp_path / "run" / "results.json").read_text())["results"]
    assert (cell["reads"], cell["errors"]) == (len(wrong), int(wrong.sum()))
    assert cell["variant"].startswith("task=undo") and cell["source"]["task"] == "undo"
