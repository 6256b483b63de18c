"""The map's *corners*: named regions where a known kind of failure lives, each given a read quota.

The map search spreads its reads over cells and pair cells (:mod:`ffbench.hunt.atlas`), but a failure
that needs three descriptors at once (many decoys, a gap before the write and a long run after it) is
neither a cell a random target hits often nor a pair cell: a 20,000-read hunt gave the held-out combined
corner 28-44 reads per model, too few for an interval that says anything. A corner is a box of bins on
the map's axes (:data:`ffbench.hunt.descriptors.MAP_DIMENSIONS`; each bound a bin edge) that stands for
one failure seen on a shipped reference (issue 24). Corners take the pair-aimed share of a round's reads
first, until each holds :data:`CORNER_QUOTA` reads (counted exactly from the map's cells, whatever kind
of candidate put them there); a corner no target reaches at the hunt's length (:func:`reachable`) is
reported as such, not aimed at. Aiming at corners is :func:`ffbench.hunt.atlas.corner_target`'s job.

The length T is not an axis: a hunt reads at one T (``map.length`` in hunt.json), so its map and
corners say nothing about another T; hunt again with ``--length`` for that.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ffbench.hunt import descriptors as desc
from ffbench.metrics import clopper_pearson

CORNER_QUOTA = 120  # reads per corner (from any candidate) before corner targets stop aiming there


@dataclass(frozen=True)
class Corner:
    """A box on the map's axes: per axis [lo, hi) in descriptor units (hi None: open), each a bin edge."""

    name: str
    stands_for: str  # the failure it is there to measure (which model, what was seen)
    where: tuple[tuple[str, float, float | None], ...]

    def bins(self, axis: str) -> list[int]:
        """The bins of ``axis`` inside the box (every bin when the corner does not bound it)."""
        return _bins(self, axis)

    def holds(self, key: str) -> bool:
        """Whether a cell (its key) lies inside the box."""
        idx = key.split(",")
        return all(int(idx[_AXES.index(name)]) in _bins(self, name) for name, _, _ in self.where)


@functools.cache
def _bins(corner: Corner, axis: str) -> list[int]:
    """Corner.bins, computed once (every cell of the map is tested against every corner)."""
    edges = desc.MAP_DIMENSIONS[axis]
    for name, lo, hi in corner.where:
        if name == axis:
            return [i for i, e in enumerate(edges)
                    if e >= lo and (hi is None or (i + 1 < len(edges) and edges[i + 1] <= hi))]
    return list(range(len(edges)))


_AXES = list(desc.MAP_DIMENSIONS)
_EARLY, _MIDDLE, _LATE = ("fraction", 0.0, 0.25), ("fraction", 0.25, 0.75), ("fraction", 0.75, None)
_POSITIONS = (("early", _EARLY), ("middle", _MIDDLE), ("late", _LATE))

CORNERS: tuple[Corner, ...] = (
    Corner("decoys_gap_run44", "transformer-mix: >= 8 opposite decoy writes as one block, 2-8 ignores, the "
           "decisive write, then a strict opposite run >= 44 (the held-out combined corner)",
           (("decoys", 8, None), ("gap_before_write", 2, 9), ("opposite_run", 44, None))),
    Corner("decoys_adjacent_run44", "transformer-mix: >= 8 opposite decoys right before the write, then a strict "
           "opposite run >= 44 (89/500 wrong at runs of 45-52 after ten decoys)",
           (("decoys", 8, None), ("gap_before_write", 0, 1), ("opposite_run", 44, None))),
    Corner("read_then_run32", "transformer-ref: reads in between, then a strict opposite run of 32-39 since "
           "the previous read (wrong from about 34-38)",
           (("reads_between", 1, None), ("opposite_run", 32, 40))),
    Corner("read_then_run40", "transformer-ref: reads in between, then a strict opposite run >= 40 since the "
           "previous read", (("reads_between", 1, None), ("opposite_run", 40, None))),
    Corner("reads_inside_run", "lstm-ref and transformer-ref: >= 4 reads inside >= 40 opposite ignores since "
           "the write (families with many reads in one long opposite run fail heavily)",
           (("reads_between", 4, None), ("opposite_since_write", 40, None))),
    *(Corner(f"start_write_opp14_{pos}", f"lstm-ref: the write opens the sequence and 14 or more opposite ignores "
             f"follow it, the read {pos} in the sequence (wrong on every read from 14 on, T=128 and T=512)",
             (box, ("write_slot", 0, 1), ("opposite_since_write", 14, None))) for pos, box in _POSITIONS),
    *(Corner(f"run14_{pos}", f"lstm-ref's threshold away from the start: 14-15 opposite ignores since the write, all "
             f"in the strict run before the read, the read {pos} in the sequence",
             (box, ("opposite_since_write", 14, 16), ("opposite_run", 14, 16))) for pos, box in _POSITIONS),
    *(Corner(f"run10_{pos}", f"the same below lstm-ref's threshold: 10-13 opposite ignores since the write, all in "
             f"the strict run before the read, the read {pos} in the sequence (right at 10-13)",
             (box, ("opposite_since_write", 10, 14), ("opposite_run", 10, 14))) for pos, box in _POSITIONS),
)


def _check_edges() -> None:
    """Every bound is a bin edge of its axis (a box between edges would count reads outside it)."""
    for c in CORNERS:
        for name, lo, hi in c.where:
            edges = desc.MAP_DIMENSIONS[name]
            if lo not in edges or (hi is not None and hi not in edges):
                raise ValueError(f"corner {c.name}: [{lo}, {hi}) on {name} is not on its bin edges {edges}")


_check_edges()


def counts(cells: dict) -> dict[str, tuple[int, int]]:
    """Reads and errors per corner, summed over the map's cells inside it."""
    out = {c.name: [0, 0] for c in CORNERS}
    for key, cell in cells.items():
        for c in CORNERS:
            if c.holds(key):
                out[c.name][0] += cell["reads"]
                out[c.name][1] += cell["errors"]
    return {k: (v[0], v[1]) for k, v in out.items()}


def summary(cells: dict, reach: tuple[str, ...]) -> list[dict]:
    """hunt.json's ``map.corners``: per corner its box, whether a target reaches it at the hunt's length
    (``reach``: :func:`ffbench.hunt.atlas.reachable_corners`), reads, errors, rate and exact 95% interval."""
    got = counts(cells)
    out = []
    for c in CORNERS:
        reads, errors = got[c.name]
        lo, hi = clopper_pearson(errors, reads) if reads else (0.0, 1.0)
        out.append({"name": c.name, "stands_for": c.stands_for,
                    "where": [{"axis": a, "min": lo_, "below": hi_} for a, lo_, hi_ in c.where],
                    "reachable": c.name in reach, "reads": reads, "errors": errors,
                    "rate": errors / reads if reads else None, "ci95": [lo, hi]})
    return out
