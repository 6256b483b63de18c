"""From backend outputs to one prediction per read.

``choice``: a read is right when the target answer has strictly the higher log-probability of the
answers (a tie is an error). ``greedy``: the model's own greedy continuation must be the target; a
continuation that names no answer counts as an error and as ``invalid``, never dropped, and one
cut by the token budget before it named an answer is also ``truncated``.

Dense first, per read where the dense pass cannot decide: every read gets an exact verdict. What
the model said for a greedy read is kept (``output``): its reply, or for a read decided by the
dense pass, its greedy continuation up to where it named an answer or left every answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ffbench.backends.base import (
    NO_CHOICE,
    UNKNOWN,
    Backend,
    Generation,
    ScoreRequest,
    SpanScores,
    choice_from_continuation,
)
from ffbench.errors import FFBenchError
from ffbench.prompting import PromptFormat, PromptOptions, answer_after_reasoning, per_read_prompts, shift
from ffbench.render import Rendered, Template
from ffbench.rules import choice_prediction
from ffbench.sampling import NOT_ASKED, Sampling, majority, settled

SCORINGS = ("choice", "greedy")


@dataclass
class Outcome:
    """Per read, in the order of the rendered sequences' reads."""

    prediction: np.ndarray  # choice index, or -1 when the model named no answer
    invalid: np.ndarray  # bool
    margin: np.ndarray  # log p(target) - max log p(other); NaN when unknown
    per_read: np.ndarray  # bool: decided by a per-read request rather than the dense pass
    output: list  # greedy scoring: what the model said (its reply, or its continuation in the dense pass)
    truncated: np.ndarray  # bool: the reply hit the token budget before naming an answer
    # --repeats K > 1 (ffbench.sampling): each read's K answers (-1: none) and replies; prediction is their majority
    repeats: np.ndarray | None = None
    repeat_outputs: list | None = None


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
          per_read: bool = False, options: PromptOptions | None = None, sampling: Sampling | None = None) -> Outcome:
    """Score every read of ``rendered``; ``options`` says how prompts are formatted (chat template,
    system prompt) and how long replies may be (see :mod:`ffbench.prompting`). ``sampling``
    (:mod:`ffbench.sampling`): a sampled greedy read is always asked by its own request (a dense
    pass reads the argmax only), K times with ``repeats`` K, and its prediction is the majority."""
    if scoring not in SCORINGS:
        raise FFBenchError(f"unknown scoring {scoring!r} (use choice or greedy)")
    if scoring == "choice" and backend.capabilities.chat:
        raise FFBenchError(f"{backend.provider}/{backend.model} is a chat model: log-probabilities of answers are "
                           "not available, use --scoring greedy")
    options = options or PromptOptions()
    fmt = options.format(template, backend.chat_tokenizer())
    forced = shift(rendered, fmt)  # teacher forcing: the conversation holding the whole sequence
    targets = np.concatenate([r.targets for r in rendered]) if rendered else np.zeros(0, np.int64)
    n = targets.size
    pred = np.full(n, UNKNOWN, dtype=np.int64)
    margin = np.full(n, np.nan)
    output: list = [None] * n
    truncated = np.zeros(n, dtype=bool)
    sampling = sampling or Sampling()
    answers, replies_of = None, None
    if scoring == "greedy" and sampling.sampled:
        per_read = True
    if uses_dense(backend.capabilities.dense, scoring, fmt.chat, per_read):
        results = backend.score_dense([ScoreRequest(r.text, r.spans, r.choices) for r in forced])
        logprobs = np.concatenate([s.logprobs for s in results])
        bound = np.concatenate([s.bound for s in results])
        if scoring == "choice":
            pred, margin = decide_choice(logprobs, bound, targets)
        else:
            pred = np.concatenate([s.greedy for s in results])
            if not bound.any():
                _, margin = decide_choice(logprobs, bound, targets)
            output = _dense_outputs(results, pred, rendered[0].choices if rendered else ())
    todo = np.flatnonzero(pred == UNKNOWN)
    if todo.size:
        choices = rendered[0].choices
        if scoring == "choice":
            lp = backend.score_per_read(per_read_prompts(forced, todo), choices)
            p, m = decide_choice(lp, np.zeros_like(lp, dtype=bool), targets[todo])
            pred[todo], margin[todo] = p, m
        else:
            asking = is_asking(template, backend.capabilities.chat, fmt.chat)
            asked = questions(rendered, todo, template, fmt, asking)
            backend.system_prompt, backend.reasoning_budget = options.system_prompt, options.reasoning_budget
            opened = bool(asked) and fmt.reasoning_opened(asked[0], options.end_marker)
            said, cut, texts = ask(backend, rendered, todo, asked, options.budget(choices, asking), sampling, fmt.chat,
                                   lambda reply: interpret(reply, template, choices, asking, options.end_marker, opened),
                                   targets[todo])
            if sampling.repeats == 1:
                pred[todo], truncated[todo] = said[:, 0], cut[:, 0]
                for i, j in enumerate(todo.tolist()):
                    output[j] = texts[i][0]
            else:
                maj, _ = majority(said, targets[todo])
                pred[todo] = maj
                truncated[todo] = (maj == NO_CHOICE) & cut.any(axis=1)
                answers = np.full((n, sampling.repeats), NOT_ASKED, dtype=np.int64)
                answers[todo] = said
                replies_of = [None] * n
                for i, j in enumerate(todo.tolist()):
                    output[j] = texts[i][said[i].tolist().index(maj[i])]
                    replies_of[j] = [t for t, a in zip(texts[i], said[i].tolist()) if a != NOT_ASKED]
    if (pred == UNKNOWN).any():
        raise FFBenchError("internal error: a read was left undecided")  # never silently dropped
    if scoring == "choice" and n > 1 and np.all(margin == 0):
        raise FFBenchError(f"every one of {n} reads scored by {backend.provider}/{backend.model} is an exact tie (the "
                           "answers got identical log-probabilities): the scores do not tell the answers apart, so "
                           "this is not a result; check what the model or server returns for the answers' tokens")
    per_read_mask = np.zeros(n, dtype=bool)
    per_read_mask[todo] = True
    return Outcome(np.where(pred == NO_CHOICE, -1, pred), pred == NO_CHOICE, margin, per_read_mask, output, truncated,
                   answers, replies_of)


