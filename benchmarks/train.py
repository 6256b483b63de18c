"""Training throughput: ``ffbench.train`` against a plain PyTorch loop with the same model, and the
SSM's chunked scan against the plain recurrence.

Training: both loops train the same architecture for the same number of steps with the same
optimiser; the plain loop samples each batch with a per-token Python sampler
(benchmarks/generate.py) and builds the tensor from lists, as a straightforward script would.
Prints training tokens/s and the ratio.

Scan (``--scan``): the SSM's :func:`ffbench.train.ssm.selective_scan` (chunks of about sqrt(T)
scanned side by side, a hand-written backward, streaming blocks at inference) against the same
selective scan written as a plain loop over positions with autograd, on the same inputs:
inference (no grad) and forward + backward.

    python benchmarks/train.py --arch lstm --steps 30
    python benchmarks/train.py --arch transformer --layers 2 --width 128 --heads 4 --length 128 --steps 50
    python benchmarks/train.py --arch ssm --layers 2 --width 64 --steps 10
    python benchmarks/train.py --scan
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generate import python_sampler  # noqa: E402

from ffbench.train.config import ModelConfig, TrainConfig  # noqa: E402
from ffbench.train.model import build, encode  # noqa: E402
from ffbench.train.trainer import loss_fn, train  # noqa: E402


def plain_loop(cfg: TrainConfig) -> float:
    torch.manual_seed(cfg.init_seed)
    model = build(cfg.model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    p_half = (1 - cfg.train_mix[0]) / 2
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        texts = python_sampler(cfg.length, p_half, p_half, cfg.batch_size, seed=step)
        idx = encode(texts)
        logits, _ = model(idx)
        loss = loss_fn(logits, idx, cfg.mode)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def reference_selective_scan(u, dt, A, B, C) -> torch.Tensor:
    """The selective scan as a plain PyTorch loop over positions (in the style of Mamba's reference
    implementation): h = exp(dt A) h + dt B u, y = C . h, one position at a time, autograd for the
    backward pass."""
    h, ys = torch.zeros(u.shape[0], u.shape[2], A.shape[1]), []
    for t in range(u.shape[1]):
        h = torch.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
        ys.append((h @ C[:, t, :, None]).squeeze(-1))
    return torch.stack(ys, 1)


def _best_of(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def scan_benchmark(repeats: int) -> None:
    print(f"selective scan on u, dt (batch, T, d_inner), A (d_inner, N), B, C (batch, T, N); float32, "
          f"{torch.get_num_threads()} threads, best of {repeats}")
    print(f"{'batch':>5} {'T':>6} {'d':>4} {'N':>3} | {'inference: loop':>15} {'ffbench':>9} {'ratio':>6} | "
          f"{'fwd+bwd: loop':>13} {'ffbench':>9} {'ratio':>6}")
    for batch, t, d, n in [(16, 512, 128, 16), (128, 512, 128, 16), (16, 128, 128, 16), (1, 8192, 128, 16)]:
        print(_scan_row(batch, t, d, n, repeats))


def _scan_row(batch: int, t: int, d: int, n: int, repeats: int) -> str:
    from ffbench.train.ssm import selective_scan

    g = torch.Generator().manual_seed(0)
    u, dt = torch.randn(batch, t, d, generator=g), torch.rand(batch, t, d, generator=g) * 0.1
    A, B, C = -torch.rand(d, n, generator=g) * 8, torch.randn(batch, t, n, generator=g), torch.randn(batch, t, n, generator=g)
    zero = torch.zeros(d)
    with torch.no_grad():
        torch.testing.assert_close(selective_scan(u, dt, A, B, C, zero), reference_selective_scan(u, dt, A, B, C),
                                   atol=1e-3, rtol=1e-3)
        loop_f = _best_of(lambda: reference_selective_scan(u, dt, A, B, C), repeats)
        ours_f = _best_of(lambda: selective_scan(u, dt, A, B, C, zero), repeats)
    leaves = [x.clone().requires_grad_() for x in (u, dt, A, B, C)]
    grad = torch.randn(batch, t, d)
    loop_b = _best_of(lambda: reference_selective_scan(*leaves).backward(grad), repeats)
    ours_b = _best_of(lambda: selective_scan(*leaves, zero).backward(grad), repeats)
    return (f"{batch:>5} {t:>6} {d:>4} {n:>3} | {loop_f * 1e3:>12.0f} ms {ours_f * 1e3:>6.0f} ms {loop_f / ours_f:>5.2f}x"
            f" | {loop_b * 1e3:>10.0f} ms {ours_b * 1e3:>6.0f} ms {loop_b / ours_b:>5.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="lstm", choices=["lstm", "transformer", "ssm"])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--scan", action="store_true", help="Benchmark the SSM scan instead of training.")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.scan:
        scan_benchmark(args.repeats)
        return
    model = ModelConfig(arch=args.arch, n_layer=args.layers, d_model=args.width, n_head=args.heads,
                        hidden=args.width, max_len=max(args.length, 64))
    cfg = TrainConfig(model=model, length=args.length, steps=args.steps, eval_every=10**9, eval_num=10)
    tokens = cfg.steps * cfg.batch_size * cfg.length
    base = plain_loop(cfg)
    t0 = time.perf_counter()
    train(cfg, progress=False)
    ours = time.perf_counter() - t0
    print(f"{args.arch} ({args.layers} layers, width {args.width}), T={args.length}, batch {cfg.batch_size}, "
          f"{cfg.steps} steps, {torch.get_num_threads()} threads")
    print(f"plain PyTorch loop : {base:7.2f} s  {tokens / base:10,.0f} tokens/s")
    print(f"ffbench train      : {ours:7.2f} s  {tokens / ours:10,.0f} tokens/s  ({base / ours:.2f}x)")


if __name__ == "__main__":
    main()
