"""The Inspect task ``ffbench/registers``: its samples are ``ffbench run --task registers``'s reads asked in
the ``chat_registers`` rendering, and a model that holds one variable (it answers the most recent write
to any register) gets exactly the glitch rate of that heuristic on those reads."""

from __future__ import annotations

import numpy as np
import pytest

from ffbench import metrics, prompting, registers, render, scoring, sources
from ffbench.inspect_tasks import reads
from tests.inspect_logs import needs_inspect

ARGS = {"suite": "in_dist", "length": 60, "num": 8, "p_ignore": 0.4, "registers": 3}


def test_register_questions_are_ffbenchs_questions():
    spec = reads.source("registers", "stale", 24, 2, None, registers=3)
    assert (spec.kind, spec.task, spec.registers, spec.label) == ("stale", "registers", 3, "stale_k3")  # ffbench run's label
    arr, flat, _ = sources.SequenceStore().get(spec)
    qs = reads.questions(spec, reads.REGISTERS_RENDERING)
    template = render.load_template("chat_registers")
    expected = scoring.questions([render.render(s, template) for s in arr], np.arange(len(flat.target)), template,
                                 prompting.PromptFormat(), True)
    assert [q.input for q in qs] == expected and {q.metadata["family"] for q in qs} == {"stale_register"}
    assert qs[0].input.split("Sequence:\n")[1].startswith("w ") and "r a\n\nWhat bit" in qs[0].input
    assert [q.target for q in qs] == [str(t) for t in flat.target]
    with pytest.raises(Exception, match="registers"):
        reads.questions(spec, "chat")


def one_variable_reply(input, tools, tool_choice, config):
    """mockllm answering the most recent write to any register, read off the spaced sequence."""
    from inspect_ai.model import ModelOutput, ModelUsage

    body = input[-1].text.rsplit("Sequence:\n", 1)[1].split("\n\n")[0].split()
    state = None
    for op, _, bit in zip(body[0::3], body[1::3], body[2::3]):
        state = bit if op == "w" else state
    out = ModelOutput.from_content("mockllm", f"The answer is {state}.")
    out.usage = ModelUsage(input_tokens=len(body), output_tokens=5, total_tokens=len(body) + 5)
    return out


@needs_inspect
def test_a_one_variable_model_glitches_exactly_where_the_heuristic_is_wrong(tmp_path):
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import get_model

    import ffbench.inspect_tasks._registry  # noqa: F401

    (log,) = inspect_eval("ffbench/registers", task_args=ARGS, display="none",
                          model=get_model("mockllm/model", custom_outputs=one_variable_reply), log_dir=str(tmp_path))
    assert log.status == "success", log.error
    arr = sources.load_sequences(reads.source("registers", **ARGS))
    assert arr.shape == (8, 60) and set(arr[:, 1::3].ravel().tolist()) == {ord("a"), ord("b"), ord("c")}
    flat = registers.extract_reads(arr)
    wrong = registers.one_variable_predictions(arr) != flat.target
    assert 0 < wrong.sum() < len(wrong) and len(log.samples) == len(wrong)
    value = {k: v.value for k, v in log.results.scores[0].metrics.items()}
    assert value["glitch_rate"] == pytest.approx(wrong.mean())
    assert (value["glitch_rate_ci_low"], value["glitch_rate_ci_high"]) == \
        pytest.approx(metrics.clopper_pearson(int(wrong.sum()), len(wrong)))
    assert log.eval.task_registry_name == "ffbench/registers"
    # ffbench import: the same reads (K = 3 from the log's arguments), in the registers task's own cells
    import json

    from ffbench.imports import import_log

    import_log(log.location, str(tmp_path / "run"))
    (cell,) = json.loads((tmp_path / "run" / "results.json").read_text())["results"]
    assert (cell["reads"], cell["errors"]) == (len(wrong), int(wrong.sum()))
    assert cell["variant"].startswith("task=registers") and cell["source"]["registers"] == 3
