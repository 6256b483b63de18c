"""The hunt's map of the failure surface: a MAP-Elites archive over binned read descriptors.

Every scored read falls in one *cell* (one bin per axis of
:data:`ffbench.hunt.descriptors.MAP_DIMENSIONS`); the cell keeps its reads, its confirmed wrong
reads, its lowest margin and one *elite* (the sequence whose read there had the lowest margin). The
search (the default of ``ffbench hunt``) fills a round with three kinds of candidates, so it cannot
collapse onto one family:

* ``cover`` (``COVER`` share): a random *target* (:class:`Target`: decisive write at a chosen slot,
  ``decoys`` opposite writes in a block before it, right before it or ``decoy_gap`` ignores of random
  bits earlier (half the time each), ``opposite`` ignores of the other bit after it of which the
  last ``run`` form a strict run, ``reads`` reads in between, the read at a chosen position, filler
  of a chosen write density before it, ignores of random bits after it), built by :func:`build`;
  ``PAIR_READS`` of a round's reads aimed at the least-read *pair cell* (one bin on each of two of
  ``PAIR_AXES``) among those a target reaches at this T (:func:`reachable_pairs`), until each holds
  ``PAIR_QUOTA`` reads, so combined corners (ten decoys and a run of 44 or more) are read as often as
  common regions, and before them the named corners of :mod:`ffbench.hunt.corners` get their read
  quota (:func:`corner_target`); otherwise, of ``COVER_TRIES`` random targets the one whose region (its cell
  projected on ``COVER_AXES``) holds the fewest reads is taken, so empty regions are filled first;
* ``refine``: a target drawn inside a cell: half the time a failing cell or its neighbour one bin
  away on one axis (so a failure region's edge, its threshold, gets reads on both sides), else an
  existing cell chosen with probability proportional to the width of its 95% interval;
* ``elite``: a mutant (:mod:`ffbench.hunt.mutations`) of a cell's elite, cells with the lowest margins
  first.

Targets are a generator's aim; the cell a read lands in is computed exactly from the sequence
(:func:`ffbench.hunt.descriptors.describe`), so a target that misses still maps honestly.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np

from ffbench import language
from ffbench.hunt import corners, mutations
from ffbench.hunt import descriptors as desc
from ffbench.hunt.families import _finish
from ffbench.metrics import clopper_pearson

W, R, I = language.W, language.R, language.I
COVER, REFINE = 0.45, 0.3  # shares of a round's candidates; the rest mutate elites
COVER_TRIES = 6
BOUNDARY = 0.5  # share of refine candidates aimed at a failing cell or its neighbours
# A cover candidate is the one of COVER_TRIES random targets whose cell, projected onto these axes, holds
# the fewest reads: the full cells are too many for "empty" to discriminate.
COVER_AXES = ("opposite_since_write", "opposite_run", "decoys", "reads_between", "write_slot")
_COVER_INDEX = [list(desc.MAP_DIMENSIONS).index(a) for a in COVER_AXES]
# Half the cover candidates aim at the least-read *pair cell*: a combination of one bin on each of two of
# these axes that a target can reach at this T (:func:`reachable_pairs`), until every such combination
# holds PAIR_QUOTA reads; so combined corners (ten decoys and a run of 44 or more) are read as often as
# the common regions, not left to chance.
PAIR_AXES = ("opposite_since_write", "opposite_run", "decoys", "reads_between", "gap_before_write", "fraction")
PAIR_READS = 0.5  # share of a round's reads in pair-aimed candidates (while any pair cell is under quota)
PAIR_QUOTA = 100  # reads per pair cell after which pair targets stop aiming there
PAIR_BACKGROUNDS = (0.0, 0.9, 0.98)  # pair targets' filler: few reads besides the aimed one
PAIR_TRIES = 4  # random targets tried per combination when finding the reachable ones
_PAIRS = list(itertools.combinations(PAIR_AXES, 2))
_PAIR_INDEX = [(list(desc.MAP_DIMENSIONS).index(a), list(desc.MAP_DIMENSIONS).index(b)) for a, b in _PAIRS]
DECOY_GAPS = 8  # at most this many ignores between a decoy block and the decisive write (transformer-mix
# fails on ten decoys, then 2-6 ignores of any bits, then the decisive write, at every run after it)
BACKGROUNDS = (0.0, 0.3, 0.6, 0.8, 0.9, 0.98)  # filler p_ignore (0: no filler at all, only ignores)
# Writes' share of the filler's other instructions (the rest are reads): few reads, since every read is
# scored and counted against the budget while the targeted read is one per sequence.
WRITE_SHARE = 0.75


@dataclass(frozen=True)
class Target:
    """Where a candidate's decisive read should land (instruction slots of a length-T sequence)."""

    read_slot: int
    distance: int
    decoys: int
    opposite: int
    run: int
    reads: int
    background: float  # p_ignore of the filler; writes take WRITE_SHARE of the rest, reads the remainder
    decoy_gap: int = 0  # ignores (random bits) between the decoys and the decisive write; 0: adjacent

    def as_dict(self) -> dict:
        return {"read_slot": self.read_slot, "distance": self.distance, "decoys": self.decoys,
                "opposite": self.opposite, "run": self.run, "reads": self.reads, "background": self.background,
                "decoy_gap": self.decoy_gap}


