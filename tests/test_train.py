"""Training the baselines: learning, sharpening losses, position variants, export, native backend, sweeps."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest

from tests.conftest import needs_torch

pytestmark = needs_torch


def _cfg(**kw):
    from ffbench.train.model import ModelConfig
    from ffbench.train.trainer import TrainConfig

    model = kw.pop("model", {})
    return TrainConfig(model=ModelConfig(**{"n_layer": 1, "d_model": 32, "n_head": 2, "max_len": 64, **model}),
                       **{"length": 32, "steps": 2, "batch_size": 8, "eval_num": 20, "eval_every": 1000, **kw})


def test_tiny_lstm_learns_t32_perfectly():
    import torch

    from ffbench import language
    from ffbench.train.trainer import evaluate, train

    cfg = _cfg(model={"arch": "lstm", "hidden": 32}, steps=400, lr=3e-3, batch_size=32)
    model, metrics = train(cfg, progress=False)
    arr = language.sample(language.FFL.from_p_ignore(0.5, 32), 500, 123)  # unseen, denser than training
    result = evaluate(model, arr)
    assert result["errors"] == 0 and result["reads"] > 2000  # expected 500 x (1 + 14 x 0.25) = 2250
    assert metrics["final_in_dist"]["errors"] == 0


def test_sharpening_losses_equal_hand_computed_values():
    import torch

    from ffbench.train.sharpen import coefficient, sharpening_loss

    # One layer, one head, two query rows: [1, 0] and [0.5, 0.5]; a second layer all [0.25]*4.
    a = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]])
    b = torch.full((1, 1, 2, 4), 0.25)
    entropy = (0.0 + math.log(2)) / 2, math.log(4)
    assert sharpening_loss([a, b], "entropy").item() == pytest.approx((entropy[0] + entropy[1]) / 2)
    l2 = (-(1.0 + math.sqrt(0.5)) / 2, -0.5)
    assert sharpening_loss([a, b], "l2").item() == pytest.approx((l2[0] + l2[1]) / 2)
    linf = (-(1.0 + 0.5) / 2, -0.25)
    assert sharpening_loss([a, b], "linf").item() == pytest.approx((linf[0] + linf[1]) / 2)
    assert coefficient(10, 100, 2.0, "constant", 20) == 0.0
    assert coefficient(20, 100, 2.0, "constant", 20) == 2.0
    assert coefficient(59, 100, 2.0, "linear", 20) == pytest.approx(2.0 * 40 / 80)
    assert coefficient(520, 10_000, 1.0, "oscillate", 20) == pytest.approx(1.0)  # half a period after start


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rope", "alibi", "none"])
def test_every_position_variant_trains_a_step(positions):
    from ffbench.train.trainer import train

    _, metrics = train(_cfg(model={"positions": positions}, sharpen="entropy", sharpen_coef=0.1, steps=2,
                            mode="generative"), progress=False)
    assert metrics["history"][-1]["step"] == 2 and math.isfinite(metrics["history"][-1]["loss"])


def test_gated_activation_dropout_and_temperature_train():
    from ffbench.train.trainer import train

    _, metrics = train(_cfg(model={"activation": "geglu", "attn_dropout": 0.1, "mlp_dropout": 0.1,
                                   "embd_dropout": 0.5, "temperature": 0.5}, train_mix=[0.9, 0.98, 0.1]),
                       progress=False)
    assert math.isfinite(metrics["history"][-1]["loss"])


def test_mixture_batches_are_equal_parts_and_seeded():
    from ffbench import language
    from ffbench.train.trainer import batch

    cfg = _cfg(train_mix=[0.9, 0.98, 0.1], batch_size=9)
    b = batch(cfg, 5)
    assert b.shape == (9, 32) and language.first_violation(b) is None
    assert np.array_equal(b, batch(cfg, 5)) and not np.array_equal(b, batch(cfg, 6))
    ignores = (b[:, 0::2] == ord("i")).mean(axis=1)
    assert ignores[6:].mean() < ignores[3:6].mean()  # the FFL(0.1) part is the densest


def test_export_round_trip_hf_logits_equal_native(tmp_path):
    import torch
    from transformers import GPT2LMHeadModel

    from ffbench.train.export import export_gpt2
    from ffbench.train.model import encode
    from ffbench.train.trainer import load_checkpoint, train

    train(_cfg(model={"n_layer": 2}, steps=5), out=str(tmp_path / "ck"), progress=False)
    export_gpt2(tmp_path / "ck", tmp_path / "hf")
    hf = GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    net, _ = load_checkpoint(tmp_path / "ck")
    ids = encode(["w0i1r0w1r1i0i1r1w0r0", "w1r1i1i0i0r1w0w1r1r1"])
    with torch.no_grad():
        assert torch.allclose(net(ids)[0], hf(ids).logits, atol=1e-5)
    from ffbench.errors import FFBenchError

    train(_cfg(model={"positions": "rope"}, steps=1), out=str(tmp_path / "rope"), progress=False)
    with pytest.raises(FFBenchError, match="positions 'rope'"):
        export_gpt2(tmp_path / "rope", tmp_path / "hf2")


def test_llama_style_rope_exports_to_llama(tmp_path):
    import torch
    from transformers import LlamaForCausalLM

    from ffbench.errors import FFBenchError
    from ffbench.train.export import export, export_gpt2
    from ffbench.train.model import encode
    from ffbench.train.trainer import load_checkpoint, train

    model = {"n_layer": 2, "style": "llama", "positions": "rope", "activation": "swiglu"}
    train(_cfg(model=model, steps=5, lr=1e-2), out=str(tmp_path / "ck"), progress=False)
    export(tmp_path / "ck", tmp_path / "hf")  # picks Llama from the checkpoint's style
    hf = LlamaForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    net, _ = load_checkpoint(tmp_path / "ck")
    assert not any(n.endswith(".bias") for n, _ in net.named_parameters())
    ids = encode(["w0i1r0w1r1i0i1r1w0r0", "w1r1i1i0i0r1w0w1r1r1"])
    with torch.no_grad():
        native, theirs = net(ids)[0], hf(ids).logits
    assert native.abs().max() > 0.1  # trained away from init: a real comparison
    assert torch.allclose(native, theirs, atol=1e-5), (native - theirs).abs().max()
    with pytest.raises(FFBenchError, match="style 'llama'"):
        export_gpt2(tmp_path / "ck", tmp_path / "hf2")
    train(_cfg(model={"style": "llama", "positions": "alibi", "activation": "swiglu"}, steps=1),
          out=str(tmp_path / "alibi"), progress=False)
    with pytest.raises(FFBenchError, match="positions 'alibi' \\(Llama uses RoPE\\)"):
        export(tmp_path / "alibi", tmp_path / "hf3")


@pytest.mark.parametrize("model", [{"n_layer": 2},
                                   {"n_layer": 2, "style": "llama", "positions": "rope", "activation": "swiglu"}],
                         ids=["gpt2", "llama"])
def test_native_backend_runs_and_agrees_with_its_hf_export(tmp_path, model):
    from ffbench import runner
    from ffbench.backends import resolve
    from ffbench.train.export import export
    from ffbench.train.trainer import train

    train(_cfg(model=model, steps=30, lr=1e-3), out=str(tmp_path / "ck"), progress=False)
    export(tmp_path / "ck", tmp_path / "hf")
    results = {}
    for name, spec, args in (("native", f"ffbench/{tmp_path / 'ck'}", {"device": "cpu"}),
                             ("hf", f"hf/{tmp_path / 'hf'}", {"device": "cpu", "dtype": "float32"})):
        cfg = runner.RunConfig(model=spec, model_args=args, suites=["in_dist", "dense"], lengths=[32], num=40,
                               scorings=["choice", "greedy"], batch_size=16)
        results[name] = runner.run(cfg, str(tmp_path / f"run-{name}"), resolve(spec, args), progress=False,
                                   echo=lambda m: None)
    import pyarrow.parquet as pq

    a = pq.read_table(tmp_path / "run-native" / "samples.parquet").to_pandas()
    b = pq.read_table(tmp_path / "run-hf" / "samples.parquet").to_pandas()
    assert (a.prediction == b.prediction).all() and not a.per_read.any()
    assert [r.errors for r in results["native"].results] == [r.errors for r in results["hf"].results]


def test_native_builtin_names_and_bad_checkpoint(tmp_path):
    from ffbench.backends import load_backend
    from ffbench.errors import FFBenchError

    with pytest.raises(FFBenchError, match="no ffbench checkpoint 'nope'"):
        load_backend("ffbench/nope")
    (tmp_path / "x").mkdir()
    with pytest.raises(FFBenchError, match="is not an ffbench checkpoint"):
        load_backend(f"ffbench/{tmp_path / 'x'}")


def test_sweep_resumes_without_retraining(tmp_path, monkeypatch):
    from ffbench.train import sweep, trainer

    raw = {"name": "t", "base": {"model": {"arch": "lstm", "hidden": 16}, "length": 16, "steps": 3, "batch_size": 4,
                                 "eval_num": 10},
           "grid": {"model.hidden": [8, 16]}, "replicates": 2, "eval": {"suites": ["in_dist"], "num": 20}}
    rows = sweep.run_sweep(raw, str(tmp_path), workers=1, progress=False, echo=lambda m: None)
    assert len(rows) == 4 and {r["data_seed"] for r in rows} == {0, 1}
    assert all(r["in_dist_reads"] > 0 for r in rows)
    calls = []
    real_train = trainer.train
    monkeypatch.setattr(trainer, "train", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    raw["eval"]["suites"] = ["in_dist", "dense"]  # a new suite: evaluate only, never retrain
    rows2 = sweep.run_sweep(raw, str(tmp_path), workers=1, progress=False, echo=lambda m: None)
    assert calls == [] and len(rows2) == 4 and all("dense_errors" in r for r in rows2)
    assert [r["in_dist_errors"] for r in rows2] == [r["in_dist_errors"] for r in rows]
    table = (tmp_path / "table.csv").read_text().splitlines()
    assert table[0].startswith("run_id,config,arch,data_seed,init_seed") and len(table) == 5
    raw["replicates"] = 3
    sweep.run_sweep(raw, str(tmp_path), workers=1, progress=False, echo=lambda m: None)
    assert len(calls) == 2  # only the two new replicates trained
    assert json.loads((tmp_path / "sweep.json").read_text())["replicates"] == 3


def test_shipped_references_load_and_keep_their_contrast():
    """The package's checkpoints: the LSTM is perfect, the Transformer right in distribution."""
    from ffbench import language
    from ffbench.backends.native import builtin_names, training_length
    from ffbench.train.trainer import evaluate, load_checkpoint
    from ffbench.backends.native import resolve

    assert {"lstm-ref", "transformer-ref", "transformer-mix"} <= set(builtin_names())
    assert training_length("transformer-ref") == 128 and training_length("lstm-ref") == 512
    s = language.SUITES["in_dist"]
    lstm, _ = load_checkpoint(resolve("lstm-ref"))
    assert evaluate(lstm, language.sample(s.distribution(256), 100, s.seed))["errors"] == 0
    tf, cfg = load_checkpoint(resolve("transformer-ref"))
    assert cfg.positions == "alibi"
    result = evaluate(tf, language.sample(s.distribution(128), 300, s.seed))
    assert result["errors"] <= 0.001 * result["reads"]


