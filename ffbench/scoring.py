"""From backend outputs to one prediction per read.

``choice``: a read is right when the target answer has strictly the higher log-probability of the
answers (a tie is an error). ``greedy``: the model's own greedy continuation must be the target; a
continuation that names no answer counts as an error and as ``invalid``, never dropped.

Dense first, per read where the dense pass cannot decide: every read gets an exact verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ffbench.backends.base import NO_CHOICE, UNKNOWN, Backend, ScoreRequest, choice_from_continuation
from ffbench.errors import FFBenchError
from ffbench.render import Rendered, Template
from ffbench.rules import choice_prediction

SCORINGS = ("choice", "greedy")


@dataclass
class Outcome:
    """Per read, in the order of the rendered sequences' reads."""

    prediction: np.ndarray  # choice index, or -1 when the model named no answer
    invalid: np.ndarray  # bool
    margin: np.ndarray  # log p(target) - max log p(other); NaN when unknown
    per_read: np.ndarray  # bool: decided by a per-read request rather than the dense pass
    output: list  # the model's generated text for reads scored by generation, else None
    truncated: np.ndarray  # bool: the reply hit the token budget before naming an answer


def decide_choice(logprobs: np.ndarray, bound: np.ndarray, targets: np.ndarray):
    """Predictions and margins from (possibly bounded) choice log-probabilities; UNKNOWN = undecided.

    Exact rows follow the strict rule of :mod:`ffbench.rules`. A row holding upper bounds is
    decided only when the bounds settle it either way; otherwise it stays UNKNOWN and is re-asked.
    """
    n = len(targets)
    pred = np.full(n, UNKNOWN, dtype=np.int64)
    margin = np.full(n, np.nan)
    known = ~np.isnan(logprobs).any(axis=1) if n else np.zeros(0, dtype=bool)
    exact = known & ~bound.any(axis=1)
    pred[exact], margin[exact] = choice_prediction(logprobs[exact], targets[exact])
    for r in np.flatnonzero(known & ~exact).tolist():
        t, lp, bd = targets[r], logprobs[r], bound[r]
        others = [k for k in range(lp.size) if k != t]
        best = max(others, key=lambda k: lp[k])
        if not bd[t] and all(lp[k] < lp[t] for k in others):  # every bound is below the exact target
            pred[r] = t
        elif bd[t] and not bd[best] and lp[best] >= lp[t]:  # target's upper bound is not above an exact rival
            pred[r] = best
    return pred, margin


def score(backend: Backend, rendered: list[Rendered], template: Template, scoring: str,
          per_read: bool = False) -> Outcome:
    if scoring not in SCORINGS:
        raise FFBenchError(f"unknown scoring {scoring!r} (use choice or greedy)")
    if scoring == "choice" and backend.is_chat:
        raise FFBenchError(f"{backend.provider}/{backend.model} is a chat model: log-probabilities of answers are "
                           "not available, use --scoring greedy")
    targets = np.concatenate([r.targets for r in rendered]) if rendered else np.zeros(0, np.int64)
    n = targets.size
    pred = np.full(n, UNKNOWN, dtype=np.int64)
    margin = np.full(n, np.nan)
    dense = backend.supports_dense and not per_read
    if dense:
        results = backend.score_dense([ScoreRequest(r.text, r.spans, r.choices) for r in rendered])
        logprobs = np.concatenate([s.logprobs for s in results])
        bound = np.concatenate([s.bound for s in results])
        if scoring == "choice":
            pred, margin = decide_choice(logprobs, bound, targets)
        else:
            pred = np.concatenate([s.greedy for s in results])
            if not bound.any():
                _, margin = decide_choice(logprobs, bound, targets)
    todo = np.flatnonzero(pred == UNKNOWN)
    output: list = [None] * n
    truncated = np.zeros(n, dtype=bool)
    if todo.size:
        prompts = _prompts(rendered, todo)
        choices = rendered[0].choices
        if scoring == "choice":
            lp = backend.score_per_read(prompts, choices)
            p, m = decide_choice(lp, np.zeros_like(lp, dtype=bool), targets[todo])
            pred[todo], margin[todo] = p, m
        else:
            asked = [p + template.ask for p in prompts] if (template.ask or backend.is_chat) else prompts
            max_new = 32 if (template.ask or backend.is_chat) else max(len(c) for c in choices)
            for j, reply in zip(todo.tolist(), backend.generate(asked, max_new)):
                pred[j] = _parse(reply.text, template, choices, backend.is_chat or bool(template.ask))
                output[j] = reply.text
                truncated[j] = reply.truncated and pred[j] == NO_CHOICE
    if (pred == UNKNOWN).any():
        raise FFBenchError("internal error: a read was left undecided")  # never silently dropped
    per_read_mask = np.zeros(n, dtype=bool)
    per_read_mask[todo] = True
    return Outcome(np.where(pred == NO_CHOICE, -1, pred), pred == NO_CHOICE, margin, per_read_mask, output, truncated)


def _parse(text: str, template: Template, choices: tuple[str, ...], chat: bool) -> int:
    if chat:
        value = template.parse_answer(text, len(choices))
        return NO_CHOICE if value is None else value
    return choice_from_continuation(text, choices)


def _prompts(rendered: list[Rendered], reads: np.ndarray) -> list[str]:
    """Per-read prompts (text up to the answer) for flat read indices."""
    counts = np.array([len(r.targets) for r in rendered])
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    seq = np.searchsorted(starts, reads, side="right") - 1
    return [rendered[s].prompt(int(j - starts[s])) for s, j in zip(seq, reads)]
