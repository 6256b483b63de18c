"""Stress families: small, deterministic grids of legal flip-flop sequences built to break a model.

I.i.d. sampling from FFL(p) almost never produces the sequences that break models which look perfect
on the i.i.d. suites: a final read preceded by 32 ignores that all carry the *other* bit has
probability 2^-32 per stretch. Each family here builds one such stress on purpose, with parameters a
person can read, so a model's result is a *profile* (where it breaks) rather than one rate.

Families (``FAMILIES``; parameters in order, the last one is the axis a tolerance varies):

``distractor_run`` (density, write_at, k)
    k ignores right before the final read carry the opposite bit of the decisive write. At
    ``density`` 1.0 every one of them does; at 0.5 exactly ceil(k / 2) of them, at random places,
    do and the rest carry random bits. ``write_at`` ``start``: the decisive write is the first
    instruction and the stretch up to the run is filler ignores with random bits (no other write or
    read; the filler ignore just before the run carries the written bit, so a density-1.0 run is
    exactly k long). ``write_at`` ``adjacent``: the decisive write comes right before the run, k + 1
    instructions before the read; when there is room before it, the sequence opens with a stale
    write of the opposite bit followed by random filler ignores. k runs over the log grid 1, 2, 4,
    8, 12, 16, 24, 32, 48, ... below T/2 - 2, and T/2 - 2 itself (the run fills the sequence; the two
    ``write_at`` values then build the same sequences). One read per sequence.
``decoy_writes`` (placement, decoys)
    m writes of the opposite bit among random filler ignores, then the decisive write, then a run of
    (T/2 - 2) // 2 ignores all carrying the opposite bit, then the final read. The first
    instruction is always a decoy; the other m - 1 are at random places (``placement`` ``spread``)
    or are the m - 1 instructions right before the decisive write (``adjacent``). m in 1, 2, 4, 8,
    16 while the decoys fit before the decisive write. One read per sequence.
``write_distance`` (distance)
    the decisive write d instructions before the final read (its write distance is d), only random
    ignores in between. When d < T/2 - 1 the sequence opens with a stale write of the opposite bit
    and random filler ignores. d runs over the log grid below T/2 - 1 and T/2 - 1 itself (the
    decisive write is the first instruction and the only write). One read per sequence.
``dense_interference`` (gap)
    a write every ``gap`` instructions with alternating values; between two writes, one read at a
    random place and ignores that all carry the opposite of the current value (the value the
    previous write held). The last block's read is the final read. gap in 2, 4, 8, 16 while at least
    three writes fit; (T/2 - 2) // gap + 1 reads per sequence, and enough sequences for about
    ``DENSE_READS`` reads per point (between 2 and ``NUM``), except at gap 2, which has exactly two
    distinct sequences (w0r0w1r1... and w1r1w0r0...) and holds just those.

``run_blocks`` (k)
    blocks of a write, k ignores all carrying the opposite bit, and a read, tiling the sequence: the
    first block opens it (its write is the first instruction, its read at slot k + 1), the last
    ends it, n // (k + 2) blocks with the spare slots spread as random filler ignores between them.
    Block j's bit is the row's decisive bit flipped j times (so each run repeats the value read just
    before). Every read is scored, so one point reads early, middle and late in the sequence. k runs
    over the fine grid 1, 2, 4, 6, ..., 16, 20, 24, 28, 32, 40, ... below T/4 - 2 and T/4 - 2 itself
    (at least two blocks); about ``MULTI_READS`` reads per point from at least ``FIRST_READS``
    sequences.
``reads_in_run`` (gap)
    one decisive write, then ignores all carrying the opposite bit with a read after every ``gap`` of
    them, the last read at the last slot: (T/2 - 1) // (gap + 1) reads, each with exactly ``gap``
    opposite ignores since the previous read (or the write) and j x gap since the write. When the
    reads do not fill the sequence, it opens with a stale write of the opposite bit and random
    filler. gap on the fine grid while at least two reads fit; about ``MULTI_READS`` reads per point.
``decoy_run`` (decoys, run)
    m writes of the opposite bit (the first instruction and the m - 1 instructions right before the
    decisive write, random filler ignores between), the decisive write, ``run`` ignores all carrying
    the opposite bit, the final read. m in 2, 10; run on the log grid up to T/2 - 2 - m. One read per
    sequence.

In every family the only evidence for the final read's answer is the decisive write, and the
decisive bit alternates over the rows of a point (0, 1, 0, ...) so each point asks for both answers
equally often. Intervals treat reads as independent; a point whose structure leaves few distinct
sequences (a density-1.0 run that fills the sequence, dense gap 2, run_blocks and reads_in_run when
no filler is needed: their reads depend only on the decisive bit) repeats them, and its interval
then describes the grid rather than a wider population.

Determinism: the rows of a point depend only on (family, parameters, T, seed): they come from
``SeedSequence([seed, crc32(point id), T])``, each row drawing a fixed number of uniforms in row
order, so the first r rows of a point with ``num = N`` are the rows with ``num = r``, on any machine.
Points that do not fit a length are left out of ``grid(length)``; ``MIN_LENGTH`` is the smallest T
at which every family has a point.

The API the rest of ffbench calls:

- ``FAMILIES``: name -> :class:`Family` (``.name``, ``.description``, ``.parameters``, ``.axis``,
  ``.harder``).
- ``grid(length, seed=STRESS_SEED, num=None) -> list[Point]``: the preset's points for one T, in a
  fixed order; ``num`` overrides every point's number of sequences.
- ``sample_point(point, length) -> np.ndarray``: (num, T) uint8, the language's array layout,
  validated.
- ``iter_suite(length, ...)`` yields (point, array); ``sample_suite(length, ...) -> (array,
  columns)`` concatenates them with per-row columns ``COLUMNS``: ``family``, ``point`` (the id
  string, e.g. ``distractor_run(density=1.0,write_at=start,k=16)``) and one column per parameter
  of any family (``None`` where the row's family lacks it).
- ``reads_per_sequence(point, length)``: the exact number of reads each sequence of a point holds.
- ``parse_point(id) -> (family, Params)``, ``count_outcomes(point_ids, correct) -> list[Outcome]``
  (reads and errors per point from per-read verdicts; with the reads' positions and T, also where the
  reads were), ``tolerance(outcomes) -> Tolerance`` for one family and fixed parameters along the
  axis, ``profile(outcomes) -> list[Tolerance]`` for all. A tolerance line states its region (T, the
  positions of its reads and their thirds of the sequence) and is the minimum over positions.
- ``check_line(tolerance, reads) -> LineCheck``: the reads (dicts: ``family``, the family's
  parameters, ``T``, ``position``, ``wrong``) that contradict a tolerance line.
- ``descriptor_region(family, fixed, length) -> dict``: a line's region in terms of the read
  descriptors (``axis`` and ``where`` conditions), so the hunt's map can test any read for it; or
  ``unchecked`` with the reason (dense_interference, density-0.5 distractor runs).
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ffbench import language
from ffbench.errors import FFBenchError, UsageError
from ffbench.metrics import clopper_pearson, zero_error_bound

STRESS_SEED = 4000
MIN_LENGTH = 12
NUM = 32  # sequences per point
DENSE_READS = 256  # dense_interference points hold enough sequences for about this many reads
MULTI_READS = 128  # run_blocks and reads_in_run points: about this many reads ...
FIRST_READS = 4  # ... and run_blocks points at least this many sequences (a block at the start asked 4 times)

W, R, I, ZERO = language.W, language.R, language.I, language.ZERO


# ----------------------------------------------------------------------------- parameters
class Params(Mapping):
    """An immutable, hashable, ordered mapping of parameter names to readable values."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping | Iterable[tuple[str, Any]] = ()):
        self._items = tuple(items.items() if isinstance(items, Mapping) else items)

    def __getitem__(self, key: str) -> Any:
        for name, value in self._items:
            if name == key:
                return value
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and list(self.items()) == list(other.items())

    def __reduce__(self):
        return (Params, (self._items,))

    def __repr__(self) -> str:
        return f"Params({', '.join(f'{k}={v!r}' for k, v in self._items)})"