def ask(backend: Backend, rendered: list[Rendered], reads: np.ndarray, asked: list[str], budget: int,
        sampling: Sampling, templated: bool, parse, targets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, list]:
    """Generate the replies to the ``asked`` questions of ``reads``: (answer per read and repeat,
    NO_CHOICE for none, NOT_ASKED for a repeat never asked; cut by the budget; reply texts), ``parse``
    giving (answer, cut) of a reply. With ``sampling.until`` (and the reads' ``targets``), a read
    is asked no more repeats once :func:`ffbench.sampling.settled` says so.

    A provider with a prompt cache gets a sequence's reads in prefix order (:func:`prefix_waves`)
    with the offsets its cache breakpoints go on (:func:`prefix_breaks`); a sampled read is asked
    ``sampling.repeats`` times, each request tagged with its repeat and read (:func:`read_ids`)."""
    k = sampling.repeats
    said = np.full((reads.size, k), NOT_ASKED, dtype=np.int64)
    cut = np.zeros((reads.size, k), dtype=bool)
    texts = [[None] * k for _ in range(reads.size)]
    caching = backend.capabilities.prefix_cache
    waves = prefix_waves(rendered, reads) if caching else [np.arange(reads.size)]
    breaks = None if not caching or templated else prefix_breaks(rendered, reads)
    ids = read_ids(rendered, reads) if sampling.sampled else None
    backend.sampling = sampling
    try:
        for wave in waves:  # read j of a sequence after read j-1: its prefix is cached by then
            for r in range(k):
                if sampling.until is not None and targets is not None and r:
                    wave = wave[[not settled(said[i, :r], int(targets[i]), k, sampling.until) for i in wave.tolist()]]
                    if not wave.size:
                        break
                backend.repeat = r if sampling.sampled else None  # repeat r is its own request (and cache entry)
                backend.read_ids = None if ids is None else [ids[i] for i in wave]
                backend.prefix_breaks = None if breaks is None else [breaks[i] for i in wave]
                for i, reply in zip(wave.tolist(), backend.generate([asked[i] for i in wave.tolist()], budget)):
                    said[i, r], cut[i, r] = parse(reply)
                    texts[i][r] = reply.text
    finally:
        backend.repeat, backend.prefix_breaks, backend.read_ids = None, None, None
    return said, cut, texts


