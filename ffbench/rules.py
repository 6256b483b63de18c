"""The scoring rule every path shares: a multiple-choice read is right only when the target
answer's log-probability is *strictly* higher than every other answer's.

A tie is wrong. A model that cannot tell the answers apart has not retrieved the bit, and counting
a tie as the first answer (lm-eval's ``acc``) would credit a coin flip half the time. ``ffbench
run`` (dense and per-read), training evaluation and the lm-eval glue all call :func:`choice_prediction`
or :func:`choice_correct`, so the three can never disagree on a read.
"""

from __future__ import annotations

import numpy as np


def choice_prediction(logprobs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per read: the predicted answer index and the margin log p(target) - max log p(other).

    ``logprobs`` is (n, m) with m >= 2 answers, ``targets`` (n,) answer indices. The prediction
    is the target when the margin is strictly positive, else the best other answer (the first of
    them on a tie among others).
    """
    logprobs = np.asarray(logprobs, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    n = targets.size
    rows = np.arange(n)
    others = logprobs.copy()
    others[rows, targets] = -np.inf
    best_other = others.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
    margin = logprobs[rows, targets] - logprobs[rows, best_other]
    return np.where(margin > 0, targets, best_other), margin


def choice_correct(logprobs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per read: True only when the target's log-probability is strictly the highest."""
    return choice_prediction(logprobs, targets)[1] > 0
