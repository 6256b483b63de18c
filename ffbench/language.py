"""The flip-flop language: the one module that owns its semantics.

A flip-flop sequence of even length T is the compact string ``w0i1i0r0``: instruction symbols
(``w`` write, ``r`` read, ``i`` ignore) at even positions, data symbols at odd positions. The
first instruction is ``w``, the last is ``r``, and the data after every ``r`` equals the data
after the most recent ``w`` (Liu et al., 2023, arXiv 2306.00946).

Everything here works on a 2-D ``uint8`` array of ASCII codes, one row per sequence, so that the
array *is* the file content: sampling, validation and read extraction are vectorised numpy with
no per-token Python, and converting to strings or to an Arrow column is a zero-copy view.

Sampling is deterministic for a given (T, p, num, seed, alphabet): rows are drawn in fixed blocks
of ``BLOCK_ROWS``, each block from its own ``SeedSequence([seed, block])`` streams, so any chunk
size gives the same rows and the first k rows of ``num=N`` equal ``num=k``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ffbench.errors import FFBenchError, UsageError

W, R, I = ord("w"), ord("r"), ord("i")
ZERO = ord("0")
MAX_ALPHABET = 10  # data values are the digits 0..M-1
BLOCK_ROWS = 4096


# ----------------------------------------------------------------------------- distributions
@dataclass(frozen=True)
class FFL:
    """The distribution FFL(T, p) with p = (p_w, p_r, p_i) over a data alphabet of ``alphabet`` values."""

    length: int = 512
    p_write: float = 0.1
    p_read: float = 0.1
    p_ignore: float = 0.8
    alphabet: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.length, (int, np.integer)) or self.length < 4 or self.length % 2:
            raise UsageError(f"length must be an even integer >= 4, got {self.length!r}")
        probs = (self.p_write, self.p_read, self.p_ignore)
        for name, value in zip(("p_write", "p_read", "p_ignore"), probs):
            if not (0.0 <= value <= 1.0):
                raise UsageError(f"{name} must lie in [0, 1], got {value!r}")
        if abs(sum(probs) - 1.0) > 1e-9:
            raise UsageError(
                f"instruction probabilities must sum to 1, got p = {self.p_write:g},"
                f"{self.p_read:g},{self.p_ignore:g} (sum {sum(probs):g})"
            )
        if not (2 <= self.alphabet <= MAX_ALPHABET):
            raise UsageError(f"alphabet must be between 2 and {MAX_ALPHABET}, got {self.alphabet!r}")

    @classmethod
    def from_p_ignore(cls, p_ignore: float, length: int = 512, alphabet: int = 2) -> FFL:
        """The paper's shorthand FFL(p_i): p_w = p_r = (1 - p_i) / 2."""
        if not (0.0 <= p_ignore <= 1.0):
            raise UsageError(f"p_ignore must lie in [0, 1], got {p_ignore!r}")
        half = (1.0 - p_ignore) / 2.0
        return cls(length, half, half, p_ignore, alphabet)

    @property
    def instructions(self) -> int:
        return self.length // 2

    def expected_reads(self) -> float:
        """1 + (T/2 - 2) p_r: the final read plus the i.i.d. middle instructions that are reads."""
        return 1.0 + (self.instructions - 2) * self.p_read

    def label(self) -> str:
        return f"FFL(T={self.length}, p={self.p_write:g},{self.p_read:g},{self.p_ignore:g})"


# ----------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class Suite:
    """A named evaluation set of the paper (arXiv 2306.00946, Sec. 4), T = 512 with fixed seeds."""

    name: str
    p_ignore: float
    num: int
    seed: int
    length: int = 512
    description: str = ""

    def distribution(self, length: int | None = None, alphabet: int = 2) -> FFL:
        return FFL.from_p_ignore(self.p_ignore, length or self.length, alphabet)


SUITES: dict[str, Suite] = {
    "in_dist": Suite("in_dist", 0.8, 1_000, seed=1_000, description="in-distribution FFL(0.8)"),
    "sparse": Suite("sparse", 0.98, 100_000, seed=2_000, description="sparse tail FFL(0.98)"),
    "dense": Suite("dense", 0.1, 3_000, seed=3_000, description="dense tail FFL(0.1)"),
}
SUITE_GROUPS: dict[str, tuple[str, ...]] = {"paper": ("in_dist", "sparse", "dense")}


