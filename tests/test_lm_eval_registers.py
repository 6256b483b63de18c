"""The registers lm-eval tasks (fflm_registers_symbolic, fflm_registers_lightswitch): their documents are
the final reads of ``ffbench run --task registers``'s sequences, and lm-eval's verdict on every one
equals ffbench run's on the same model (the parity pattern of tests/test_lm_eval_undo.py)."""

from __future__ import annotations

import pytest

from ffbench import lmeval, registers, render, tasks
from ffbench.errors import FFBenchError
from tests.conftest import HAS_TORCH
from tests.lm_eval_parity import assert_lm_eval_equals_run
from tests.test_lm_eval import HAS_LM_EVAL

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
    assert_lm_eval_equals_run(tiny_gpt2, tmp_path, META, REGISTER_TASKS, "registers", 20, registers=[META["registers"]])
