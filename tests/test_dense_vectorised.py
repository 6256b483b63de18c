"""Dense scoring read with array lookups gives exactly what the per-read rules give.

``tokenized.span_scores`` (and ``dense_scores``, its scalar-callback form) groups reads by the
answer standing in context and reads every log-probability with array lookups. The reference here
is the per-read loop those rules were first written as; on thousands of random spans, answer sets
(single tokens, multi-token answers sharing prefixes, answers that extend each other), exact and
bounded values, unknown positions and greedy paths that diverge anywhere, the two agree exactly:
values, bounds, greedy choices and the decoded continuation of every read.
"""

from __future__ import annotations

import numpy as np
import pytest

from ffbench.backends.base import UNKNOWN, SpanScores, choice_so_far
from ffbench.backends.tokenized import (
    LogprobTable,
    answer_tokens,
    batch_scores,
    dense_scores,
    needed_positions,
    span_scores,
)

PIECES = ["<s>", "w", "r", "i", "0", "1", " ", " 0", " 1", "o", "n", "f", " o", "\n", " on", "ff"]


def _decode(ids):
    return "".join(PIECES[i] for i in ids)


def _reference(ids, aligned, choice_ids, logprob_at, top_at, decode) -> SpanScores:
    """The per-read rules, one read at a time."""
    n, m = aligned.shape[0], len(choice_ids)
    logprobs = np.full((n, m), np.nan)
    bound = np.zeros((n, m), dtype=bool)
    greedy = np.full(n, UNKNOWN, dtype=np.int64)
    text: list = [None] * n
    names = [decode(list(c)) for c in choice_ids]
    for r, (a, b) in enumerate(aligned.tolist()):
        if a <= 0:
            continue
        in_context = tuple(ids[a:b])
        if in_context not in choice_ids:
            continue
        t = choice_ids.index(in_context)
        prefix, exact = [0.0], [True]
        for j in range(a, b):
            value, ok = logprob_at(j - 1, ids[j])
            prefix.append(prefix[-1] + value)
            exact.append(exact[-1] and ok)
        logprobs[r, t], bound[r, t] = prefix[-1], not exact[-1]
        for k, alt in enumerate(choice_ids):
            d = 0
            while d < min(len(alt), len(in_context)) and alt[d] == in_context[d]:
                d += 1
            if k != t and len(alt) == d + 1:
                value, ok = logprob_at(a - 1 + d, alt[d])
                logprobs[r, k], bound[r, k] = prefix[d] + value, not (ok and exact[d])
        produced, choice = None, UNKNOWN
        for d, tok in enumerate(in_context):
            top = top_at(a - 1 + d)
            if top < 0:
                break
            if top != tok:
                produced = in_context[:d] + (top,)
                choice = choice_so_far(decode(list(produced)), names)
                break
        else:
            produced, choice = in_context, t
        greedy[r] = choice
        if choice != UNKNOWN:
            text[r] = decode(list(produced))
    return SpanScores(logprobs, greedy, bound, text)


ANSWER_SETS = [
    ((4,), (5,)),  # single characters
    ((7,), (8,)),  # " 0" / " 1" as single tokens
    ((6, 4), (6, 5)),  # " 0" / " 1" as two tokens sharing the space
    ((12, 10), (12, 11, 11)),  # " on" / " off" in pieces: the shorter is one token past the shared prefix
    ((14,), (12, 15)),  # no shared prefix, different lengths
    ((6, 4), (6, 4, 13)),  # one answer extends the other
    ((4,), (5,), (6, 4)),  # three answers
]


def _case(rng: np.random.Generator, choice_ids):
    """A random sequence with answers planted at random spans, plus broken spans."""
    n_tok = int(rng.integers(8, 60))
    ids = rng.integers(1, len(PIECES), size=n_tok).tolist()
    spans = []
    for _ in range(int(rng.integers(0, 12))):
        kind = rng.random()
        c = choice_ids[int(rng.integers(len(choice_ids)))]
        a = int(rng.integers(0, n_tok - len(c) + 1))
        if kind < 0.7:
            ids[a : a + len(c)] = list(c)
            spans.append((a, a + len(c)))
        elif kind < 0.8:
            spans.append((-1, -1))
        else:  # whatever stands there
            spans.append((a, min(n_tok, a + int(rng.integers(1, 4)))))
    aligned = np.array(spans, dtype=np.int64).reshape(-1, 2)
    # A model: per position, values for every token, some exact, some bounds, some unknown.
    values = rng.normal(-3, 2, size=(n_tok, len(PIECES))).round(1)  # rounding makes exact ties common
    exact = rng.random((n_tok, len(PIECES))) < 0.8
    values[rng.random((n_tok, len(PIECES))) < 0.05] = np.nan
    top = rng.integers(1, len(PIECES), size=n_tok)
    follow = rng.random(n_tok) < 0.5  # often the greedy path follows the text
    top = np.where(follow, np.array(ids[1:] + [1]), top)
    top[rng.random(n_tok) < 0.05] = -1
    return ids, aligned, values, exact, top


