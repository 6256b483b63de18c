"""Importance sampling: exact weights, an unbiased estimate and covering intervals on a synthetic
"model" whose glitch rate under FFL(p) is known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ffbench import language
from ffbench.errors import UsageError
from ffbench.hunt import estimator as E

K = 12  # the synthetic model is wrong exactly when a read's write distance exceeds K


def true_rate(dist: language.FFL, k: int) -> float:
    """Closed form: a middle read at instruction j >= k + 1 fails when none of the k instructions before
    it is a write, probability (1 - p_w)^k; the final read likewise; slot 0 is always a write."""
    n = dist.length // 2
    miss = (1 - dist.p_write) ** k
    middle = max(0, (n - 2) - k) * dist.p_read * miss
    final = miss if n - 1 - k >= 1 else 0.0
    return (middle + final) / dist.expected_reads()


def synthetic_verdicts(draw: E.Draw) -> tuple[np.ndarray, np.ndarray]:
    """(wrong, margin) of each sample's read: wrong when its write distance exceeds K; the margin
    shrinks as the distance nears K."""
    wd = draw.write_distance()
    margin = K + 0.5 - wd.astype(float)
    return margin <= 0, margin


def test_closed_form_matches_iid_counts():
    dist = language.FFL.from_p_ignore(0.1, 64)
    reads = language.extract_reads(language.sample(dist, 200_000, 1))
    wrong = reads.write_distance > K
    rate = true_rate(dist, K)
    assert 1e-4 < rate < 1e-3
    assert abs(wrong.sum() - rate * len(reads)) < 4 * math.sqrt(rate * len(reads))


@pytest.mark.parametrize("name,length", [("in_dist", 32), ("sparse", 64), ("dense", 16), ("FFL(0.2,0.3,0.5)", 40)])
def test_weights_are_exact_likelihood_ratios(name, length):
    """E_q[w f] = sum_e c_e E_p[f_e]: for f = 1 the expected reads per sequence, for f = [write distance
    > 3] the expected number of such reads, both known exactly (the second from i.i.d. counts)."""
    target = E.parse_target(name, length)
    proposal = E.Proposal.initial(target)
    draw = E.sample(target, proposal, 40_000, np.random.default_rng(3))
    w = E.weights(target, proposal, draw)
    assert abs(w.mean() - target.expected_reads()) < 4.5 * w.std() / math.sqrt(w.size)
    far = w * (draw.write_distance() > 3)
    iid = language.extract_reads(language.sample(target.dist, 100_000, 5))
    expected = np.count_nonzero(iid.write_distance > 3) / 100_000
    assert abs(far.mean() - expected) < 4.5 * math.sqrt(far.var() / far.size + expected / 100_000)
    assert w.max() <= proposal.max_weight(target) * (1 + 1e-9)


def test_samples_are_legal_and_end_with_their_read():
    target = E.parse_target("in_dist", 64)
    draw = E.sample(target, E.Proposal.initial(target), 500, np.random.default_rng(1))
    for seq, slot, o in zip(draw.sequences(), draw.slot, draw.outcomes):
        assert seq.size == 2 * (slot + 1) and chr(seq[-2]) == "r"
        language.validate(seq[None], alphabet=2)
        assert np.array_equal(E.outcomes_of(seq)[1:slot], o[1:slot])
    reads = [language.extract_reads(q[None]) for q in draw.sequences()[:50]]
    assert np.array_equal([r.write_distance[-1] for r in reads], draw.write_distance()[:50])


def test_weight_of_a_hand_computed_case():
    """T = 8, one profile: the weight of a read at slot 2 after a write of the other value, by hand."""
    target = E.parse_target("FFL(0.2,0.3,0.5)", 8)
    n_buckets = E.Proposal.initial(target).profiles.shape[1]
    prof = np.tile([0.1, 0.3, 0.2, 0.1, 0.3], (n_buckets, 1))
    slots = np.array([0.5, 0.25, 0.25])  # a(1), a(2), a(3)
    proposal = E.Proposal(0.25, slots, np.array([1.0]), prof[None])
    draw = E.Draw(np.array([2]), np.array([[E.W_SAME, E.W_DIFF, E.READ, -1]], dtype=np.int8), np.array([0], np.uint8),
                  np.array([0]))
    assert language.to_strings(draw.sequences()[0][None]) == ["w0w1r1"]
    p = target.probs
    q_over_p = 0.25 + 0.75 * prof[0, E.W_DIFF] / p[E.W_DIFF]  # slot 1 is at distance 1 from the read
    assert E.weights(target, proposal, draw)[0] == pytest.approx(0.3 / 0.25 / q_over_p)


def _run_estimate(seed: int, target: E.Target, stages: int = 5, stage_samples: int = 400, final: int = 1000):
    rng = np.random.default_rng(seed)
    proposal = E.Proposal.initial(target)
    for _ in range(stages):
        draw = E.sample(target, proposal, stage_samples, rng)
        w = E.weights(target, proposal, draw)
        wrong, margin = synthetic_verdicts(draw)
        proposal = E.update(target, proposal, draw, w, E.elite(margin, wrong))
    draw = E.sample(target, proposal, final, rng)
    wrong, _ = synthetic_verdicts(draw)
    return E.estimate(target, wrong, E.weights(target, proposal, draw), proposal.max_weight(target))


def test_estimator_is_unbiased_and_its_interval_covers_over_seeds():
    target = E.parse_target("dense", 64)
    truth = true_rate(target.dist, K)
    results = [_run_estimate(seed, target) for seed in range(30)]
    rates = np.array([r.rate for r in results])
    covered = sum(r.ci95[0] <= truth <= r.ci95[1] for r in results)
    # unbiased: the mean of 30 independent estimates is within 3 standard errors of the truth
    assert abs(rates.mean() - truth) < 3 * rates.std(ddof=1) / math.sqrt(len(rates))
    # a 95% interval covers in 30 runs at least 26 times (binomial(30, 0.95) >= 26 with probability 0.98)
    assert covered >= 26, (covered, truth, [r.ci95 for r in results])
    # most runs have enough failing samples for the interval to be called reliable; the exact bound holds in all
    assert sum(r.reliable for r in results) >= 20
    assert all(truth <= r.upper95_exact for r in results)
    # and the adapted proposal beats i.i.d. sampling on this rare event, adaptation reads included
    ratios = [E.iid_comparison(truth, r.ci95[1] - r.ci95[0], r.samples + 5 * 400)["read_ratio"] for r in results]
    assert np.median(ratios) > 10


def test_exact_upper_bound_holds_with_no_failures():
    target = E.parse_target("in_dist", 32)
    proposal = E.Proposal.initial(target)
    draw = E.sample(target, proposal, 200, np.random.default_rng(0))
    est = E.estimate(target, np.zeros(200, bool), E.weights(target, proposal, draw), proposal.max_weight(target))
    assert est.rate == 0 and est.hits == 0 and not est.reliable and 0 < est.upper95_exact <= 1
    assert est.ci95 == (0.0, est.upper95_exact)


def test_targets_parse_and_bad_ones_are_usage_errors():
    assert E.parse_target("sparse", 128).dist.p_ignore == 0.98
    assert E.parse_target("FFL(0.9)", 64).dist.p_read == pytest.approx(0.05)
    assert E.parse_target("ffl(0.2, 0.3, 0.5)", 64).dist.p_write == 0.2
    for bad in ("FFL(1.5)", "FFL(1.0)", "banana", "FFL(0.5,0.5)", "FFL(0.2,0.3,0.4)"):
        with pytest.raises(UsageError):
            E.parse_target(bad, 64)


def test_iid_comparison_agrees_with_clopper_pearson():
    from ffbench.metrics import clopper_pearson

    cmp = E.iid_comparison(1e-3, 2e-4, 100_000)
    low, high = clopper_pearson(100, 100_000)
    assert cmp["ci95_width"] == pytest.approx(high - low, rel=1e-6)
    needed = cmp["reads_for_same_width"]
    assert E._cp_width(1e-3, needed) == pytest.approx(2e-4, rel=1e-3) and cmp["read_ratio"] == needed / 100_000
