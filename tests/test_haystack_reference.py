"""Native models that read text (the text vocabulary, vocab_size 99) on ``--task haystack``: scored by
``ffbench run`` exactly as their own forward pass says, lengths counted in their own characters, and
the compact-string checkpoints still refused in one line."""

from __future__ import annotations

import numpy as np
import pytest

from ffbench import language, model_handle, preflight, render, tasks, tokenizer
from ffbench.errors import FFBenchError
from tests.conftest import cli_exit

torch = pytest.importorskip("torch")


def test_the_text_vocabulary_extends_the_character_ones_without_moving_an_id():
    text = tokenizer.vocabulary(tokenizer.TEXT_VOCAB_SIZE)
    assert len(text) == 99 == len(set(text)) and text[:27] == tokenizer.vocabulary(27)
    assert text[:18] == tokenizer.VOCAB and tokenizer.vocabulary(19) == tokenizer.VOCAB + ["u"]
    assert set(text[3:]) == {chr(c) for c in range(32, 127)} | {"\n"}
    tok = tokenizer.CharTokenizer(99)
    sentence = "Alice turns the light on. In the attic, the floorboards creak."
    assert tok(sentence)["input_ids"] == [text.index(c) for c in sentence] and 0 not in tok(sentence)["input_ids"]
    assert tok("w1r1")["input_ids"] == tokenizer.CharTokenizer()("w1r1")["input_ids"] == [3, 7, 4, 7]
    for size in (28, 98, 100):
        with pytest.raises(FFBenchError, match="a native checkpoint has 18 to 27 tokens .* or 99"):
            tokenizer.vocabulary(size)


def own_margins(path, length: int, num: int) -> list[tuple[int, int, float]]:
    """(suite seed's sequence, read, margin) for every read of the haystack presets at T = ``length``,
    from the model's forward pass on the rendered text: each answer (" on", " off") teacher-forced
    after the text before it, its characters' log-probabilities summed; margin = target - other."""
    from ffbench.train.checkpoint import load_checkpoint

    net, cfg = load_checkpoint(path, "cpu")
    vocab = tokenizer.vocabulary(cfg.vocab_size)
    task, template = tasks.get("haystack"), render.load_template("haystack")
    out = []
    for name in ("final", "every"):
        suite = task.suites[name]
        for i, seq in enumerate(task.sample(task.suite_dist(name, suite.p_ignore, length), num, suite.seed)):
            shown = render.render(seq, template)
            for r, ((start, _), target) in enumerate(zip(shown.spans.tolist(), shown.targets.tolist())):
                scores = []
                for choice in shown.choices:
                    ids = torch.tensor([[vocab.index(c) for c in shown.text[:start] + choice]])
                    with torch.inference_mode():
                        logp = net(ids)[0][0].double().log_softmax(-1)
                    answer = ids[0, start:]
                    scores.append(float(logp[start - 1 : start - 1 + len(choice)].gather(1, answer[:, None]).sum()))
                out.append((name, i, r, scores[target] - scores[1 - target]))
    return out


def scored_by_run(model: str, length: int, num: int, out) -> list[tuple[str, int, int, float]]:
    import pandas as pd

    assert cli_exit(["run", "--model", model, "--task", "haystack", "--length", str(length), "--num", str(num),
                     "--no-record", "--output-dir", out]) == 0
    s = pd.read_parquet(out / "samples.parquet").sort_values(["suite", "seq_index", "read_index"])
    assert (s["correct"] == (s["margin"] > 0)).all()
    return list(zip(s["suite"], s["seq_index"], s["read_index"], s["margin"]))


def assert_same(ran, own):
    assert [r[:3] for r in ran] == sorted(r[:3] for r in own)
    own = sorted(own)
    assert np.allclose([r[3] for r in ran], [r[3] for r in own], atol=2e-3)
    assert [r[3] > 0 for r in ran] == [r[3] > 0 for r in own]