def _same(x: SpanScores, y: SpanScores) -> None:
    np.testing.assert_array_equal(x.logprobs, y.logprobs)  # NaN where NaN, bitwise equal elsewhere
    np.testing.assert_array_equal(x.bound, y.bound)
    np.testing.assert_array_equal(x.greedy, y.greedy)
    assert x.text == y.text


@pytest.mark.parametrize("choice_ids", ANSWER_SETS)
def test_array_lookups_equal_the_per_read_rules(choice_ids):
    rng = np.random.default_rng(len(choice_ids) * 1000 + sum(map(len, choice_ids)))
    decided = unknown = diverged = 0
    for _ in range(300):
        ids, aligned, values, exact, top = _case(rng, choice_ids)
        logprob_at = lambda p, t, values=values, exact=exact: (float(values[p, t]), bool(exact[p, t]))
        top_at = lambda p, top=top: int(top[p])
        ref = _reference(ids, aligned, choice_ids, logprob_at, top_at, _decode)
        _same(dense_scores(ids, aligned, choice_ids, logprob_at, top_at, _decode), ref)
        # The same model as a table holding only the answers' token columns, at every position.
        cols = answer_tokens(choice_ids)
        table = LogprobTable(np.arange(len(ids)), cols, values[:, cols], exact[:, cols], top)
        _same(span_scores(ids, aligned, choice_ids, table.logprobs, table.tops, _decode), ref)
        decided += int((ref.greedy >= 0).sum())
        unknown += int((ref.greedy == UNKNOWN).sum())
        diverged += sum(t is not None and t not in [_decode(c) for c in choice_ids] for t in ref.text)
    # The cases exercise every branch: decided, undecided and diverging greedy paths.
    assert decided > 50 and unknown > 50 and diverged > 20


def test_table_lookups_outside_the_table_are_unknown():
    table = LogprobTable(np.array([2, 5]), np.array([4, 5]), np.array([[-1.0, -2.0], [-3.0, -4.0]]),
                         np.array([[True, False], [True, True]]), np.array([4, 7]))
    values, exact = table.logprobs(np.array([2, 2, 5, 3, 5]), np.array([4, 5, 5, 4, 9]))
    np.testing.assert_array_equal(values, [-1.0, -2.0, -4.0, np.nan, np.nan])
    np.testing.assert_array_equal(exact, [True, False, True, False, False])
    np.testing.assert_array_equal(table.tops(np.array([0, 2, 5, 6])), [-1, 4, 7, -1])
    empty = LogprobTable(np.zeros(0), np.array([4]), np.zeros((0, 1)), np.zeros((0, 1)), np.zeros(0))
    assert np.isnan(empty.logprobs(np.array([1]), np.array([4]))[0]).all()
    np.testing.assert_array_equal(empty.tops(np.array([1])), [-1])


def test_a_batch_laid_end_to_end_equals_each_sequence_on_its_own():
    """batch_scores: many sequences (two answer sets, some spans past the end) give exactly what
    each sequence gives alone; no read sees another sequence's positions."""
    rng = np.random.default_rng(7)
    for _ in range(40):
        ids, aligned, cids, tables, alone = [], [], [], [], []
        for _ in range(int(rng.integers(1, 9))):
            choice_ids = ANSWER_SETS[int(rng.integers(2))] if rng.random() < 0.8 else ANSWER_SETS[3]
            seq, al, values, exact, top = _case(rng, choice_ids)
            if rng.random() < 0.1 and len(al):  # a span reaching past the sequence: scored on its own
                al[0] = (len(seq) - 1, len(seq) + 2)
            cols = answer_tokens(choice_ids)
            keep = np.flatnonzero(rng.random(len(seq)) < 0.8)  # a table holding only some positions
            table = LogprobTable(keep, cols, values[keep][:, cols], exact[keep][:, cols], top[keep])
            ids.append(seq), aligned.append(al), cids.append(choice_ids), tables.append(table)
            alone.append(span_scores(seq, al, choice_ids, table.logprobs, table.tops, _decode))
        for got, want in zip(batch_scores(ids, aligned, cids, tables, _decode), alone):
            _same(got, want)


def test_needed_positions_cover_each_answer_and_the_token_before_it():
    def reference(aligned, n):
        ranges = [np.arange(a - 1, min(b, n)) for a, b in aligned.tolist() if a > 0]
        return np.unique(np.concatenate(ranges)) if ranges else np.zeros(0, dtype=np.int64)

    rng = np.random.default_rng(3)
    for _ in range(500):
        n = int(rng.integers(1, 40))
        a = rng.integers(-1, n + 2, size=int(rng.integers(0, 8)))
        aligned = np.stack([a, a + rng.integers(0, 4, size=a.size)], axis=1)
        got = needed_positions(aligned, n)
        np.testing.assert_array_equal(got, reference(aligned, n))
        assert got.dtype == np.int64
    np.testing.assert_array_equal(needed_positions(np.array([[3, 5], [9, 10], [-1, -1]]), 20), [2, 3, 4, 8, 9])
