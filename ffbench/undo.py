"""The UNDO flip-flop language (Zhou, arXiv 2604.05923): flip-flops with an undo instruction.

A sequence is the compact string of :mod:`ffbench.language` with a fourth instruction ``u``:
``w1 w0 u0 r1``. The machine keeps a stack of the values of the writes not yet undone: ``w`` pushes
its value, ``u`` pops the most recent one (restoring the value before it), ``i`` does nothing, and
every ``r`` carries the value on top of the stack. The data symbol after ``u`` (like after ``i``) is
a uniform random bit that carries no meaning. The stack never empties: an undo needs at least two
values on it (the first write is never undone), so an undo with nothing to undo is never generated
and :func:`first_violation` names it with its row and position. The stack is bounded by the writes
of the sequence; nothing else bounds it.

Why a language of its own rather than FFL with a rule more: a read's answer is no longer the most
recent write's data, so a model that learned "copy the last write" fails, and so does the *toggle
heuristic* (an undo flips the current bit), which is right whenever the undone write changed the
bit and wrong otherwise. :func:`toggle_predictions` computes that heuristic's answer for every read,
so a model's errors can be compared with it; :func:`retraction_chains` builds the sequences on which
it is wrong at every depth.

``UndoFFL(T, p_w, p_r, p_i, p_u)``: instructions 2..T/2-1 are drawn i.i.d. from p, except that where
the stack holds one value (no undo possible) they are drawn from (p_w, p_r, p_i) / (1 - p_u); the
first instruction is ``w``, the last ``r``; data after ``w``, ``i`` and ``u`` are uniform bits.
Sampling is deterministic for (T, p, num, seed) on any machine and chunking, and the first k rows of
``num = N`` are the rows of ``num = k`` (blocks of :data:`ffbench.language.BLOCK_ROWS` rows, each
from its own seeded streams, as in :mod:`ffbench.language`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ffbench import language
from ffbench.errors import UsageError

U = ord("u")
W, R, I, ZERO = language.W, language.R, language.I, language.ZERO
STREAM_TAG = 0x0D0  # keeps UNDO's random streams apart from FFL's for the same seed


@dataclass(frozen=True)
class UndoFFL:
    """The distribution UNDO(T, p) with p = (p_w, p_r, p_i, p_u), binary data."""

    length: int = 512
    p_write: float = 0.1
    p_read: float = 0.1
    p_ignore: float = 0.7
    p_undo: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.length, (int, np.integer)) or self.length < 4 or self.length % 2:
            raise UsageError(f"length must be an even integer >= 4, got {self.length!r}")
        probs = self.probabilities
        for name, value in zip(("p_write", "p_read", "p_ignore", "p_undo"), probs):
            if not (0.0 <= value <= 1.0):
                raise UsageError(f"{name} must lie in [0, 1], got {value!r}")
        if abs(sum(probs) - 1.0) > 1e-9:
            raise UsageError(f"instruction probabilities must sum to 1, got p = {','.join(f'{x:g}' for x in probs)} "
                             f"(sum {sum(probs):g})")
        if self.p_undo >= 1.0:
            raise UsageError("p_undo must be below 1: an undo needs a write to undo")

    @classmethod
    def from_p_ignore(cls, p_ignore: float, length: int = 512) -> UndoFFL:
        """UNDO(p_i): p_w = p_r = p_u = (1 - p_i) / 3, the UNDO counterpart of FFL(p_i)."""
        if not (0.0 <= p_ignore <= 1.0):
            raise UsageError(f"p_ignore must lie in [0, 1], got {p_ignore!r}")
        third = (1.0 - p_ignore) / 3.0
        return cls(length, third, third, p_ignore, third)

    @property
    def probabilities(self) -> tuple[float, float, float, float]:
        return (self.p_write, self.p_read, self.p_ignore, self.p_undo)

    @property
    def instructions(self) -> int:
        return self.length // 2

    def label(self) -> str:
        return f"UNDO(T={self.length}, p={','.join(f'{x:g}' for x in self.probabilities)})"


# ----------------------------------------------------------------------------- sampling
def _block_rows(dist: UndoFFL, seed: int, block: int, rows: int) -> np.ndarray:
    seq = np.random.SeedSequence([seed, block, STREAM_TAG])
    instr_rng, data_rng = (np.random.Generator(np.random.PCG64(s)) for s in seq.spawn(2))
    n = dist.instructions
    u = instr_rng.random((rows, n))
    data = data_rng.integers(0, 2, size=(rows, n), dtype=np.uint8)
    instr = np.empty((rows, n), dtype=np.uint8)
    stack = np.zeros((rows, n), dtype=np.uint8)  # stack[row, k]: value of the k-th write not undone
    depth = np.ones(rows, dtype=np.int64)
    instr[:, 0] = W
    stack[:, 0] = data[:, 0]
    everyone = np.arange(rows)
    pw, pr, pi, pu = dist.probabilities
    for t in range(1, n):
        if t == n - 1:
            kind = np.full(rows, R, dtype=np.uint8)
        else:
            # Where no undo is possible, the uniform is squeezed onto [0, 1 - p_u): w | r | i only.
            x = np.where(depth > 1, u[:, t], u[:, t] * (1.0 - pu))
            kind = np.where(x < pw, W, np.where(x < pw + pr, R, np.where(x < pw + pr + pi, I, U))).astype(np.uint8)
        instr[:, t] = kind
        is_w, is_u, is_r = kind == W, kind == U, kind == R
        stack[everyone[is_w], depth[is_w]] = data[is_w, t]
        depth += is_w.astype(np.int64) - is_u.astype(np.int64)
        data[is_r, t] = stack[everyone[is_r], depth[is_r] - 1]
    out = np.empty((rows, dist.length), dtype=np.uint8)
    out[:, 0::2] = instr
    out[:, 1::2] = data + ZERO
    return out


def iter_sample(dist: UndoFFL, num: int, seed: int, chunk_rows: int = 8 * language.BLOCK_ROWS) -> Iterator[np.ndarray]:
    """Yield (rows, T) uint8 chunks of ``num`` sequences (bounded memory, chunking-independent)."""
    return language.iter_blocks(lambda block, rows: _block_rows(dist, seed, block, rows), num, seed, chunk_rows)


def sample(dist: UndoFFL, num: int, seed: int) -> np.ndarray:
    """``num`` sequences of UNDO(T, p) as a (num, T) uint8 array of ASCII codes."""
    return np.concatenate(list(iter_sample(dist, num, seed)))


# ----------------------------------------------------------------------------- the machine
@dataclass(frozen=True)
class Trace:
    """Per (row, instruction slot): stack depth after the slot, the slot of the write on top of the
    stack after it, and that write's value (the answer a read at this slot must carry)."""

    depth: np.ndarray
    top_slot: np.ndarray
    top_value: np.ndarray
    bad_undo: np.ndarray  # bool: an undo with nothing to undo (depth 1 before it)


