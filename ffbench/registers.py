"""Flip-flops with k named registers (``--task registers``): state tracking of several variables.

A sequence is a compact string of three-character instructions ``wa1 wb0 ia1 rb0`` (written without
spaces, ``wa1wb0ia1rb0``): an operation (``w`` write, ``r`` read, ``i`` ignore), a register name
(``a``, ``b``, ... one of the first k letters, k <= :data:`MAX_REGISTERS`) and a bit. A read carries
the bit of the most recent write *to its register*; an ignore names a register and a bit and changes
nothing. A model that holds one variable answers the most recent write to any register, which is
wrong whenever the updates of several registers interleave (arXiv 2511.10457's failure).

``T`` is the length of the compact string, a multiple of 3 (T / 3 instructions). ``Registers(T, k,
p)``: the first instruction writes a register drawn uniformly; instructions 2..T/3-1 are i.i.d. from
p = (p_w, p_r, p_i) with a uniform register, except that a read names a register drawn uniformly
among those already written (a read of a register never written is never generated, and the
validator names it); the last instruction is a read of such a register. Bits after writes and
ignores are uniform. Sampling is deterministic and prefix-consistent in blocks as in
:mod:`ffbench.language`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ffbench import language
from ffbench.errors import UsageError

W, R, I, ZERO = language.W, language.R, language.I, language.ZERO
A = ord("a")
MAX_REGISTERS = 8  # names a..h: no letter of an operation among them
UNIT = 3
STREAM_TAG = 0x4E6


def check_length(length: int) -> int:
    if not isinstance(length, (int, np.integer)) or length < 6 or length % UNIT:
        raise UsageError(f"--task registers needs a length that is a multiple of 3 and >= 6 (three characters "
                         f"per instruction, e.g. 96 or 510), got {length!r}")
    return int(length)


@dataclass(frozen=True)
class Registers:
    """The distribution Registers(T, k, p) with p = (p_w, p_r, p_i), binary data."""

    length: int = 384
    registers: int = 2
    p_write: float = 0.1
    p_read: float = 0.1
    p_ignore: float = 0.8

    def __post_init__(self) -> None:
        check_length(self.length)
        if isinstance(self.registers, bool) or not (1 <= self.registers <= MAX_REGISTERS):
            raise UsageError(f"--registers must be between 1 and {MAX_REGISTERS}, got {self.registers!r}")
        probs = (self.p_write, self.p_read, self.p_ignore)
        for name, value in zip(("p_write", "p_read", "p_ignore"), probs):
            if not (0.0 <= value <= 1.0):
                raise UsageError(f"{name} must lie in [0, 1], got {value!r}")
        if abs(sum(probs) - 1.0) > 1e-9:
            raise UsageError(f"instruction probabilities must sum to 1, got {sum(probs):g}")

    @classmethod
    def from_p_ignore(cls, p_ignore: float, length: int = 384, registers: int = 2) -> Registers:
        if not (0.0 <= p_ignore <= 1.0):
            raise UsageError(f"p_ignore must lie in [0, 1], got {p_ignore!r}")
        half = (1.0 - p_ignore) / 2.0
        return cls(length, registers, half, half, p_ignore)

    @property
    def instructions(self) -> int:
        return self.length // UNIT

    def label(self) -> str:
        return f"Registers(T={self.length}, k={self.registers}, p={self.p_write:g},{self.p_read:g},{self.p_ignore:g})"


def _assemble(op: np.ndarray, reg: np.ndarray, data: np.ndarray) -> np.ndarray:
    rows, n = op.shape
    out = np.empty((rows, UNIT * n), dtype=np.uint8)
    out[:, 0::3], out[:, 1::3], out[:, 2::3] = op, reg + A, data + ZERO
    return out


def _block_rows(dist: Registers, seed: int, block: int, rows: int) -> np.ndarray:
    streams = np.random.SeedSequence([seed, block, dist.registers, STREAM_TAG]).spawn(3)
    op_rng, reg_rng, data_rng = (np.random.Generator(np.random.PCG64(s)) for s in streams)  # row-prefix consistent
    n, k = dist.instructions, dist.registers
    u = op_rng.random((rows, n))
    pick = reg_rng.random((rows, n))
    data = data_rng.integers(0, 2, size=(rows, n), dtype=np.uint8)
    op = np.where(u < dist.p_write, W, np.where(u < dist.p_write + dist.p_read, R, I)).astype(np.uint8)
    op[:, 0], op[:, -1] = W, R
    reg = np.minimum((pick * k).astype(np.int64), k - 1)
    value = np.zeros((rows, k), dtype=np.uint8)
    written = np.zeros((rows, k), dtype=bool)
    everyone = np.arange(rows)
    for t in range(n):
        is_r = op[:, t] == R
        if is_r.any():  # a read names a register among those written, chosen by its uniform
            counts = written.sum(axis=1)
            nth = np.minimum((pick[:, t] * counts).astype(np.int64), counts - 1)
            rank = np.cumsum(written, axis=1) - 1
            chosen = np.argmax(written & (rank == nth[:, None]), axis=1)
            reg[is_r, t] = chosen[is_r]
            data[is_r, t] = value[everyone[is_r], chosen[is_r]]
        is_w = op[:, t] == W
        value[everyone[is_w], reg[is_w, t]] = data[is_w, t]
        written[everyone[is_w], reg[is_w, t]] = True
    return _assemble(op, reg.astype(np.uint8), data)


def iter_sample(dist: Registers, num: int, seed: int, chunk_rows: int = 8 * language.BLOCK_ROWS) -> Iterator[np.ndarray]:
    """Yield (rows, T) uint8 chunks of ``num`` sequences (bounded memory, chunking-independent)."""
    return language.iter_blocks(lambda block, rows: _block_rows(dist, seed, block, rows), num, seed, chunk_rows)


def sample(dist: Registers, num: int, seed: int) -> np.ndarray:
    return np.concatenate(list(iter_sample(dist, num, seed)))


# ----------------------------------------------------------------------------- the machine
def _last_write(arr: np.ndarray) -> np.ndarray:
    """Per (row, slot): the slot of the most recent write to that slot's register at or before it (-1: none)."""
    op, reg = arr[:, 0::3], arr[:, 1::3].astype(np.int64) - A
    n = op.shape[1]
    out = np.full(op.shape, -1, dtype=np.int64)
    slots = np.arange(n)
    for r in np.unique(reg[(reg >= 0) & (reg < MAX_REGISTERS)]).tolist():
        mine = np.where((op == W) & (reg == r), slots, -1)
        running = np.maximum.accumulate(mine, axis=1)
        out = np.where(reg == r, running, out)
    return out


