"""The selective SSM: its scan against the plain recurrence, gradients, causality, streaming
inference, learning, checkpoints and the native backend's dense scoring."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import needs_torch

pytestmark = [needs_torch, pytest.mark.usefixtures("one_thread")]


def _sequential(a, b, h0=None, reverse=False):
    import torch

    t = a.shape[1]
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0
    out = [None] * t
    for i in (range(t - 1, -1, -1) if reverse else range(t)):
        h = a[:, i] * h + b[:, i]
        out[i] = h
    return torch.stack(out, 1)


@pytest.mark.parametrize("t", [1, 2, 7, 16, 33, 100])
@pytest.mark.parametrize("reverse", [False, True])
def test_chunked_scan_equals_the_plain_recurrence(t, reverse):
    import torch

    from ffbench.train.ssm import linear_scan

    g = torch.Generator().manual_seed(t)
    a = torch.rand(3, t, 5, 4, generator=g, dtype=torch.float64)
    b = torch.randn(3, t, 5, 4, generator=g, dtype=torch.float64)
    h0 = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    for chunk in (None, 1, 3, 8, 1000):  # chunks that divide T, that do not, and a single chunk
        torch.testing.assert_close(linear_scan(a, b, chunk=chunk, reverse=reverse), _sequential(a, b, reverse=reverse))
        torch.testing.assert_close(linear_scan(a, b, h0, chunk=chunk, reverse=reverse),
                                   _sequential(a, b, h0, reverse=reverse))


def test_selective_scan_gradients_equal_finite_differences():
    import torch

    from ffbench.train.ssm import SelectiveScan

    g = torch.Generator().manual_seed(0)
    b, t, d, n = 2, 9, 3, 4
    args = [torch.randn(b, t, d, generator=g, dtype=torch.float64), torch.rand(b, t, d, generator=g, dtype=torch.float64),
            -torch.rand(d, n, generator=g, dtype=torch.float64), torch.randn(b, t, n, generator=g, dtype=torch.float64),
            torch.randn(b, t, n, generator=g, dtype=torch.float64)]
    assert torch.autograd.gradcheck(SelectiveScan.apply, [x.requires_grad_() for x in args])


def _ssm(**kw):
    import torch

    from ffbench.train.model import ModelConfig, build

    torch.manual_seed(0)
    return build(ModelConfig(**{"arch": "ssm", "n_layer": 2, "d_model": 16, "d_state": 4, **kw})).eval()


def test_shapes_causality_and_both_inference_paths_equal_the_training_path(monkeypatch):
    import torch

    from ffbench.train import ssm

    net = _ssm()
    idx = torch.randint(3, 18, (3, 50))
    with torch.enable_grad():
        net.train()  # no dropout configured: the training path (materialised states, custom backward)
        trained = net(idx)[0].detach()
        net.eval()
    changed = idx.clone()
    changed[:, 30] = (changed[:, 30] - 2) % 15 + 3
    for path, settings in (("streamed in blocks of 7 positions", {"SCAN_BLOCK_ELEMENTS": 3 * 32 * 4 * 7}),
                           ("position by position", {"RECURRENT_MIN_ELEMENTS": 1})):
        with monkeypatch.context() as m:
            for name, value in settings.items():
                m.setattr(ssm, name, value)
            with torch.no_grad():
                (logits, probs), after = net(idx), net(changed)[0]
        assert logits.shape == (3, 50, 18) and probs is None
        torch.testing.assert_close(logits, trained, atol=1e-5, rtol=0, msg=path)
        assert torch.equal(after[:, :30], logits[:, :30]) and not torch.allclose(after[:, 30:], logits[:, 30:]), path


def test_runs_at_any_length_with_memory_linear_in_t():
    import torch

    from ffbench.train.model import estimate_forward_bytes

    net = _ssm(n_layer=1)
    with torch.no_grad():
        assert torch.isfinite(net(torch.randint(3, 18, (1, 20_000)))[0]).all()
    per_token = [estimate_forward_bytes(net.cfg, 1, t) / t for t in (1_000, 10_000, 100_000, 1_000_000)]
    assert per_token == sorted(per_token, reverse=True)  # O(T): the scan's blocks stop growing


def test_a_tiny_ssm_learns_t32_flip_flop():
    from ffbench import language
    from ffbench.train.config import ModelConfig, TrainConfig
    from ffbench.train.trainer import evaluate, train

    cfg = TrainConfig(model=ModelConfig(arch="ssm", n_layer=1, d_model=32, d_state=8), length=32, steps=150,
                      batch_size=32, lr=1e-2, eval_every=1000, eval_num=50)
    model, _ = train(cfg, progress=False)
    arr = language.sample(language.FFL.from_p_ignore(0.5, 32), 500, 123)  # unseen, denser than training
    result = evaluate(model, arr)
    assert result["errors"] == 0 and result["reads"] > 2000


def test_decay_rates_are_not_weight_decayed():
    from ffbench.train.config import ModelConfig, TrainConfig
    from ffbench.train.trainer import initial_model, optimizer

    cfg = TrainConfig(model=ModelConfig(arch="ssm", n_layer=1, d_model=16, d_state=4))
    model = initial_model(cfg)
    decayed = {id(p) for p in optimizer(model, cfg).param_groups[0]["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in decayed}
    assert names == {"wte.weight", "blocks.0.mixer.in_proj.weight", "blocks.0.mixer.conv.weight",
                     "blocks.0.mixer.x_proj.weight", "blocks.0.mixer.dt_proj.weight", "blocks.0.mixer.out_proj.weight"}


def test_cli_trains_an_ssm_that_the_native_backend_scores_dense_as_per_read(tmp_path):
    """``ffbench train --arch ssm`` writes a checkpoint; ``ffbench/DIR`` loads it, runs at any
    length, and its one-pass dense scores equal scoring every read with its own prompt."""
    import json

    import pyarrow.parquet as pq

    from ffbench import runner
    from ffbench.backends import load_backend, resolve
    from ffbench.cli import main

    out = tmp_path / "ssm"
    main(["train", "--arch", "ssm", "--layers", "1", "--width", "16", "--d-state", "4", "--length", "32",
          "--steps", "40", "--lr", "1e-2", "--batch-size", "16", "--no-progress", "--device", "cpu", "--out", str(out)])
    assert json.loads((out / "config.json").read_text())["ffbench_model"]["arch"] == "ssm"
    backend = load_backend(f"ffbench/{out}", {"device": "cpu"})
    assert backend.context_length() is None and backend.cfg.d_state == 4
    tables = {}
    for per_read in (False, True):
        cfg = runner.RunConfig(model=f"ffbench/{out}", model_args={"device": "cpu"}, suites=["dense"], lengths=[24],
                               num=12, per_read=per_read, batch_size=8)
        runner.run(cfg, str(tmp_path / f"run-{per_read}"), resolve(f"ffbench/{out}", {"device": "cpu"}),
                   progress=False, echo=lambda m: None)
        tables[per_read] = pq.read_table(tmp_path / f"run-{per_read}" / "samples.parquet").to_pandas()
    dense, single = tables[False], tables[True]
    assert len(dense) == len(single) > 50 and single.per_read.all() and not dense.per_read.any()
    assert (dense.prediction == single.prediction).all()
    np.testing.assert_allclose(dense.margin, single.margin, atol=1e-4)
    assert dense.margin.abs().max() > 1e-2  # trained: the margins say something