def trace(arr: np.ndarray) -> Trace:
    """Run the stack machine on every row at once (one vectorised step per instruction slot).

    An illegal undo leaves the stack as it was, so later rules are still checked on the rest."""
    rows, length = arr.shape
    n = length // 2
    kind = np.int16 if n < np.iinfo(np.int16).max else np.int32  # the loop is memory-bound: keep it narrow
    instr = np.ascontiguousarray(arr[:, 0::2].T)  # slot-major, so each step reads one contiguous row
    slots = np.zeros((rows, n + 1), dtype=kind)  # slots[row, k]: slot of the k-th write on the stack
    depth_now = np.zeros(rows, dtype=kind)
    everyone = np.arange(rows)
    depth = np.zeros((n, rows), dtype=kind)
    top_slot = np.zeros((n, rows), dtype=kind)
    bad = np.zeros((n, rows), dtype=bool)
    for t in range(n):
        is_w, is_u = instr[t] == W, instr[t] == U
        slots[everyone[is_w], depth_now[is_w]] = t
        bad[t] = is_u & (depth_now <= 1)
        depth_now += is_w
        depth_now -= is_u & ~bad[t]
        depth[t] = depth_now
        top_slot[t] = slots[everyone, np.maximum(depth_now - 1, 0)]
    top_slot = top_slot.T
    top_value = np.take_along_axis(arr[:, 1::2], top_slot, axis=1).astype(np.int64) - ZERO
    return Trace(depth.T, top_slot, top_value, bad.T)