def _sequences_of(rendered: list[Rendered], reads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sequence of each flat read index, each sequence's first flat read index)."""
    counts = np.array([len(r.targets) for r in rendered])
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return np.searchsorted(starts, reads, side="right") - 1, starts


def prefix_waves(rendered: list[Rendered], reads: np.ndarray) -> list[np.ndarray]:
    """Positions in ``reads`` grouped so that wave w holds each sequence's w-th asked read: sent
    wave after wave, every request of a sequence goes out after the one whose prompt its prompt
    extends has been answered, so a provider's prompt cache holds that prefix by then."""
    seq, _ = _sequences_of(rendered, reads)
    order = np.zeros(reads.size, dtype=np.int64)
    for s in np.unique(seq):
        where = np.flatnonzero(seq == s)
        order[where] = np.arange(where.size)
    return [np.flatnonzero(order == w) for w in range(int(order.max()) + 1)] if reads.size else []


def read_ids(rendered: list[Rendered], reads: np.ndarray) -> list[str]:
    """Per asked read, its identity (a digest of its whole sequence's text and its read index): a
    sampled read's request carries it, so two reads whose prompts happen to be equal (sequences
    sharing a prefix) get answers of their own rather than one shared (deduplicated, cached) answer."""
    import hashlib

    seq, starts = _sequences_of(rendered, reads)
    digests = {s: hashlib.sha256(rendered[s].text.encode()).hexdigest()[:16] for s in set(seq.tolist())}
    return [f"{digests[s]}:{j - starts[s]}" for s, j in zip(seq.tolist(), reads.tolist())]


def prefix_breaks(rendered: list[Rendered], reads: np.ndarray) -> list[list[int]]:
    """Per asked read, the character offsets in its prompt where the prompts of its sequence's
    earlier asked reads end, then its own: the boundaries a provider's cache breakpoints go on."""
    seq, starts = _sequences_of(rendered, reads)
    out, ends = [], {}
    for s, j in zip(seq.tolist(), reads.tolist()):
        mine = ends.setdefault(s, [])
        mine.append(int(rendered[s].spans[j - starts[s], 0]))
        out.append(list(mine))
    return out


def uses_dense(supports_dense: bool, scoring: str, templated: bool, per_read: bool) -> bool:
    """Whether a cell starts with one teacher-forced pass per sequence. Greedy scoring of a templated
    chat rendering asks every read as a question instead: a chat model answers in its own turn."""
    return supports_dense and not per_read and not (scoring == "greedy" and templated)


def is_asking(template: Template, is_chat: bool, templated: bool) -> bool:
    """Whether a read's generation prompt is a question (the rendering's ``ask`` appended, the reply
    parsed for an answer anywhere) rather than a base model's continuation matched at its start."""
    return bool(template.ask) or is_chat or templated


def questions(rendered: list[Rendered], reads: np.ndarray, template: Template, fmt: PromptFormat,
              asking: bool) -> list[str]:
    """The generation prompt of each read, as the backend receives it."""
    prompts = per_read_prompts(rendered, reads)
    if asking:
        prompts = [p + template.ask for p in prompts]
    return [fmt.question(p) for p in prompts] if fmt.chat else prompts


def interpret(reply: Generation, template: Template, choices: tuple[str, ...], asking: bool, end_marker: str,
              opened: bool = False) -> tuple[int, bool]:
    """(choice index or NO_CHOICE, truncated) of one generated reply.

    A question's reply is read after its reasoning (:func:`answer_after_reasoning`) and parsed with
    the rendering's answer pattern; it is truncated when it hit the token budget without naming an
    answer. A continuation must start with an answer; it is truncated only when the budget cut it
    while it was still the beginning of one.
    """
    if not asking:
        value = choice_from_continuation(reply.text, choices)
        cut = value == NO_CHOICE and reply.truncated and any(c.startswith(reply.text) for c in choices)
        return value, cut
    answer = reply.text if reply.reasoning is not None else answer_after_reasoning(reply.text, end_marker, opened)
    value = None if answer is None else template.parse_answer(answer, len(choices))
    value = NO_CHOICE if value is None else value
    return value, value == NO_CHOICE and reply.truncated


def _dense_outputs(results: list[SpanScores], pred: np.ndarray, choices: tuple[str, ...]) -> list:
    """What each read's greedy continuation said in the dense pass: the backend's decoded text, else
    the answer it named (None where neither is known; re-asked reads get their reply later)."""
    texts = [t for s in results for t in (s.text if s.text is not None else [None] * len(s.greedy))]
    return [t if t is not None else (choices[p] if p >= 0 else None) for t, p in zip(texts, pred.tolist())]
