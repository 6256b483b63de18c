"""The map search's parts per task: what ``ffbench hunt --task X`` swaps into the one hunt loop.

The driver (:mod:`ffbench.hunt.driver`) runs the same rounds, confirmation, shrinking and outputs for
every task; a task differs in the parts of :class:`MapParts`: its descriptors of a read (the map's
axes, computed exactly from the sequence), its candidate generator (random targets over those axes,
its structured preset as seeds, mutants of the lowest-margin sequences: every candidate checked by
the task's validator), its shrinking moves and the canonical name of a shape. ``ffl``'s parts are the
modules it always used (:mod:`~ffbench.hunt.descriptors`, :mod:`~ffbench.hunt.atlas`,
:mod:`~ffbench.hunt.shrink`), so its hunt is unchanged; ``undo`` and ``registers`` bring theirs from
:mod:`~ffbench.hunt.task_undo` and :mod:`~ffbench.hunt.task_registers`, built on the generic pieces
here (instructions as units of ``task.unit`` characters).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ffbench import language, tasks
from ffbench.hunt import atlas as atlas_mod
from ffbench.hunt.atlas import pick  # noqa: F401  (the task modules' bin picker: atlas's, one for every map)
from ffbench.hunt import descriptors as desc
from ffbench.hunt import shrink
from ffbench.metrics import clopper_pearson

W, R, I, ZERO = language.W, language.R, language.I, language.ZERO
COVER, REFINE, PRESET = 0.4, 0.25, 0.1  # shares of a round's candidates; the rest mutate elites
COVER_TRIES = 6
MUTATION_TRIES = 12


@dataclass(frozen=True)
class MapParts:
    """One task's parts of the map search."""

    task: tasks.Task
    dimensions: dict[str, tuple]  # axis name -> bin edges (a cell: one bin per axis)
    cover_axes: tuple[str, ...]  # the region a cover candidate spreads over, and a glitch is shrunk once per
    describe: Callable  # (N, T) legal array -> {descriptor: per-read array, "seq_index": ...}
    candidate: Callable  # (atlas, length, rng) -> (sequence, meta)
    moves: object  # the shrinking moves (:class:`UnitMoves`; ffl: shrink's own)
    contains: Callable  # (big, small) -> bool
    shape: Callable  # sequence -> canonical name
    lines: bool = False  # whether stress tolerance lines are checked (ffl)
    flipflop: bool = False  # the flip-flop language's own map (ffl, and haystack: ffl rendered as a story)

    def cell_keys(self, arr: np.ndarray) -> np.ndarray:
        d = self.describe(arr)
        return np.stack([desc.bin_index(d[name], edges) for name, edges in self.dimensions.items()], axis=1)

    def project(self, key: str) -> tuple:
        idx = key.split(",")
        return tuple(idx[list(self.dimensions).index(a)] for a in self.cover_axes)

    def atlas(self, raw: dict, aims: dict | None = None) -> atlas_mod.Atlas:
        """The map of a hunt's state (``aims``: ffl's pair-cell aims, :class:`ffbench.hunt.atlas.Atlas`)."""
        return atlas_mod.Atlas(raw, aims) if self.flipflop else TaskAtlas(raw, self)

    def compatible(self, cells: dict) -> bool:
        return all(len(k.split(",")) == len(self.dimensions) for k in cells)

    def reads_in(self, seq: np.ndarray) -> int:
        return int(np.count_nonzero(seq[0::self.task.unit] == R))

    def summary(self, amap, length: int) -> dict:
        if self.flipflop:
            return atlas_mod.summary(amap, length)
        return summary(amap, length, self.dimensions)


# ----------------------------------------------------------------------------- the archive over a task's axes
class TaskAtlas(atlas_mod.Atlas):
    """:class:`ffbench.hunt.atlas.Atlas` (counts, lowest margins, elites) over a task's own axes."""

    def __init__(self, raw: dict | None, map_parts: MapParts):
        super().__init__(raw)
        self.parts = map_parts

    def coverage(self) -> dict[tuple, int]:
        out: dict[tuple, int] = {}
        for k, c in self.cells.items():
            p = self.parts.project(k)
            out[p] = out.get(p, 0) + c["reads"]
        return out

    def pick_uncertain(self, rng: np.random.Generator) -> str | None:
        """As the ffl map: a failing cell or a neighbour one bin away half the time, else a cell with
        probability proportional to its 95% interval's width."""
        keys = list(self.cells)
        if not keys:
            return None
        failing = [k for k in keys if self.cells[k]["errors"]]
        if failing and rng.random() < atlas_mod.BOUNDARY:
            idx = [int(x) for x in failing[int(rng.integers(len(failing)))].split(",")]
            axis = int(rng.integers(len(idx)))
            size = len(list(self.parts.dimensions.values())[axis])
            idx[axis] = min(max(idx[axis] + int(rng.integers(-1, 2)), 0), size - 1)
            return desc.key_string(idx)
        widths = np.array([hi - lo for lo, hi in (clopper_pearson(self.cells[k]["errors"], self.cells[k]["reads"])
                                                   for k in keys)])
        return keys[int(rng.choice(len(keys), p=widths / widths.sum()))]


