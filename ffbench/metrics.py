"""Read accuracy, glitch rate and exact confidence intervals.

Glitches are rare (1e-4 .. 1e-6 of reads), so normal approximations are useless: every interval
here is the exact Clopper-Pearson interval on errors / reads, and a cell with no error reports the
one-sided bound "rate < 3/N at 95%" (the rule of three, ``-ln(0.05) / N``).
"""

from __future__ import annotations

import math

import numpy as np

# Bucket edges for the write-distance breakdown (instructions since the most recent write).
DISTANCE_EDGES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


def clopper_pearson(errors: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided interval for a binomial rate."""
    if n <= 0:
        return (0.0, 1.0)
    from scipy.special import betaincinv

    alpha = 1.0 - confidence
    low = 0.0 if errors == 0 else float(betaincinv(errors, n - errors + 1, alpha / 2))
    high = 1.0 if errors == n else float(betaincinv(errors + 1, n - errors, 1 - alpha / 2))
    return (low, high)


def zero_error_bound(n: int, confidence: float = 0.95) -> float:
    """One-sided upper bound on the rate when no error was seen in n reads (about 3/n at 95%)."""
    return 1.0 - (1.0 - confidence) ** (1.0 / n) if n else 1.0


def summarize(correct: np.ndarray, invalid: np.ndarray, truncated: np.ndarray | None = None) -> dict:
    """Counts, rates and the exact 95% interval of one cell.

    Every read counts: a read whose reply named no answer (``invalid``), including one cut by the
    token budget (``truncated``, a subset of invalid), is an error and is counted as such too.
    """
    reads = int(correct.size)
    errors = int(reads - np.count_nonzero(correct))
    low, high = clopper_pearson(errors, reads)
    return {
        "reads": reads,
        "errors": errors,
        "invalid": int(np.count_nonzero(invalid)),
        "truncated": 0 if truncated is None else int(np.count_nonzero(truncated)),
        "glitch_rate": errors / reads if reads else math.nan,
        "accuracy": 1.0 - errors / reads if reads else math.nan,
        "ci95": [low, high],
    }


def describe_rate(errors: int, reads: int) -> str:
    """Human wording: '0 errors in N reads: rate < 3.0e-06 at 95%' or 'rate 1.2e-04 [low, high]'."""
    if reads == 0:
        return "no reads"
    if errors == 0:
        return f"0 errors in {reads:,} reads: rate < {zero_error_bound(reads):.1e} at 95%"
    low, high = clopper_pearson(errors, reads)
    noun = "error" if errors == 1 else "errors"
    return f"{errors:,} {noun} in {reads:,} reads: rate {errors / reads:.2e} [{low:.1e}, {high:.1e}]"


def bucket_label(lo: int, hi: int | None) -> str:
    return f"{lo}" if hi == lo + 1 else (f"{lo}-{hi - 1}" if hi else f"{lo}+")


def breakdown(values: np.ndarray, correct: np.ndarray, edges=DISTANCE_EDGES) -> list[dict]:
    """Errors and reads per bucket [edges[k], edges[k+1]) of ``values`` (empty buckets omitted)."""
    out = []
    bounds = list(edges) + [None]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        mask = values >= lo if hi is None else (values >= lo) & (values < hi)
        n = int(np.count_nonzero(mask))
        if n:
            errors = int(n - np.count_nonzero(correct[mask]))
            out.append({"bucket": bucket_label(lo, hi), "reads": n, "errors": errors, "glitch_rate": errors / n})
    return out


# ----------------------------------------------------------------------------- anytime-valid bounds
# Sequential certification (``ffbench run --certify EPS``) looks at a cell's counts after every shard
# and stops as soon as they settle the question. A fixed-n interval (Clopper-Pearson above) is valid
# only at a sample size chosen in advance: checked after every shard, it is bound to dip below the
# true rate at some look sooner or later, and stopping there reports a bound that misses. The
# bounds below are a confidence *sequence*: with probability >= 1 - alpha they hold at every
# sample size at once, hence also at any stopping time, whatever rule chose it.
#
# Construction (Robbins' method of mixtures). For a candidate rate p0, the likelihood ratio of the
# reads under a Beta(a, b) mixture of rates against p0,
#     M_n(p0) = B(a + S, b + F) / B(a, b) / (p0^S (1 - p0)^F),   S errors and F right of n reads,
# is a non-negative martingale with mean 1 when p0 is the true rate, so by Ville's inequality
# P(M_n(p0) >= 1/alpha for some n) <= alpha. The confidence sequence is {p0 : M_n(p0) < 1/alpha};
# log M_n is convex in p0, so the set is an interval [lower, upper] around S/n. The prior only
# decides where the bound is tight, never whether it is valid. Beta(0.1, 1) puts its weight on small
# rates almost evenly per order of magnitude (density ~ p^-0.9), as glitch rates range over many:
# with no error in n reads the upper bound is about 4/n (3.7/n at n = 1e3, 4.4/n at 1e6) where the
# fixed-n bound is 3/n.
#
# Like every interval in this module it treats reads as independent trials of one rate; reads of
# one sequence share its text, so on a model whose errors cluster in some sequences the bound is
# optimistic in the same way as the Clopper-Pearson interval.

CERTIFY_ALPHA = 0.05
MIXTURE_PRIOR = (0.1, 1.0)


def log_mixture_ratio(errors, reads, rate, prior: tuple[float, float] = MIXTURE_PRIOR):
    """log M_n(rate) of the mixture martingale (vectorised over numpy arrays; see above)."""
    from scipy.special import betaln

    a, b = prior
    s = np.asarray(errors, dtype=np.float64)
    f = np.asarray(reads, dtype=np.float64) - s
    p = np.asarray(rate, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_like = np.where(s > 0, s * np.log(p), 0.0) + np.where(f > 0, f * np.log1p(-p), 0.0)
    return betaln(a + s, b + f) - betaln(a, b) - log_like


def anytime_excludes(errors, reads, rate, alpha: float = CERTIFY_ALPHA):
    """(rate above the confidence sequence, rate below it): whether ``rate`` exceeds the anytime-valid
    upper bound, and whether it is under the lower bound, after ``errors`` in ``reads`` (vectorised).

    ``--certify EPS`` certifies a cell when EPS is above its upper bound (the first array) and
    refutes it when EPS is under its lower bound (the second); both are exact comparisons, with no
    root finding.
    """
    errors = np.asarray(errors, dtype=np.float64)
    reads = np.asarray(reads, dtype=np.float64)
    out = log_mixture_ratio(errors, reads, rate) >= math.log(1.0 / alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        observed = np.where(reads > 0, errors / np.maximum(reads, 1), np.nan)
    return out & (observed < rate), out & (observed > rate)


def anytime_interval(errors: int, reads: int, alpha: float = CERTIFY_ALPHA) -> tuple[float, float]:
    """The anytime-valid interval [lower, upper] on a rate after ``errors`` in ``reads`` (see above).

    Valid simultaneously at every number of reads, so also after a data-dependent stop.
    """
    from scipy.optimize import brentq

    if reads <= 0:
        return (0.0, 1.0)
    target = math.log(1.0 / alpha)
    observed = errors / reads

    def excess(p: float) -> float:
        return float(log_mixture_ratio(errors, reads, p)) - target

    tiny = 1e-300
    lower = 0.0 if errors == 0 else brentq(excess, tiny, observed, xtol=1e-300, rtol=1e-12)
    upper = 1.0 if errors == reads else brentq(excess, max(observed, tiny), 1.0 - 1e-16, xtol=1e-300, rtol=1e-12)
    return (float(lower), float(upper))