# ----------------------------------------------------------------------------- validation
def first_violation(arr: np.ndarray, alphabet: int = 2, row_offset: int = 0) -> language.InvalidSequence | None:
    """The first broken rule (lowest row, then lowest position), or None.

    Rules: even length >= 4; instruction symbols in {w, r, i, u}; data symbols binary digits; the
    first instruction ``w``, the last ``r``; an undo needs a write to undo (the first write is never
    undone); every read's data equals the value on top of the stack. ``alphabet`` is accepted for the
    shared signature; UNDO data are always binary."""
    n, length = arr.shape
    if n == 0:
        return None
    if length < 4 or length % 2:
        return language.first_violation(arr, alphabet, row_offset)  # names stray whitespace or the length
    instr, data = arr[:, 0::2], arr[:, 1::2]
    bad = np.zeros(arr.shape, dtype=bool)
    bad[:, 0::2] = (instr != W) & (instr != R) & (instr != I) & (instr != U)
    bad[:, 1::2] = (data < ZERO) | (data >= ZERO + 2)
    bad[:, 0] |= instr[:, 0] != W
    bad[:, -2] |= instr[:, -1] != R
    tr = trace(arr)
    bad[:, 0::2] |= tr.bad_undo
    bad[:, 1::2] |= (instr == R) & (data.astype(np.int64) - ZERO != tr.top_value)
    rows = np.flatnonzero(bad.any(axis=1))
    if rows.size == 0:
        return None
    row = int(rows[0])
    pos = int(np.flatnonzero(bad[row])[0])
    return language.InvalidSequence(row + row_offset, pos, _describe(arr[row], pos, tr, row))


def _describe(seq: np.ndarray, pos: int, tr: Trace, row: int) -> str:
    sym = chr(seq[pos])
    slot = pos // 2
    if pos % 2 == 0:
        if sym not in "wriu":
            return f"instruction symbol must be w, r, i or u, got {sym!r}"
        if pos == 0 and sym != "w":
            return f"the first instruction must be 'w', got {sym!r}"
        if pos == len(seq) - 2 and sym != "r":
            return f"the last instruction must be 'r', got {sym!r}"
        return "undo with nothing to undo: every earlier write but the first is already undone (the first write " \
               "is never undone)"
    if not (ZERO <= seq[pos] < ZERO + 2):
        return f"data symbol must be a digit in 0..1, got {sym!r}"
    top = int(tr.top_slot[row, slot]) * 2
    return f"read 'r{sym}' does not match the value on top of the undo stack 'w{chr(seq[top + 1])}' " \
           f"written at position {top}"


def validate(arr: np.ndarray, alphabet: int = 2, row_offset: int = 0, chunk_rows: int = language.BLOCK_ROWS) -> None:
    """Raise :class:`~ffbench.language.InvalidSequence` for the first broken rule (in row chunks:
    the stack machine's arrays stay small)."""
    for start in range(0, arr.shape[0], chunk_rows):
        err = first_violation(arr[start : start + chunk_rows], alphabet, row_offset + start)
        if err is not None:
            raise err


# ----------------------------------------------------------------------------- reads
def extract_reads(arr: np.ndarray) -> language.Reads:
    """Every read of legal UNDO sequences. ``write_distance``: instructions since the write whose
    value the read returns (the top of the stack; ``w0r0`` -> 1); ``evidence_distance``: since the
    most recent ``w``, ``r`` or ``u`` (each changes or shows the state)."""
    instr, data = arr[:, 0::2], arr[:, 1::2]
    tr = trace(arr)
    is_r = instr == R
    last_evidence = language.last_index((instr == W) | is_r | (instr == U))
    seq_index, slot = np.nonzero(is_r)
    return language.Reads(
        seq_index=seq_index.astype(np.int64),
        read_index=language._rank_within_groups(seq_index),
        position=2 * slot + 1,
        target=(data[seq_index, slot] - ZERO).astype(np.int64),
        write_distance=slot - tr.top_slot[seq_index, slot],
        evidence_distance=slot - last_evidence[seq_index, slot - 1],
    )