def summary(amap: atlas_mod.Atlas, length: int, dimensions: dict[str, tuple]) -> dict:
    """The map as hunt.json gives it (the layout of :func:`ffbench.hunt.atlas.summary`, a task's axes)."""
    cells = []
    for key, c in amap.cells.items():
        lo, hi = clopper_pearson(c["errors"], c["reads"])
        cells.append({"bins": [int(x) for x in key.split(",")], "reads": c["reads"], "errors": c["errors"],
                      "rate": c["errors"] / c["reads"], "ci95": [lo, hi], "min_margin": c["min_margin"],
                      "example": c["elite"]["text"] if c["errors"] and c["elite"] else None})
    cells.sort(key=lambda c: c["bins"])
    axes = [{"name": name, "edges": list(edges), "labels": [desc.bin_label(edges, i) for i in range(len(edges))]}
            for name, edges in dimensions.items()]
    return {"length": length, "axes": axes, "cells_tried": len(cells),
            "cells_failing": sum(1 for c in cells if c["errors"]), "cells": cells}


# ----------------------------------------------------------------------------- candidates
def choose(atlas: TaskAtlas, length: int, rng: np.random.Generator, random_target: Callable, build: Callable,
           preset: Callable, mutate: Callable) -> tuple[np.ndarray, dict]:
    """One legal candidate: a cover target (the least covered region of ``COVER_TRIES``), a refine target
    inside an uncertain cell, a row of the task's structured preset, or a mutant of an elite.

    ``random_target(rng, n, bins)`` -> target (a dict), ``build(target, length, rng)`` -> sequence or
    None, ``preset(length, rng)`` -> (sequence, params), ``mutate(seq, rng)`` -> (sequence, move) or None.
    Whatever is returned passed the task's validator."""
    task = atlas.parts.task
    n = length // task.unit
    u = rng.random()
    if u >= COVER + REFINE + PRESET:
        elite = atlas.pick_elite(rng)
        if elite is not None:
            seq = language.to_array([elite["text"]])[0]
            for _ in range(MUTATION_TRIES):
                made = mutate(seq, rng)
                if made is not None and legal(task, made[0]):
                    return made[0], {"origin": "elite", "moves": [made[1]], "target": None}
    if COVER + REFINE <= u:
        seq, params = preset(length, rng)
        if legal(task, seq):
            return seq, {"origin": "preset", "moves": [], "target": params}
    if COVER <= u:
        key = atlas.pick_uncertain(rng)
        if key is not None:
            bins = dict(zip(atlas.parts.dimensions, (int(x) for x in key.split(","))))
            t = random_target(rng, n, bins)
            seq = build(t, length, rng)
            if seq is not None and legal(task, seq):
                return seq, {"origin": "refine", "moves": [], "target": t}
    # cover: of COVER_TRIES random targets, the one whose region (predicted from the target: its values
    # on the cover axes) holds the fewest reads; the exact cell is computed once the sequence is scored
    held = atlas.coverage()
    tries = sorted((random_target(rng, n, None) for _ in range(COVER_TRIES)),
                   key=lambda t: held.get(predicted_region(atlas.parts, t), 0))
    for t in tries:
        seq = build(t, length, rng)
        if seq is not None and legal(task, seq):
            return seq, {"origin": "cover", "moves": [], "target": t}
    seq, params = preset(length, rng)  # no target of this draw fits: a preset row instead
    return seq, {"origin": "preset", "moves": [], "target": params}


def predicted_region(map_parts: MapParts, target: dict) -> tuple:
    """The region a target aims at: its values on the cover axes, binned (targets name them as the axes)."""
    return tuple(str(int(desc.bin_index(np.array([target[a]]), map_parts.dimensions[a])[0]))
                 for a in map_parts.cover_axes)