def test_native_attention_maps_of_chosen_reads():
    from ffbench.backends import load_backend

    backend = load_backend("ffbench/transformer-ref", {"device": "cpu"})
    text = "w1i0i1i0r1w0i1r0"
    maps = backend.attention(text, [8, 14])  # the two read instructions
    assert maps.shape == (2, 4, 2, len(text))  # layers, heads, chosen positions, keys
    np.testing.assert_allclose(maps.sum(-1), 1.0, atol=1e-5)
    assert np.all(maps[:, :, 0, 9:] == 0)  # causal: the read at 8 sees nothing after itself


@pytest.mark.parametrize("positions,limited", [("learned", True), ("sinusoidal", True), ("alibi", False),
                                               ("rope", False), ("none", False)])
def test_only_position_tables_limit_the_length(positions, limited):
    import torch

    from ffbench.train.model import ModelConfig, Transformer

    net = Transformer(ModelConfig(n_layer=1, d_model=32, n_head=2, max_len=16, positions=positions))
    idx = torch.zeros(1, 24, dtype=torch.long)
    if limited:
        with pytest.raises(ValueError, match="exceeds the model's max_len 16"):
            net(idx)
    else:
        assert net(idx)[0].shape == (1, 24, net.cfg.vocab_size)


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray not installed (pip install 'ffbench[ray]')")
def test_ray_executor_matches_the_local_pool(tmp_path):
    from ffbench.train import sweep

    raw = {"name": "t", "base": {"model": {"arch": "lstm", "hidden": 16}, "length": 16, "steps": 20, "batch_size": 4,
                                 "eval_num": 10, "lr": 1e-2},
           "grid": {"model.hidden": [8, 16]}, "replicates": 2, "eval": {"suites": ["in_dist"], "num": 50}}
    local = sweep.run_sweep(raw, str(tmp_path / "local"), workers=1, progress=False, echo=lambda m: None)
    ray_rows = sweep.run_sweep(raw, str(tmp_path / "ray"), executor="ray", progress=False, echo=lambda m: None)
    key = lambda r: r["run_id"]  # noqa: E731
    assert [(r["run_id"], r["in_dist_reads"], r["in_dist_errors"]) for r in sorted(local, key=key)] == \
        [(r["run_id"], r["in_dist_reads"], r["in_dist_errors"]) for r in sorted(ray_rows, key=key)]
    assert any(r["in_dist_errors"] > 0 for r in local)  # undertrained: the counts carry information


def test_a_tie_is_a_wrong_read_in_training_evaluation_too():
    from ffbench.train.trainer import wrong_reads

    margin = np.array([1.0, -1.0, 0.0, 0.0, -2.0, 3.0])
    target = np.array([0, 1, 0, 1, 0, 1])
    assert wrong_reads(margin, target).tolist() == [False, False, True, True, True, True]