def test_a_text_checkpoint_is_scored_on_haystack_by_its_own_forward_pass(tmp_path):
    """A random text-vocabulary LSTM: its margins are spread around zero, so right and wrong reads both
    occur, and every read's verdict and margin are those of its own forward pass."""
    from ffbench.train.checkpoint import save_checkpoint
    from ffbench.train.model import ModelConfig, build

    torch.manual_seed(3)
    cfg = ModelConfig(arch="lstm", n_layer=1, hidden=16, vocab_size=tokenizer.TEXT_VOCAB_SIZE)
    save_checkpoint(build(cfg), cfg, tmp_path / "m", train_config={"length": 24})
    ran = scored_by_run(f"ffbench/{tmp_path / 'm'}", 24, 6, tmp_path / "run")
    assert_same(ran, own_margins(tmp_path / "m", 24, 6))
    assert 0 < sum(r[3] > 0 for r in ran) < len(ran)


def test_the_shipped_haystack_reference_is_scored_by_its_own_forward_pass(tmp_path):
    from ffbench.resources import BASELINES_DIR

    ran = scored_by_run("ffbench/haystack-lstm", 46, 5, tmp_path / "run")
    assert_same(ran, own_margins(BASELINES_DIR / "haystack-lstm", 46, 5))


def test_context_tokens_of_a_text_model_are_its_characters():
    handle = model_handle.resolve("ffbench/haystack-lstm", {})
    task, template = tasks.get("haystack"), render.load_template("haystack")
    chosen = preflight.lengths_for_tokens(handle, template, task, [1000, 4000])

    def chars(t):
        return len(render.render(task.sample(task.suite_dist("final", 0.98, t), 1, 0)[0], template).text)

    for budget, length in zip([1000, 4000], chosen):
        assert chars(length) <= budget < chars(length + 2)


def test_compact_string_checkpoints_refuse_haystack_in_one_line(capsys):
    assert cli_exit(["run", "--model", "ffbench/lstm-ref", "--task", "haystack", "--length", "32", "--num", "2",
                     "--no-record", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ffbench: error: ffbench/ models read the symbolic rendering only")
    assert "not 'haystack'" in err and "ffbench/haystack-lstm" in err


def _trainer():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "haystack_train.py"
    spec = importlib.util.spec_from_file_location("haystack_train", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_trainer_supervises_exactly_the_answer_characters_of_every_read():
    """benchmarks/haystack_train.py: the positions whose predictions the loss reads are those that
    predict each read's answer (' on' / ' off') in the text ffbench run renders, and no others."""
    trainer = _trainer()
    arr = language.sample(language.FFL.from_p_ignore(0.5, 40), 4, 11)
    idx, answer, shown = trainer.batch(arr)
    vocab = tokenizer.vocabulary(tokenizer.TEXT_VOCAB_SIZE)
    for i, r in enumerate(shown):
        assert "".join(vocab[t] for t in idx[i, : len(r.text)].tolist()) == r.text
        predicted = [vocab[t] for t in idx[i, 1:][answer[i, :-1]].tolist()]
        assert "".join(predicted) == "".join(r.choices[v] for v in r.targets.tolist())
        assert int(answer[i].sum()) == sum(len(r.choices[v]) for v in r.targets.tolist()) > 0


def test_the_trainer_exports_a_checkpoint_ffbench_runs_on_haystack(tmp_path, monkeypatch):
    import json
    import sys

    trainer = _trainer()
    monkeypatch.setattr(sys, "argv", ["haystack_train.py", "--steps", "3", "--hidden", "8", "--eval-length", "8",
                                      "--eval-num", "2", "--out", str(tmp_path / "m.json"), "--export", str(tmp_path / "m")])
    trainer.main()
    config = json.loads((tmp_path / "m" / "config.json").read_text())["ffbench_model"]
    assert config["vocab_size"] == 99 and json.loads((tmp_path / "m" / "train_config.json").read_text())["length"] == 8
    assert cli_exit(["run", "--model", f"ffbench/{tmp_path / 'm'}", "--task", "haystack", "--length", "8", "--num", "2",
                     "--no-record", "--output-dir", tmp_path / "run"]) == 0
