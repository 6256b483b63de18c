"""Generators of legal flip-flop sequences with parameters a person can read: the hunter's priors.

A *family* builds random sequences of one kind of stress; a *point* is the family with its
parameters fixed, and is one arm of the bandit (:mod:`ffbench.hunt.bandit`). Each draw is fresh
randomness from the hunt's own generator, so one point yields many distinct sequences.

Families (all at the hunt's length T, n = T / 2 instructions):

* the seven stress families of :mod:`ffbench.stress` at their grid points, with random decisive
  bits and fresh filler: ``distractor_run``, ``decoy_writes``, ``write_distance``,
  ``dense_interference``, and the three of the third round, ``run_blocks`` (blocks of a write, k
  opposite ignores and a read tiling the sequence: reads early, middle and late), ``reads_in_run``
  (a read after every ``gap`` ignores of one long opposite run) and ``decoy_run`` (2 or 10 opposite
  decoy writes, then an opposite run of ``run`` ignores);
* ``ffl`` (p_write, p_read, p_ignore): FFL(T, p) at any p, from the dense to the very sparse end;
* ``planted`` (distance, density, decoys, at, background): one decisive read planted at instruction
  ``round(at * (n - 1))``, its write ``distance`` instructions before it, ceil(density * k) of the k
  ignores between them (at random places) carrying the opposite bit and the rest random bits, as in
  the stress family ``distractor_run``, ``decoys`` writes of the opposite
  bit right before the decisive write, and FFL(background) filler (other reads and writes)
  everywhere else, after the read too. ``at`` < 1 puts the decisive read at a shorter absolute
  position than the end: the lengths below T; a hunt at T beyond a model's training length
  reaches the lengths beyond it.

Every sequence a family returns has passed :func:`ffbench.language.validate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ffbench import language, stress
from ffbench.errors import UsageError
from ffbench.stress import Params

W, R, I, ZERO = language.W, language.R, language.I, language.ZERO


class Family:
    """A generator of sequences: its points at a length, and fresh rows of one point."""

    name: str = ""
    description: str = ""
    parameters: tuple[str, ...] = ()

    def points(self, length: int) -> list[Params]:
        raise NotImplementedError

    def sample(self, params: Params, length: int, rng: np.random.Generator, num: int) -> np.ndarray:
        """``num`` legal sequences of length T as a validated (num, T) uint8 array."""
        raise NotImplementedError

    def columns(self, params: Params) -> dict:
        """The values of :data:`ffbench.stress.COLUMNS` this point fills (``family`` and ``point`` included)."""
        return {"family": self.name, "point": None}


def _finish(instr: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Interleave instructions and data values, make every read copy the latest write, validate."""
    instr[:, 0], instr[:, -1] = W, R
    repaired = repair(instr, data)
    arr = np.empty((instr.shape[0], 2 * instr.shape[1]), dtype=np.uint8)
    arr[:, 0::2] = instr
    arr[:, 1::2] = repaired + ZERO
    language.validate(arr, alphabet=2)
    return arr


