"""Native checkpoints with ``u`` (and register names) in their vocabulary: a model trained on UNDO
flip-flops (vocab_size 19, benchmarks/undo_train.py --export) is scored by ``ffbench run --task undo``
exactly as its own forward pass says, and the flip-flop checkpoints (vocab_size 18) are unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ffbench import tokenizer, undo
from ffbench.errors import FFBenchError
from tests.conftest import cli_exit

torch = pytest.importorskip("torch")


def test_vocabularies_extend_without_moving_an_id():
    assert tokenizer.vocabulary() == tokenizer.VOCAB and len(tokenizer.VOCAB) == 18
    assert tokenizer.vocabulary(19) == tokenizer.VOCAB + ["u"]
    assert tokenizer.vocabulary(27)[19:] == list("abcdefgh")
    assert tokenizer.CharTokenizer(19)("w1u0r1")["input_ids"] == [3, 7, 18, 6, 4, 7]
    assert tokenizer.CharTokenizer()("u")["input_ids"] == [0]  # unknown: <pad>
    with pytest.raises(FFBenchError, match="a native checkpoint has 18 to 27 tokens"):
        tokenizer.vocabulary(28)


def test_a_checkpoint_with_u_is_scored_on_undo_by_its_own_forward_pass(tmp_path):
    from ffbench.train.checkpoint import load_checkpoint, save_checkpoint
    from ffbench.train.model import ModelConfig, build

    torch.manual_seed(0)
    cfg = ModelConfig(arch="lstm", n_layer=1, hidden=16, vocab_size=19)
    save_checkpoint(build(cfg), cfg, tmp_path / "m", train_config={"length": 32})
    out = tmp_path / "run"
    assert cli_exit(["run", "--model", f"ffbench/{tmp_path / 'm'}", "--task", "undo", "--suite", "in_dist",
                     "--length", "32", "--num", "20", "--no-record", "--output-dir", out]) == 0
    import pandas as pd

    samples = pd.read_parquet(out / "samples.parquet")
    net, _ = load_checkpoint(tmp_path / "m", "cpu")
    arr = undo.sample(undo.UndoFFL.from_p_ignore(0.7, 32), 20, 1000)
    ids = torch.from_numpy(np.array([[tokenizer.vocabulary(19).index(chr(c)) for c in row] for row in arr]))
    with torch.inference_mode():
        logp = net(ids)[0].float().log_softmax(-1)
    reads = undo.extract_reads(arr)
    zero, one = tokenizer.vocabulary(19).index("0"), tokenizer.vocabulary(19).index("1")
    pair = logp[reads.seq_index, reads.position - 1][:, [zero, one]].numpy()
    want = np.where(reads.target == 1, pair[:, 1] > pair[:, 0], pair[:, 0] > pair[:, 1])
    assert len(samples) == len(reads.target) and samples["correct"].to_numpy().tolist() == want.tolist()
    assert samples["toggle"].notna().all()
    assert json.loads((out / "results.json").read_text())["config"]["task"] == "undo"


def test_a_checkpoint_with_register_names_is_scored_on_registers_by_its_own_forward_pass(tmp_path):
    from ffbench import registers
    from ffbench.train.checkpoint import load_checkpoint, save_checkpoint
    from ffbench.train.model import ModelConfig, build

    torch.manual_seed(1)
    cfg = ModelConfig(arch="lstm", n_layer=1, hidden=16, vocab_size=27)
    save_checkpoint(build(cfg), cfg, tmp_path / "m", train_config={"length": 48})
    out = tmp_path / "run"
    assert cli_exit(["run", "--model", f"ffbench/{tmp_path / 'm'}", "--task", "registers", "--suite", "in_dist",
                     "--length", "48", "--num", "20", "--no-record", "--output-dir", out]) == 0
    import pandas as pd

    samples = pd.read_parquet(out / "samples.parquet")
    net, _ = load_checkpoint(tmp_path / "m", "cpu")
    arr = registers.sample(registers.Registers.from_p_ignore(0.8, 48, 2), 20, 1000)
    vocab = tokenizer.vocabulary(27)
    ids = torch.from_numpy(np.array([[vocab.index(chr(c)) for c in row] for row in arr]))
    with torch.inference_mode():
        logp = net(ids)[0].float().log_softmax(-1)
    reads = registers.extract_reads(arr)
    pair = logp[reads.seq_index, reads.position - 1][:, [vocab.index("0"), vocab.index("1")]].numpy()
    want = np.where(reads.target == 1, pair[:, 1] > pair[:, 0], pair[:, 0] > pair[:, 1])
    assert len(samples) == len(reads.target) and samples["correct"].to_numpy().tolist() == want.tolist()
    assert samples["one_variable"].notna().all()


def test_the_flip_flop_references_are_still_refused_on_undo(capsys):
    assert cli_exit(["run", "--model", "ffbench/lstm-ref", "--task", "undo", "--length", "32", "--num", "2",
                     "--no-record", "--dry-run"]) == 2
    assert "no token for" in capsys.readouterr().err


@pytest.mark.parametrize("name,task,length", [(f"{task}-{arch}", task, length) for task, length in (("undo", 128),
                                                                                          ("registers", 192))
                                               for arch in ("lstm", "ssm", "transformer")])
def test_the_shipped_task_references_fail_where_their_shipped_run_says(name, task, length, tmp_path):
    """The UNDO and registers references (benchmarks/undo_train.py, registers_train.py --export;
    docs/tasks.md): re-scoring the first 40 in_dist sequences finds exactly the failing reads their
    shipped run/ holds for those sequences."""
    import pandas as pd

    from ffbench.resources import BASELINES_DIR

    out = tmp_path / "run"
    assert cli_exit(["run", "--model", f"ffbench/{name}", "--task", task, "--suite", "in_dist", "--length", str(length),
                     "--num", "40", "--no-record", "--output-dir", out]) == 0
    ours = pd.read_parquet(out / "samples.parquet")
    shipped = pd.read_parquet(BASELINES_DIR / name / "run" / "failures.parquet")
    shipped = shipped[(shipped["suite"] == "in_dist") & (shipped["seq_index"] < 40)]
    failing = lambda t: sorted(zip(t.loc[~t["correct"], "seq_index"], t.loc[~t["correct"], "read_index"]))
    assert failing(ours) == failing(shipped) and 0 < len(failing(ours)) < len(ours)