def first_violation(arr: np.ndarray, alphabet: int = 2, row_offset: int = 0) -> language.InvalidSequence | None:
    """The first broken rule (lowest row, then position), or None. Rules: length a multiple of 3;
    operations w, r, i; register names a..h; binary data; the first operation a write, the last a
    read; a read names a register written before it; a read's bit is its register's latest write's."""
    n, length = arr.shape
    if n == 0:
        return None
    if length < 6 or length % UNIT:
        return language.InvalidSequence(row_offset, length, f"length must be a multiple of 3 and >= 6 (three "
                                        f"characters per instruction), got {length}")
    op, reg, data = arr[:, 0::3], arr[:, 1::3], arr[:, 2::3]
    bad = np.zeros(arr.shape, dtype=bool)
    bad[:, 0::3] = (op != W) & (op != R) & (op != I)
    bad[:, 1::3] = (reg < A) | (reg >= A + MAX_REGISTERS)
    bad[:, 2::3] = (data < ZERO) | (data >= ZERO + 2)
    bad[:, 0] |= op[:, 0] != W
    bad[:, -3] |= op[:, -1] != R
    last = _last_write(arr)
    is_r = op == R
    bad[:, 1::3] |= is_r & (last < 0)
    value = np.take_along_axis(data, np.maximum(last, 0), axis=1)
    bad[:, 2::3] |= is_r & (last >= 0) & (data != value)
    rows = np.flatnonzero(bad.any(axis=1))
    if rows.size == 0:
        return None
    row = int(rows[0])
    pos = int(np.flatnonzero(bad[row])[0])
    return language.InvalidSequence(row + row_offset, pos, _describe(arr[row], pos, last[row]))


def _describe(seq: np.ndarray, pos: int, last: np.ndarray) -> str:
    sym, slot, part = chr(seq[pos]), pos // UNIT, pos % UNIT
    if part == 0:
        if sym not in "wri":
            return f"operation must be w, r or i, got {sym!r}"
        if pos == 0:
            return f"the first instruction must be a write, got {sym!r}"
        return f"the last instruction must be a read, got {sym!r}"
    if part == 1:
        if not (A <= seq[pos] < A + MAX_REGISTERS):
            return f"register name must be a letter in a..h, got {sym!r}"
        return f"read of register {sym!r}, which no earlier instruction writes"
    if not (ZERO <= seq[pos] < ZERO + 2):
        return f"data symbol must be a digit in 0..1, got {sym!r}"
    w = int(last[slot]) * UNIT
    return f"read 'r{chr(seq[pos - 1])}{sym}' does not match the most recent write to register " \
           f"{chr(seq[pos - 1])!r} 'w{chr(seq[w + 1])}{chr(seq[w + 2])}' at position {w}"


def validate(arr: np.ndarray, alphabet: int = 2, row_offset: int = 0) -> None:
    err = first_violation(arr, alphabet, row_offset)
    if err is not None:
        raise err


