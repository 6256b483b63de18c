"""The UNDO lm-eval tasks (fflm_undo_symbolic, fflm_undo_lightswitch): their documents are the final
reads of ``ffbench run --task undo``'s sequences, and lm-eval's verdict on every one equals ffbench
run's on the same model (the parity pattern of tests/test_lm_eval.py)."""

from __future__ import annotations

import pytest

from ffbench import lmeval, render, tasks, undo
from tests.conftest import HAS_TORCH
from tests.lm_eval_parity import assert_lm_eval_equals_run
from tests.test_lm_eval import HAS_LM_EVAL

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


def test_an_undo_log_whose_document_is_not_ffbenchs_is_refused_in_one_line(tmp_path, capsys):
    """An undo task's log imports into --task undo's cells (tests/lm_eval_parity.py); a document whose
    sequence ffbench would not generate (here: a flipped bit) is refused in one line, nothing written."""
    import json

    from tests.conftest import cli_exit

    log = tmp_path / "samples_fflm_undo_symbolic_2026-12-04T20-00-00.jsonl"
    docs = lmeval.build_docs("symbolic_undo", lmeval.Params.from_metadata(META), task="undo")
    docs = [d for d in docs if d["length"] == docs[0]["length"] and d["p_ignore"] == docs[0]["p_ignore"]]
    seq = docs[0]["sequence"]
    docs[0] = {**docs[0], "sequence": seq[:1] + ("1" if seq[1] == "0" else "0") + seq[2:]}
    log.write_text("".join(json.dumps({"doc_id": k, "doc": d, "filtered_resps": [[-1.0, False], [-2.0, False]]}) + "\n"
                           for k, d in enumerate(docs)))
    assert cli_exit(["import", log, "--out", tmp_path / "run"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is not what ffbench generates for it" in err
    assert not (tmp_path / "run").exists()
