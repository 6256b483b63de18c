"""Train the shipped recipes' architectures on k registers and ask: several variables, or one?

A model that holds one variable answers the most recent write to any register, which is wrong
whenever updates of several registers interleave (arXiv 2511.10457). This script trains ffbench's
reference LSTM, Transformer and SSM (the recipes of benchmarks/undo_train.py) on fresh Registers(0.8)
batches with k registers (``--task registers``; the character vocabulary plus ``u`` and the register
names a..h, vocab_size 27, ``ffbench.tokenizer.vocabulary``), clean loss on every read's bit, and
scores them with the strict choice rule on the registers presets and the ``stale`` family (reads of a
register not written for a long time, past interleaved writes to the others), reporting how often
the model gives the one-variable answer where it is wrong. ``--export DIR`` writes a native
checkpoint that ``ffbench run --model DIR --task registers`` scores. Usage:
    nice python benchmarks/registers_train.py --arch lstm --steps 1000 --out benchmarks/registers-lstm.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from ffbench import registers, rules, tasks
from ffbench.tokenizer import vocabulary
from ffbench.train.config import ModelConfig
from ffbench.train.model import build, count_parameters

CHARS = vocabulary(27)  # the flip-flop characters, u, then the register names a..h
LUT = np.zeros(256, dtype=np.int64)
for _k, _ch in enumerate(CHARS):
    if len(_ch) == 1:
        LUT[ord(_ch)] = _k
ZERO_ID, ONE_ID = CHARS.index("0"), CHARS.index("1")
RECIPES = {  # benchmarks/undo_train.py's, at vocab_size 27
    "transformer": (ModelConfig(arch="transformer", n_layer=2, d_model=64, n_head=4, max_len=512, positions="alibi",
                                vocab_size=len(CHARS)), 1e-3),
    "lstm": (ModelConfig(arch="lstm", n_layer=1, hidden=128, vocab_size=len(CHARS)), 3e-4),
    "ssm": (ModelConfig(arch="ssm", n_layer=2, d_model=64, d_state=16, d_conv=4, expand=2,
                        vocab_size=len(CHARS)), 3e-3),
}
TASK = tasks.get("registers")


def predictions(model, arr: np.ndarray, per: int = 128) -> np.ndarray:
    """Per read: the strict choice between 0 and 1 at the position before its bit (a tie is -1)."""
    out = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, arr.shape[0], per):
            part = arr[start : start + per]
            reads = TASK.extract_reads(part)
            logits, _ = model(torch.from_numpy(LUT[part]))
            lp = logits[reads.seq_index, reads.position - 1].float().log_softmax(-1)[:, [ZERO_ID, ONE_ID]].numpy()
            pred, margin = rules.choice_prediction(lp, reads.target)
            out.append(np.where(margin == 0, -1, pred))
    model.train()
    return np.concatenate(out)


def score(model, arr: np.ndarray) -> dict:
    reads = TASK.extract_reads(arr)
    pred, one = predictions(model, arr), registers.one_variable_predictions(arr)
    differs = one != reads.target
    return {"reads": len(reads.target), "accuracy": float((pred == reads.target).mean()),
            "one_variable_accuracy": float((one == reads.target).mean()), "reads_one_variable_wrong": int(differs.sum()),
            "agrees_with_one_variable_where_wrong": float((pred[differs] == one[differs]).mean()) if differs.any() else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=list(RECIPES), required=True)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--length", type=int, default=192, help="T (a multiple of 3)")
    ap.add_argument("--registers", type=int, default=2, help="k")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--p-ignore", type=float, default=0.8, help="training distribution Registers(P)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--export", help="write the trained model here as a native checkpoint")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    cfg, lr = RECIPES[args.arch]
    model = build(cfg)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.999))
    dist = TASK.dist(args.p_ignore, args.length, 2, args.registers)
    t0 = time.time()
    for step in range(args.steps):
        scale = (step + 1) / 50 if step < 50 else max(0.0, (args.steps + 1 - step) / (args.steps + 1 - 50))
        for group in opt.param_groups:
            group["lr"] = lr * scale
        arr = TASK.sample(dist, args.batch_size, (args.seed * 1_000_003 + step) * 16)
        reads = TASK.extract_reads(arr)
        idx = torch.from_numpy(LUT[arr])
        logits, _ = model(idx)
        pos = torch.from_numpy(reads.position)
        seq = torch.from_numpy(reads.seq_index)
        loss = F.cross_entropy(logits[seq, pos - 1].float(), idx[seq, pos])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    seconds = time.time() - t0
    T, k = args.length, args.registers
    result = {"arch": args.arch, "parameters": count_parameters(model), "steps": args.steps, "length": T,
              "registers": k, "train": f"Registers({args.p_ignore:g})", "seed": args.seed,
              "train_seconds": round(seconds, 1)}
    for name in ("in_dist", "sparse", "dense"):
        suite = TASK.suites[name]
        result[name] = score(model, TASK.sample(TASK.dist(suite.p_ignore, T, 2, k), min(suite.num, 1000), suite.seed))
    chains, columns = registers.stale_suite(T, k)
    pred, target = predictions(model, chains), TASK.extract_reads(chains).target
    result["stale"] = score(model, chains)
    result["stale_by_placement_distance"] = {
        f"{p}/{d}": float((pred[m] == target[m]).mean())
        for p in dict.fromkeys(columns["placement"]) for d in dict.fromkeys(columns["distance"])
        for m in [(np.array(columns["placement"]) == p) & (np.array(columns["distance"]) == d)] if m.any()}
    if args.export:
        from ffbench.train.checkpoint import save_checkpoint

        save_checkpoint(model, cfg, args.export,
                        train_config={**{k2: v for k2, v in vars(args).items() if k2 not in ("out", "export")},
                                      "lr": lr, "model": cfg.as_dict()},
                        metrics={k2: v for k2, v in result.items() if k2 != "arch"})
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
