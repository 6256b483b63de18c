"""Train the shipped recipes' architectures on the UNDO flip-flop and ask: stack or toggle?

Zhou (2026, arXiv 2604.05923) found a two-layer Mamba-2 reaching high in-distribution accuracy on
UNDO flip-flops but 87.35% out of distribution and 41.10% (below chance) on an adversarial
retraction test: it had learned the toggle heuristic (an undo flips the bit) instead of a stack.
This script trains ffbench's reference Transformer, LSTM and selective SSM (ffbench/train, the
architectures and optimiser of ffbench/baselines/recipes, the character vocabulary plus ``u``) on
fresh UNDO(0.7) batches and scores them on ffbench's UNDO suites and retraction chains (where the
toggle is wrong on every read), with the strict choice rule, reporting for each model how often
its answer equals the toggle's where the toggle is wrong.

The models read the character vocabulary plus ``u`` (vocab_size 19, ``ffbench.tokenizer.vocabulary``),
so ``--export DIR`` writes a checkpoint that ``ffbench run --model DIR --task undo`` (the native
backend) scores; the run is small and CPU-only. Usage:
    nice python benchmarks/undo_train.py --arch lstm --steps 500 --out benchmarks/undo_lstm.json --export DIR
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from ffbench import rules, tasks, undo
from ffbench.tokenizer import vocabulary
from ffbench.train.config import ModelConfig
from ffbench.train.model import build, count_parameters

CHARS = vocabulary(19)  # the flip-flop characters, then u
LUT = np.zeros(256, dtype=np.int64)
for _k, _ch in enumerate(CHARS):
    if len(_ch) == 1:
        LUT[ord(_ch)] = _k
R_ID, ZERO_ID, ONE_ID = CHARS.index("r"), CHARS.index("0"), CHARS.index("1")

RECIPES = {  # ffbench/baselines/recipes/*.yaml, at the UNDO training length below
    "transformer": (ModelConfig(arch="transformer", n_layer=2, d_model=128, n_head=4, max_len=256, positions="alibi",
                                vocab_size=len(CHARS)), 1e-3),
    "lstm": (ModelConfig(arch="lstm", n_layer=1, hidden=128, vocab_size=len(CHARS)), 3e-4),
    "ssm": (ModelConfig(arch="ssm", n_layer=2, d_model=64, d_state=16, d_conv=4, expand=2,
                        vocab_size=len(CHARS)), 3e-3),
}


def encode(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(LUT[arr])


def predictions(model, arr: np.ndarray, per: int = 128) -> np.ndarray:
    """Per read: the strict choice between 0 and 1 (a tie is wrong: -1 never equals a target)."""
    out = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, arr.shape[0], per):
            idx = encode(arr[start : start + per])
            logits, _ = model(idx)
            lp = logits[idx == R_ID].float().log_softmax(-1)[:, [ZERO_ID, ONE_ID]].numpy()
            targets = tasks.get("undo").extract_reads(arr[start : start + per]).target
            pred, margin = rules.choice_prediction(lp, targets)
            out.append(np.where(margin == 0, -1, pred))
    model.train()
    return np.concatenate(out)


def score(model, arr: np.ndarray) -> dict:
    reads = undo.extract_reads(arr)
    pred, toggle = predictions(model, arr), undo.toggle_predictions(arr)
    differs = toggle != reads.target
    return {"reads": len(reads), "accuracy": float((pred == reads.target).mean()),
            "toggle_accuracy": float((toggle == reads.target).mean()),
            "reads_toggle_wrong": int(differs.sum()),
            "accuracy_where_toggle_wrong": float((pred[differs] == reads.target[differs]).mean()) if differs.any() else None,
            "agrees_with_toggle_where_wrong": float((pred[differs] == toggle[differs]).mean()) if differs.any() else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=list(RECIPES), required=True)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--p-ignore", type=float, default=0.7, help="training distribution UNDO(P)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--d-model", type=int, help="width of the Transformer / SSM (default: the recipe's)")
    ap.add_argument("--export", help="write the trained model here as a native checkpoint (config.json, "
                                     "model.safetensors, train_config.json, metrics.json)")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    cfg, lr = RECIPES[args.arch]
    if args.d_model:
        cfg = ModelConfig(**{**cfg.as_dict(), "d_model": args.d_model})
    model = build(cfg)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.999))
    dist = undo.UndoFFL.from_p_ignore(args.p_ignore, args.length)
    t0 = time.time()
    for step in range(args.steps):
        scale = (step + 1) / 50 if step < 50 else max(0.0, (args.steps + 1 - step) / (args.steps + 1 - 50))
        for group in opt.param_groups:
            group["lr"] = lr * scale
        idx = encode(undo.sample(dist, args.batch_size, seed=(args.seed * 1_000_003 + step) * 16))
        logits, _ = model(idx)
        mask = idx[:, :-1] == R_ID
        loss = F.cross_entropy(logits[:, :-1][mask].float(), idx[:, 1:][mask])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    seconds = time.time() - t0
    task, T = tasks.get("undo"), args.length
    result = {"arch": args.arch, "parameters": count_parameters(model), "steps": args.steps, "length": T,
              "train": f"UNDO({args.p_ignore:g})", "seed": args.seed, "train_seconds": round(seconds, 1)}
    for name in ("in_dist", "sparse", "dense"):
        suite = task.suites[name]
        arr = task.sample(task.dist(suite.p_ignore, T), min(suite.num, 1000), suite.seed)
        result[name] = score(model, arr)
    chains, depths = undo.retraction_suite(T, 64)
    result["retraction"] = score(model, chains)
    pred = predictions(model, chains)
    target = undo.extract_reads(chains).target
    result["retraction_by_depth"] = {int(d): float((pred[np.array(depths) == d] == target[np.array(depths) == d]).mean())
                                     for d in sorted(set(depths))}
    if args.export:
        from ffbench.train.checkpoint import save_checkpoint

        save_checkpoint(model, cfg, args.export, train_config={**{k: v for k, v in vars(args).items() if k not in ("out", "export")},
                                                       "lr": lr, "model": cfg.as_dict()},
                        metrics={k: v for k, v in result.items() if k != "arch"})
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