def toggle_predictions(arr: np.ndarray) -> np.ndarray:
    """Per read (row-major, as :func:`extract_reads`): the toggle heuristic's answer. Its state is
    the most recent write's bit, and every undo flips it; a read answers the state. It is what a
    model that keeps one bit instead of the stack answers (Zhou 2026's failure mode)."""
    instr, data = arr[:, 0::2], arr[:, 1::2].astype(np.int64) - ZERO
    is_w, is_u = instr == W, instr == U
    last_w = language.last_index(is_w)
    value = np.take_along_axis(data, last_w, axis=1)
    undos = np.cumsum(is_u, axis=1)
    flips = undos - np.take_along_axis(undos, last_w, axis=1)  # undos since the most recent write
    state = value ^ (flips & 1)
    return state[instr == R].astype(np.int64)


# ----------------------------------------------------------------------------- retraction chains
RETRACTION_SEED = 5000
RETRACTION_NUM = 32  # sequences per depth


def retraction_depths(length: int) -> list[int]:
    """Chain depths that fit T: 1, 2, 4, 8, ... with 2 depth + 2 <= T/2 (depth + 1 writes, depth
    undos, the final read)."""
    n = length // 2
    return [d for d in (2 ** k for k in range(16)) if 2 * d + 2 <= n]


def retraction_chains(length: int, depth: int, num: int = RETRACTION_NUM, seed: int = RETRACTION_SEED) -> np.ndarray:
    """``num`` sequences ending in a retraction chain of ``depth``: depth + 1 writes, depth undos,
    then the final read, which must return the chain's first write. Before the chain: a write of a
    random bit and filler ignores with random bits (no reads), so the final read is the only read.

    The bits are chosen so that the toggle heuristic is wrong on every final read: the chain's first
    bit is the opposite of (last written bit XOR depth parity). The answer alternates 0, 1, 0, ...
    over the rows. Deterministic in (T, depth, num, seed)."""
    n = length // 2
    if depth not in retraction_depths(length):
        raise UsageError(f"retraction depth {depth} does not fit length {length} (depths that fit: "
                         f"{retraction_depths(length) or 'none; use T >= 8'})")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, depth, length, STREAM_TAG])))
    bits = rng.integers(0, 2, size=(num, n), dtype=np.uint8)
    answer = (np.arange(num) % 2).astype(np.uint8)
    instr = np.full((num, n), I, dtype=np.uint8)
    data = bits.copy()
    start = n - 1 - 2 * depth - 1  # slot of the chain's first write
    instr[:, 0] = W
    instr[:, start : start + depth + 1] = W
    instr[:, start + depth + 1 : n - 1] = U
    instr[:, n - 1] = R
    last = start + depth  # slot of the chain's last write
    data[:, start] = answer
    # The toggle answers bits[last] ^ (depth & 1); make it wrong: bits[last] = answer ^ (depth & 1) ^ 1.
    if depth > 0:
        data[:, last] = answer ^ (depth & 1) ^ 1
    data[:, n - 1] = answer
    arr = np.empty((num, length), dtype=np.uint8)
    arr[:, 0::2] = instr
    arr[:, 1::2] = data + ZERO
    validate(arr)
    return arr


def retraction_suite(length: int, num: int | None = None, seed: int = RETRACTION_SEED) -> tuple[np.ndarray, list[int]]:
    """Every depth that fits T, ``num`` sequences each: (rows, depth of each row)."""
    depths = retraction_depths(length)
    if not depths:
        raise UsageError(f"no retraction chain fits length {length}: use T >= 8")
    per = num or RETRACTION_NUM
    arrays = [retraction_chains(length, d, per, seed) for d in depths]
    return np.concatenate(arrays), [d for d in depths for _ in range(per)]