def bounds(edges: tuple, i: int) -> tuple[int, int]:
    """[lo, hi] of bin i as integers (the open last bin reaches twice its edge)."""
    lo = edges[i]
    hi = edges[i + 1] - 1 if i + 1 < len(edges) else 2 * lo + 1
    return int(lo), int(hi)


def pick(rng: np.random.Generator, edges: tuple, floor: int, cap: int, i: int | None) -> int:
    """A value in [floor, cap]: inside bin i where that overlaps, else a bin drawn uniformly among those
    that overlap (so long runs are as common as short ones), then uniform inside it; ``floor`` when no
    bin overlaps. The one bin picker of the ffl map and the task maps (:mod:`ffbench.hunt.taskmap`)."""
    floor, cap = int(floor), max(int(floor), int(cap))
    overlap = [j for j in range(len(edges)) if bounds(edges, j)[0] <= cap and bounds(edges, j)[1] >= floor]
    if not overlap:
        return floor
    j = i if i in overlap else overlap[int(rng.integers(len(overlap)))]
    lo, hi = bounds(edges, j)
    return int(rng.integers(max(lo, floor), min(hi, cap) + 1))


def _pick_or_zero(rng: np.random.Generator, edges: tuple, cap: int, i: int | None) -> int:
    """Inside bin i when given; else 0 half the time (the plain case stays common), a bin otherwise."""
    if i is None and (cap <= 0 or rng.random() < 0.5):
        return 0
    return pick(rng, edges, 0, max(cap, 0), i)


