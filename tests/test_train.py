"""Training the baselines: learning, seeds, the Transformer's attention paths, sharpening, export,
the native backend, sweeps and the shipped references."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest

from tests.conftest import needs_torch

pytestmark = [needs_torch, pytest.mark.usefixtures("one_thread")]


def _cfg(**kw):
    from ffbench.train.config import ModelConfig, TrainConfig

    model = kw.pop("model", {})
    return TrainConfig(model=ModelConfig(**{"n_layer": 1, "d_model": 32, "n_head": 2, "max_len": 64, **model}),
                       **{"length": 32, "steps": 2, "batch_size": 8, "eval_num": 20, "eval_every": 1000, **kw})


def test_tiny_lstm_learns_t32_perfectly():
    from ffbench import language
    from ffbench.train.trainer import evaluate, train

    cfg = _cfg(model={"arch": "lstm", "hidden": 32}, steps=300, lr=1e-2, batch_size=32)
    model, metrics = train(cfg, progress=False)
    arr = language.sample(language.FFL.from_p_ignore(0.5, 32), 500, 123)  # unseen, denser than training
    result = evaluate(model, arr)
    assert result["errors"] == 0 and result["reads"] > 2000  # expected 500 x (1 + 14 x 0.25) = 2250
    assert metrics["final_in_dist"]["errors"] == 0


def test_same_seeds_give_bitwise_equal_weights_and_the_two_seeds_act_independently():
    import torch

    from ffbench.train.trainer import batch, initial_model, train

    cfg = _cfg(steps=3, model={"attn_dropout": 0.1, "embd_dropout": 0.1}, data_seed=1, init_seed=2)
    a, _ = train(cfg, progress=False)
    b, _ = train(cfg, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))

    def weights(c):
        return torch.cat([p.flatten() for p in initial_model(c).parameters()])

    other_data, other_init = _cfg(data_seed=5, init_seed=2), _cfg(data_seed=1, init_seed=5)
    assert torch.equal(weights(cfg), weights(other_data)) and not torch.equal(weights(cfg), weights(other_init))
    assert np.array_equal(batch(cfg, 0), batch(other_init, 0)) and not np.array_equal(batch(cfg, 0), batch(other_data, 0))


def test_training_evaluation_counts_a_tie_as_a_wrong_read():
    """The strict-choice rule of ffbench.rules: a model that cannot tell 0 from 1 gets every read wrong."""
    import torch

    from ffbench import language
    from ffbench.train.config import ModelConfig
    from ffbench.train.trainer import evaluate

    class Undecided(torch.nn.Module):
        cfg = ModelConfig(arch="lstm", hidden=4)

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, idx, need_probs=False):
            return torch.zeros(*idx.shape, 18) + self.w, None

    arr = language.sample(language.FFL.from_p_ignore(0.5, 16), 50, 0)
    result = evaluate(Undecided(), arr)
    assert result["reads"] == len(language.extract_reads(arr)) > 0 and result["errors"] == result["reads"]


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


def test_the_entropy_loss_sharpens_attention():
    """Training with a strong entropy penalty leaves the attention clearly peakier than without."""
    import torch

    from ffbench import language
    from ffbench.train.model import encode_array
    from ffbench.train.sharpen import sharpening_loss
    from ffbench.train.trainer import train

    idx = encode_array(language.sample(language.FFL.from_p_ignore(0.8, 32), 16, 9))
    entropies = {}
    for coef in (0.0, 1.0):
        model, _ = train(_cfg(steps=50, lr=3e-3, warmup=5, sharpen="entropy", sharpen_coef=coef, mode="generative"),
                         progress=False)
        with torch.no_grad():
            entropies[coef] = sharpening_loss(model(idx, need_probs=True)[1], "entropy").item()
    assert entropies[1.0] < 0.2 * entropies[0.0], entropies  # measured: 0.12 against 2.46 nats


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rope", "alibi", "none"])
def test_fused_attention_equals_materialised_attention_and_is_causal(positions, monkeypatch):
    """The fused path (no mask in memory; ALiBi in blocks of query rows) gives the logits of the
    explicit softmax over a materialised bias, and no output depends on a later token."""
    import torch

    import ffbench.train.model as model_mod
    from ffbench.train.model import ModelConfig, Transformer

    torch.manual_seed(0)
    net = Transformer(ModelConfig(n_layer=2, d_model=32, n_head=4, max_len=64, positions=positions)).eval()
    idx = torch.randint(3, 18, (2, 40))
    with torch.no_grad():
        fused, explicit = net(idx)[0], net(idx, need_probs=True)[0]
        monkeypatch.setattr(model_mod, "ALIBI_BIAS_ELEMENTS", 4 * 40 * 7)  # 7 query rows per block
        blocked = net(idx)[0]
        changed = idx.clone()
        changed[:, 25] = (changed[:, 25] - 2) % 15 + 3
        after = net(changed)[0]
    torch.testing.assert_close(fused, explicit, atol=2e-5, rtol=0)
    torch.testing.assert_close(blocked, explicit, atol=2e-5, rtol=0)
    assert torch.equal(after[:, :25], blocked[:, :25]) and not torch.allclose(after[:, 25:], blocked[:, 25:])


def test_shipped_alibi_transformer_matches_an_independent_reference():
    """transformer-ref's logits equal a from-scratch GPT-2 + ALiBi forward (explicit T x T bias,
    softmax, no fused kernel): the blocked attention changed the memory, not the model."""
    import torch
    import torch.nn.functional as F

    from ffbench import language
    from ffbench.backends.native import resolve
    from ffbench.train.checkpoint import load_checkpoint
    from ffbench.train.model import encode_array

    net, cfg = load_checkpoint(resolve("transformer-ref"))
    idx = encode_array(language.sample(language.SUITES["dense"].distribution(300), 2, 5))
    w = net.state_dict()
    t, c, h = idx.shape[1], cfg.d_model, cfg.n_head
    slopes = torch.tensor([2 ** (-8 * (k + 1) / h) for k in range(h)])
    dist = (torch.arange(t)[None, :] - torch.arange(t)[:, None]).float()
    bias = torch.where(dist > 0, float("-inf"), slopes[:, None, None] * dist)

    def ln(x, name):
        return F.layer_norm(x, (c,), w[f"{name}.weight"], w[f"{name}.bias"])

    def lin(x, name):
        return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]

    x = w["wte.weight"][idx]
    for i in range(cfg.n_layer):
        q, k, v = lin(ln(x, f"blocks.{i}.ln_1"), f"blocks.{i}.attn.c_attn").split(c, dim=-1)
        q, k, v = (z.view(*idx.shape, h, c // h).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-1, -2) / math.sqrt(c // h) + bias).softmax(-1)
        x = x + lin((att @ v).transpose(1, 2).reshape(*idx.shape, c), f"blocks.{i}.attn.c_proj")
        up = F.gelu(lin(ln(x, f"blocks.{i}.ln_2"), f"blocks.{i}.mlp.c_fc"), approximate="tanh")
        x = x + lin(up, f"blocks.{i}.mlp.c_proj")
    reference = ln(x, "ln_f") @ w["wte.weight"].T
    with torch.no_grad():
        torch.testing.assert_close(net(idx)[0], reference, atol=1e-4, rtol=0)


def test_gpt2_scaled_residual_init():
    from ffbench.train.model import ModelConfig, Transformer

    net = Transformer(ModelConfig(n_layer=8, d_model=256, n_head=4))
    for name, p in net.named_parameters():
        if name.endswith("c_proj.weight"):
            assert p.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.03), name
        elif name.endswith("c_attn.weight"):
            assert p.std().item() == pytest.approx(0.02, rel=0.03), name


def test_gated_activation_dropout_and_temperature_learn():
    """GEGLU, every dropout and a softmax temperature together still learn: the loss falls by half."""
    from ffbench.train.trainer import train

    _, metrics = train(_cfg(model={"activation": "geglu", "attn_dropout": 0.1, "mlp_dropout": 0.1,
                                   "embd_dropout": 0.1, "temperature": 0.5}, train_mix=[0.9, 0.98, 0.1],
                            steps=60, lr=3e-3, eval_every=10, batch_size=16), progress=False)
    losses = [h["loss"] for h in metrics["history"]]
    assert losses[-1] < 0.5 * losses[0], losses


def test_attention_temperature_divides_the_query_key_scores():
    import torch

    from ffbench.train.model import ModelConfig, Transformer

    torch.manual_seed(0)
    net = Transformer(ModelConfig(n_layer=1, d_model=32, n_head=2, max_len=64, positions="learned")).eval()
    idx = torch.randint(3, 18, (1, 20))
    with torch.no_grad():
        p1 = net(idx, need_probs=True)[1][0]
        net.cfg.temperature = 0.5
        p_half = net(idx, need_probs=True)[1][0]
    torch.testing.assert_close(p_half, (p1.log() / 0.5).softmax(-1), atol=1e-5, rtol=0)


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

    from ffbench.errors import FFBenchError
    from ffbench.train.checkpoint import load_checkpoint
    from ffbench.train.export import export_gpt2
    from ffbench.train.model import encode
    from ffbench.train.trainer import train

    train(_cfg(model={"n_layer": 2}, steps=5), out=str(tmp_path / "ck"), progress=False)
    export_gpt2(tmp_path / "ck", tmp_path / "hf")
    hf = GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    net, _ = load_checkpoint(tmp_path / "ck")
    ids = encode(["w0i1r0w1r1i0i1r1w0r0", "w1r1i1i0i0r1w0w1r1r1"])
    with torch.no_grad():
        assert torch.allclose(net(ids)[0], hf(ids).logits, atol=1e-5)
    train(_cfg(model={"positions": "rope"}, steps=1), out=str(tmp_path / "rope"), progress=False)
    with pytest.raises(FFBenchError, match="positions 'rope'"):
        export_gpt2(tmp_path / "rope", tmp_path / "hf2")


def test_llama_style_rope_exports_to_llama(tmp_path):
    import torch
    from transformers import LlamaForCausalLM

    from ffbench.errors import FFBenchError
    from ffbench.train.checkpoint import load_checkpoint
    from ffbench.train.export import export, export_gpt2
    from ffbench.train.model import encode
    from ffbench.train.trainer import train

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
    assert not list(tmp_path.glob("runs/*/checkpoint/train_state.pt"))  # sweeps keep weights only
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
    """The package's checkpoints: the LSTM makes no error on the dense tail, the Transformer is right
    in distribution yet glitches on that same tail (the paper's R1 against R2)."""
    from ffbench import language
    from ffbench.backends.native import builtin_names, resolve, training_length
    from ffbench.train.checkpoint import load_checkpoint
    from ffbench.train.trainer import evaluate

    assert {"lstm-ref", "transformer-ref", "transformer-mix"} <= set(builtin_names())
    assert training_length("transformer-ref") == 128 and training_length("lstm-ref") == 512
    s_in, s_dense = language.SUITES["in_dist"], language.SUITES["dense"]
    lstm, _ = load_checkpoint(resolve("lstm-ref"))
    assert evaluate(lstm, language.sample(s_dense.distribution(512), 60, s_dense.seed))["errors"] == 0
    tf, cfg = load_checkpoint(resolve("transformer-ref"))
    assert cfg.positions == "alibi"
    in_dist = evaluate(tf, language.sample(s_in.distribution(128), 300, s_in.seed))
    assert in_dist["errors"] <= 0.001 * in_dist["reads"]
    dense = evaluate(tf, language.sample(s_dense.distribution(128), 300, s_dense.seed))
    assert dense["errors"] >= 0.003 * dense["reads"]  # 1.2% on the full suite


def test_shipped_ssm_reference_holds_the_dense_tail_and_forgets_on_the_sparse_one():
    """ssm-ref through the native backend: 0 errors on the full dense suite (346,260 reads), but
    3.3% of sparse-suite reads wrong, where the last write lies further back than training showed."""
    from ffbench import language
    from ffbench.backends import load_backend
    from ffbench.backends.native import builtin_names, training_length
    from ffbench.train.trainer import evaluate

    assert "ssm-ref" in builtin_names() and training_length("ssm-ref") == 512
    backend = load_backend("ffbench/ssm-ref", {"device": "cpu"})
    assert backend.cfg.arch == "ssm" and backend.context_length() is None
    s_dense, s_sparse = language.SUITES["dense"], language.SUITES["sparse"]
    dense = evaluate(backend.net, language.sample(s_dense.distribution(512), 40, s_dense.seed))
    assert dense["reads"] > 4000 and dense["errors"] == 0
    sparse = evaluate(backend.net, language.sample(s_sparse.distribution(512), 300, s_sparse.seed))
    assert sparse["errors"] >= 0.005 * sparse["reads"]


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


def _measured_peak_bytes(model, idx) -> int:
    """Peak of the bytes the CPU allocator holds during one no-grad forward (profiler memory events)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model(idx)
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    held = peak = 0
    for _, nbytes in events:
        held += nbytes
        peak = max(peak, held)
    return peak


@pytest.mark.parametrize("model,shapes", [
    ({"positions": "learned", "max_len": 2048}, [(8, 256), (1, 2048)]),
    ({"positions": "rope", "activation": "swiglu", "style": "llama"}, [(8, 256), (1, 2048)]),
    ({"positions": "alibi"}, [(8, 256), (1, 2048)]),  # 2048: the bias in blocks of query rows
    ({"arch": "lstm", "hidden": 64}, [(8, 256), (1, 2048)]),
    ({"arch": "ssm", "d_model": 32, "d_state": 8}, [(8, 256), (1, 2048), (32, 256)]),  # streamed, recurrent
], ids=["learned", "rope-swiglu", "alibi", "lstm", "ssm"])
def test_forward_memory_estimate_is_within_1_5x_of_the_measured_peak(model, shapes, monkeypatch):
    import torch

    import ffbench.train.model as model_mod
    import ffbench.train.ssm as ssm_mod
    from ffbench.train.model import ModelConfig, build, estimate_forward_bytes

    monkeypatch.setattr(model_mod, "ALIBI_BIAS_ELEMENTS", 2**20)  # 128 rows per block at T = 2048
    monkeypatch.setattr(ssm_mod, "SCAN_BLOCK_ELEMENTS", 2**17)  # 256 positions per block at batch 1
    monkeypatch.setattr(ssm_mod, "RECURRENT_MIN_ELEMENTS", 2**14)  # from batch 32 on: position by position
    cfg = ModelConfig(**{"n_layer": 2, "d_model": 64, "n_head": 4, **model})
    net = build(cfg).eval()
    for batch, length in shapes:
        measured = _measured_peak_bytes(net, torch.randint(3, 18, (batch, length)))
        estimate = estimate_forward_bytes(cfg, batch, length)
        assert 1 / 1.5 <= measured / estimate <= 1.5, (batch, length, measured, estimate)
