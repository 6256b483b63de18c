"""The UNDO lm-eval tasks (fflm_undo_symbolic, fflm_undo_lightswitch): their documents are the final
reads of ``ffbench run --task undo``'s sequences, and lm-eval's verdict on every one equals ffbench
run's on the same model (the parity pattern of tests/test_lm_eval.py)."""

from __future__ import annotations

import numpy as np
import pytest

from ffbench import lmeval, render, tasks, undo
from tests.conftest import HAS_TORCH
from tests.test_lm_eval import HAS_LM_EVAL, OFFLINE

META = {"lengths": [16, 32], "p_ignore": [0.7, 0.1], "num_sequences": 5, "seed": 3}
UNDO_TASKS = {"fflm_undo_symbolic": "symbolic_undo", "fflm_undo_lightswitch": "lightswitch_undo"}


def test_documents_are_the_final_reads_of_undo_sequences():
    params = lmeval.Params.from_metadata(META)
    docs = lmeval.build_docs("symbolic_undo", params, task="undo")
    assert len(docs) == 4 * 5
    demo = tasks.get("undo").demo()
    for k, doc in enumerate(docs):
        length, p = [(16, 0.7), (16, 0.1), (32, 0.7), (32, 0.1)][k % 4]
        seq = undo.sample(undo.UndoFFL.from_p_ignore(p, length), 5, 3)[k // 4]
        rendered = render.render(seq, "symbolic_undo", demo=demo)
        assert doc["suite"] == f"undo{p:g}" and doc["context"] == rendered.prompt(len(rendered.targets) - 1)
        assert doc["gold"] == undo.extract_reads(seq[None]).target[-1]
    with pytest.raises(Exception, match="has no 'undo' piece"):
        lmeval.build_docs("symbolic", params, task="undo")


@pytest.mark.skipif(not (HAS_LM_EVAL and HAS_TORCH), reason="lm-eval, torch and transformers needed")
def test_undo_tasks_equal_ffbench_run_exactly(tiny_gpt2, tmp_path):
    import lm_eval

    from ffbench import backends, runner

    with pytest.MonkeyPatch.context() as mp:
        for k, v in OFFLINE.items():
            mp.setenv(k, v)
        out = lm_eval.simple_evaluate(
            model="hf", model_args={"pretrained": str(tiny_gpt2), "dtype": "float32"}, device="cpu",
            tasks=list(UNDO_TASKS), task_manager=lmeval.task_manager(META, include_defaults=False),
            batch_size=8, log_samples=True)
    cfg = runner.RunConfig(model=f"hf/{tiny_gpt2}", model_args={"dtype": "float32", "device": "cpu"},
                           p_ignore=META["p_ignore"], lengths=META["lengths"], num=META["num_sequences"],
                           seed=META["seed"], renders=list(UNDO_TASKS.values()), scorings=["choice"], fewshot=True,
                           task="undo")
    res = runner.run(cfg, str(tmp_path / "run"), backends.resolve(cfg.model, cfg.model_args), progress=False,
                     echo=lambda m: None)
    table = res.samples
    final = table.loc[table.groupby(["suite", "length", "render", "seq_index"])["read_index"].idxmax()]
    verdicts = []
    for task, rendering in UNDO_TASKS.items():
        ours = {(r.suite, r.length, r.seq_index): (bool(r.correct), r.margin)
                for r in final[final["render"] == rendering].itertuples()}
        theirs = {}
        for s in out["samples"][task]:
            doc, lls = s["doc"], [r[0] for r in s["filtered_resps"]]
            theirs[(doc["suite"], doc["length"], doc["seq_index"])] = (bool(s["acc"]),
                                                                        lls[doc["gold"]] - lls[1 - doc["gold"]])
        assert theirs.keys() == ours.keys() and len(ours) == 20
        for key, (right, margin) in theirs.items():
            assert right == ours[key][0], (task, key)
            assert margin == pytest.approx(ours[key][1], abs=1e-4), (task, key)
            verdicts.append(right)
        assert out["results"][task]["acc,none"] == pytest.approx(np.mean([v[0] for v in ours.values()]))
    assert any(verdicts) and not all(verdicts)


def test_importing_an_undo_tasks_log_is_refused_in_one_line(tmp_path, capsys):
    import json

    from tests.conftest import cli_exit

    log = tmp_path / "samples_fflm_undo_symbolic_2026-12-04T20-00-00.jsonl"
    doc = lmeval.build_docs("symbolic_undo", lmeval.Params.from_metadata(META), task="undo")[0]
    log.write_text(json.dumps({"doc_id": 0, "doc": doc, "filtered_resps": [[-1.0, False], [-2.0, False]]}) + "\n")
    assert cli_exit(["import", log, "--out", tmp_path / "run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "importing fflm_undo_symbolic (--task undo) is not supported yet" in err
    assert not (tmp_path / "run").exists()