def random_target(rng: np.random.Generator, n: int, bins: dict[str, int] | None = None) -> Target:
    """A random target in a length-n (instructions) sequence: inside the given bins (a cell's) where
    they fit, elsewhere each count drawn uniformly over its bins (so long runs are as common as short
    ones), half the runs pure (every ignore since the write opposite), decoys, reads and same-bit
    ignores absent half the time, and the decisive write at the start of the sequence a third of
    the time."""
    bins = bins or {}
    top = n - 1  # the latest slot the read may take: a position bin caps it where the cell allows
    if "fraction" in bins and bins["fraction"] < len(desc.FRACTION_EDGES) - 1:
        i = bins["fraction"]
        low = {k: desc.MAP_DIMENSIONS[k][bins[k]] for k in ("opposite_since_write", "reads_between", "decoys")
               if k in bins}
        f_hi = math.ceil(desc.FRACTION_EDGES[i + 1] * (n - 1)) - 1
        if f_hi >= sum(low.values()) + 1:
            top = f_hi
    for _ in range(20):
        if "opposite_run" in bins and "opposite_since_write" not in bins:  # the run's bin first, the rest around it
            run = pick(rng, desc.COUNT_EDGES, 0, top - 1, bins["opposite_run"])
            opp = run if rng.random() < 0.5 else pick(rng, desc.COUNT_EDGES, run, top - 1, None)
        else:
            opp = pick(rng, desc.COUNT_EDGES, 0, top - 1, bins.get("opposite_since_write"))
            if "opposite_run" in bins or rng.random() < 0.5:
                run = pick(rng, desc.COUNT_EDGES, 0, opp, bins.get("opposite_run"))
            else:
                run = opp
        r = _pick_or_zero(rng, desc.SMALL_EDGES, top - 1 - opp, bins.get("reads_between"))
        m = _pick_or_zero(rng, desc.SMALL_EDGES, top - 1 - opp - r, bins.get("decoys"))
        if "write_distance" in bins:
            d = pick(rng, desc.DISTANCE_EDGES, opp + r + 1, top - m, bins["write_distance"])
        else:
            d = opp + r + 1 + _pick_or_zero(rng, desc.SMALL_EDGES, top - 1 - opp - r - m, None)
        if run <= opp and opp + r + 1 <= d and d + m <= top:
            break
    d = min(d, n - 1)
    r = min(r, d - 1)
    opp = min(opp, d - 1 - r)
    run, m = min(run, opp), max(0, min(m, n - 1 - d))
    lo, hi = d + m, n - 1
    if "write_slot" in bins:  # the write's slot bin first, then the read's position within it
        s_lo, s_hi = bounds(desc.SLOT_EDGES, bins["write_slot"])
        if max(lo, s_lo + d) <= min(hi, s_hi + d):
            lo, hi = max(lo, s_lo + d), min(hi, s_hi + d)
    if "fraction" in bins:
        i = bins["fraction"]
        f_lo = math.ceil(desc.FRACTION_EDGES[i] * (n - 1))
        f_hi = n - 1 if i == len(desc.FRACTION_EDGES) - 1 else math.ceil(desc.FRACTION_EDGES[i + 1] * (n - 1)) - 1
        if max(lo, f_lo) <= min(hi, f_hi):
            lo, hi = max(lo, f_lo), min(hi, f_hi)
        e = int(rng.integers(lo, hi + 1))
    elif "write_slot" in bins:
        e = int(rng.integers(lo, hi + 1))
    else:
        u = rng.random()
        e = lo if u < 1 / 3 else hi if u < 2 / 3 else int(rng.integers(lo, hi + 1))
    if "write_density" in bins:  # filler whose write share falls in the bin (0: no filler, or very sparse)
        i = bins["write_density"]
        f_lo = desc.DENSITY_EDGES[i]
        f_hi = desc.DENSITY_EDGES[i + 1] if i + 1 < len(desc.DENSITY_EDGES) else 0.5
        background = BACKGROUNDS[int(rng.integers(2)) * 5] if f_lo == 0 else \
            round(max(0.0, 1 - rng.uniform(f_lo, f_hi) / WRITE_SHARE), 4)
    else:
        background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    # half the decoy blocks adjacent to the decisive write, the rest up to DECOY_GAPS ignores before it;
    # inside a gap bin, ignores of that count right before the write (after the decoys, if any)
    room = max(e - d - m - (1 if m == 0 else 0), 0)
    if "gap_before_write" in bins:
        gap = pick(rng, desc.GAP_EDGES, 0, room, bins["gap_before_write"])
    else:
        gap = 0 if m == 0 or rng.random() < 0.5 else int(rng.integers(1, DECOY_GAPS + 1))
    return Target(e, d, m, opp, run, r, background, min(gap, room))


