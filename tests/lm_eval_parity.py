"""One parity check for every task's lm-eval tasks: lm-eval's verdict and margin on every document
equal ``ffbench run``'s on the same model's final reads, and ``ffbench import`` of lm-eval's log holds
those reads in the run's own cells (tests/test_lm_eval_{undo,registers,haystack}.py)."""

from __future__ import annotations

import numpy as np
import pytest

from ffbench import lmeval
from tests.test_lm_eval import OFFLINE


def assert_lm_eval_equals_run(tiny_gpt2, tmp_path, meta: dict, task_renders: dict[str, str], task: str,
                              reads_per_task: int, **config) -> None:
    """``task_renders``: lm-eval task name -> the ffbench rendering it is; ``config``: more RunConfig
    fields (``registers``). Every final read is compared, and the verdicts must be mixed (a model
    right or wrong everywhere would prove nothing)."""
    import lm_eval
    from lm_eval.loggers import EvaluationTracker

    from ffbench import backends, runner
    from ffbench.imports import import_log

    tracker = EvaluationTracker(output_path=str(tmp_path / "lm"))
    with pytest.MonkeyPatch.context() as mp:
        for k, v in OFFLINE.items():
            mp.setenv(k, v)
        out = lm_eval.simple_evaluate(
            model="hf", model_args={"pretrained": str(tiny_gpt2), "dtype": "float32"}, device="cpu",
            tasks=list(task_renders), task_manager=lmeval.task_manager(meta, include_defaults=False),
            batch_size=8, log_samples=True, evaluation_tracker=tracker, metadata=meta)
    import copy

    samples = out.pop("samples")
    tracker.save_results_aggregated(results=copy.deepcopy(out), samples=copy.deepcopy(samples))
    for name in task_renders:  # (the tracker turns what it writes into strings in place)
        tracker.save_results_samples(task_name=name, samples=copy.deepcopy(samples[name]))
    out["samples"] = samples
    cfg = runner.RunConfig(model=f"hf/{tiny_gpt2}", model_args={"dtype": "float32", "device": "cpu"},
                           p_ignore=meta["p_ignore"], lengths=meta["lengths"], num=meta["num_sequences"],
                           seed=meta["seed"], renders=list(task_renders.values()), scorings=["choice"], fewshot=True,
                           task=task, **config)
    res = runner.run(cfg, str(tmp_path / "run"), backends.resolve(cfg.model, cfg.model_args), progress=False,
                     echo=lambda m: None)
    table = res.samples
    final = table.loc[table.groupby(["suite", "length", "render", "seq_index"])["read_index"].idxmax()]
    verdicts = []
    for name, rendering in task_renders.items():
        ours = {(r.suite, r.length, r.seq_index): (bool(r.correct), r.margin)
                for r in final[final["render"] == rendering].itertuples()}
        theirs = {}
        for s in out["samples"][name]:
            doc, lls = s["doc"], [r[0] for r in s["filtered_resps"]]
            theirs[(doc["suite"], doc["length"], doc["seq_index"])] = (bool(s["acc"]),
                                                                        lls[doc["gold"]] - lls[1 - doc["gold"]])
        assert theirs.keys() == ours.keys() and len(ours) == reads_per_task
        for key, (right, margin) in theirs.items():
            assert right == ours[key][0], (name, key)
            assert margin == pytest.approx(ours[key][1], abs=1e-4), (name, key)
            verdicts.append(right)
        assert out["results"][name]["acc,none"] == pytest.approx(np.mean([v[0] for v in ours.values()]))
    assert any(verdicts) and not all(verdicts)

    # ffbench import of lm-eval's log: the final reads of the run's own cells (task variant + final_read),
    # with lm-eval's verdicts, the same sequences (data hash) and the run's targets and positions
    imported = import_log(str(tmp_path / "lm"), str(tmp_path / "imported"))
    mine = imported.samples
    assert len(imported.results) == len(res.results) and len(mine) == reads_per_task * len(task_renders)
    for cell in imported.results:
        (twin,) = [c for c in res.results if (c.suite, c.length, c.render) == (cell.suite, cell.length, cell.render)]
        assert cell.data_sha256 == twin.data_sha256 and cell.variant == twin.variant + "+final_read"
        a = mine[mine.cell == cell.id].set_index(["seq_index", "read_index"])
        b = table[table.cell == twin.id].set_index(["seq_index", "read_index"]).loc[a.index]
        assert a.position.tolist() == b.position.tolist() and a.target.tolist() == b.target.tolist()
        assert a.correct.tolist() == b.correct.tolist()
        assert np.allclose(a.margin, b.margin, atol=1e-4)
