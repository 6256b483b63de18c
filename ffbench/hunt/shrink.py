"""Minimal counterexamples: a failing read shrunk to the shortest, simplest legal sequence that still fails.

Hypothesis-style greedy shrinking. The glitch is first cut right after its failing read (a causal
model answers that read from its prefix alone), so the failing read is always the last instruction.
Then, until nothing applies:

1. cut a run of equal instructions to half its length, then delete a block of instructions (sizes
   halving down to one: this removes filler, decoys, reads in between and shortens runs), keeping
   the first instruction a write;
2. turn a read before the last into an ignore, or an ignore that carries the other bit into one
   carrying the bit in force (fewer reads, fewer distractors).

After every edit the reads are repaired to copy the latest write and the sequence is validated. A
candidate is kept when the model still answers its last read wrongly (each check is one scored
read, counted by the caller against the hunt's budget), so the result is smaller in the order
(length, reads, opposite ignores) and *locally minimal*: no single deletion or flip of the move set still
fails, unless the read limit stopped it first (``minimal`` False).

:func:`contains` says whether a glitch holds a known shape (deleting some of its instructions gives
it), so a hunt shrinks only glitches of new shapes. :func:`shape` is the canonical form of a sequence (bits renamed so the first write is 0, runs of
the same instruction and bit written ``i1*14``), so near-copies that shrink alike are counted once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ffbench import language
from ffbench.hunt.families import repair

W, R, I, ZERO = language.W, language.R, language.I, language.ZERO
BATCH = 32  # at most this many candidates scored together (the first failing one in order is taken)


@dataclass
class Shrunk:
    seq: np.ndarray
    reads: int  # scored reads spent
    minimal: bool  # False when the read limit stopped the search

    @property
    def text(self) -> str:
        return language.to_strings(self.seq[None])[0]


def legal(instr: np.ndarray, data: np.ndarray) -> np.ndarray | None:
    """The sequence of these instructions with reads repaired, or None when it cannot be legal."""
    if instr.size < 2 or instr[0] != W or instr[-1] != R:
        return None
    out = np.empty(2 * instr.size, dtype=np.uint8)
    out[0::2] = instr
    out[1::2] = repair(instr[None], data[None])[0] + ZERO
    language.validate(out[None], alphabet=2)
    return out


def _split(seq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return seq[0::2].copy(), (seq[1::2] - ZERO).astype(np.uint8)


def deletions(seq: np.ndarray, size: int) -> Iterator[np.ndarray]:
    """Legal sequences with ``size`` consecutive instructions removed (never the last): blocks at
    multiples of ``size`` (a pass costs about n / size reads), every start when ``size`` is 1."""
    instr, data = _split(seq)
    n = instr.size
    for start in range(0, n - size, size):
        keep = np.r_[0:start, start + size:n]
        out = legal(instr[keep], data[keep])
        if out is not None:
            yield out


def run_cuts(seq: np.ndarray) -> Iterator[np.ndarray]:
    """Every sequence with one run of equal instructions (same kind, same bit; never the last read)
    cut to half its length, rounded down: long runs shrink in a few steps, not one deletion at a time."""
    instr, data = _split(seq)
    n = instr.size
    j = 0
    while j < n - 1:
        k = j
        while k + 1 < n - 1 and instr[k + 1] == instr[j] and data[k + 1] == data[j]:
            k += 1
        length = k - j + 1
        if length >= 2:
            keep = np.r_[0:j + length // 2, k + 1:n]
            out = legal(instr[keep], data[keep])
            if out is not None:
                yield out
        j = k + 1


def simplifications(seq: np.ndarray) -> Iterator[np.ndarray]:
    """Every sequence with one read before the last made an ignore, or one opposite-bit ignore made
    to carry the bit in force (both carry the value in force afterwards)."""
    instr, data = _split(seq)
    in_force = data[language.last_index((instr == W)[None])[0]]
    for j in np.flatnonzero(instr[:-1] == R):
        ops = instr.copy()
        ops[j] = I
        yield legal(ops, data)
    for j in np.flatnonzero((instr == I) & (data != in_force)):
        d = data.copy()
        d[j] = in_force[j]
        yield legal(instr, d)


def cut_after(seq: np.ndarray, position: int) -> np.ndarray:
    """The prefix ending at the read whose answer is at character ``position``."""
    return seq[: position + 1].copy()


class FlipFlopMoves:
    """The moves above, on the flip-flop language's two-character instructions (another task brings its
    own: :class:`ffbench.hunt.taskmap.UnitMoves`)."""

    run_cuts = staticmethod(run_cuts)
    deletions = staticmethod(deletions)
    simplifications = staticmethod(simplifications)

    @staticmethod
    def instructions(seq: np.ndarray) -> int:
        return seq.size // 2


def shrink(seq: np.ndarray, fails: Callable[[list[np.ndarray]], np.ndarray], max_reads: int,
           moves=FlipFlopMoves) -> Shrunk:
    """Shrink a legal sequence whose last read fails; ``fails`` scores the last read of each candidate
    and says which are still wrong (one read each); ``moves`` are the task's edits."""
    spent = 0
    memo: dict[bytes, bool] = {}

    def first_failing(cands: Iterator[np.ndarray]) -> np.ndarray | None:
        nonlocal spent
        batch: list[np.ndarray] = []

        def flush() -> np.ndarray | None:
            nonlocal spent
            todo = [c for c in batch if c.tobytes() not in memo]
            todo = list({c.tobytes(): c for c in todo}.values())
            todo = todo[: max(max_reads - spent, 0)]
            if todo:
                verdicts = fails(todo)
                spent += len(todo)
                for c, v in zip(todo, verdicts):
                    memo[c.tobytes()] = bool(v)
            for c in batch:
                if memo.get(c.tobytes()):
                    return c
            return None

        size = 1  # batches grow 1, 2, 4 ... BATCH while nothing fails: few wasted reads after an early hit
        for c in cands:
            batch.append(c)
            if len(batch) >= size:
                found = flush()
                if found is not None or spent >= max_reads:
                    return found
                batch = []
                size = min(2 * size, BATCH)
        return flush() if batch else None

    current = seq
    while spent < max_reads:
        progressed = False
        while spent < max_reads:
            found = first_failing(moves.run_cuts(current))
            if found is None:
                break
            current, progressed = found, True
        size = max(1, (moves.instructions(current) - 1) // 2)
        while size >= 1 and spent < max_reads:
            found = first_failing(moves.deletions(current, size))
            if found is not None:
                current, progressed = found, True
                size = min(size, max(1, (moves.instructions(current) - 1) // 2))
            else:
                size //= 2
        while spent < max_reads:
            found = first_failing(moves.simplifications(current))
            if found is None:
                break
            current, progressed = found, True
        if not progressed:
            return Shrunk(current, spent, spent < max_reads or _exhausted(current, memo, moves))
    return Shrunk(current, spent, _exhausted(current, memo, moves))


def _exhausted(seq: np.ndarray, memo: dict[bytes, bool], moves=FlipFlopMoves) -> bool:
    """Whether every single deletion and simplification of ``seq`` was checked and passes."""
    for c in list(moves.deletions(seq, 1)) + list(moves.simplifications(seq)):
        if memo.get(c.tobytes()) is not False:
            return False
    return True


def contains(big: np.ndarray, small: np.ndarray) -> bool:
    """Whether deleting instructions of ``big`` (both end in the read that fails) gives ``small``
    exactly, with its bits as they are or all flipped: then ``big`` holds that failing shape and need
    not be shrunk again. Greedy matching, so a rare containment is missed (and the glitch shrunk)."""
    bi, bd = _split(big)
    for flip in (0, 1):
        si, sd = _split(small)
        sd = sd ^ flip
        keep, j = [], 0
        for k in range(bi.size - 1):
            if j < si.size - 1 and bi[k] == si[j] and bd[k] == sd[j]:
                keep.append(k)
                j += 1
        if j < si.size - 1 or bi[-1] != si[-1]:
            continue
        keep.append(bi.size - 1)
        out = legal(bi[keep], bd[keep])
        if out is not None and np.array_equal(_split(out)[1] ^ flip, _split(small)[1]) and \
                np.array_equal(_split(out)[0], si):
            return True
    return False


def shape(seq: np.ndarray) -> str:
    """The canonical form: bits renamed so the first write carries 0, runs written ``i1*14``."""
    instr, data = _split(seq)
    flip = data[0]
    return run_length([chr(int(o)) + str(int(v ^ flip)) for o, v in zip(instr, data)])


def run_length(tokens: list[str]) -> str:
    """Instructions in run-length form: ``w0 i1*14 r0`` (one place for every task's shape names)."""
    out, j = [], 0
    while j < len(tokens):
        k = j
        while k < len(tokens) and tokens[k] == tokens[j]:
            k += 1
        out.append(tokens[j] if k - j == 1 else f"{tokens[j]}*{k - j}")
        j = k
    return " ".join(out)