def build(t: Target, length: int, rng: np.random.Generator) -> np.ndarray:
    """One legal sequence of length T aiming at ``t`` (validated; the exact descriptors may differ
    where the target cannot be met, e.g. a strict run the filler extends)."""
    n = length // 2
    if t.background > 0:
        u = rng.random(n)
        p_w = WRITE_SHARE * (1 - t.background)
        instr = np.where(u < p_w, W, np.where(u < 1 - t.background, R, I)).astype(np.uint8)
    else:
        instr = np.full(n, I, dtype=np.uint8)
    instr[t.read_slot + 1:] = I  # after the read: ignores of random bits (and the final read)
    data = (rng.random(n) < 0.5).astype(np.uint8)
    bit = int(rng.random() < 0.5)
    e, w = t.read_slot, t.read_slot - t.distance
    gap = max(0, min(t.decoy_gap, w - t.decoys - (t.decoys == 0)))  # slot 0 stays a write
    lo = max(w - gap - t.decoys, 0)
    instr[lo:w - gap], data[lo:w - gap] = W, 1 - bit
    instr[w - gap:w] = I  # the gap: ignores of random bits
    if lo >= 1:  # a write of the decisive bit closes the decoys
        instr[lo - 1], data[lo - 1] = W, bit
    instr[w], data[w] = W, bit
    between = t.distance - 1
    first = between - t.run  # slots before the strict run: reads, other opposite ignores, same ignores
    ops = np.full(first, I, dtype=np.uint8)
    vals = np.full(first, bit, dtype=np.uint8)
    k_reads = min(t.reads, first)
    k_opp = min(max(t.opposite - t.run, 0), first - k_reads)
    ops[:k_reads] = R
    vals[k_reads:k_reads + k_opp] = 1 - bit
    order = rng.permutation(first)
    ops, vals = ops[order], vals[order]
    if first and ops[-1] == I and vals[-1] != bit:  # keep the run strict: a non-opposite slot closes it
        closers = np.flatnonzero((ops != I) | (vals == bit))
        if closers.size:
            j = int(closers[-1])
            ops[[j, -1]], vals[[j, -1]] = ops[[-1, j]], vals[[-1, j]]
    instr[w + 1:w + 1 + first], data[w + 1:w + 1 + first] = ops, vals
    instr[w + 1 + first:e], data[w + 1 + first:e] = I, 1 - bit
    instr[e] = R
    return _finish(instr[None], data[None])[0]


