"""Which tokens a read's answers are, in the model's own tokenization of the text around them.

One rule, lm-eval's loglikelihood convention made exact: the answer tokens of a read are the tokens
of the whole text up to and including the answer, encoded together, split where the answer begins.
When the answer's first character falls inside a token that also covers text before it (a BPE
that merges ``r0``, a GPT-2 ``Ġ0`` that carries the space before it), the split moves back to that
token's start, so every answer is scored as it tokenizes in context (``r0`` against ``r1``) with
the same context before it. An answer is never tokenized on its own: a SentencePiece tokenizer
gives a lone answer a leading ``▁`` and would score text that is not in the sequence.

Two users:

* the per-read path (:func:`per_read_inputs`): each prompt is encoded with each answer appended,
  exactly as the rule says;
* the dense pass (:func:`plan_dense`): the sequence is encoded once; the answers' tokens are taken
  from one representative read per *context class* (the answers, the few tokens before the split
  and the text between them and the answer) by encoding that representative's own prefix with each
  answer, and every read of the class is checked against its own tokens before it is trusted. A
  read whose tokens in the sequence are not one of its class's answers (the tokenizer merged the
  answer with what follows it, or its class was inconsistent) is left to the per-read path.

Encoders here are callables ``texts -> [(ids, offsets)]`` (:func:`ffbench.backends.tokenized.encode`
with offsets), so hf, vllm, native and the dry run share the rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Encoder = Callable[[list[str]], list[tuple[list[int], np.ndarray]]]
CONTEXT_TOKENS = 4  # tokens before the split that name a context class (with the text up to the answer)


@dataclass(frozen=True)
class InContext:
    """One prompt's answers in context: the context's tokens and each answer's continuation."""

    context: tuple[int, ...]
    answers: tuple[tuple[int, ...], ...]
    split: int  # character offset where the continuations begin (<= the answer's start)


def first_covering(offsets: np.ndarray, char: int) -> int:
    """Index of the first real token (non-empty offsets) that ends after ``char``: the token holding
    it or the first one after it; len(offsets) when there is none."""
    offsets = np.asarray(offsets).reshape(-1, 2)
    real = np.flatnonzero(offsets[:, 1] > offsets[:, 0])
    k = np.searchsorted(offsets[real, 1], char, side="right")
    return int(real[k]) if k < real.size else len(offsets)


def split_choices(encoded: Sequence[tuple[list[int], np.ndarray]], start: int) -> InContext | None:
    """The split of one prompt's encodings with each answer appended (``encoded[k]`` is prompt +
    answer k): at the first token that reaches past ``start`` in every encoding, moved back to
    where the encodings stop agreeing; None when an answer would be left with no token."""
    heads = [first_covering(off, start) for _, off in encoded]
    j = min(heads)
    first = list(encoded[0][0])
    for ids, _ in encoded[1:]:
        d = 0
        while d < min(j, len(ids)) and ids[d] == first[d]:
            d += 1
        j = d
    answers = tuple(tuple(int(t) for t in ids[j:]) for ids, _ in encoded)
    if any(not a for a in answers) or len(set(answers)) < len(answers):
        return None
    offsets = np.asarray(encoded[0][1]).reshape(-1, 2)
    split = int(min(offsets[j, 0], start)) if j < len(offsets) else start
    return InContext(tuple(int(t) for t in first[:j]), answers, split)


def per_read_inputs(encoder: Encoder, prompts: list[str], choices: tuple[str, ...]) -> list[InContext | None]:
    """Each prompt's context and answer continuations under the rule (one batch of encodings)."""
    texts = [p + c for p in prompts for c in choices]
    enc = encoder(texts)
    m = len(choices)
    return [split_choices(enc[i * m : (i + 1) * m], len(p)) for i, p in enumerate(prompts)]


def require_split(prompt: str, found: InContext | None, choices: tuple[str, ...]) -> InContext:
    """``found``, or one line naming the read and its tokens when no split leaves every answer a token."""
    if found is None:
        from ffbench.errors import FFBenchError

        raise FFBenchError(f"cannot score the answers {list(choices)} after {prompt[-40:]!r}: the tokenizer gives "
                           "them no tokens of their own in this context (they merge into the text before them "
                           "identically); use another rendering")
    return found


