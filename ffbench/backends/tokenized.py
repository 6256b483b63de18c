"""Dense scoring shared by backends that see token ids (HF, vLLM, OpenAI echo).

Given a text's token ids, their character offsets, and per position either full log-probabilities
(HF logits) or the top-k (vLLM ``prompt_logprobs``, OpenAI ``echo``), compute every span's choice
log-probabilities and greedy choice from that single pass. Exactness rules:

* the answer's tokens in context must be exactly the tokens of one choice tokenized alone (else
  the span is unknown and is re-scored per read, like lm-eval's context/continuation split);
* an alternative choice is known exactly when it differs from the target only in its last token
  (single tokens, or " 0" vs " 1" under a character tokenizer): the pass predicts that token right
  after the shared prefix. From a top-k source, a token outside the top-k gets an upper bound (the
  k-th log-probability) and is marked as a bound.

Texts are tokenized by :func:`encode`, which puts the beginning-of-sequence token in exactly once:
a chat template that writes BOS itself, read by a tokenizer that also adds it, would otherwise
give the model two.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ffbench.backends.base import UNKNOWN, SpanScores, choice_so_far

# logprob_at(position, token) -> (value, exact). ``position`` p predicts token p + 1. A non-exact
# value is an upper bound; NaN means nothing is known.
LogprobAt = Callable[[int, int], tuple[float, bool]]
TopAt = Callable[[int], int]  # the most likely token predicted at a position


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


def choice_token_ids(tokenizer, choices: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    """Token ids of each answer on its own (no special tokens), as hf and vllm both score them."""
    return tuple(tuple(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in choices)


def needed_positions(aligned: np.ndarray, n_tokens: int) -> np.ndarray:
    """Every position whose prediction a dense pass must read: the token before each answer token,
    and the answer's last token (it predicts the extra token of an alternative that extends it)."""
    ranges = [np.arange(a - 1, min(b, n_tokens)) for a, b in aligned.tolist() if a > 0]
    return np.unique(np.concatenate(ranges)) if ranges else np.zeros(0, dtype=np.int64)


def dense_scores(ids: list[int], aligned: np.ndarray, choice_ids: tuple[tuple[int, ...], ...],
                 logprob_at: LogprobAt, top_at: TopAt, decode: Callable[[list[int]], str]) -> SpanScores:
    """Scores of every span from one teacher-forced pass. ``decode`` (token ids -> text) turns the
    greedy continuation into the text a generation would have produced, which is what names its
    answer (the same rule as parsing a generated continuation), and is kept as the read's ``output``."""
    n, m = aligned.shape[0], len(choice_ids)
    logprobs = np.full((n, m), np.nan)
    bound = np.zeros((n, m), dtype=bool)
    greedy = np.full(n, UNKNOWN, dtype=np.int64)
    text: list = [None] * n
    names = [decode(list(c)) for c in choice_ids]
    for r, (a, b) in enumerate(aligned.tolist()):
        if a <= 0:  # unaligned, or the answer is the very first token (nothing predicts it)
            continue
        in_context = tuple(ids[a:b])
        if in_context not in choice_ids:
            continue
        t = choice_ids.index(in_context)
        # Running sums of the target's token log-probabilities: prefix[d] covers its first d tokens.
        prefix, exact = [0.0], [True]
        for j in range(a, b):
            value, ok = logprob_at(j - 1, ids[j])
            prefix.append(prefix[-1] + value)
            exact.append(exact[-1] and ok)
        logprobs[r, t], bound[r, t] = prefix[-1], not exact[-1]
        for k, alt in enumerate(choice_ids):
            d = _common_prefix(alt, in_context)
            if k != t and len(alt) == d + 1:  # the pass predicts alt's last token right after the shared prefix
                value, ok = logprob_at(a - 1 + d, alt[d])
                logprobs[r, k], bound[r, k] = prefix[d] + value, not (ok and exact[d])
        greedy[r], produced = _greedy_choice(in_context, a, choice_ids, top_at, decode, names)
        if greedy[r] != UNKNOWN:
            text[r] = decode(list(produced))
    return SpanScores(logprobs, greedy, bound, text)


def _greedy_choice(target: tuple[int, ...], a: int, choice_ids, top_at: TopAt, decode, names: list[str]):
    """Follow the greedy path along the target until it diverges; name the choice its text produces
    (with the tokens produced up to there), or UNKNOWN when only more generation could tell."""
    for d, tok in enumerate(target):
        top = top_at(a - 1 + d)
        if top < 0:
            return UNKNOWN, ()
        if top != tok:
            produced = target[:d] + (top,)
            return choice_so_far(decode(list(produced)), names), produced
    return choice_ids.index(target), target


def _common_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    d = 0
    while d < min(len(a), len(b)) and a[d] == b[d]:
        d += 1
    return d