def extract_reads(arr: np.ndarray) -> language.Reads:
    """Every read. ``position``: its bit's index in the string; ``write_distance``: instructions since
    the most recent write to its register; ``evidence_distance``: since the most recent write or read
    of its register."""
    op, reg, data = arr[:, 0::3], arr[:, 1::3].astype(np.int64) - A, arr[:, 2::3]
    last = _last_write(arr)
    n = op.shape[1]
    slots = np.arange(n)
    seen = np.full(op.shape, -1, dtype=np.int64)  # most recent w or r of the read's register, before it
    for r in np.unique(reg).tolist():
        mine = np.where(((op == W) | (op == R)) & (reg == r), slots, -1)
        before = np.concatenate([np.full((op.shape[0], 1), -1), np.maximum.accumulate(mine, axis=1)[:, :-1]], axis=1)
        seen = np.where(reg == r, before, seen)
    seq_index, slot = np.nonzero(op == R)
    return language.Reads(
        seq_index=seq_index.astype(np.int64),
        read_index=language._rank_within_groups(seq_index),
        position=UNIT * slot + 2,
        target=(data[seq_index, slot] - ZERO).astype(np.int64),
        write_distance=slot - last[seq_index, slot],
        evidence_distance=slot - seen[seq_index, slot],
    )


def one_variable_predictions(arr: np.ndarray) -> np.ndarray:
    """Per read: the answer of a model that holds one variable (the most recent write to any register)."""
    op, data = arr[:, 0::3], arr[:, 2::3].astype(np.int64) - ZERO
    last_any = language.last_index(op == W)
    return np.take_along_axis(data, last_any, axis=1)[op == R]


# ----------------------------------------------------------------------------- stress: stale registers
STALE_SEED = 6000
STALE_NUM = 32


def stale_distances(length: int) -> list[int]:
    """Distances 1, 2, 4, ... below T/3 - 1 and T/3 - 1 itself (the target write is the first instruction)."""
    n = check_length(length) // UNIT
    return sorted({*(d for d in (2 ** j for j in range(20)) if d < n - 1), n - 1})


def stale_reads(length: int, registers: int, distance: int, filler: str, num: int = STALE_NUM,
                seed: int = STALE_SEED) -> np.ndarray:
    """``num`` sequences whose final read asks register ``a``, written ``distance`` instructions
    before it and never since. ``filler`` ``writes``: every instruction in between writes another
    register (round robin) with the opposite bit, so the most recent write anywhere is always
    wrong (interleaving); ``ignores``: ignores of register ``a`` with the opposite bit. Before the
    target write, writes of random registers (``a`` with the opposite bit). Answer alternates 0, 1."""
    n = check_length(length) // UNIT
    if filler not in ("writes", "ignores"):
        raise UsageError(f"filler must be writes or ignores, got {filler!r}")
    if filler == "writes" and registers < 2:
        raise UsageError("interleaved writes need --registers 2 or more")
    if distance not in stale_distances(length):
        raise UsageError(f"distance {distance} does not fit length {length}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, length, registers, distance, STREAM_TAG])))
    answer = (np.arange(num) % 2).astype(np.uint8)[:, None]
    target = n - 1 - distance
    op = np.full((num, n), W, dtype=np.uint8)
    reg = rng.integers(0, registers, size=(num, n)).astype(np.uint8)
    data = rng.integers(0, 2, size=(num, n)).astype(np.uint8)
    data[:, :target] = np.where(reg[:, :target] == 0, 1 - answer, data[:, :target])
    op[:, target], reg[:, target], data[:, target : target + 1] = W, 0, answer
    between = slice(target + 1, n - 1)
    width = n - 1 - (target + 1)
    if filler == "writes":
        reg[:, between] = (1 + np.arange(width) % (registers - 1)).astype(np.uint8)
    else:
        op[:, between], reg[:, between] = I, 0
    data[:, between] = 1 - answer
    op[:, -1], reg[:, -1], data[:, -1:] = R, 0, answer
    arr = _assemble(op, reg, data)
    validate(arr)
    return arr


def stale_suite(length: int, registers: int, num: int | None = None, seed: int = STALE_SEED):
    """Every (filler, distance) point at this length: (rows, per-row columns family/distance/placement)."""
    per = num or STALE_NUM
    fillers = ("writes", "ignores") if registers >= 2 else ("ignores",)
    arrays, columns = [], {"family": [], "distance": [], "placement": []}
    for filler in fillers:
        for d in stale_distances(length):
            arrays.append(stale_reads(length, registers, d, filler, per, seed))
            columns["family"] += ["stale_register"] * per
            columns["distance"] += [d] * per
            columns["placement"] += [filler] * per
    return np.concatenate(arrays), columns