def _fmt(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _log_grid(limit: int) -> list[int]:
    """1, 2, 4, 8, 12, 16, 24, 32, 48, ... below ``limit``, then ``limit`` itself."""
    values, j = [1, 2, 4], 3
    while True:
        values += [2**j, 3 * 2 ** (j - 1)]
        if 2**j >= limit:
            break
        j += 1
    return [v for v in values if v < limit] + [limit]


def _ranks(keys: np.ndarray) -> np.ndarray:
    """Per row, the rank of each key (0 = smallest): picks random places from uniforms alone."""
    return np.argsort(np.argsort(keys, axis=1, kind="stable"), axis=1, kind="stable")


# ----------------------------------------------------------------------------- families
@dataclass(frozen=True)
class Family:
    """A stress family. Subclasses say which points fit a length and how to build their rows.

    ``parameters`` are in order and typed by ``types``; the last one is the ``axis`` a tolerance
    varies, and ``harder`` says which way along it the stress grows (``larger`` or ``smaller``).
    """

    name: str
    description: str
    parameters: tuple[str, ...]
    types: tuple[type, ...]
    harder: str = "larger"

    @property
    def axis(self) -> str:
        return self.parameters[-1]

    def points(self, length: int) -> list[Params]:
        raise NotImplementedError

    def num(self, params: Params, length: int) -> int:
        return NUM

    def reads_per_sequence(self, params: Params, length: int) -> int:
        return 1

    def build(self, params: Params, n: int, u: np.ndarray, bit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(instructions, data values) of shape (rows, n) from uniforms ``u`` (rows, 3, n) and the
        decisive bits ``bit`` (rows, 1). ``u[:, 0]`` gives random data bits, ``u[:, 1]`` random
        places, ``u[:, 2]`` anything else."""
        raise NotImplementedError

    def parse(self, name: str, text: str) -> Any:
        kind = self.types[self.parameters.index(name)]
        return kind(text)


def _blank(u: np.ndarray, bit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every slot an ignore with a random bit; the final slot the read of ``bit``."""
    rows, _, n = u.shape
    instr = np.full((rows, n), I, dtype=np.uint8)
    data = (u[:, 0] < 0.5).astype(np.uint8)
    instr[:, -1] = R
    data[:, -1:] = bit
    return instr, data


def _stale_write(instr: np.ndarray, data: np.ndarray, decisive_slot: int, bit: np.ndarray) -> None:
    """Open with a write of the opposite bit when the decisive write is not the first instruction."""
    if decisive_slot > 0:
        instr[:, 0] = W
        data[:, :1] = 1 - bit


class DistractorRun(Family):
    def points(self, length: int) -> list[Params]:
        n = length // 2
        return [Params((("density", d), ("write_at", w), ("k", k)))
                for d in (1.0, 0.5) for w in ("start", "adjacent") for k in _log_grid(n - 2)]

    def build(self, params, n, u, bit):
        k, density = params["k"], params["density"]
        instr, data = _blank(u, bit)
        first = n - 1 - k  # first slot of the run
        if params["write_at"] == "start":
            instr[:, 0] = W
            data[:, :1] = bit
            if first - 1 >= 1:
                data[:, first - 1 : first] = bit  # the run starts exactly k back
        else:
            instr[:, first - 1] = W
            data[:, first - 1 : first] = bit
            _stale_write(instr, data, first - 1, bit)
        run = slice(first, n - 1)
        forced = math.ceil(density * k - 1e-9)
        opposite = np.broadcast_to(1 - bit, (bit.shape[0], k))
        if forced >= k:
            data[:, run] = opposite
        else:
            data[:, run] = np.where(_ranks(u[:, 1, run]) < forced, opposite, data[:, run])
        return instr, data


class DecoyWrites(Family):
    @staticmethod
    def _layout(n: int) -> tuple[int, int]:
        run = (n - 2) // 2
        return n - 2 - run, run  # (decisive slot, run length)

    def points(self, length: int) -> list[Params]:
        slot, _ = self._layout(length // 2)
        return [Params((("placement", p), ("decoys", m)))
                for p in ("spread", "adjacent") for m in (1, 2, 4, 8, 16) if m <= slot]

    def build(self, params, n, u, bit):
        m = params["decoys"]
        slot, _ = self._layout(n)
        instr, data = _blank(u, bit)
        instr[:, slot] = W
        data[:, slot : slot + 1] = bit
        data[:, slot + 1 : n - 1] = 1 - bit
        instr[:, 0] = W
        data[:, :1] = 1 - bit
        if m > 1:
            if params["placement"] == "spread":
                chosen = _ranks(u[:, 1, 1:slot]) < m - 1
            else:
                chosen = np.broadcast_to(np.arange(1, slot) >= slot - (m - 1), (bit.shape[0], slot - 1))
            instr[:, 1:slot] = np.where(chosen, W, I)
            data[:, 1:slot] = np.where(chosen, 1 - bit, data[:, 1:slot])
        return instr, data


class WriteDistance(Family):
    def points(self, length: int) -> list[Params]:
        return [Params((("distance", d),)) for d in _log_grid(length // 2 - 1)]

    def build(self, params, n, u, bit):
        slot = n - 1 - params["distance"]
        instr, data = _blank(u, bit)
        instr[:, slot] = W
        data[:, slot : slot + 1] = bit
        _stale_write(instr, data, slot, bit)
        return instr, data


class DenseInterference(Family):
    def points(self, length: int) -> list[Params]:
        n = length // 2
        return [Params((("gap", g),)) for g in (2, 4, 8, 16) if (n - 2) // g + 1 >= 3]

    def reads_per_sequence(self, params, length):
        return (length // 2 - 2) // params["gap"] + 1

    def num(self, params, length):
        if params["gap"] == 2:
            return 2  # the only two distinct sequences
        per = -(-DENSE_READS // self.reads_per_sequence(params, length))
        return min(NUM, max(2, per + per % 2))

    def build(self, params, n, u, bit):
        g = params["gap"]
        rows = u.shape[0]
        writes = (n - 2) // g + 1
        slots = np.arange(n)
        block = np.minimum(slots // g, writes - 1)
        value = bit ^ (np.arange(writes) % 2).astype(np.uint8)  # (rows, writes): alternating values
        current = value[:, block]
        instr = np.where((slots % g == 0) & (slots <= n - 2), W, I).astype(np.uint8)
        instr = np.repeat(instr[None, :], rows, axis=0)
        read_slot = slots[: writes - 1] * g + 1 + np.floor(u[:, 2, : writes - 1] * (g - 1)).astype(np.int64)
        np.put_along_axis(instr, read_slot, R, axis=1)
        instr[:, -1] = R
        data = np.where(instr == I, 1 - current, current).astype(np.uint8)
        return instr, data


def _fine_grid(limit: int) -> list[int]:
    """1, 2, 4, 6, ..., 16, then four steps per octave (20, 24, 28, 32, 40, ...) below ``limit``, then
    ``limit``: fine enough to place a threshold such as 14 or 36 opposite ignores."""
    values, octave = [1, 2, *range(4, 16, 2)], 16
    while octave < limit:
        values += [octave + j * octave // 4 for j in range(4)]
        octave *= 2
    return [v for v in values if v < limit] + [limit]


def _budget_num(per_sequence: int, least: int = 2) -> int:
    """Sequences for about ``MULTI_READS`` reads at ``per_sequence`` reads each: even, between
    ``least`` and ``NUM``."""
    per = -(-MULTI_READS // per_sequence)
    return min(NUM, max(least, per + per % 2))


class RunBlocks(Family):
    """Blocks (write, k opposite-bit ignores, read) tiling the sequence from its first instruction."""

    @staticmethod
    def _blocks(n: int, k: int) -> list[int]:
        """The first slot of each block: ``n // (k + 2)`` blocks, the first at slot 0, the last
        ending at the final slot, the spare slots spread as evenly as possible over the gaps."""
        b = n // (k + 2)
        spare = n - b * (k + 2)
        starts, slot = [], 0
        for j in range(b):
            starts.append(slot)
            slot += k + 2 + (spare // (b - 1) + (j < spare % (b - 1)) if j < b - 1 else 0)
        return starts

    def points(self, length: int) -> list[Params]:
        return [Params((("k", k),)) for k in _fine_grid(length // 2 // 2 - 2)]

    def reads_per_sequence(self, params, length):
        return (length // 2) // (params["k"] + 2)

    def num(self, params, length):
        return _budget_num(self.reads_per_sequence(params, length), FIRST_READS)

    def build(self, params, n, u, bit):
        k = params["k"]
        rows = bit.shape[0]
        instr = np.full((rows, n), I, dtype=np.uint8)
        data = (u[:, 0] < 0.5).astype(np.uint8)
        for j, start in enumerate(self._blocks(n, k)):
            b = bit[:, 0] ^ (j % 2)
            instr[:, start], data[:, start] = W, b
            data[:, start + 1 : start + 1 + k] = (1 - b)[:, None]
            instr[:, start + 1 + k], data[:, start + 1 + k] = R, b
        return instr, data


class ReadsInRun(Family):
    """One decisive write, then a run of opposite-bit ignores with a read after every ``gap`` of them."""

    def points(self, length: int) -> list[Params]:
        return [Params((("gap", g),)) for g in _fine_grid((length // 2 - 1) // 2 - 1)]

    def reads_per_sequence(self, params, length):
        return (length // 2 - 1) // (params["gap"] + 1)

    def num(self, params, length):
        return _budget_num(self.reads_per_sequence(params, length))

    def build(self, params, n, u, bit):
        g = params["gap"]
        m = (n - 1) // (g + 1)
        slot = n - 1 - m * (g + 1)  # the decisive write
        instr, data = _blank(u, bit)
        instr[:, slot] = W
        data[:, slot : slot + 1] = bit
        _stale_write(instr, data, slot, bit)
        data[:, slot + 1 :] = np.where(np.arange(slot + 1, n) % (g + 1) == (n - 1) % (g + 1), bit, 1 - bit)
        instr[:, slot + 1 :][:, (np.arange(slot + 1, n) - slot) % (g + 1) == 0] = R
        return instr, data


class DecoyRun(Family):
    """m opposite decoy writes right before the decisive write, then an opposite-bit run of a given length."""

    DECOYS = (2, 10)

    def points(self, length: int) -> list[Params]:
        n = length // 2
        return [Params((("decoys", m), ("run", r))) for m in self.DECOYS if m + 3 <= n
                for r in _log_grid(n - 2 - m)]

    def build(self, params, n, u, bit):
        m, run = params["decoys"], params["run"]
        slot = n - 2 - run  # the decisive write
        instr, data = _blank(u, bit)
        instr[:, slot] = W
        data[:, slot : slot + 1] = bit
        data[:, slot + 1 : n - 1] = 1 - bit
        decoys = np.r_[0, slot - (m - 1) : slot]
        instr[:, decoys] = W
        data[:, decoys] = 1 - bit
        return instr, data


FAMILIES: dict[str, Family] = {f.name: f for f in (
    DistractorRun("distractor_run", "k ignores carrying the opposite bit right before the final read",
                  ("density", "write_at", "k"), (float, str, int)),
    DecoyWrites("decoy_writes", "m writes of the opposite bit, the decisive write, a long opposite-bit run",
                ("placement", "decoys"), (str, int)),
    WriteDistance("write_distance", "one decisive write d instructions before the read, random ignores between",
                  ("distance",), (int,)),
    DenseInterference("dense_interference", "a write every gap instructions, alternating values, one read per gap",
                      ("gap",), (int,), harder="smaller"),
    RunBlocks("run_blocks", "blocks of a write, k ignores carrying the opposite bit and a read, tiling the sequence",
              ("k",), (int,)),
    ReadsInRun("reads_in_run", "one write, then opposite-bit ignores with a read after every gap of them",
               ("gap",), (int,)),
    DecoyRun("decoy_run", "m opposite writes right before the decisive write, then an opposite-bit run of run ignores",
             ("decoys", "run"), (int, int)),
)}

PARAMETERS: tuple[str, ...] = tuple(dict.fromkeys(p for f in FAMILIES.values() for p in f.parameters))
COLUMNS: tuple[str, ...] = ("family", "point", *PARAMETERS)


def parameter_type(name: str) -> type:
    """The Python type of a parameter (each parameter name has one type across families)."""
    return next(f.types[f.parameters.index(name)] for f in FAMILIES.values() if name in f.parameters)


# ----------------------------------------------------------------------------- points
@dataclass(frozen=True)
class Point:
    """One cell of the grid: ``num`` sequences of ``family`` at ``params``, drawn from ``seed``."""

    family: str
    params: Params
    num: int
    seed: int = STRESS_SEED

    @property
    def id(self) -> str:
        return f"{self.family}({','.join(f'{k}={_fmt(v)}' for k, v in self.params.items())})"


_POINT_ID = re.compile(r"^(\w+)\((.*)\)$")


def parse_point(point_id: str) -> tuple[str, Params]:
    """``distractor_run(density=1.0,write_at=start,k=16)`` -> (family, typed parameters)."""
    m = _POINT_ID.match(point_id)
    if not m or m.group(1) not in FAMILIES:
        raise FFBenchError(f"not a stress point id: {point_id!r}")
    family = FAMILIES[m.group(1)]
    items = [part.split("=", 1) for part in m.group(2).split(",")] if m.group(2) else []
    if [p[0] for p in items] != list(family.parameters) or any(len(p) != 2 for p in items):
        raise FFBenchError(f"stress point {point_id!r}: expected parameters {', '.join(family.parameters)}")
    try:
        return family.name, Params((name, family.parse(name, text)) for name, text in items)
    except ValueError:
        raise FFBenchError(f"stress point {point_id!r}: a parameter value has the wrong type") from None


def _check_length(length: int) -> int:
    if not isinstance(length, (int, np.integer)) or length < MIN_LENGTH or length % 2:
        raise UsageError(f"stress suites need an even length >= {MIN_LENGTH}, got {length!r}")
    return int(length)


def grid(length: int, seed: int = STRESS_SEED, num: int | None = None) -> list[Point]:
    """Every point that fits length T, family by family, the axis varying fastest."""
    length = _check_length(length)
    if num is not None and (not isinstance(num, (int, np.integer)) or num <= 0):
        raise UsageError(f"num must be a positive integer, got {num!r}")
    return [Point(f.name, p, int(num) if num else f.num(p, length), int(seed))
            for f in FAMILIES.values() for p in f.points(length)]


def reads_per_sequence(point: Point, length: int) -> int:
    return FAMILIES[point.family].reads_per_sequence(point.params, length)


def sample_point(point: Point, length: int) -> np.ndarray:
    """The point's ``num`` sequences at length T as a validated (num, T) uint8 array."""
    length = _check_length(length)
    family = FAMILIES.get(point.family)
    if family is None:
        raise UsageError(f"unknown stress family {point.family!r} (known: {', '.join(FAMILIES)})")
    if point.params not in family.points(length):
        raise UsageError(f"stress point {point.id} does not fit length {length}")
    n = length // 2
    entropy = np.random.SeedSequence([int(point.seed), zlib.crc32(point.id.encode()), length])
    rng = np.random.Generator(np.random.PCG64(entropy))
    u = rng.random((point.num, 3 * n)).reshape(point.num, 3, n)
    bit = (np.arange(point.num) % 2).astype(np.uint8)[:, None]
    instr, data = family.build(point.params, n, u, bit)
    arr = np.empty((point.num, length), dtype=np.uint8)
    arr[:, 0::2] = instr
    arr[:, 1::2] = data + ZERO
    language.validate(arr, alphabet=2)
    return arr


def iter_suite(length: int, seed: int = STRESS_SEED, num: int | None = None) -> Iterator[tuple[Point, np.ndarray]]:
    """(point, rows) for every point of ``grid(length)``, in grid order (bounded memory)."""
    for point in grid(length, seed, num):
        yield point, sample_point(point, length)


def point_columns(point: Point, rows: int) -> dict[str, list]:
    """The per-row columns ``COLUMNS`` for ``rows`` rows of one point."""
    cols: dict[str, list] = {"family": [point.family] * rows, "point": [point.id] * rows}
    for name in PARAMETERS:
        cols[name] = [point.params.get(name)] * rows
    return cols


def arrow_columns(columns: dict[str, list]) -> dict:
    """``COLUMNS`` as typed pyarrow arrays (a parameter a family lacks is null, but keeps its type)."""
    import pyarrow as pa

    types = {str: pa.string(), int: pa.int64(), float: pa.float64()}
    return {name: pa.array(columns[name], pa.string() if name in ("family", "point") else
                           types[parameter_type(name)]) for name in COLUMNS if name in columns}


def sample_suite(length: int, seed: int = STRESS_SEED, num: int | None = None) -> tuple[np.ndarray, dict[str, list]]:
    """The whole stress preset at length T: (rows, T) uint8 and the per-row ``COLUMNS``."""
    arrays, columns = [], {name: [] for name in COLUMNS}
    for point, arr in iter_suite(length, seed, num):
        arrays.append(arr)
        for name, values in point_columns(point, arr.shape[0]).items():
            columns[name] += values
    return np.concatenate(arrays), columns


# ----------------------------------------------------------------------------- tolerance
THIRDS = ("early", "middle", "late")


def third_of(position: int, length: int) -> str:
    """Where a read sits: ``early``, ``middle`` or ``late`` third of the sequence (by its instruction
    slot; ``position`` is the answer digit's index in the compact string, as samples' ``position``)."""
    slot, n = (int(position) - 1) // 2, int(length) // 2
    return THIRDS[0] if 3 * slot < n else THIRDS[1] if 3 * slot < 2 * n else THIRDS[2]


@dataclass(frozen=True)
class Outcome:
    """Reads and errors of one point; with the length, where its reads were (``span``: the first and
    last answer-digit position) and reads and errors per third of the sequence (``by_third``). Of a
    sampled run: its answers and wrong answers (``unit`` "answers"), with the cluster-robust interval
    of its per-read error probability as ``ci95``."""

    family: str
    params: Params
    reads: int
    errors: int
    length: int | None = None
    span: tuple[int, int] | None = None
    by_third: tuple[tuple[str, int, int], ...] = ()
    unit: str = "reads"
    ci95: tuple[float, float] | None = None  # None: the exact Clopper-Pearson interval of errors in reads


def count_outcomes(point_ids: Sequence[str], correct: Sequence[bool], positions: Sequence[int] | None = None,
                   length: int | None = None) -> list[Outcome]:
    """Per point (in order of first appearance), reads and errors from per-read verdicts; with the
    reads' ``positions`` and the sequences' ``length``, also where the reads were."""
    ids = np.asarray(point_ids, dtype=object)
    ok = np.asarray(correct, dtype=bool)
    if ids.shape != ok.shape:
        raise FFBenchError(f"{ids.size} point ids but {ok.size} verdicts")
    if positions is not None:
        pos = np.asarray(positions, dtype=np.int64)
        if pos.shape != ok.shape or length is None:
            raise FFBenchError("positions need one entry per verdict and the sequences' length")
        third = np.array([THIRDS.index(third_of(p, length)) for p in pos], dtype=np.int64)
    names, first, inverse = np.unique(ids.astype(str), return_index=True, return_inverse=True)
    reads = np.bincount(inverse, minlength=names.size)
    errors = np.bincount(inverse, weights=~ok, minlength=names.size).astype(np.int64)
    out = []
    for j in np.argsort(first, kind="stable"):
        family, params = parse_point(str(names[j]))
        extra = {}
        if positions is not None:
            mine = inverse == j
            cells = [(t, int((third[mine] == k).sum()), int((~ok[mine] & (third[mine] == k)).sum()))
                     for k, t in enumerate(THIRDS)]
            extra = {"length": int(length), "span": (int(pos[mine].min()), int(pos[mine].max())),
                     "by_third": tuple(c for c in cells if c[1])}
        out.append(Outcome(family, params, int(reads[j]), int(errors[j]), **extra))
    return out


@dataclass(frozen=True)
class Tolerance:
    """How far along its axis one family (with its other parameters fixed) stays right, at every
    position measured.

    ``outcomes`` run from the easiest axis value to the hardest. ``clean_through`` is the hardest
    value that, with every easier one, had no error at any position (None when the easiest already
    failed); ``first_failure`` the easiest value with an error (None when none failed); ``clean_after``
    the values harder than the first failure that had no error again (``recovers`` when there is one).
    Counting every position together makes ``clean_through`` the minimum over positions: each third
    of the sequence (``by_third``) is clean at every value it was measured at up to it. ``length``,
    ``span`` and ``thirds`` are the region the line was measured on (None / () when the outcomes did
    not say where their reads were).
    """

    family: str
    fixed: Params
    axis: str
    harder: str
    outcomes: tuple[Outcome, ...]
    clean_through: Any
    first_failure: Any
    clean_after: tuple
    line: str
    length: int | None = None
    span: tuple[int, int] | None = None
    thirds: tuple[str, ...] = ()
    by_third: tuple[tuple[str, Any, Any], ...] = ()  # (third, clean_through, first_failure) per third

    @property
    def recovers(self) -> bool:
        return bool(self.clean_after)

    def region(self) -> dict | None:
        """What the line covers: family, T, the fixed parameters and where the reads were."""
        if self.length is None:
            return None
        return {"family": self.family, "length": self.length, "fixed": dict(self.fixed),
                "positions": list(self.span), "thirds": list(self.thirds)}

    def as_dict(self) -> dict:
        out = {"family": self.family, "fixed": dict(self.fixed), "axis": self.axis, "harder": self.harder,
               "clean_through": self.clean_through, "first_failure": self.first_failure,
               "recovers": self.recovers, "clean_after": list(self.clean_after), "line": self.line,
               "values": [{self.axis: o.params[self.axis], "reads": o.reads, "errors": o.errors,
                           "ci95": list(_interval(o)), **({} if o.unit == "reads" else {"unit": o.unit}),
                           **({"by_third": {t: {"reads": r, "errors": e} for t, r, e in o.by_third}}
                              if o.by_third else {})} for o in self.outcomes]}
        if self.length is not None:
            out["region"] = self.region()
            out["by_third"] = {t: {"clean_through": c, "first_failure": f} for t, c, f in self.by_third}
        return out


def _fixed(family: Family, params: Params) -> Params:
    return Params((k, v) for k, v in params.items() if k != family.axis)


def _label(family: Family, fixed: Params) -> str:
    inner = ", ".join(f"{k}={_fmt(v)}" for k, v in fixed.items())
    return f"{family.name} ({inner})" if inner else family.name


def _interval(o: Outcome) -> tuple[float, float]:
    return tuple(o.ci95) if o.ci95 is not None else clopper_pearson(o.errors, o.reads)


def _clean_words(o: Outcome) -> str:
    return f"0 errors in {o.reads:,} {o.unit}, rate < {zero_error_bound(o.reads):.1e} at 95%"


def _fail_words(o: Outcome) -> str:
    low, high = _interval(o)
    unit = "" if o.unit == "reads" else f" {o.unit}"
    return f"{o.errors:,} of {o.reads:,}{unit} wrong, 95% CI [{low:.2g}, {high:.2g}]"


def _region_words(length: int, span: tuple[int, int], thirds: Sequence[str]) -> str:
    where = f"position {span[0]}" if span[0] == span[1] else f"positions {span[0]}-{span[1]}"
    return f"at T = {length}, reads at {where} ({', '.join(thirds)})"


def _series(rows: list[Outcome], axis: str) -> tuple[Any, Any]:
    """(clean_through, first_failure) of outcomes sorted easiest first."""
    failing = [j for j, o in enumerate(rows) if o.errors]
    if not failing:
        return rows[-1].params[axis], None
    first = failing[0]
    return (rows[first - 1].params[axis] if first else None), rows[first].params[axis]


def _per_third(rows: list[Outcome], axis: str) -> tuple[tuple[str, Any, Any], ...]:
    """Per third of the sequence with reads, (third, clean_through, first_failure) over its own reads."""
    out = []
    for t in THIRDS:
        mine = [Outcome(o.family, o.params, r, e) for o in rows for tt, r, e in o.by_third if tt == t]
        if mine:
            out.append((t, *_series(mine, axis)))
    return tuple(out)


def tolerance(outcomes: Sequence[Outcome]) -> Tolerance:
    """The tolerance of one family with fixed parameters, from its outcomes along the axis.

    Points without reads carry no information and are left out. When the outcomes say where their
    reads were (all at one length), the line starts with that region.
    """
    rows = [o for o in outcomes if o.reads > 0]
    if not rows:
        raise FFBenchError("no reads to compute a tolerance from")
    family = FAMILIES.get(rows[0].family)
    if family is None:
        raise FFBenchError(f"unknown stress family {rows[0].family!r}")
    fixed = _fixed(family, rows[0].params)
    for o in rows:
        if o.family != family.name or _fixed(family, o.params) != fixed:
            raise FFBenchError(f"one tolerance takes one family with fixed parameters: {o.family} "
                               f"{dict(o.params)} is not {family.name} {dict(fixed)}")
        if not 0 <= o.errors <= o.reads:
            raise FFBenchError(f"{o.errors} errors in {o.reads} reads is impossible")
    lengths = {o.length for o in rows}
    if len(lengths) != 1 or (None not in lengths and any(o.span is None for o in rows)):
        raise FFBenchError(f"{family.name}: one tolerance takes outcomes of one length, all saying where their reads were")
    length = lengths.pop()
    axis = family.axis
    rows.sort(key=lambda o: o.params[axis], reverse=family.harder == "smaller")
    values = [o.params[axis] for o in rows]
    if len(set(values)) != len(values):
        raise FFBenchError(f"{family.name}: an {axis} value appears twice")
    region: dict = {}
    label = _label(family, fixed)
    if length is not None:
        span = (min(o.span[0] for o in rows), max(o.span[1] for o in rows))
        thirds = tuple(t for t in THIRDS if any(tt == t for o in rows for tt, _, _ in o.by_third))
        region = {"length": length, "span": span, "thirds": thirds, "by_third": _per_third(rows, axis)}
        label += ": " + _region_words(length, span, thirds)
    everywhere = " at every position" if len(region.get("thirds", ())) > 1 else ""
    failing = [j for j, o in enumerate(rows) if o.errors]
    way = "up to" if family.harder == "larger" else "down to"
    if not failing:
        last = rows[-1]
        return Tolerance(family.name, fixed, axis, family.harder, tuple(rows), values[-1], None, (),
                         f"{label}: right on every read {way} {axis} = {_fmt(values[-1])}{everywhere} "
                         f"({_clean_words(last)}), no failure on the grid", **region)
    first = failing[0]
    if first == 0:
        line = f"{label}: fails already at {axis} = {_fmt(values[0])} ({_fail_words(rows[0])})"
    else:
        line = (f"{label}: right on every read {way} {axis} = {_fmt(values[first - 1])}{everywhere} "
                f"({_clean_words(rows[first - 1])}), first failure at {axis} = {_fmt(values[first])} "
                f"({_fail_words(rows[first])})")
    if rows[first].by_third and len(region["thirds"]) > 1:
        line += f" [{', '.join(f'{t} {e}/{r}' for t, r, e in rows[first].by_third)}]"
    clean_after = tuple(values[j] for j in range(first + 1, len(rows)) if rows[j].errors == 0)
    if clean_after:
        line += f"; clean again at {axis} = {', '.join(map(_fmt, clean_after))}"
    elif first + 1 < len(rows):
        later = len(rows) - first - 1
        line += f"; errors at {'the' if later == 1 else 'all'} {later} {family.harder} value{'s' * (later > 1)}"
    return Tolerance(family.name, fixed, axis, family.harder, tuple(rows),
                     values[first - 1] if first else None, values[first], clean_after, line, **region)


def profile(outcomes: Iterable[Outcome]) -> list[Tolerance]:
    """One tolerance per (family, fixed parameters), in order of first appearance."""
    groups: dict[tuple[str, Params], list[Outcome]] = {}
    for o in outcomes:
        family = FAMILIES.get(o.family)
        if family is None:
            raise FFBenchError(f"unknown stress family {o.family!r}")
        groups.setdefault((o.family, _fixed(family, o.params)), []).append(o)
    return [tolerance(rows) for rows in groups.values()]


# ----------------------------------------------------------------------------- regions in descriptor terms
# The prefix of a family whose decisive write is the first instruction or follows one stale write of the
# other bit and only ignores (distractor_run adjacent, write_distance, reads_in_run).
_PLAIN = "(write_slot == 0) | ((gap_before_write == write_slot - 1) & (decoys == 1))"
_PURE = ("reads_between == 0", "opposite_since_write == opposite_run", "write_distance == opposite_run + 1")
_ONLY_DECOYS = "abs(write_density * slot - decoys - 1) < 0.5"  # the writes before the read: the decoys and w
UNCHECKED = {
    "dense_interference": "its axis (one write every gap instructions) is a layout of the whole sequence, "
                          "not a descriptor of one read",
    "density": "its k counts a stretch of random filler at least half opposite, which no descriptor measures",
}


def descriptor_region(family: str, fixed: Mapping, length: int) -> dict:
    """A line's region in terms of the read descriptors (:mod:`ffbench.hunt.descriptors`), so any read,
    however it was built, can be tested for it: ``axis`` (the descriptor that is the line's axis) and
    ``where`` (conditions on the descriptors, Python expressions over them, all holding). Every read the
    family draws at T = ``length`` satisfies them; where the family's construction has more than the
    descriptors see (e.g. where the reads before a later run_blocks block sit) the region is the wider
    set the descriptors can test, so a line claims every read of it. ``{"unchecked": reason}`` for the
    lines no descriptor region describes."""
    n = length // 2
    fixed = dict(fixed)
    if family == "dense_interference":
        return {"unchecked": UNCHECKED["dense_interference"]}
    if family == "distractor_run":
        if fixed.get("density") != 1.0:
            return {"unchecked": UNCHECKED["density"]}
        if fixed.get("write_at") == "start":
            return {"axis": "opposite_run", "where": ["write_slot == 0", "reads_between == 0"]}
        return {"axis": "opposite_run", "where": [*_PURE, _PLAIN]}
    if family == "write_distance":
        return {"axis": "write_distance", "where": ["reads_between == 0", _PLAIN]}
    if family == "run_blocks":  # the first block opens the sequence, a later one follows a block of the other bit;
        # blocks of k + 2 instructions: at most one write per k + 2 slots before the read (no cluster of decoys)
        return {"axis": "opposite_run", "where": [*_PURE, "(write_slot == 0) | (decoys == 1)",
                                                  "write_density * slot * (opposite_run + 2) <= slot + 1.5"]}
    if family == "reads_in_run":  # a read after every gap: (reads + 1) stretches of opposite ignores
        return {"axis": "opposite_run", "where": ["opposite_run >= 1",
            "opposite_since_write == (reads_between + 1) * opposite_run",
            "write_distance == (reads_between + 1) * (opposite_run + 1)", _PLAIN]}
    if family == "decoy_run":
        return {"axis": "opposite_run", "where": [*_PURE, f"decoys == {int(fixed['decoys'])}", "gap_before_write == 0",
                                                  "write_slot >= decoys", _ONLY_DECOYS]}
    if family == "decoy_writes":
        slot, _ = DecoyWrites._layout(n)
        where = [*_PURE, f"write_slot == {slot}", _ONLY_DECOYS]
        if fixed.get("placement") == "adjacent":
            where.append("(decoys == 1) | (gap_before_write == 0)")
        return {"axis": "decoys", "where": where}
    raise FFBenchError(f"unknown stress family {family!r}")


# ----------------------------------------------------------------------------- checking a line
READ_KEYS = ("family", "T", "position", "wrong")


@dataclass(frozen=True)
class LineCheck:
    """What a set of scored reads says about one tolerance line: how many fell in its region, how
    many of those at axis values the line calls clean (``claimed``), and which of those were wrong."""

    line: str
    in_region: int
    claimed: int
    contradicting: tuple[dict, ...]

    @property
    def holds(self) -> bool:
        return not self.contradicting


def check_line(tol: Tolerance | Mapping, reads: Iterable[Mapping]) -> LineCheck:
    """Check a tolerance line (a :class:`Tolerance` or its results.json form) against scored reads.

    Each read is a dict with ``family`` (a stress family's name), every parameter of that family
    (the line's fixed ones with their values and its axis, e.g. ``{"density": 1.0, "write_at":
    "start", "k": 14}``), ``T`` (the sequence's length), ``position`` (the read's answer digit in
    the compact string, as samples' ``position``) and ``wrong`` (bool); other keys are ignored. The
    read is in the line's region when its family, T and fixed parameters equal the line's and its
    position lies within the positions the line was measured at (``region.positions``, first to
    last). The line claims every read of its region at an axis value up to ``clean_through`` (down
    to, when smaller is harder), on the grid or between its values, is right: a wrong one
    contradicts it.
    """
    d = tol.as_dict() if isinstance(tol, Tolerance) else dict(tol)
    region = d.get("region")
    if not region:
        raise UsageError("this tolerance line states no region (it was computed without the reads' positions)")
    family, axis, fixed = d["family"], d["axis"], dict(d["fixed"])
    lo, hi = region["positions"]
    bound, larger = d["clean_through"], d["harder"] == "larger"
    in_region, claimed, bad = 0, 0, []
    for j, read in enumerate(reads):
        missing = [k for k in READ_KEYS if k not in read]
        if missing:
            raise UsageError(f"read {j}: missing {', '.join(missing)} (a read needs {', '.join(READ_KEYS)} "
                             "and its family's parameters)")
        if read["family"] != family or int(read["T"]) != region["length"]:
            continue
        absent = [k for k in (*fixed, axis) if k not in read]
        if absent:
            raise UsageError(f"read {j}: a {family} read needs its parameters {', '.join(absent)}")
        if any(read[k] != v for k, v in fixed.items()) or not lo <= int(read["position"]) <= hi:
            continue
        in_region += 1
        if bound is None or (read[axis] > bound if larger else read[axis] < bound):
            continue
        claimed += 1
        if read["wrong"]:
            bad.append(dict(read))
    return LineCheck(d["line"], in_region, claimed, tuple(bad))
