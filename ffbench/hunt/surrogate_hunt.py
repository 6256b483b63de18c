"""``ffbench hunt --estimate TARGET --estimator surrogate``: the rate from whole i.i.d. sequences
scored once, with a learned guess of every read's verdict as control variate (:mod:`ffbench.hunt.surrogate`).

Why a separate estimator. Importance sampling (:mod:`ffbench.hunt.estimator`) weights single reads
of a tilted proposal; on rates that are not rare (sparse at T = 128: 0.14) its gain over i.i.d.
reads is bounded by the spread of error rates across cells (under 2x), while a guess fitted on exact
prefix counts leaves about a tenth of the variance (benchmarks/RESULTS.md). Here the hunt's rounds
score whole sequences of the target itself, every read of each (the reads are the cost, as for
i.i.d. sampling), and the estimate is made once, when the budget is spent: the guess is fitted on
4 of 5 folds of the scored sequences and applied to the 5th and to ``free`` sequences that are
drawn from ``SeedSequence([seed, FREE_STREAM])`` and never scored. The rounds' reads are stored
(samples.parquet) with each read's fold and guess, so the estimate can be recomputed from them:
:func:`recompute`. Assumes a causal, deterministic model (a read's verdict depends on its prefix).
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np

from ffbench import language
from ffbench.errors import UsageError
from ffbench.hunt import estimator, surrogate

METHOD = "surrogate"
ESTIMATORS = ("importance", METHOD)  # --estimator choices; the first is the default
MIN_SEQUENCES = 20 * surrogate.FOLDS  # scored sequences the budget must buy: 20 per fold at the expected reads
FREE_PER_SCORED = 50  # free (never scored) sequences per scored one ...
FREE_MIN, FREE_MAX = 20_000, 1_000_000  # ... within these bounds (CPU only: describing and guessing, in chunks)
FREE_STREAM = 2**31 - 1  # SeedSequence([seed, FREE_STREAM]): no round ever reaches this index


def check(target: estimator.Target, budget: int) -> None:
    """Refuse, before work, what the surrogate estimate cannot do (UsageError)."""
    if importlib.util.find_spec("torch") is None:
        raise UsageError("--estimator surrogate fits a small torch network: install torch (pip install torch), "
                         "or use the default --estimator importance")
    per_sequence = target.expected_reads()
    if budget / per_sequence < MIN_SEQUENCES:
        raise UsageError(f"--estimator surrogate needs at least {MIN_SEQUENCES} scored sequences of {target.name} "
                         f"({surrogate.FOLDS} folds; {per_sequence:.3g} reads each): raise --budget to "
                         f"{math.ceil(MIN_SEQUENCES * per_sequence):,} or more")


def draw(target: estimator.Target, reads_wanted: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Whole i.i.d. sequences of the target, as many as fit ``reads_wanted`` reads (at least one when
    one fits; none when even the first exceeds it)."""
    count = max(1, math.ceil(reads_wanted / target.expected_reads()))
    seqs = language.sample(target.dist, count, int(rng.integers(2**63 - 1)))
    reads = np.count_nonzero(seqs[:, 0::2] == language.R, axis=1)
    keep = int(np.searchsorted(np.cumsum(reads), reads_wanted, side="right"))
    return list(seqs[:keep])


def free_count(scored: int) -> int:
    return int(min(FREE_MAX, max(FREE_MIN, FREE_PER_SCORED * scored)))


def free_draws(target: estimator.Target, count: int, seed: int) -> np.ndarray:
    """The ``count`` free sequences of a hunt with ``seed`` (never scored)."""
    ss = np.random.SeedSequence([seed, FREE_STREAM])
    return language.sample(target.dist, count, int(ss.generate_state(1, np.uint64)[0] >> 1))


def scored_sequences(table) -> tuple[np.ndarray, np.ndarray]:
    """(sequences in scoring order, each read's wrong verdict in describe order) from the rounds' rows."""
    seq = table.column("sequence").to_numpy()
    first = np.flatnonzero(np.r_[True, seq[1:] != seq[:-1]])
    texts = table.column("text").to_pylist()
    return language.to_array([texts[i] for i in first]), ~table.column("correct").to_numpy()


def recompute(table, target: estimator.Target, seed: int, free: int) -> surrogate.Estimate:
    """The estimate from the stored reads (samples.parquet, with or without its guess columns), the
    hunt's seed and its count of free sequences (hunt.json ``estimate.free_sequences``)."""
    arr, wrong = scored_sequences(table)
    return surrogate.estimate(arr, wrong, free_draws(target, free, seed), target.expected_reads(), seed=seed)


def final(table, target: estimator.Target, seed: int) -> tuple[dict, object]:
    """hunt.json's estimate and the rounds' table with each read's fold and guess added."""
    import pyarrow as pa

    out = {"method": METHOD, "target": target.name, "distribution": target.dist.label(),
           "expected_reads_per_sequence": target.expected_reads(), "adapt_reads": 0, "folds": surrogate.FOLDS}
    arr, wrong = scored_sequences(table)
    out["scored_sequences"] = int(arr.shape[0])
    if arr.shape[0] < 2 * surrogate.FOLDS:
        out["result"] = None
        out["reason"] = (f"{arr.shape[0]} scored sequences, {2 * surrogate.FOLDS} needed for "
                         f"{surrogate.FOLDS} folds: raise --budget (or --budget-tokens)")
        return out, table
    free = free_draws(target, free_count(arr.shape[0]), seed)
    est = surrogate.estimate(arr, wrong, free, target.expected_reads(), seed=seed)
    lo, hi = est.ci95
    out["free_sequences"] = int(free.shape[0])
    out["free_reads"] = est.free_reads
    out["result"] = {"target": target.name, "rate": est.rate, "ci95": [lo, hi], "std_error": est.se,
                     "samples": est.scored, "hits": est.hits, "reliable": est.hits >= estimator.MIN_HITS,
                     "variance_left": 1 / est.residual_gain if est.residual_gain > 0 else None,
                     "residual_gain": est.residual_gain if math.isfinite(est.residual_gain) else None}
    out["iid_same_reads"] = estimator.iid_comparison(est.rate, hi - lo, est.scored)
    table = table.append_column("fold", pa.array(est.fold.astype(np.int64)))
    return out, table.append_column("guess", pa.array(est.guess))
