"""The haystack lm-eval task (fflm_haystack): its documents are the final reads of ``ffbench run --task
haystack --p-ignore P``'s sequences (light switches among story sentences), and lm-eval's verdict on
every one equals ffbench run's on the same model (the parity pattern of tests/test_lm_eval_undo.py)."""

from __future__ import annotations

import numpy as np
import pytest

from ffbench import language, lmeval, render, tasks
from tests.conftest import HAS_TORCH
from tests.test_lm_eval import HAS_LM_EVAL, OFFLINE

META = {"lengths": [16, 24], "p_ignore": [0.9, 0.5], "num_sequences": 5, "seed": 3}  # T = 24 with the demo: ~700 characters, within the tiny model's 1,024


def test_documents_are_the_final_reads_of_haystack_sequences():
    docs = lmeval.build_docs("haystack", lmeval.Params.from_metadata(META, "haystack"), task="haystack")
    assert len(docs) == 4 * 5
    demo = tasks.get("haystack").demo()
    for n, doc in enumerate(docs):
        length, p = [(16, 0.9), (16, 0.5), (24, 0.9), (24, 0.5)][n % 4]
        seq = language.sample(language.FFL(length, 1 - p, 0.0, p), 5, 3)[n // 4]  # Haystack(P): no read before the last
        rendered = render.render(seq, "haystack", demo=demo)
        assert doc["suite"] == f"haystack{p:g}" and doc["context"] == rendered.prompt(len(rendered.targets) - 1)
        assert doc["read_index"] == 0 and doc["gold"] == language.extract_reads(seq[None]).target[-1]
    with pytest.raises(Exception, match="filler"):
        lmeval.build_docs("symbolic", lmeval.Params.from_metadata(META, "haystack"), task="haystack")


@pytest.mark.skipif(not (HAS_LM_EVAL and HAS_TORCH), reason="lm-eval, torch and transformers needed")
def test_haystack_task_equals_ffbench_run_exactly(tiny_gpt2, tmp_path):
    import lm_eval

    from ffbench import backends, runner

    with pytest.MonkeyPatch.context() as mp:
        for k, v in OFFLINE.items():
            mp.setenv(k, v)
        out = lm_eval.simple_evaluate(
            model="hf", model_args={"pretrained": str(tiny_gpt2), "dtype": "float32"}, device="cpu",
            tasks=["fflm_haystack"], task_manager=lmeval.task_manager(META, include_defaults=False),
            batch_size=8, log_samples=True)
    cfg = runner.RunConfig(model=f"hf/{tiny_gpt2}", model_args={"dtype": "float32", "device": "cpu"},
                           p_ignore=META["p_ignore"], lengths=META["lengths"], num=META["num_sequences"],
                           seed=META["seed"], renders=["haystack"], scorings=["choice"], fewshot=True, task="haystack")
    res = runner.run(cfg, str(tmp_path / "run"), backends.resolve(cfg.model, cfg.model_args), progress=False,
                     echo=lambda m: None)
    table = res.samples
    assert len(table) == 20  # one read per sequence: the final one
    ours = {(r.suite, r.length, r.seq_index): (bool(r.correct), r.margin) for r in table.itertuples()}
    theirs = {}
    for s in out["samples"]["fflm_haystack"]:
        doc, lls = s["doc"], [r[0] for r in s["filtered_resps"]]
        theirs[(doc["suite"], doc["length"], doc["seq_index"])] = (bool(s["acc"]), lls[doc["gold"]] - lls[1 - doc["gold"]])
    assert theirs.keys() == ours.keys()
    for key, (right, margin) in theirs.items():
        assert right == ours[key][0], key
        assert margin == pytest.approx(ours[key][1], abs=1e-4), key
    assert out["results"]["fflm_haystack"]["acc,none"] == pytest.approx(np.mean([v[0] for v in ours.values()]))
    assert 0 < sum(v[0] for v in ours.values()) < len(ours)
