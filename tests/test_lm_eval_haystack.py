"""The haystack lm-eval task (fflm_haystack): its documents are the final reads of ``ffbench run --task
haystack --p-ignore P``'s sequences (light switches among story sentences), and lm-eval's verdict on
every one equals ffbench run's on the same model (the parity pattern of tests/test_lm_eval_undo.py)."""

from __future__ import annotations

import pytest

from ffbench import language, lmeval, render, tasks
from tests.conftest import HAS_TORCH
from tests.lm_eval_parity import assert_lm_eval_equals_run
from tests.test_lm_eval import HAS_LM_EVAL

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
    assert_lm_eval_equals_run(tiny_gpt2, tmp_path, META, {"fflm_haystack": "haystack"}, "haystack", 20)