# ----------------------------------------------------------------------------- the archive
class Atlas:
    """The cells, as plain data (saved in the hunt's state): key -> counts, lowest margin, elite."""

    def __init__(self, raw: dict | None = None, aims: dict | None = None):
        self.cells: dict[str, dict] = raw if raw is not None else {}  # the state's own dict, updated in place
        # pair targets aimed so far per pair cell ("p,i,j" -> count; the state's own dict): a cell aimed at
        # often but rarely reached is not aimed at again before the others catch up
        self.aims: dict[str, int] = aims if aims is not None else {}
        self._pairs: dict[tuple, int] | None = None
        self._corners: dict[str, int] | None = None
        self.spent = (0, 0)  # reads of this Atlas's candidates: (pair-aimed, all)

    def state(self) -> dict:
        return self.cells

    def add(self, seq: np.ndarray, keys: np.ndarray, slots: np.ndarray, wrong: np.ndarray,
            margin: np.ndarray, origin: str) -> None:
        """Count one sequence's reads (``wrong``: confirmed wrong reads) into their cells; keep elites."""
        text = None
        signed = np.where(wrong, np.minimum(np.nan_to_num(margin, nan=0.0), 0.0), np.nan_to_num(margin, nan=np.inf))
        for j in range(keys.shape[0]):
            k = desc.key_string(keys[j])
            cell = self.cells.get(k)
            if cell is None:
                cell = self.cells[k] = {"reads": 0, "errors": 0, "min_margin": None, "elite": None,
                                        "first_origin": origin}
            cell["reads"] += 1
            cell["errors"] += int(wrong[j])
            m = float(signed[j])
            if math.isfinite(m) and (cell["min_margin"] is None or m < cell["min_margin"]):
                cell["min_margin"] = m
                text = text or language.to_strings(seq[None])[0]
                cell["elite"] = {"text": text, "slot": int(slots[j])}

    def coverage(self) -> dict[tuple, int]:
        """Reads per projection of the cells onto :data:`COVER_AXES` (what ``cover`` candidates spread over)."""
        out: dict[tuple, int] = {}
        for k, c in self.cells.items():
            p = project(k)
            out[p] = out.get(p, 0) + c["reads"]
        return out

    def pair_counts(self) -> dict[tuple, int]:
        """Reads per pair cell, (pair number, bin, bin) -> reads; computed once per Atlas (one round) and
        then counted up by the round's own pair targets (:func:`candidate`), so a round spreads them."""
        if self._pairs is None:
            out: dict[tuple, int] = {}
            for k, c in self.cells.items():
                idx = k.split(",")
                for p, (i, j) in enumerate(_PAIR_INDEX):
                    key = (p, int(idx[i]), int(idx[j]))
                    out[key] = out.get(key, 0) + c["reads"]
            self._pairs = out
        return self._pairs

    def corner_reads(self) -> dict[str, int]:
        """Reads per corner (:mod:`ffbench.hunt.corners`); computed once per Atlas, then counted up by the
        round's own corner targets (as :meth:`pair_counts`)."""
        if self._corners is None:
            self._corners = {k: v[0] for k, v in corners.counts(self.cells).items()}
        return self._corners

    def pick_uncertain(self, rng: np.random.Generator) -> str | None:
        """Where the surface is least known: half the time a failing cell or one bin away from it on
        one axis (the edge of a failure region: its threshold), else a cell with probability
        proportional to its 95% interval's width. The key may name a cell not tried yet."""
        keys = list(self.cells)
        if not keys:
            return None
        failing = [k for k in keys if self.cells[k]["errors"]]
        if failing and rng.random() < BOUNDARY:
            idx = [int(x) for x in failing[int(rng.integers(len(failing)))].split(",")]
            axis = int(rng.integers(len(idx)))
            size = len(list(desc.MAP_DIMENSIONS.values())[axis])
            idx[axis] = min(max(idx[axis] + int(rng.integers(-1, 2)), 0), size - 1)
            return desc.key_string(idx)
        widths = np.array([_width(self.cells[k]) for k in keys])
        return keys[int(rng.choice(len(keys), p=widths / widths.sum()))]

    def pick_elite(self, rng: np.random.Generator) -> dict | None:
        """An elite, biased to the lowest margins (rank-based: the i-th lowest with weight 1 / (i + 1))."""
        ranked = sorted((c["min_margin"], k) for k, c in self.cells.items() if c["elite"] is not None)
        if not ranked:
            return None
        wts = 1.0 / np.arange(1, len(ranked) + 1)
        _, k = ranked[int(rng.choice(len(ranked), p=wts / wts.sum()))]
        return self.cells[k]["elite"]


@functools.lru_cache(maxsize=4)
def reachable_pairs(length: int) -> tuple[tuple[int, int, int], ...]:
    """The pair cells (pair number in the combinations of :data:`PAIR_AXES`, bin, bin) a target aimed at
    them reaches at T = ``length``: each combination of bins tried with PAIR_TRIES random targets, built
    and described exactly; a fixed seed, so the list is the same on every run and resume."""
    rng = np.random.default_rng([PAIR_TRIES, length])
    n = length // 2
    names = list(desc.MAP_DIMENSIONS)
    wanted, seqs, slots = [], [], []
    for p, (a, b) in enumerate(_PAIRS):
        for i in range(len(desc.MAP_DIMENSIONS[a])):
            for j in range(len(desc.MAP_DIMENSIONS[b])):
                for _ in range(PAIR_TRIES):
                    t = random_target(rng, n, {a: i, b: j})
                    seqs.append(build(t, length, rng))
                    slots.append(t.read_slot)
                    wanted.append((p, i, j))
    arr = np.stack(seqs)
    d = desc.describe(arr)
    keys = desc.cell_keys(d)
    # the targeted read of each sequence: the one at its read slot
    row = np.flatnonzero(d["slot"] == np.asarray(slots)[d["seq_index"]])
    hit = set()
    for r in row.tolist():
        p, i, j = wanted[int(d["seq_index"][r])]
        a, b = _PAIRS[p]
        if keys[r, names.index(a)] == i and keys[r, names.index(b)] == j:
            hit.add((p, i, j))
    return tuple(sorted(hit))


