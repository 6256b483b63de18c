"""Sampled models: K answers per read (``--repeats``) and what a cell of them measures.

One greedy answer per read defines the glitch rate of a deterministic model. A sampled model
(hosted models, reasoning models that accept only their default sampling) answers a read right
with some probability; one sample mixes that probability with sampling noise. With ``--repeats K``
every greedy read is asked K times and a cell reports, beside the read-level counts of today:

* ``error_probability``: the mean over reads of the fraction of its K answers that are wrong, an
  unbiased estimate of the mean per-read error probability;
* ``ci95``: its 95% **cluster-robust interval with sequences as clusters**: the estimate is a
  ratio (summed per-read error fractions over reads), its variance the CR1 sandwich over
  sequences, S/(S-1) * sum_s (y_s - m n_s)^2 / (sum_s n_s)^2, and the interval m +- t(S-1) * se,
  clipped to [0, 1]. Repeats of one read are nested in the read and reads in their sequence, so
  treating whole sequences as the independent units accounts for both correlations (by read and
  by sequence). Student's t with S-1 degrees of freedom is what keeps coverage near 95% with few
  sequences: in simulation (benchmarks/RESULTS.md) it covered at 0.93-0.95 where a percentile
  cluster bootstrap over sequences covered 0.86-0.90 (10 sequences) and 0.90-0.93 (25). With no wrong
  answer at all the interval would collapse to [0, 0]; the upper bound is then the exact one-sided
  bound -ln(0.05) / (K * reads): were the mean probability above it, all K * reads answers would
  be right with probability below 5% (prod (1 - p_i)^K <= exp(-K * sum p_i));
* ``wrong_any`` / ``wrong_all``: the fraction of reads wrong in at least one / in all K answers;
* ``majority_error_rate``: the error rate of each read's majority answer, which is the read's
  ``prediction`` in samples.parquet (the greedy-equivalent answer: the target must be named
  strictly more often than any other answer or no answer; a tie is an error, as in the strict
  choice rule). A deterministic model gives identical repeats, so every figure equals today's
  glitch rate.

**Sequential stopping per read** (``until``, set from the run's stopping flags, never part of the
config): with ``--certify`` a read stops being asked once its majority answer over K is settled,
i.e. no answers still to come could change it (:func:`settled`; exact, so the majority figures and
the cell's ``--certify`` verdict are those of all K answers, and a kept shard stays valid under
any flags); with ``--stop-at-first-error`` a read stops at its first wrong answer (the question is
whether the model glitches at all, and that read has). A read then keeps fewer than K answers
(its ``repeats`` column says how many), and its share of wrong answers is taken over those: the
sampled figures of a cell with such reads are flagged ``sequential`` (the per-read error
probability then leans toward the decided answer; rerun without the flags for an unbiased one).

The sampling parameters (``--temperature``, ``--top-p``, ``--sampling-seed``) reach providers that
take them (``Capabilities.sampling``); with K > 1 and no temperature, the provider's default
sampling is used (no temperature is sent). The repeats, temperature and top-p change what a cell
measures, so they enter its ``variant``; the seed does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ffbench.errors import UsageError

CONFIDENCE = 0.95
METHOD = ("cluster-robust (CR1) interval over sequences with Student's t (sequences - 1 df), clipped to [0, 1]; "
          "exact zero-error bound when none wrong")
REPEAT_TAG = "_ffbench_repeat"  # in a payload: makes repeat k its own (cached) request; never sent
NOT_ASKED = -3  # an answer slot of a read whose sampling stopped before it (``until``)
UNTIL_SETTLED, UNTIL_FIRST_WRONG = "settled", "first_wrong"


@dataclass(frozen=True)
class Sampling:
    """How a greedy read is sampled: K repeats, and the sampling parameters (None: not sent)."""

    repeats: int = 1
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    until: str | None = None  # sequential stopping per read (UNTIL_SETTLED, UNTIL_FIRST_WRONG): run control, not config

    @classmethod
    def from_config(cls, config) -> "Sampling":
        get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
        repeats = get("repeats")
        return cls(1 if repeats is None else int(repeats), get("temperature"), get("top_p"), get("sampling_seed"))

    @property
    def sampled(self) -> bool:
        """Answers may differ from a greedy decode: repeats, or sampling other than temperature 0."""
        return self.repeats > 1 or self.temperature not in (None, 0) or self.top_p is not None

    def temperature_to_send(self) -> float | None:
        """Today's 0.0 for one greedy answer per read; the user's value; else the provider's default."""
        if self.temperature is not None:
            return float(self.temperature)
        return 0.0 if self.repeats == 1 else None

    def variant_parts(self) -> list[str]:
        """What enters a greedy cell's variant: the repeats, and the sampling parameters where they
        differ from what is sent without them (``--temperature 0`` with one answer per read is today's
        greedy cell)."""
        parts = [f"repeats={self.repeats}"] if self.repeats > 1 else []
        if self.temperature is not None and not (self.repeats == 1 and self.temperature == 0):
            parts.append(f"temperature={self.temperature:g}")
        if self.top_p is not None:
            parts.append(f"top_p={self.top_p:g}")
        return parts