@dataclass
class DensePlan:
    """Reads of a batch of sequences grouped for the dense rules.

    ``parts`` are virtual requests ``(sequence, reads, aligned, answers)``: the reads of one
    sequence that share a context class, their token spans in the sequence (-1 where unknown) and
    the class's answer continuations. ``unknown`` counts reads left to the per-read path.
    """

    parts: list[tuple[int, np.ndarray, np.ndarray, tuple[tuple[int, ...], ...]]]
    unknown: int = 0

    def tokens(self) -> np.ndarray:
        """Every token id any class's answers are made of (the columns a dense pass keeps)."""
        found = np.array([t for *_, cids in self.parts for c in cids for t in c], dtype=np.int64)
        return np.unique(found[found >= 0])

    def positions(self, encoded: list[tuple[list[int], np.ndarray]]) -> list[np.ndarray]:
        """Per sequence, every position whose prediction the dense rules read."""
        from ffbench.backends.tokenized import needed_positions

        out = [[np.zeros(0, dtype=np.int64)] for _ in encoded]
        for i, _, aligned, _ in self.parts:
            out[i].append(needed_positions(aligned, len(encoded[i][0])))
        return [np.unique(np.concatenate(p)) for p in out]

    def score(self, encoded: list[tuple[list[int], np.ndarray]], tables: list, n_choices: list[int],
              decode: Callable[[list[int]], str]) -> list:
        """The dense rules (:func:`ffbench.backends.tokenized.batch_scores`) over every part, put
        back in each sequence's read order."""
        from ffbench.backends.base import UNKNOWN, SpanScores
        from ffbench.backends.tokenized import batch_scores

        got = batch_scores([encoded[i][0] for i, *_ in self.parts], [al for _, _, al, _ in self.parts],
                           [cids for *_, cids in self.parts], [tables[i] for i, *_ in self.parts], decode)
        sizes = [0] * len(encoded)
        for i, reads, _, _ in self.parts:
            sizes[i] += len(reads)
        out = [SpanScores(np.full((n, m), np.nan), np.full(n, UNKNOWN, dtype=np.int64),
                          np.zeros((n, m), dtype=bool), [None] * n) for n, m in zip(sizes, n_choices)]
        for (i, reads, _, _), s in zip(self.parts, got):
            o = out[i]
            o.logprobs[reads], o.greedy[reads], o.bound[reads] = s.logprobs, s.greedy, s.bound
            for r, t in zip(reads.tolist(), s.text or [None] * len(reads)):
                o.text[r] = t
        return out


def plan_dense(encoder: Encoder, texts: list[str], encoded: list[tuple[list[int], np.ndarray]],
               spans: list[np.ndarray], choices: list[tuple[str, ...]]) -> DensePlan:
    """Group every read by context class, find each class's answers from one representative read
    encoded under the rule, and check each read's own tokens against them."""
    heads: list[np.ndarray] = []
    keys: list[list] = []
    reps: dict[tuple, tuple[int, int]] = {}
    for i, ((ids, off), sp) in enumerate(zip(encoded, spans)):
        off = np.asarray(off).reshape(-1, 2)
        sp = np.asarray(sp, dtype=np.int64).reshape(-1, 2)
        real = np.flatnonzero(off[:, 1] > off[:, 0])
        k = np.searchsorted(off[real, 1], sp[:, 0], side="right")
        a = np.where(k < real.size, real[np.minimum(k, max(real.size - 1, 0))] if real.size else -1, -1)
        heads.append(a)
        row_keys = []
        for r, (at, start) in enumerate(zip(a.tolist(), sp[:, 0].tolist())):
            if at <= 0:
                row_keys.append(None)
                continue
            lo = max(0, at - CONTEXT_TOKENS)
            key = (choices[i], tuple(ids[lo:at]), texts[i][int(off[lo, 0]):start], lo == 0)
            reps.setdefault(key, (i, r))
            row_keys.append(key)
        keys.append(row_keys)
    # One batch of encodings: each representative's own prefix with each answer appended.
    order = list(reps)
    prompts = [texts[i][: int(spans[i][r][0])] for i, r in (reps[key] for key in order)]
    found: dict[tuple, tuple[tuple[int, ...], ...] | None] = {}
    if order:
        flat = [p + c for key, p in zip(order, prompts) for c in key[0]]
        enc = encoder(flat)
        lo = 0
        for key, p in zip(order, prompts):
            m = len(key[0])
            got = split_choices(enc[lo : lo + m], len(p))
            lo += m
            i, r = reps[key]
            at = int(heads[i][r])
            # The representative's own context must be the sequence's tokens before the split.
            ok = got is not None and len(got.context) == at and tuple(encoded[i][0][:at]) == got.context
            found[key] = got.answers if ok else None
    parts = []
    unknown = 0
    for i, ((ids, _), a, row_keys) in enumerate(zip(encoded, heads, keys)):
        seq = np.asarray(ids, dtype=np.int64)
        groups: dict[tuple, list[tuple[int, int, int]]] = {}
        for r, (at, key) in enumerate(zip(a.tolist(), row_keys)):
            cids = found.get(key) if key is not None else None
            end = -1
            if cids is not None:
                for c in cids:  # the answer that stands in the sequence, token for token
                    if at + len(c) <= seq.size and tuple(seq[at : at + len(c)].tolist()) == c:
                        end = at + len(c)
                        break
            if end < 0:
                unknown += 1
                groups.setdefault((), []).append((r, -1, -1))
            else:
                groups.setdefault(cids, []).append((r, at, end))
        for cids, members in groups.items():
            reads = np.array([r for r, _, _ in members], dtype=np.int64)
            aligned = np.array([[x, y] for _, x, y in members], dtype=np.int64).reshape(-1, 2)
            parts.append((i, reads, aligned, cids or tuple((-1,) for _ in choices[i])))
    return DensePlan(parts, unknown)