CORNER_TRIES = 8  # targets built per corner candidate until the aimed read lands inside the corner
CORNER_BACKGROUNDS = (0.0, 0.98)  # corner targets' filler: at T=512 even 0.9 puts ~6 reads in each sequence
REACH_TRIES = 48  # targets tried per corner (fixed seed) to decide it is reachable at a length


def _corner_aim(corner: corners.Corner, n: int, rng: np.random.Generator):
    """A target with one bin drawn on each bounded axis of the corner, among the bins a length-n sequence
    can hold, the k-th lowest with weight 2^-k: an open box (>= 8 decoys, a run >= 44) is read mostly at its
    edge, where the failure was seen and where its bounds together still fit in the sequence. A corner that
    pins the write to the start and the read to a position gets the read's distance (its slot) drawn inside
    that position, else a late read would need a long distance drawn by chance."""
    bins = {}
    for name, _, _ in corner.where:
        options = corner.bins(name)
        if name != "fraction":
            options = [i for i in options if desc.MAP_DIMENSIONS[name][i] < n] or options[:1]
        weights = 0.5 ** np.arange(len(options))
        bins[name] = options[int(rng.choice(len(options), p=weights / weights.sum()))]
    if bins.get("write_slot") == 0 and "fraction" in bins:
        i = bins["fraction"]
        lo = math.ceil(desc.FRACTION_EDGES[i] * (n - 1))
        hi = n - 1 if i + 1 == len(desc.FRACTION_EDGES) else math.ceil(desc.FRACTION_EDGES[i + 1] * (n - 1)) - 1
        e = int(rng.integers(max(lo, 1), max(hi, lo, 1) + 1))
        bins["write_distance"] = int(desc.bin_index(np.array([e]), desc.DISTANCE_EDGES)[0])
    return random_target(rng, n, bins)


def _lands(corner: corners.Corner, seqs: list[np.ndarray], slots: list[int]) -> list[bool]:
    """Per sequence, whether its read at the given slot lies in the corner (exact descriptors)."""
    d = desc.describe(np.stack(seqs))
    keys = desc.cell_keys(d)
    hit = [False] * len(seqs)
    for r in np.flatnonzero(d["slot"] == np.asarray(slots)[d["seq_index"]]).tolist():
        hit[int(d["seq_index"][r])] = corner.holds(desc.key_string(keys[r]))
    return hit