def until_for(stop_at_first_error: bool, certify) -> str | None:
    """The per-read stopping rule of a run's stopping flags: a read stops at its first wrong answer
    under ``--stop-at-first-error`` (which needs every answer of a read right to call it clean), else
    once its majority is settled under ``--certify``; None asks all K."""
    if stop_at_first_error:
        return UNTIL_FIRST_WRONG
    return UNTIL_SETTLED if certify is not None else None


def settled(answers: np.ndarray, target: int, k: int, until: str | None) -> bool:
    """Whether a read asked ``answers`` so far (of ``k``) needs no more under the rule ``until``."""
    if until is None or answers.size >= k:
        return answers.size >= k
    wrong = answers != target
    if until == UNTIL_FIRST_WRONG:
        return bool(wrong.any())
    left = k - answers.size
    hits = int((~wrong).sum())
    others = np.unique(answers[wrong], return_counts=True)[1]
    best = int(others.max()) if others.size else 0
    # right for sure: even if every answer to come named the leading rival, the target stays ahead;
    # wrong for sure: even if every answer to come named the target, it would not be strictly ahead
    return hits > best + left or hits + left <= best


def check(config, scorings: list[str], takes_sampling: bool, provider: str) -> None:
    """UsageError for sampling options no run can use (before anything loads)."""
    s = Sampling.from_config(config)
    if s.repeats < 1:
        raise UsageError(f"--repeats must be a positive integer, got {s.repeats}")
    if s.repeats > 1 and "choice" in scorings:
        raise UsageError("--repeats applies to --scoring greedy: choice scoring reads log-probabilities, which are "
                         "deterministic, so repeats would all be equal")
    if s.temperature is not None and not (math.isfinite(s.temperature) and 0 <= s.temperature <= 2):
        raise UsageError(f"--temperature must be between 0 and 2, got {s.temperature}")
    if s.top_p is not None and not (math.isfinite(s.top_p) and 0 < s.top_p <= 1):
        raise UsageError(f"--top-p must be in (0, 1], got {s.top_p}")
    given = [f for f, v in (("--temperature", s.temperature), ("--top-p", s.top_p), ("--sampling-seed", s.seed))
             if v is not None]
    if given and not takes_sampling:
        raise UsageError(f"{', '.join(given)}: {provider}/ models decode greedily and take no sampling parameters "
                         "(openai/ and anthropic/ do)")


def majority(predictions: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, correct) per read from its K answers (rows of ``predictions``; -1 = no answer).

    Correct when the target is named strictly more often than any other answer or no answer; the
    prediction is then the target, else the most frequent other answer (first named on a tie), so
    ``correct == (prediction == target)`` holds as for one answer.
    """
    n, k = predictions.shape
    pred = np.empty(n, dtype=np.int64)
    correct = np.zeros(n, dtype=bool)
    for i in range(n):
        row = [v for v in predictions[i].tolist() if v != NOT_ASKED]
        hits = row.count(int(targets[i]))
        others = [v for v in row if v != targets[i]]
        best = max(others, key=others.count) if others else None
        if best is None or hits > others.count(best):
            pred[i], correct[i] = targets[i], True
        else:
            pred[i] = best
    return pred, correct


def cell_stats(seq_index: np.ndarray, wrong: np.ndarray, repeats: np.ndarray, majority_correct: np.ndarray,
               planned: int | None = None) -> dict:
    """A cell's sampled figures (module docstring) from one entry per read: its sequence, wrong
    answers of its repeats, and whether its majority answer is right; ``planned`` (K) flags the
    figures ``sequential`` when some read kept fewer answers."""
    wrong = np.asarray(wrong, dtype=np.float64)
    repeats = np.asarray(repeats, dtype=np.float64)
    reads = wrong.size
    share = wrong / repeats
    mean = float(share.mean()) if reads else math.nan
    lo, hi = cluster_interval(np.asarray(seq_index), share)
    if reads and not wrong.any():
        lo, hi = 0.0, -math.log(1 - CONFIDENCE) / float(repeats.sum())
    return {"repeats": int(repeats.max()) if reads else 0, "answers": int(repeats.sum()),
            "wrong_answers": int(wrong.sum()), "error_probability": mean, "ci95": [lo, hi], "method": METHOD,
            "wrong_any": float((wrong > 0).mean()) if reads else math.nan,
            "wrong_all": float((wrong == repeats).mean()) if reads else math.nan,
            "majority_error_rate": float(np.mean(~np.asarray(majority_correct, dtype=bool))) if reads else math.nan,
            "sequential": bool(planned is not None and reads and repeats.min() < planned)}


def cluster_interval(groups: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """The cluster-robust 95% interval (module docstring) of the mean of ``values`` (one per read)
    with ``groups`` (sequences) as clusters; [0, 1] when there are fewer than two sequences."""
    from scipy import stats

    if values.size == 0:
        return (0.0, 1.0)
    _, inverse = np.unique(groups, return_inverse=True)
    sums = np.bincount(inverse, weights=values)
    counts = np.bincount(inverse).astype(np.float64)
    s = sums.size
    if s < 2:
        return (0.0, 1.0)
    mean = sums.sum() / counts.sum()
    se = math.sqrt(s / (s - 1) * float(((sums - mean * counts) ** 2).sum())) / counts.sum()
    half = float(stats.t.ppf(1 - (1 - CONFIDENCE) / 2, s - 1)) * se
    return max(0.0, mean - half), min(1.0, mean + half)
