"""Training throughput: ``ffbench.train`` against a plain PyTorch loop with the same model.

Both train the same architecture for the same number of steps with the same optimiser; the plain
loop samples each batch with a per-token Python sampler (benchmarks/generate.py) and builds the
tensor from lists, as a straightforward script would. Prints training tokens/s and the ratio.

    python benchmarks/train.py --arch lstm --steps 30
    python benchmarks/train.py --arch transformer --layers 2 --width 128 --heads 4 --length 128 --steps 50
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

from ffbench.train.model import ModelConfig, build, encode  # noqa: E402
from ffbench.train.trainer import TrainConfig, loss_fn, train  # noqa: E402


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="lstm", choices=["lstm", "transformer"])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    args = ap.parse_args()
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
