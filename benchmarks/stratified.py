"""The map as a proposal: a stratified (Horvitz-Thompson) estimate of a glitch rate against i.i.d. reads.

Reads a finished map search (``--map``, a hunt directory of the same model and length), draws
``--draw`` target sequences per seed (free), gives each read a probability of being scored from its
cell's rate in the map (:mod:`ffbench.hunt.stratified`), scores the chosen reads with the model and
prints, per seed, the estimate, its 95% interval, whether it covers the shipped i.i.d. rate, and the
reads i.i.d. sampling needs for an interval as narrow (over the reads scored, and over those plus
the map's own reads).

    OMP_NUM_THREADS=1 nice python benchmarks/stratified.py --model ffbench/transformer-ref \\
        --map hunts/map/map-transformer-ref --target sparse --length 128 --budget 2000 --seeds 5
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffbench import backends, language, render, runs, scoring
from ffbench.hunt import descriptors, estimator, stratified


def score_reads(backend, template, seqs: np.ndarray, slots: np.ndarray, seq_index: np.ndarray) -> np.ndarray:
    """Whether the model answers each chosen read wrongly, from its prefix alone (one read each)."""
    rendered = []
    for k, e in zip(seq_index, slots):
        full = render.render(seqs[k][: 2 * e + 2], template)
        rendered.append(render.Rendered(full.text, full.spans[-1:], full.targets[-1:], full.choices))
    out = scoring.score(backend, rendered, template, "choice")
    return out.prediction != np.array([r.targets[0] for r in rendered])


def iid_rate(model: str, suite: str, length: int):
    res = runs.load(model)
    for c in res.results:
        if c.suite == suite and c.length == length and c.scoring == "choice" and not c.variant:
            return c.errors, c.reads
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ffbench/transformer-ref")
    ap.add_argument("--map", required=True)
    ap.add_argument("--target", default="sparse")
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--draw", type=int, default=100_000)
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    summary = json.loads((Path(args.map) / "hunt.json").read_text())
    amap, map_reads = summary["map"], summary["spent"]["reads"]
    target = estimator.parse_target(args.target, args.length)
    backend = backends.resolve(args.model).load()
    template = render.load_template("symbolic")
    shipped = iid_rate(args.model, args.target, args.length)
    print(f"{args.model} {target.name} T={args.length}; map {args.map} ({map_reads:,} reads); shipped i.i.d. "
          f"{shipped[0]:,}/{shipped[1]:,} = {shipped[0] / shipped[1]:.4g}" if shipped else "no shipped run")
    ratios, ratios_all = [], []
    for seed in range(args.seeds):
        seqs = language.sample(target.dist, args.draw, 1000 + seed)
        d = descriptors.describe(seqs)
        keys = descriptors.cell_keys(d)
        pi = stratified.inclusion(stratified.rates_for(keys, amap), args.budget)
        rng = np.random.default_rng(seed)
        chosen = np.flatnonzero(rng.random(pi.size) < pi)
        wrong = score_reads(backend, template, seqs, d["slot"][chosen], d["seq_index"][chosen])
        est = stratified.horvitz_thompson(wrong, pi[chosen], pi.size)
        lo, hi = est.ci95
        iid = estimator.iid_comparison(est.rate, hi - lo, est.scored)
        need = iid["reads_for_same_width"]
        if need is None:
            print(f"seed {seed}: no wrong read among {est.scored:,} scored (standing for {est.reads:,}): no interval")
            continue
        ratios.append(need / est.scored)
        ratios_all.append(need / (est.scored + map_reads))
        covers = shipped is not None and lo <= shipped[0] / shipped[1] <= hi
        print(f"seed {seed}: {est.rate:.4g} [{lo:.4g}, {hi:.4g}] from {est.scored:,} scored reads ({est.hits} wrong) "
              f"standing for {est.reads:,}; covers the shipped rate: {covers}; i.i.d. needs {need:,.0f} reads "
              f"({need / est.scored:.2f}x; {need / (est.scored + map_reads):.2f}x with the map's reads)")
    if ratios:
        print(f"median ratio {np.median(ratios):.2f}x ({np.median(ratios_all):.2f}x counting the map's reads)")


if __name__ == "__main__":
    main()
