"""A learned guess of each read's verdict as a control variate (:mod:`ffbench.hunt.surrogate`) against i.i.d. reads.

Per seed: draws ``--scored`` target sequences and scores every read of them (the whole cost: the
guess is fitted on these same reads, cross-fitted), draws ``--free`` further sequences that are only
described, and prints the estimate, its 95% interval, whether it covers the shipped i.i.d. rate, and
the reads i.i.d. sampling needs for an interval as narrow (Clopper-Pearson), over the reads scored.
``--ceiling`` first prints, from one extra scored sample, the best read savings any stratification
or importance sampling on the map's cells could give (theta (1 - theta) / sum_c P_c r_c (1 - r_c)).

    OMP_NUM_THREADS=1 nice python benchmarks/surrogate.py --model ffbench/transformer-ref \\
        --target sparse --length 128 --scored 5000 --free 300000 --seeds 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stratified import iid_rate

from ffbench import backends, language, render, scoring
from ffbench.hunt import descriptors, estimator, surrogate
from ffbench.metrics import clopper_pearson


def score_all(backend, template, seqs: np.ndarray) -> np.ndarray:
    """Whether the model answers each read of each sequence wrongly (describe order: row-major)."""
    rendered = [render.render(s, template) for s in seqs]
    out = scoring.score(backend, rendered, template, "choice")
    return out.prediction != np.concatenate([r.targets for r in rendered])


def within_cell_bound(keys: np.ndarray, wrong: np.ndarray) -> float:
    """theta (1 - theta) / sum_c P_c s_c^2 with s_c^2 the unbiased within-cell variance (a cell met once
    counts 0: optimistic)."""
    _, inv = np.unique(keys, return_inverse=True, axis=0)
    inv = inv.ravel()
    count, hits = np.bincount(inv), np.bincount(inv, wrong.astype(float))
    r = hits / count
    var = np.where(count > 1, r * (1 - r) * count / np.maximum(count - 1, 1), 0.0)
    theta = wrong.mean()
    return theta * (1 - theta) / float(np.sum(count / count.sum() * var))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ffbench/transformer-ref")
    ap.add_argument("--target", default="sparse")
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--scored", type=int, default=5000, help="sequences scored per seed (all their reads)")
    ap.add_argument("--free", type=int, default=300_000, help="sequences drawn and described, never scored")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--iid", type=int, default=0, help="fresh i.i.d. sequences scored as a second reference (0: skip)")
    ap.add_argument("--ceiling", type=int, default=0, help="scored sequences for the map cells' ceiling (0: skip)")
    args = ap.parse_args()
    target = estimator.parse_target(args.target, args.length)
    backend = backends.resolve(args.model).load()
    template = render.load_template("symbolic")
    shipped = iid_rate(args.model, args.target, args.length)
    print(f"{args.model} {target.name} T={args.length}; shipped i.i.d. "
          + (f"{shipped[0]:,}/{shipped[1]:,} = {shipped[0] / shipped[1]:.4g}" if shipped else "none"))
    if args.iid:
        seqs = language.sample(target.dist, args.iid, 7000)
        wrong = np.concatenate([score_all(backend, template, seqs[i:i + 20_000]) for i in range(0, args.iid, 20_000)])
        lo, hi = clopper_pearson(int(wrong.sum()), wrong.size)
        print(f"fresh i.i.d. reference (seed 7000, {args.iid:,} sequences): {wrong.sum():,}/{wrong.size:,} = "
              f"{wrong.mean():.4f} [{lo:.4f}, {hi:.4f}]", flush=True)
    if args.ceiling:
        seqs = language.sample(target.dist, args.ceiling, 777)
        wrong = score_all(backend, template, seqs)
        d = descriptors.describe(seqs)
        print(f"ceiling from {wrong.size:,} scored reads (rate {wrong.mean():.4f}): map cells "
              f"{within_cell_bound(descriptors.cell_keys(d), wrong):.2f}x; exact opposite_since_write "
              f"{within_cell_bound(d['opposite_since_write'][:, None], wrong):.2f}x; exact (opposite_run, "
              f"opposite_since_write) {within_cell_bound(np.stack([d['opposite_run'], d['opposite_since_write']], 1), wrong):.2f}x")
    ratios = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        t0 = time.time()
        scored = language.sample(target.dist, args.scored, 5000 + seed)
        wrong = score_all(backend, template, scored)
        free = language.sample(target.dist, args.free, 9000 + seed)
        est = surrogate.estimate(scored, wrong, free, target.expected_reads(), seed=seed)
        lo, hi = est.ci95
        need = estimator.iid_comparison(est.rate, hi - lo, est.scored)["reads_for_same_width"]
        ratios.append(need / est.scored)
        covers = shipped is not None and lo <= shipped[0] / shipped[1] <= hi
        print(f"seed {seed}: {est.rate:.4f} [{lo:.4f}, {hi:.4f}] from {est.scored:,} scored reads ({est.hits:,} wrong) "
              f"and {est.free_reads:,} free; covers the shipped rate: {covers}; i.i.d. needs {need:,.0f} reads "
              f"({need / est.scored:.2f}x; residual ceiling {est.residual_gain:.1f}x) [{time.time() - t0:.0f}s]", flush=True)
    if ratios:
        print(f"median ratio {np.median(ratios):.2f}x (min {min(ratios):.2f}x)")


if __name__ == "__main__":
    main()
