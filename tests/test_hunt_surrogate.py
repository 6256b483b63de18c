"""The surrogate (control-variate) rate estimate on a synthetic deterministic model whose rate is exact.

The model answers a read wrongly when the strict run of ignores carrying the other bit right before
it is at least K long, flipped (XOR) on reads of bit 1 at odd slots. Under FFL the instructions are
independent and the data bits fair, so the run is >= K with probability (p_i / 2)^K (when K slots
fit after the opening write), independently of the bit, and the rate is exact (:func:`exact_rate`).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ffbench import language
from ffbench.hunt import descriptors, surrogate

K = 3


def synthetic_wrong(seqs: np.ndarray, noise: bool = True) -> np.ndarray:
    d = descriptors.describe(seqs)
    bit = seqs[d["seq_index"], 2 * d["write_slot"] + 1] - language.ZERO
    wrong = d["opposite_run"] >= K
    return wrong ^ ((bit == 1) & (d["slot"] % 2 == 1)) if noise else wrong


def exact_rate(dist: language.FFL, noise: bool = True) -> float:
    n = dist.instructions
    num = den = 0.0
    for e in range(1, n):
        c = 1.0 if e == n - 1 else dist.p_read
        run = (dist.p_ignore / 2) ** K if e - K >= 1 else 0.0
        flip = 0.5 * (e % 2) if noise else 0.0
        num += c * (run * (1 - flip) + (1 - run) * flip)
        den += c
    return num / den


class TableGuess:
    """A cheap guess for the coverage test: the training rate per (run capped at K + 1, bit)."""

    def __init__(self, x, wrong, seed):
        self.cols = [surrogate_names.index("opposite_run"), surrogate_names.index("bit")]
        keys = self._keys(x)
        self.table = {k: wrong[keys == k].mean() for k in np.unique(keys)}
        self.default = wrong.mean()

    def _keys(self, x):
        run = np.minimum(np.rint(np.expm1(x[:, self.cols[0]])), K + 1)
        return run * 2 + np.rint(np.expm1(x[:, self.cols[1]]))

    def __call__(self, x):
        return np.array([self.table.get(k, self.default) for k in self._keys(x)])


surrogate_names = surrogate.features(language.sample(language.FFL.from_p_ignore(0.9, 32), 2, 0))[1]


def test_exact_rate_agrees_with_a_large_sample():
    dist = language.FFL.from_p_ignore(0.8, 32)
    seqs = language.sample(dist, 60_000, 1)
    wrong = synthetic_wrong(seqs)
    assert abs(wrong.mean() - exact_rate(dist)) < 4 * math.sqrt(0.25 / wrong.size)


def test_features_are_exact_counts():
    # w0 i1 i1 i0 r0: the read answers 0; two ignores of 1 then one of 0 before it
    seq = language.to_array(["w0i1i1i0r0"])
    x, names = surrogate.features(seq)
    got = dict(zip(names, np.rint(np.expm1(x[0])).astype(int)))
    assert (got["opposite_since_write"], got["same_since_write"], got["opposite_run"], got["bit"]) == (2, 1, 0, 0)
    assert (got["opposite_last_2"], got["same_last_2"], got["opposite_last_4"], got["opposite_prefix"]) == (1, 1, 2, 2)


def test_interval_covers_the_exact_rate_over_seeds():
    dist = language.FFL.from_p_ignore(0.8, 32)
    truth = exact_rate(dist)
    seeds, covered, estimates = 30, 0, []
    for seed in range(seeds):
        scored = language.sample(dist, 400, 100 + seed)
        free = language.sample(dist, 4000, 10_000 + seed)
        est = surrogate.estimate(scored, synthetic_wrong(scored), free, dist.expected_reads(), seed=seed,
                                 guess=TableGuess)
        lo, hi = est.ci95
        covered += lo <= truth <= hi
        estimates.append((est.rate, est.se))
    # 95% intervals: at least 25 of 30 cover (P(fewer) < 2% for exact 95% coverage)
    assert covered >= 25, (covered, truth, estimates)
    rates, ses = np.array(estimates).T
    assert abs(rates.mean() - truth) < 3 * math.sqrt(np.mean(ses**2) / seeds)  # unbiased


def test_network_guess_saves_reads_on_a_learnable_model():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    dist = language.FFL.from_p_ignore(0.8, 32)
    truth = exact_rate(dist, noise=False)
    scored = language.sample(dist, 600, 7)
    free = language.sample(dist, 3000, 8)
    est = surrogate.estimate(scored, synthetic_wrong(scored, noise=False), free, dist.expected_reads(),
                             guess=lambda x, y, s: surrogate.Guess(x, y, s, epochs=20, batch=64))
    lo, hi = est.ci95
    assert lo <= truth <= hi
    # a read's verdict is a threshold on one feature: a guess that learned nothing leaves a gain of
    # 1; this small network on 1,400 reads (4.4x at this seed) must leave less than a third
    assert est.residual_gain > 3


def test_features_do_not_depend_on_chunking():
    seqs = language.sample(language.FFL.from_p_ignore(0.8, 32), surrogate.CHUNK + 300, 5)
    whole, _ = surrogate.features(seqs)
    parts = [surrogate.features(seqs[:1000])[0], surrogate.features(seqs[1000:])[0]]
    assert np.array_equal(whole, np.concatenate(parts))