def legal(task: tasks.Task, seq: np.ndarray) -> bool:
    return task.first_violation(seq[None]) is None


def fraction_slot(rng: np.random.Generator, n: int, i: int | None, lo: int) -> int:
    """A read slot in [lo, n - 1], inside fraction bin i when it fits."""
    edges = desc.FRACTION_EDGES
    if i is not None:
        f_lo = math.ceil(edges[i] * (n - 1))
        f_hi = n - 1 if i == len(edges) - 1 else math.ceil(edges[i + 1] * (n - 1)) - 1
        if max(lo, f_lo) <= f_hi:
            return int(rng.integers(max(lo, f_lo), f_hi + 1))
    v = rng.random()
    return n - 1 if v < 1 / 3 else int(rng.integers(lo, n))


# ----------------------------------------------------------------------------- shrinking
class UnitMoves:
    """The shrinking moves of :mod:`ffbench.hunt.shrink` on instructions of ``task.unit`` characters:
    every edit's reads repaired (``repair``: the task's answers) and checked by the task's validator."""

    def __init__(self, task: tasks.Task, repair: Callable[[np.ndarray], np.ndarray]):
        self.task, self.repair, self.unit = task, repair, task.unit

    def instructions(self, seq: np.ndarray) -> int:
        return seq.size // self.unit

    def units(self, seq: np.ndarray) -> np.ndarray:
        return seq.reshape(-1, self.unit)

    def legal(self, units: np.ndarray) -> np.ndarray | None:
        if units.shape[0] < 2 or units[0, 0] != W or units[-1, 0] != R:
            return None
        seq = self.repair(units.reshape(1, -1).copy())[0]
        return seq if legal(self.task, seq) else None

    def deletions(self, seq: np.ndarray, size: int) -> Iterator[np.ndarray]:
        units = self.units(seq)
        n = units.shape[0]
        for start in range(0, n - size, size):
            out = self.legal(np.concatenate([units[:start], units[start + size:]]))
            if out is not None:
                yield out

    def run_cuts(self, seq: np.ndarray) -> Iterator[np.ndarray]:
        units = self.units(seq)
        n = units.shape[0]
        j = 0
        while j < n - 1:
            k = j
            while k + 1 < n - 1 and np.array_equal(units[k + 1], units[j]):
                k += 1
            if k > j:
                out = self.legal(np.concatenate([units[:j + (k - j + 1) // 2], units[k + 1:]]))
                if out is not None:
                    yield out
            j = k + 1

    def simplifications(self, seq: np.ndarray) -> Iterator[np.ndarray]:
        """A read before the last made an ignore (fewer reads in the shape)."""
        units = self.units(seq)
        for j in np.flatnonzero(units[:-1, 0] == R):
            edited = units.copy()
            edited[j, 0] = I
            out = self.legal(edited)
            if out is not None:
                yield out

    def contains(self, big: np.ndarray, small: np.ndarray) -> bool:
        """Whether deleting instructions of ``big`` gives ``small`` (bits as they are or all flipped; greedy)."""
        if big.size % self.unit or small.size % self.unit:
            return False
        bu, su0 = self.units(big), self.units(small)
        for flip in (0, 1):
            su = su0.copy()
            su[:, -1] = ((su[:, -1] - ZERO) ^ flip) + ZERO
            keep, j = [], 0
            for k in range(bu.shape[0] - 1):
                if j < su.shape[0] - 1 and np.array_equal(bu[k, :-1], su[j, :-1]) and \
                        (bu[k, 0] == R or bu[k, -1] == su[j, -1]):
                    keep.append(k)
                    j += 1
            if j < su.shape[0] - 1 or not np.array_equal(bu[-1, :-1], su[-1, :-1]):
                continue
            out = self.legal(bu[keep + [bu.shape[0] - 1]])
            if out is not None and np.array_equal(out, su.reshape(-1)):
                return True
        return False


def shape(seq: np.ndarray, unit: int) -> str:
    """The canonical form: bits renamed so the first write carries 0 (flipping every bit keeps a sequence
    legal and its answers flipped), runs of equal instructions written ``u1*4``."""
    units = seq.reshape(-1, unit)
    flip = int(units[0, -1]) - ZERO
    return shrink.run_length(["".join(chr(c) for c in row[:-1]) + str((int(row[-1]) - ZERO) ^ flip) for row in units])
