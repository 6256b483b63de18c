"""The gate's test for two sampled runs (``--repeats``) scored on the very same reads.

Each read of each run holds the fraction of its K answers that were wrong. Under the null
hypothesis that the candidate samples its answers from the same distribution as the baseline (per
read), the two runs' answers to a read are exchangeable, and so are the runs' whole records of
a sequence: swapping candidate and baseline within any set of sequences leaves the joint
distribution unchanged. The test is therefore the **paired permutation (sign-flip) test over
sequences**: with d_s the candidate's minus the baseline's summed per-read error fractions of
sequence s, and T = sum_s d_s, p = (1 + #{flips with T* >= T}) / (1 + B) over B random sign
flips of the d_s (every flip when there are at most 16 sequences, then p is exact). Flipping whole
sequences keeps the correlation of a sequence's reads (and of a read's repeats) inside each
unit, so clustering cannot make the gate fire; the +1 keeps the p-value valid with random flips.
"""

from __future__ import annotations

import itertools

import numpy as np

FLIPS = 20_000
SEED = 0
EXACT_UP_TO = 16  # sequences: all 2^S flips


def sequence_differences(seq_index: np.ndarray, candidate: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """d_s per sequence: the candidate's minus the baseline's summed per-read error fractions."""
    _, inverse = np.unique(seq_index, return_inverse=True)
    return np.bincount(inverse, weights=np.asarray(candidate, float) - np.asarray(baseline, float))


def sign_flip_p(differences: np.ndarray, flips: int = FLIPS, seed: int = SEED) -> float:
    """One-sided p-value that the candidate is worse (module docstring)."""
    d = np.asarray(differences, dtype=np.float64)
    observed = d.sum()
    if d.size == 0 or not np.any(d):
        return 1.0
    tol = 1e-12 * max(1.0, float(np.abs(d).sum()))
    if d.size <= EXACT_UP_TO:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
        return float(np.mean(signs @ d >= observed - tol))
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, flips, 2000):
        n = min(2000, flips - start)
        signs = rng.integers(0, 2, size=(n, d.size)) * 2.0 - 1.0
        hits += int(np.sum(signs @ d >= observed - tol))
    return (1 + hits) / (1 + flips)