def resolve_suites(name: str) -> list[Suite]:
    """A suite or suite group name -> the suites it stands for."""
    if name in SUITES:
        return [SUITES[name]]
    if name in SUITE_GROUPS:
        return [SUITES[n] for n in SUITE_GROUPS[name]]
    known = ", ".join([*SUITES, *SUITE_GROUPS])
    raise UsageError(f"unknown suite {name!r} (known: {known})")


# ----------------------------------------------------------------------------- sampling
_INSTRUCTION_LUT = np.array([I, R, W], dtype=np.uint8)  # (u < p_w) + (u < p_w + p_r) -> symbol


def _block_rows(dist: FFL, seed: int, block: int, rows: int) -> np.ndarray:
    """Rows of block ``block``: an independent, prefix-consistent pair of streams per block."""
    seq = np.random.SeedSequence([seed, block])
    instr_rng, data_rng = (np.random.Generator(np.random.PCG64(s)) for s in seq.spawn(2))
    n_instr, m = dist.instructions, dist.alphabet
    # One float64 uniform per middle instruction; thresholds split [0, 1) into w | r | i.
    u = instr_rng.random((rows, n_instr - 2))
    instr = np.empty((rows, n_instr), dtype=np.uint8)
    instr[:, 0], instr[:, -1] = W, R
    code = (u < dist.p_write).view(np.uint8) + (u < dist.p_write + dist.p_read).view(np.uint8)
    instr[:, 1:-1] = _INSTRUCTION_LUT[code]
    if m == 2:  # one random bit per symbol, straight from the bit stream
        raw = np.frombuffer(data_rng.bytes(-(-rows * n_instr // 8)), dtype=np.uint8)
        data = np.unpackbits(raw, count=rows * n_instr).reshape(rows, n_instr)
    else:
        data = data_rng.integers(0, m, size=(rows, n_instr), dtype=np.uint8)
    # Reads copy the most recent write. Encode each write as slot * M + value: the running
    # maximum then carries the latest write's value in its remainder, with no gather.
    key_type = np.int16 if n_instr * m <= np.iinfo(np.int16).max else np.int64
    slot_key = np.arange(n_instr, dtype=key_type) * m
    key = np.maximum.accumulate(np.where(instr == W, slot_key + data, key_type(0)), axis=1)
    value = key & 1 if m == 2 else key % m  # & avoids an integer division in the common case
    data = np.where(instr == R, value.astype(np.uint8), data)

    out = np.empty((rows, dist.length), dtype=np.uint8)
    out[:, 0::2] = instr
    out[:, 1::2] = data + ZERO
    return out


def iter_sample(dist: FFL, num: int, seed: int, chunk_rows: int = 8 * BLOCK_ROWS) -> Iterator[np.ndarray]:
    """Yield (rows, T) uint8 chunks of ``num`` sequences; memory stays bounded by ``chunk_rows``."""
    return iter_blocks(lambda block, rows: _block_rows(dist, seed, block, rows), num, seed, chunk_rows)


def iter_blocks(draw: Callable[[int, int], np.ndarray], num: int, seed: int,
                chunk_rows: int = 8 * BLOCK_ROWS) -> Iterator[np.ndarray]:
    """Chunks of ``num`` rows drawn block by block (every language's sampler: FFL, UNDO, registers).
    ``draw(block, rows)`` draws block ``block`` from its own seed, so a row never depends on how the
    rows are chunked; memory stays bounded by ``chunk_rows``. Bad ``num`` or ``seed``: UsageError."""
    _check_num(num)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"seed must be a non-negative integer, got {seed!r}")
    chunk_blocks = max(1, chunk_rows // BLOCK_ROWS)
    n_blocks = -(-num // BLOCK_ROWS)
    for first in range(0, n_blocks, chunk_blocks):
        parts = [draw(block, min(BLOCK_ROWS, num - block * BLOCK_ROWS))
                 for block in range(first, min(first + chunk_blocks, n_blocks))]
        yield parts[0] if len(parts) == 1 else np.concatenate(parts)


def sample(dist: FFL, num: int, seed: int) -> np.ndarray:
    """``num`` sequences of FFL(T, p) as a (num, T) uint8 array of ASCII codes."""
    return np.concatenate(list(iter_sample(dist, num, seed)))


def _check_num(num: int) -> None:
    if not isinstance(num, (int, np.integer)) or num <= 0:
        raise UsageError(f"num must be a positive integer, got {num!r}")


# ----------------------------------------------------------------------------- conversions
def to_array(texts: Sequence[str] | np.ndarray) -> np.ndarray:
    """Compact strings of equal length -> (N, T) uint8 array (validation is separate)."""
    if isinstance(texts, np.ndarray) and texts.dtype == np.uint8 and texts.ndim == 2:
        return texts
    if isinstance(texts, str):
        texts = [texts]
    if len(texts) == 0:
        return np.zeros((0, 0), dtype=np.uint8)
    length = len(texts[0])
    for row, t in enumerate(texts):
        if len(t) != length:
            for r in (0, row):  # stray whitespace (a space, a newline) is the likelier fault: name it
                pos = next((k for k, ch in enumerate(texts[r]) if ch in WHITESPACE), None)
                if pos is not None:
                    raise InvalidSequence(r, pos, _stray_rule(texts[r][pos]))
            raise FFBenchError(f"row {row}: length {len(t)} differs from row 0's length {length}")
    try:
        flat = "".join(texts).encode("ascii")
    except UnicodeEncodeError as exc:
        raise FFBenchError(f"non-ASCII character in flip-flop data near character {exc.start}") from None
    return np.frombuffer(flat, dtype=np.uint8).reshape(len(texts), length)


def to_strings(arr: np.ndarray) -> list[str]:
    """(N, T) uint8 array -> list of compact strings."""
    width = arr.shape[1]
    flat = np.ascontiguousarray(arr).tobytes().decode("ascii")
    return [flat[k * width : (k + 1) * width] for k in range(arr.shape[0])]


# ----------------------------------------------------------------------------- validation
class InvalidSequence(FFBenchError):
    """A sequence breaks a rule of the language; the message names row, position and rule."""

    def __init__(self, row: int, position: int, rule: str):
        self.row, self.position, self.rule = row, position, rule
        super().__init__(f"row {row}, position {position}: {rule}")


def first_violation(arr: np.ndarray, alphabet: int = MAX_ALPHABET, row_offset: int = 0) -> InvalidSequence | None:
    """The first broken rule (lowest row, then lowest position) in an (N, T) array, or None.

    Rules, in the order they are checked within a row: even length >= 4 (an odd length caused by
    stray whitespace is reported as that character at its position); instruction symbols in
    {w, r, i}; data symbols are digits below ``alphabet``; the first instruction is ``w``; the last
    is ``r``; every read's data equals the most recent write's data.
    """
    n, length = arr.shape
    if n == 0:
        return None
    if length < 4 or length % 2:
        stray = _WHITESPACE_CODES[arr]  # an odd length is often stray whitespace: name it first
        rows = np.flatnonzero(stray.any(axis=1))
        if rows.size:
            row = int(rows[0])
            pos = int(np.flatnonzero(stray[row])[0])
            return InvalidSequence(row + row_offset, pos, _stray_rule(chr(arr[row, pos])))
        return InvalidSequence(row_offset, length, f"length must be even and >= 4, got {length}")
    instr, data = arr[:, 0::2], arr[:, 1::2]
    bad = np.zeros(arr.shape, dtype=bool)
    bad[:, 0::2] = (instr != W) & (instr != R) & (instr != I)
    bad[:, 1::2] = (data < ZERO) | (data >= ZERO + alphabet)
    bad[:, 0] |= instr[:, 0] != W
    bad[:, -2] |= instr[:, -1] != R
    expected = np.take_along_axis(data, last_index(instr == W), axis=1)
    bad[:, 1::2] |= (instr == R) & (data != expected)
    rows = np.flatnonzero(bad.any(axis=1))
    if rows.size == 0:
        return None
    row = int(rows[0])
    pos = int(np.flatnonzero(bad[row])[0])
    return InvalidSequence(row + row_offset, pos, _describe(arr[row], pos, alphabet))


# Whitespace pasted into a row (a leading space, a trailing newline) makes its length odd or unequal;
# the message names the character and its position rather than the length it caused.
_CHARACTER_NAMES = {" ": "a space", "\t": "a tab", "\n": "a newline", "\r": "a carriage return",
                    "\v": "a vertical tab", "\f": "a form feed"}
WHITESPACE = "".join(_CHARACTER_NAMES)
_WHITESPACE_CODES = np.zeros(256, dtype=bool)
_WHITESPACE_CODES[np.frombuffer(WHITESPACE.encode("ascii"), dtype=np.uint8)] = True


def _stray_rule(ch: str) -> str:
    name = _CHARACTER_NAMES.get(ch)
    shown = f"{ch!r} ({name})" if name else repr(ch)
    return f"unexpected character {shown}: a flip-flop string holds only w, r, i and digits"


def _describe(seq: np.ndarray, pos: int, alphabet: int) -> str:
    sym = chr(seq[pos])
    if pos % 2 == 0:
        if sym not in "wri":
            hint = " (an UNDO flip-flop sequence? pass --task undo)" if sym == "u" else ""
            return f"instruction symbol must be w, r or i, got {sym!r}{hint}"
        if pos == 0:
            return f"the first instruction must be 'w', got {sym!r}"
        return f"the last instruction must be 'r', got {sym!r}"
    if not (ZERO <= seq[pos] < ZERO + alphabet):
        return f"data symbol must be a digit in 0..{alphabet - 1}, got {sym!r}"
    instr = seq[0::2]
    last_w = int(np.flatnonzero(instr[: pos // 2] == W)[-1]) * 2
    return (
        f"read 'r{sym}' does not match the most recent write "
        f"'w{chr(seq[last_w + 1])}' at position {last_w}"
    )


def validate(arr: np.ndarray, alphabet: int = MAX_ALPHABET, row_offset: int = 0) -> None:
    """Raise :class:`InvalidSequence` for the first broken rule."""
    err = first_violation(arr, alphabet, row_offset)
    if err is not None:
        raise err


# ----------------------------------------------------------------------------- reads
@dataclass(frozen=True)
class Reads:
    """Every read of a batch of sequences, in row-major order (sequence, then position).

    ``position`` is the character index of the read's data symbol (its answer) in the compact
    string; ``write_distance`` counts instructions since the most recent ``w``, the ``r`` itself
    included (``w0r0`` -> 1); ``evidence_distance`` counts since the most recent ``w`` or ``r``.
    """

    seq_index: np.ndarray
    read_index: np.ndarray
    position: np.ndarray
    target: np.ndarray
    write_distance: np.ndarray
    evidence_distance: np.ndarray

    def __len__(self) -> int:
        return int(self.seq_index.size)

    def counts_per_sequence(self, num: int) -> np.ndarray:
        return np.bincount(self.seq_index, minlength=num)


def extract_reads(arr: np.ndarray) -> Reads:
    """All reads of an (N, T) array of legal sequences, vectorised."""
    instr, data = arr[:, 0::2], arr[:, 1::2]
    is_w, is_r = instr == W, instr == R
    last_write = last_index(is_w)
    last_evidence = last_index(is_w | is_r)
    seq_index, slot = np.nonzero(is_r)
    # A read's own slot is evidence, so its evidence distance looks one slot back (slot >= 1:
    # slot 0 is always a write).
    return Reads(
        seq_index=seq_index.astype(np.int64),
        read_index=_rank_within_groups(seq_index),
        position=2 * slot + 1,
        target=(data[seq_index, slot] - ZERO).astype(np.int64),
        write_distance=slot - last_write[seq_index, slot],
        evidence_distance=slot - last_evidence[seq_index, slot - 1],
    )


def last_index(mask: np.ndarray) -> np.ndarray:
    """Per row, the index of the most recent True at or before each column (0 when none).

    The running maximum runs in the narrowest integer type that holds the indices: it is
    memory-bound, and int16 is 3-4x faster than int64 on a 100,000 x 256 array.
    """
    n = mask.shape[1]
    dtype = np.int16 if n <= np.iinfo(np.int16).max else np.int32
    return np.maximum.accumulate(np.where(mask, np.arange(n, dtype=dtype), dtype(0)), axis=1)


def _rank_within_groups(group: np.ndarray) -> np.ndarray:
    """0-based rank of each element within its run of equal (sorted) group ids."""
    if group.size == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    run_len = np.diff(np.r_[starts, group.size])
    return np.arange(group.size, dtype=np.int64) - np.repeat(starts, run_len)
