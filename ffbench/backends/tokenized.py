"""Dense scoring shared by backends that see token ids (HF, vLLM, OpenAI echo).

Given a text's token ids, their character offsets, and per position either full log-probabilities
(HF logits) or the top-k (vLLM ``prompt_logprobs``, OpenAI ``echo``), compute every span's choice
log-probabilities and greedy choice from that single pass. Exactness rules:

* the answer's tokens in context must be exactly one choice's tokens in that context (found under
  the rule of :mod:`ffbench.backends.incontext`; else the span is unknown and is re-scored per read);
* an alternative choice is known exactly when it differs from the target only in its last token
  (single tokens, or " 0" vs " 1" under a character tokenizer): the pass predicts that token right
  after the shared prefix. From a top-k source, a token outside the top-k gets an upper bound (the
  k-th log-probability) and is marked as a bound.

One implementation of these rules, :func:`span_scores`, works on arrays: backends that hold
arrays (hf, vllm, native) fill a :class:`LogprobTable` per sequence with only what the rules read
(the positions the spans need, the answers' token columns, the top token) and score a whole call
with :func:`batch_scores`, so no Python runs per read; :func:`dense_scores` feeds the same rules
from scalar callbacks (the OpenAI echo path, the dry run).

Texts are tokenized by :func:`encode`, which puts the beginning-of-sequence token in exactly once:
a chat template that writes BOS itself, read by a tokenizer that also adds it, would otherwise
give the model two.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ffbench.backends.base import UNKNOWN, SpanScores, choice_so_far

# logprob_at(position, token) -> (value, exact). ``position`` p predicts token p + 1. A non-exact
# value is an upper bound; NaN means nothing is known.
LogprobAt = Callable[[int, int], tuple[float, bool]]
TopAt = Callable[[int], int]  # the most likely token predicted at a position
# The same lookups over arrays of positions (and tokens): (values, exact) and top tokens.
LogprobsAt = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
TopsAt = Callable[[np.ndarray], np.ndarray]


def encode(tokenizer, texts: list[str], offsets: bool = False) -> list[tuple[list[int], np.ndarray | None]]:
    """Token ids (and character offsets) of each text as the model reads it, BOS exactly once.

    The tokenizer adds its special tokens as for any text; when the text itself starts with the BOS
    token (a chat template wrote it) and the tokenizer added another in front, that one is dropped.
    """
    if not texts:
        return []
    enc = tokenizer(list(texts), return_offsets_mapping=offsets)
    bos, bos_text = tokenizer.bos_token_id, tokenizer.bos_token
    out = []
    for k, text in enumerate(texts):
        ids = list(enc["input_ids"][k])
        where = np.asarray(enc["offset_mapping"][k], dtype=np.int64).reshape(-1, 2) if offsets else None
        if bos is not None and bos_text and len(ids) > 1 and ids[0] == ids[1] == bos and text.startswith(bos_text):
            ids = ids[1:]
            where = where[1:] if where is not None else None
        out.append((ids, where))
    return out


def continuation_text(tokenizer, prompt_ids: list[int], new_ids: list[int]) -> str:
    """The text ``new_ids`` add after the prompt, as it stands in the sequence.

    Decoding the new tokens alone loses what depends on what came before: a SentencePiece decoder
    strips the leading space of its first token, so a reply ``▁on`` would read ``on`` and not match
    the answer `` on``. The last few prompt tokens are decoded with the reply and then cut off.
    """
    def decode(ids):
        return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    tail = [int(t) for t in prompt_ids[-4:]]
    head, full = decode(tail), decode(tail + [int(t) for t in new_ids])
    return full[len(head):] if full.startswith(head) else decode(list(new_ids))


def anchor_token(tokenizer) -> int:
    """An ordinary token (the last of ``x``) to decode a piece of text after, as if mid-sequence."""
    cached = getattr(tokenizer, "_ffbench_anchor", None)
    if cached is None:
        cached = int(tokenizer("x", add_special_tokens=False)["input_ids"][-1])
        try:
            tokenizer._ffbench_anchor = cached
        except AttributeError:
            pass
    return cached


def needed_positions(aligned: np.ndarray, n_tokens: int) -> np.ndarray:
    """Every position whose prediction a dense pass must read: the token before each answer token,
    and the answer's last token (it predicts the extra token of an alternative that extends it)."""
    a, b = aligned[:, 0].astype(np.int64), aligned[:, 1].astype(np.int64)
    keep = a > 0
    lo, hi = a[keep] - 1, np.minimum(b[keep], n_tokens)
    counts = np.maximum(hi - lo, 0)
    if not counts.sum():
        return np.zeros(0, dtype=np.int64)
    # The ranges [lo, hi) laid end to end: each element is its range's start plus its rank in it.
    first = np.cumsum(counts) - counts
    return np.unique(np.arange(int(counts.sum()), dtype=np.int64) + np.repeat(lo - first, counts))