@functools.lru_cache(maxsize=4)
def reachable_corners(length: int) -> tuple[str, ...]:
    """The corners a target aimed at them reaches at T = ``length`` (REACH_TRIES each, a fixed seed: the
    same on every run and resume)."""
    rng = np.random.default_rng([REACH_TRIES, length, 7])
    out = []
    for c in corners.CORNERS:
        ts = [_corner_aim(c, length // 2, rng) for _ in range(REACH_TRIES)]
        if any(_lands(c, [build(t, length, rng) for t in ts], [t.read_slot for t in ts])):
            out.append(c.name)
    return tuple(out)


def corner_target(held: dict[str, int], aims: dict[str, int], length: int, rng: np.random.Generator):
    """(corner name, sequence, target) in the reachable corner with the fewest reads below CORNER_QUOTA
    (``held``: reads so far, counted up here; ``aims``: the map's aims, ``corner:<name>`` -> aims so far,
    at most 2 x CORNER_QUOTA per corner), its aimed read checked to land inside (up to CORNER_TRIES
    builds); None when every corner is full."""
    quota = corners.CORNER_QUOTA
    open_ = [c for c in corners.CORNERS if c.name in reachable_corners(length) and held.get(c.name, 0) < quota
             and aims.get(f"corner:{c.name}", 0) < 2 * quota]
    if not open_:
        return None
    low = min(held.get(c.name, 0) for c in open_)
    options = [c for c in open_ if held.get(c.name, 0) == low]
    corner = options[int(rng.integers(len(options)))]
    aims[f"corner:{corner.name}"] = aims.get(f"corner:{corner.name}", 0) + 1
    for _ in range(CORNER_TRIES):
        t = _corner_aim(corner, length // 2, rng)
        # few other reads: filler with few reads, reads in between only where the corner asks for them
        t = dataclasses.replace(t, background=CORNER_BACKGROUNDS[int(rng.integers(len(CORNER_BACKGROUNDS)))],
                                reads=t.reads if any(a == "reads_between" for a, _, _ in corner.where) else 0)
        seq = build(t, length, rng)
        if _lands(corner, [seq], [t.read_slot])[0]:
            break
    held[corner.name] = held.get(corner.name, 0) + 1
    return corner.name, seq, t


def pair_target(atlas: Atlas, length: int, rng: np.random.Generator) -> Target | None:
    """A target in the least-read reachable (or already reached) pair cell below PAIR_QUOTA (ties broken at
    random; a cell counts as read as often as it was aimed at, so one a target rarely reaches does not
    take every round), its count and its aims raised by one; None when every pair cell holds its quota."""
    counts = atlas.pair_counts()
    cells = sorted(set(reachable_pairs(length)) | {c for c, v in counts.items() if v})  # reached: reachable
    held = np.array([max(counts.get(c, 0), atlas.aims.get(",".join(map(str, c)), 0)) for c in cells])
    low = held.min() if held.size else PAIR_QUOTA
    if low >= PAIR_QUOTA:
        return None
    options = np.flatnonzero(held == low)
    p, i, j = cells[int(options[int(rng.integers(options.size))])]
    a, b = _PAIRS[p]
    t = random_target(rng, length // 2, {a: i, b: j})
    # few other reads: every read is scored and counted, the aimed one is what the pair cell needs (reads in
    # between only where the pair asks for them, filler with few reads)
    t = dataclasses.replace(t, background=PAIR_BACKGROUNDS[int(rng.integers(len(PAIR_BACKGROUNDS)))],
                            reads=t.reads if "reads_between" in (a, b) else 0)
    counts[(p, i, j)] = counts.get((p, i, j), 0) + 1
    atlas.aims[f"{p},{i},{j}"] = atlas.aims.get(f"{p},{i},{j}", 0) + 1
    return t


def compatible(cells: dict) -> bool:
    """Whether a saved map has this version's axes (a key per cell, one bin per axis)."""
    return all(len(k.split(",")) == len(desc.MAP_DIMENSIONS) for k in cells)


def project(key: str) -> tuple:
    """A cell key projected onto :data:`COVER_AXES`."""
    idx = key.split(",")
    return tuple(idx[i] for i in _COVER_INDEX)


def _width(cell: dict) -> float:
    lo, hi = clopper_pearson(cell["errors"], cell["reads"])
    return hi - lo


def predicted_key(t: Target, n: int) -> str:
    """The cell a target aims at (the exact cell is computed after the sequence is built)."""
    values = {"opposite_since_write": t.opposite, "opposite_run": t.run, "decoys": t.decoys,
              "reads_between": t.reads, "write_distance": t.distance, "write_slot": t.read_slot - t.distance,
              "gap_before_write": t.decoy_gap, "fraction": t.read_slot / max(n - 1, 1),
              "write_density": WRITE_SHARE * (1 - t.background) if t.background > 0 else 0.0}
    return desc.key_string([desc.bin_index(np.array([values[name]]), edges)[0]
                            for name, edges in desc.MAP_DIMENSIONS.items()])


def candidate(atlas: Atlas, length: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """One candidate sequence and how it was made (``origin``: cover, refine or elite; its target). Pair
    targets (``cover``) take PAIR_READS of the reads the Atlas's candidates hold (a round's), corner targets
    (:mod:`ffbench.hunt.corners`) first while a corner is under its quota; the other kinds share the rest
    by COVER and REFINE."""
    pair = atlas.spent[0] < PAIR_READS * max(atlas.spent[1], 1)
    aimed = corner_target(atlas.corner_reads(), atlas.aims, length, rng) if pair else None
    t = aimed[2] if aimed else pair_target(atlas, length, rng) if pair else None
    if aimed is not None:
        seq, made = aimed[1], {"origin": "cover", "moves": [], "target": {**t.as_dict(), "corner": aimed[0]}}
    elif t is not None:
        seq, made = build(t, length, rng), {"origin": "cover", "moves": [], "target": {**t.as_dict(), "pair": True}}
    else:
        seq, made = _candidate(atlas, length, rng)
    reads = int(np.count_nonzero(seq[0::2] == R))
    atlas.spent = (atlas.spent[0] + reads * (t is not None), atlas.spent[1] + reads)
    return seq, made


def _candidate(atlas: Atlas, length: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    n = length // 2
    u = rng.random()
    if u >= COVER + REFINE:
        elite = atlas.pick_elite(rng)
        if elite is not None:
            seq = language.to_array([elite["text"]])[0]
            made = mutations.neighbours(seq, elite["slot"], rng, 1)
            if made:
                child, moves = made[0]
                return child, {"origin": "elite", "moves": moves, "target": None}
    if COVER <= u:
        key = atlas.pick_uncertain(rng)
        if key is not None:
            bins = dict(zip(desc.MAP_DIMENSIONS, (int(x) for x in key.split(","))))
            t = random_target(rng, n, bins)
            return build(t, length, rng), {"origin": "refine", "moves": [], "target": t.as_dict()}
    tries = [random_target(rng, n) for _ in range(COVER_TRIES)]
    held = atlas.coverage()
    t = min(tries, key=lambda x: held.get(project(predicted_key(x, n)), 0))
    return build(t, length, rng), {"origin": "cover", "moves": [], "target": t.as_dict()}


# ----------------------------------------------------------------------------- hunt.json
def summary(atlas: Atlas, length: int) -> dict:
    """The map as hunt.json gives it: axes with their bin labels, and every cell tried (its bins index
    the axes' ``labels``: kept once there, hunt.json stays small with thousands of cells)."""
    cells = []
    for key, c in atlas.cells.items():
        lo, hi = clopper_pearson(c["errors"], c["reads"])
        cells.append({"bins": [int(x) for x in key.split(",")], "reads": c["reads"],
                      "errors": c["errors"], "rate": c["errors"] / c["reads"], "ci95": [lo, hi],
                      "min_margin": c["min_margin"],
                      "example": c["elite"]["text"] if c["errors"] and c["elite"] else None})
    cells.sort(key=lambda c: c["bins"])
    axes = [{"name": name, "edges": list(edges),
             "labels": [desc.bin_label(edges, i) for i in range(len(edges))]}
            for name, edges in desc.MAP_DIMENSIONS.items()]
    return {"length": length, "axes": axes, "cells_tried": len(cells),
            "cells_failing": sum(1 for c in cells if c["errors"]), "corners": corners.summary(atlas.cells, reachable_corners(length)),
            "cells": cells}


def marginal(cells: list[dict], axes: list[str], names: list[str]) -> dict[tuple[int, int], tuple[int, int]]:
    """Reads and errors summed over every other axis, per pair of bins on ``names`` (two axis names)."""
    i, j = axes.index(names[0]), axes.index(names[1])
    out: dict[tuple[int, int], list[int]] = {}
    for c in cells:
        acc = out.setdefault((c["bins"][i], c["bins"][j]), [0, 0])
        acc[0] += c["reads"]
        acc[1] += c["errors"]
    return {k: (v[0], v[1]) for k, v in out.items()}
