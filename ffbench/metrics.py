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