def repair(instr: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Data values where every read carries the most recent write's value (other values kept)."""
    last = language.last_index(instr == W)
    current = np.take_along_axis(data, last, axis=1)
    return np.where(instr == R, current, data).astype(np.uint8)


def pad_to(seq: np.ndarray, length: int) -> np.ndarray:
    """A legal sequence extended to length T with ignores carrying the value in force and a final
    read of it. A causal model answers the original reads exactly as before, so a failure stays one."""
    if seq.size >= length:
        return seq
    instr, data = seq[0::2], seq[1::2]
    value = data[np.flatnonzero(instr == W)[-1]]
    tail = np.empty(length - seq.size, dtype=np.uint8)
    tail[0::2], tail[1::2] = I, value
    tail[-2] = R
    out = np.concatenate([seq, tail])
    language.validate(out[None], alphabet=2)
    return out


# ----------------------------------------------------------------------------- stress families
class StressFamily(Family):
    """A family of :mod:`ffbench.stress`, drawn afresh (random decisive bits, new filler) at its grid points."""

    def __init__(self, family: stress.Family):
        self.family = family
        self.name, self.description, self.parameters = family.name, family.description, family.parameters

    def points(self, length: int) -> list[Params]:
        if length < stress.MIN_LENGTH:
            return []
        return self.family.points(length)

    def sample(self, params, length, rng, num):
        n = length // 2
        u = rng.random((num, 3, n))
        bit = (rng.random((num, 1)) < 0.5).astype(np.uint8)
        instr, data = self.family.build(params, n, u, bit)
        return _finish(instr.astype(np.uint8), data.astype(np.uint8))

    def columns(self, params):
        return {"family": self.name, "point": stress.Point(self.name, params, 1).id, **dict(params)}


# ----------------------------------------------------------------------------- FFL(T, p)
@dataclass(frozen=True)
class FFLFamily(Family):
    """FFL(T, p) at a grid of p, from the dense tail to far beyond the sparse one."""

    name: str = "ffl"
    description: str = "FFL(T, p) for p_ignore from 0.1 to 0.995 and three splits of the rest into writes and reads"
    parameters: tuple[str, ...] = ("p_write", "p_read", "p_ignore")
    P_IGNORE: tuple[float, ...] = (0.1, 0.5, 0.8, 0.9, 0.95, 0.98, 0.995)
    WRITE_SHARE: tuple[float, ...] = (0.2, 0.5, 0.8)

    def points(self, length):
        out = []
        for p_i in self.P_IGNORE:
            for share in self.WRITE_SHARE:
                p_w = round((1 - p_i) * share, 6)
                out.append(Params((("p_write", p_w), ("p_read", round(1 - p_i - p_w, 6)), ("p_ignore", p_i))))
        return out

    def sample(self, params, length, rng, num):
        dist = language.FFL(length, params["p_write"], params["p_read"], params["p_ignore"])
        return language.sample(dist, num, int(rng.integers(2**63)))


# ----------------------------------------------------------------------------- planted read
def _grid(limit: int) -> list[int]:
    values = [1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]
    return [v for v in values if v < limit] + ([limit] if limit not in values else [])


@dataclass(frozen=True)
class PlantedFamily(Family):
    """One decisive read planted with a chosen write distance, distractors, decoys and position."""

    name: str = "planted"
    description: str = ("a read planted at a chosen position, its write `distance` back, opposite-bit distractors "
                        "and decoy writes, FFL(background) filler around")
    parameters: tuple[str, ...] = ("distance", "density", "decoys", "at", "background")
    DENSITY: tuple[float, ...] = (0.0, 0.5, 1.0)
    DECOYS: tuple[int, ...] = (0, 1, 3, 7)
    AT: tuple[float, ...] = (0.5, 1.0)
    BACKGROUND: tuple[float, ...] = (0.8, 0.98)

    @staticmethod
    def read_slot(params: Params, n: int) -> int:
        return round(params["at"] * (n - 1))

    def fits(self, params: Params, n: int) -> bool:
        e = self.read_slot(params, n)
        return e - params["distance"] - params["decoys"] >= 0 and e >= 1  # the planted window fits

    def points(self, length):
        n = length // 2
        out = []
        for d in _grid(n - 1):
            for density in self.DENSITY:
                if d == 1 and density:
                    continue  # no ignore between write and read: density means nothing
                for m in self.DECOYS:
                    for at in self.AT:
                        for bg in self.BACKGROUND:
                            p = Params((("distance", d), ("density", density), ("decoys", m), ("at", at),
                                        ("background", bg)))
                            if self.fits(p, n) and p not in out:
                                out.append(p)
        return out

    def sample(self, params, length, rng, num):
        n = length // 2
        if not self.fits(params, n):
            raise UsageError(f"planted point {dict(params)} does not fit length {length}")
        bg = language.FFL.from_p_ignore(params["background"], length)
        u = rng.random((num, n))
        instr = np.where(u < bg.p_write, W, np.where(u < bg.p_write + bg.p_read, R, I)).astype(np.uint8)
        data = (rng.random((num, n)) < 0.5).astype(np.uint8)
        bit = (rng.random(num) < 0.5).astype(np.uint8)[:, None]
        e, d, m = self.read_slot(params, n), params["distance"], params["decoys"]
        write = e - d
        instr[:, write - m : write] = W
        data[:, write - m : write] = 1 - bit
        instr[:, write] = W
        data[:, write : write + 1] = bit
        between = slice(write + 1, e)
        k = e - write - 1
        instr[:, between] = I
        forced = math.ceil(params["density"] * k - 1e-9)
        if forced:
            ranks = np.argsort(np.argsort(rng.random((num, k)), axis=1), axis=1)
            data[:, between] = np.where(ranks < forced, 1 - bit, data[:, between])
        instr[:, e] = R
        return _finish(instr, data)

    def columns(self, params):
        return {"family": self.name, "point": None, "distance": params["distance"], "density": params["density"],
                "decoys": params["decoys"]}


FAMILIES: dict[str, Family] = {
    **{name: StressFamily(f) for name, f in stress.FAMILIES.items()},
    "ffl": FFLFamily(),
    "planted": PlantedFamily(),
}


def point_label(family: str, params: Params) -> str:
    """``planted(distance=16,density=1.0,...)``: the readable name of one arm."""
    return stress.Point(family, params, 1).id


def arms(length: int, names: list[str] | None = None) -> list[tuple[str, Params]]:
    """Every (family, point) that fits length T, family by family."""
    chosen = names or list(FAMILIES)
    unknown = [n for n in chosen if n not in FAMILIES]
    if unknown:
        raise UsageError(f"unknown hunt family {unknown[0]!r} (known: {', '.join(FAMILIES)})")
    return [(name, p) for name in chosen for p in FAMILIES[name].points(length)]