def dense_scores(ids: list[int], aligned: np.ndarray, choice_ids: tuple[tuple[int, ...], ...],
                 logprob_at: LogprobAt, top_at: TopAt, decode: Callable[[list[int]], str]) -> SpanScores:
    """Scores of every span from one teacher-forced pass, read through scalar callbacks (one
    position and token at a time): the rules of :func:`span_scores`, for sources that are not arrays."""

    def logprobs(positions: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pairs = [logprob_at(p, t) for p, t in zip(positions.tolist(), tokens.tolist())]
        return (np.array([v for v, _ in pairs], dtype=np.float64).reshape(-1),
                np.array([ok for _, ok in pairs], dtype=bool).reshape(-1))

    def tops(positions: np.ndarray) -> np.ndarray:
        return np.array([top_at(p) for p in positions.tolist()], dtype=np.int64).reshape(-1)

    return span_scores(ids, aligned, choice_ids, logprobs, tops, decode)


class LogprobTable:
    """What a dense pass kept of one sequence: at sorted positions, the log-probabilities of a few
    token columns (the answers' tokens), whether each is exact (else an upper bound, or NaN when
    nothing is known), and the most likely token (-1 when not known).

    Backends fill it in bulk from whatever their engine returns (whole log-softmax rows, a top-k);
    :func:`span_scores` reads it with array lookups, so no Python runs per read.
    """

    def __init__(self, positions: np.ndarray, tokens: np.ndarray, values: np.ndarray, exact: np.ndarray,
                 top: np.ndarray):
        self.positions = np.asarray(positions, dtype=np.int64)
        self.tokens = np.asarray(tokens, dtype=np.int64)
        self.values = np.asarray(values, dtype=np.float64).reshape(len(self.positions), len(self.tokens))
        self.exact = np.asarray(exact, dtype=bool).reshape(self.values.shape)
        self.top = np.asarray(top, dtype=np.int64).reshape(len(self.positions))

    def _rows(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        row = np.searchsorted(self.positions, positions)
        row = np.minimum(row, max(len(self.positions) - 1, 0))
        found = (self.positions[row] == positions) if len(self.positions) else np.zeros(len(positions), dtype=bool)
        return row, found

    def logprobs(self, positions: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(values, exact) of ``tokens`` predicted at ``positions``; NaN where the table has neither."""
        row, found = self._rows(positions)
        col = np.searchsorted(self.tokens, tokens)
        col = np.minimum(col, max(len(self.tokens) - 1, 0))
        found &= (self.tokens[col] == tokens) if len(self.tokens) else False
        values = np.full(len(positions), np.nan)
        exact = np.zeros(len(positions), dtype=bool)
        values[found], exact[found] = self.values[row[found], col[found]], self.exact[row[found], col[found]]
        return values, exact

    def tops(self, positions: np.ndarray) -> np.ndarray:
        row, found = self._rows(positions)
        return np.where(found, self.top[row] if len(self.positions) else -1, -1)


def answer_tokens(choice_ids: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """Every token id any answer is made of (sorted): the only columns a dense pass needs to keep,
    since a read's own tokens are looked up only once they are known to be an answer's."""
    return np.unique(np.array([t for c in choice_ids for t in c], dtype=np.int64))


def span_scores(ids, aligned: np.ndarray, choice_ids: tuple[tuple[int, ...], ...], logprobs: LogprobsAt,
                tops: TopsAt, decode: Callable[[list[int]], str]) -> SpanScores:
    """Scores of every span from one teacher-forced pass, read with array lookups.

    ``decode`` (token ids -> text) turns the greedy continuation into the text a generation would
    have produced, which is what names its answer (the same rule as parsing a generated
    continuation), and is kept as the read's ``output``. Reads are grouped by which answer stands in
    context, so the work per read is a few array operations; decoding runs once per distinct path.
    """
    n, m = aligned.shape[0], len(choice_ids)
    out = np.full((n, m), np.nan)
    bound = np.zeros((n, m), dtype=bool)
    greedy = np.full(n, UNKNOWN, dtype=np.int64)
    text: list = [None] * n
    if n == 0:
        return SpanScores(out, greedy, bound, text)
    seq = np.asarray(ids, dtype=np.int64).reshape(-1)
    a, b = aligned[:, 0].astype(np.int64), aligned[:, 1].astype(np.int64)
    # Which answer stands in context (the first that matches, as a tuple lookup would find it);
    # a read whose answer is the very first token has nothing predicting it and stays unknown.
    stands = np.full(n, -1, dtype=np.int64)
    length = np.maximum(np.minimum(b, seq.size) - np.minimum(a, seq.size), 0)  # of ids[a:b]
    for t in reversed(range(m)):
        c = choice_ids[t]
        match = (a > 0) & (length == len(c))
        for j, tok in enumerate(c):
            at = np.clip(a + j, 0, max(seq.size - 1, 0))
            match &= (a + j < seq.size) & (seq[at] == tok) if seq.size else False
        stands[match] = t
    names = [decode(list(c)) for c in choice_ids]
    paths: dict[tuple, tuple[int, str | None]] = {}
    for t, c in enumerate(choice_ids):
        rows = np.flatnonzero(stands == t)
        if rows.size == 0:
            continue
        start = a[rows] - 1  # position start + d predicts the answer's token d
        # Running sums of the target's token log-probabilities: prefix[:, d] covers its first d tokens.
        prefix = np.zeros((rows.size, len(c) + 1))
        exact = np.ones((rows.size, len(c) + 1), dtype=bool)
        for d, tok in enumerate(c):
            value, ok = logprobs(start + d, np.full(rows.size, tok, dtype=np.int64))
            prefix[:, d + 1], exact[:, d + 1] = prefix[:, d] + value, exact[:, d] & ok
        out[rows, t], bound[rows, t] = prefix[:, -1], ~exact[:, -1]
        for k, alt in enumerate(choice_ids):
            d = _common_prefix(alt, c)
            if k != t and len(alt) == d + 1:  # the pass predicts alt's last token right after the shared prefix
                value, ok = logprobs(start + d, np.full(rows.size, alt[d], dtype=np.int64))
                out[rows, k], bound[rows, k] = prefix[:, d] + value, ~(ok & exact[:, d])
        _greedy_paths(rows, start, t, c, tops, choice_ids, names, decode, paths, greedy, text)
    return SpanScores(out, greedy, bound, text)


def batch_scores(ids: list, aligned: list[np.ndarray], choice_ids: list[tuple[tuple[int, ...], ...]],
                 tables: list[LogprobTable], decode: Callable[[list[int]], str]) -> list[SpanScores]:
    """:func:`span_scores` of many sequences at once, each read from its own table.

    Sequences with the same answers and table columns are laid end to end (positions shifted by
    the tokens before them), so the whole batch costs a few dozen array operations rather than a
    few dozen per sequence; a read only ever looks at positions inside its own answer span, so no
    sequence sees another's. A sequence whose spans or table reach past its own tokens is scored
    on its own.
    """
    out: list[SpanScores | None] = [None] * len(ids)
    groups: dict[tuple, list[int]] = {}
    for i, (seq, al, cids, table) in enumerate(zip(ids, aligned, choice_ids, tables)):
        n = len(seq)
        inside = (al[:, 0] <= 0) | ((al[:, 0] <= n) & (al[:, 1] <= n))
        if inside.all() and (table.positions < n).all() and (table.positions >= 0).all() and all(cids):
            groups.setdefault((cids, table.tokens.tobytes()), []).append(i)
        else:
            out[i] = span_scores(seq, al, cids, table.logprobs, table.tops, decode)
    for (cids, _), members in groups.items():
        sizes = np.array([len(ids[i]) for i in members], dtype=np.int64)
        shift = np.cumsum(sizes) - sizes
        seq = np.concatenate([np.asarray(ids[i], dtype=np.int64).reshape(-1) for i in members])
        spans = np.concatenate([np.where(aligned[i][:, :1] > 0, aligned[i] + s, -1) for i, s in zip(members, shift)])
        tokens = tables[members[0]].tokens
        merged = LogprobTable(np.concatenate([tables[i].positions + s for i, s in zip(members, shift)]), tokens,
                              np.concatenate([tables[i].values for i in members]),
                              np.concatenate([tables[i].exact for i in members]),
                              np.concatenate([tables[i].top for i in members]))
        whole = span_scores(seq, spans.reshape(-1, 2), cids, merged.logprobs, merged.tops, decode)
        lo = 0
        for i in members:
            hi = lo + len(aligned[i])
            out[i] = SpanScores(whole.logprobs[lo:hi], whole.greedy[lo:hi], whole.bound[lo:hi], whole.text[lo:hi])
            lo = hi
    return out  # type: ignore[return-value]


def _greedy_paths(rows, start, t: int, target: tuple[int, ...], tops: TopsAt, choice_ids, names, decode,
                  paths: dict, greedy: np.ndarray, text: list) -> None:
    """Follow each read's greedy path along its target until it diverges; name the choice its text
    produces (keeping the tokens produced up to there, decoded), or UNKNOWN when only more
    generation could tell (or the top token is not known)."""
    pending = np.ones(rows.size, dtype=bool)
    for d, tok in enumerate(target):
        live = np.flatnonzero(pending)
        if live.size == 0:
            return
        top = tops(start[live] + d)
        pending[live[top < 0]] = False  # greedy stays UNKNOWN, nothing decoded
        left = np.flatnonzero((top >= 0) & (top != tok))
        if left.size:
            produced, which = np.unique(top[left], return_inverse=True)
            named = []
            for other in produced.tolist():  # decoded once per distinct path, not once per read
                key = (t, d, other)
                if key not in paths:
                    said = decode(list(target[:d]) + [other])
                    value = choice_so_far(said, names)
                    paths[key] = (value, said if value != UNKNOWN else None)
                named.append(paths[key])
            where = rows[live[left]]
            greedy[where] = np.array([value for value, _ in named], dtype=np.int64)[which.reshape(-1)]
            for r, k in zip(where.tolist(), which.reshape(-1).tolist()):
                text[r] = named[k][1]
            pending[live[left]] = False
    done = rows[pending]
    if done.size:
        key = (t, len(target), -1)
        if key not in paths:
            paths[key] = (choice_ids.index(target), decode(list(target)))
        greedy[done] = paths[key][0]
        for r in done.tolist():
            text[r] = paths[key][1]


def _common_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    d = 0
    while d < min(len(a), len(b)) and a[d] == b[d]:
        d += 1
    return d
