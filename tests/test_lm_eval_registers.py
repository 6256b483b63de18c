"""The registers lm-eval tasks (fflm_registers_symbolic, fflm_registers_lightswitch): their documents are
the final reads of ``ffbench run --task registers``'s sequences, and lm-eval's verdict on every one
equals ffbench run's on the same model (the parity pattern of tests/test_lm_eval_undo.py)."""

from __future__ import annotations

import numpy as np
import pytest

from ffbench import lmeval, registers, render, tasks
from ffbench.errors import FFBenchError
from tests.conftest import HAS_TORCH
from tests.test_lm_eval import HAS_LM_EVAL, OFFLINE

META = {"lengths": [24, 48], "p_ignore": [0.8, 0.1], "num_sequences": 5, "seed": 3, "registers": 3}
REGISTER_TASKS = {"fflm_registers_symbolic": "symbolic_registers", "fflm_registers_lightswitch": "lightswitch_registers"}


def test_documents_are_the_final_reads_of_register_sequences():
    params = lmeval.Params.from_metadata(META, "registers")
    docs = lmeval.build_docs("symbolic_registers", params, task="registers")
    assert len(docs) == 4 * 5
    demo = tasks.get("registers").demo()
    for n, doc in enumerate(docs):
        length, p = [(24, 0.8), (24, 0.1), (48, 0.8), (48, 0.1)][n % 4]
        seq = registers.sample(registers.Registers.from_p_ignore(p, length, 3), 5, 3)[n // 4]
        rendered = render.render(seq, "symbolic_registers", demo=demo)
        assert doc["suite"] == f"registers{p:g}_k3" and doc["context"] == rendered.prompt(len(rendered.targets) - 1)
        assert doc["gold"] == registers.extract_reads(seq[None]).target[-1] and doc["context"].endswith("r" + chr(seq[-2]))
    assert lmeval.Params.from_metadata({}, "registers").lengths == lmeval.REGISTERS_LENGTHS
    assert lmeval.build_docs("symbolic_registers", lmeval.Params.from_metadata({"registers": 2, "lengths": [24],
                                                                                "num_sequences": 1}, "registers"),
                             task="registers")[0]["suite"] == "registers0.8"  # the default k: no suffix
    with pytest.raises(FFBenchError, match="fflm metadata 'lengths': --task registers needs a length that is a multiple of 3"):
        lmeval.Params.from_metadata({"lengths": [64]}, "registers")
    with pytest.raises(FFBenchError, match="fflm metadata 'registers': --registers must be between 1 and 8"):
        lmeval.Params.from_metadata({"registers": 9}, "registers")
    with pytest.raises(Exception, match="registers"):
        lmeval.build_docs("symbolic", params, task="registers")


@pytest.mark.skipif(not (HAS_LM_EVAL and HAS_TORCH), reason="lm-eval, torch and transformers needed")
def test_register_tasks_equal_ffbench_run_exactly(tiny_gpt2, tmp_path):
    import lm_eval

    from ffbench import backends, runner

    with pytest.MonkeyPatch.context() as mp:
        for k, v in OFFLINE.items():
            mp.setenv(k, v)
        out = lm_eval.simple_evaluate(
            model="hf", model_args={"pretrained": str(tiny_gpt2), "dtype": "float32"}, device="cpu",
            tasks=list(REGISTER_TASKS), task_manager=lmeval.task_manager(META, include_defaults=False),
            batch_size=8, log_samples=True)
    cfg = runner.RunConfig(model=f"hf/{tiny_gpt2}", model_args={"dtype": "float32", "device": "cpu"},
                           p_ignore=META["p_ignore"], lengths=META["lengths"], num=META["num_sequences"],
                           seed=META["seed"], renders=list(REGISTER_TASKS.values()), scorings=["choice"], fewshot=True,
                           task="registers", registers=[META["registers"]])
    res = runner.run(cfg, str(tmp_path / "run"), backends.resolve(cfg.model, cfg.model_args), progress=False,
                     echo=lambda m: None)
    table = res.samples
    final = table.loc[table.groupby(["suite", "length", "render", "seq_index"])["read_index"].idxmax()]
    verdicts = []
    for task, rendering in REGISTER_TASKS.items():
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
