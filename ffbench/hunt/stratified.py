"""A rate under FFL(T, p) estimated from reads chosen where the hunt's map says errors are.

Sequences of the target are free to draw and their reads' cells (:mod:`ffbench.hunt.descriptors`)
free to compute; only scoring costs. So draw many target sequences, give every read a probability
pi of being scored that grows with its cell's rate r in the map (pi proportional to sqrt(r),
which minimises the variance of the estimate below for reads that are wrong with probability r,
floored so that no read has pi = 0), score the chosen reads (each one its prefix's last read), and weight each by 1 / pi. The
Horvitz-Thompson estimate sum(wrong / pi) / (all reads drawn) is unbiased for the rate of the drawn
reads whatever the map says (the map only moves the variance), its variance is estimated by
sum(wrong (1 - pi) / pi^2) / reads^2, and with many drawn sequences the rate of the drawn reads is
the target's up to a known sampling error (added to the variance). Assumes a causal, deterministic
model, as :mod:`ffbench.hunt.estimator` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ffbench.hunt import descriptors as desc

FLOOR = 0.05  # no read's sqrt(rate) below this: every read keeps a chance to be scored
FALLBACK = ("opposite_since_write", "write_distance")  # a cell the map never saw borrows this projection's rate
MIN_READS = 5


def cell_rates(amap: dict) -> dict[str, float]:
    """Smoothed rate per map cell ((errors + 0.5) / (reads + 1)), from hunt.json's ``map``."""
    return {desc.key_string(c["bins"]): (c["errors"] + 0.5) / (c["reads"] + 1) for c in amap["cells"]}


def rates_for(keys: np.ndarray, amap: dict) -> np.ndarray:
    """The map's rate of each read's cell: its own cell with MIN_READS reads, else the cells sharing
    its ``FALLBACK`` bins, else the map's overall rate."""
    names = list(desc.MAP_DIMENSIONS)
    idx = [names.index(a) for a in FALLBACK]
    full: dict[tuple, list[int]] = {}
    part: dict[tuple, list[int]] = {}
    for c in amap["cells"]:
        for table, k in ((full, tuple(c["bins"])), (part, tuple(c["bins"][i] for i in idx))):
            acc = table.setdefault(k, [0, 0])
            acc[0] += c["reads"]
            acc[1] += c["errors"]
    total = [sum(v[0] for v in full.values()), sum(v[1] for v in full.values())]
    out = np.empty(len(keys))
    for j, key in enumerate(map(tuple, keys.tolist())):
        acc = full.get(key)
        if acc is None or acc[0] < MIN_READS:
            acc = part.get(tuple(key[i] for i in idx))
        if acc is None or acc[0] < MIN_READS:
            acc = total
        out[j] = (acc[1] + 0.5) / (acc[0] + 1)
    return out


def inclusion(rates: np.ndarray, budget: float) -> np.ndarray:
    """Per read, the probability of being scored: proportional to max(sqrt(r), FLOOR), capped at 1
    with the capped mass moved to the rest, expected total ``budget``."""
    spread = np.maximum(np.sqrt(rates), FLOOR)
    pi = np.zeros_like(spread)
    free = np.ones(spread.size, dtype=bool)
    left = float(budget)
    for _ in range(50):
        pi[free] = left * spread[free] / spread[free].sum()
        over = free & (pi >= 1)
        if not over.any():
            break
        pi[over] = 1.0
        free &= ~over
        left = budget - np.count_nonzero(~free)
        if left <= 0 or not free.any():
            pi[free] = 0.0
            break
    return np.clip(pi, 0.0, 1.0)


@dataclass
class Estimate:
    rate: float
    se: float
    scored: int
    reads: int  # reads drawn (the population the chosen ones stand for)
    hits: int

    @property
    def ci95(self) -> tuple[float, float]:
        return max(0.0, self.rate - 1.96 * self.se), self.rate + 1.96 * self.se


def horvitz_thompson(wrong: np.ndarray, pi: np.ndarray, reads: int) -> Estimate:
    """The estimate from the scored reads' verdicts and inclusion probabilities (``reads`` drawn in all).
    The variance adds the binomial sampling of the drawn reads themselves (rate (1 - rate) / reads)."""
    w = wrong.astype(float) / pi
    rate = float(w.sum() / reads)
    var = float(np.sum(wrong * (1 - pi) / pi**2)) / reads**2 + rate * (1 - rate) / reads
    return Estimate(rate, math.sqrt(var), int(wrong.size), int(reads), int(wrong.sum()))
