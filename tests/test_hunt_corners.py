"""The map's corners: each reachable one gets its read quota from the map's own candidates, and its
reads and errors in hunt.json equal a recount from the sequences with the symbol-by-symbol descriptors."""

from __future__ import annotations

import numpy as np

from ffbench import language
from ffbench.hunt import atlas, corners, descriptors
from tests.test_hunt_descriptors import reference

THRESHOLD = 14  # the fake model is wrong from this many opposite ignores in the strict run before a read


def _fill(length: int, reads: int, seed: int):
    """The map's candidates alone in rounds of 60 sequences; a read counts wrong when its strict opposite run
    is THRESHOLD or more. Returns the cells, the aims and every sequence."""
    rng, cells, aims, seqs, done = np.random.default_rng(seed), {}, {}, [], 0
    while done < reads:
        amap = atlas.Atlas(cells, aims)
        arr = np.stack([atlas.candidate(amap, length, rng)[0] for _ in range(60)])
        d = descriptors.describe(arr)
        keys = descriptors.cell_keys(d)
        for k in range(arr.shape[0]):
            mine = d["seq_index"] == k
            wrong = d["opposite_run"][mine] >= THRESHOLD
            amap.add(arr[k], keys[mine], d["slot"][mine], wrong, np.ones(mine.sum()), "cover")
        seqs.extend(arr)
        done += d["slot"].size
    return cells, aims, seqs


def _inside(corner: corners.Corner, row: dict) -> bool:
    return all(row[a] >= lo and (hi is None or row[a] < hi) for a, lo, hi in corner.where)


def test_every_reachable_corner_gets_its_quota_and_counts_equal_a_recount(monkeypatch):
    monkeypatch.setattr(corners, "CORNER_QUOTA", 20)
    cells, aims, seqs = _fill(128, 3000, 3)
    assert set(atlas.reachable_corners(128)) == {c.name for c in corners.CORNERS}
    rows = [r for text in language.to_strings(np.stack(seqs)) for r in reference(text)]
    got = {c["name"]: c for c in atlas.summary(atlas.Atlas(cells), 128)["corners"]}
    for c in corners.CORNERS:
        inside = [r for r in rows if _inside(c, r)]
        errors = sum(r["opposite_run"] >= THRESHOLD for r in inside)
        assert (got[c.name]["reads"], got[c.name]["errors"]) == (len(inside), errors), c.name
        assert got[c.name]["reads"] >= 20, c.name
        assert 0 < aims[f"corner:{c.name}"] <= 2 * 20
        lo, hi = got[c.name]["ci95"]
        assert lo <= got[c.name]["rate"] <= hi
    # the lstm-like threshold shows at every position: all wrong from 14, all right at 10-13
    for pos in ("early", "middle", "late"):
        assert got[f"run14_{pos}"]["errors"] == got[f"run14_{pos}"]["reads"]
        assert got[f"run10_{pos}"]["errors"] == 0


def test_corners_a_length_cannot_hold_are_reported_unreachable_and_not_aimed_at():
    """At T = 64 (32 instructions) an early read (before instruction 8) cannot follow 10 ignores, and 8 decoys,
    a gap of 2, the write and a run of 44 do not fit."""
    reach = atlas.reachable_corners(64)
    assert "run10_early" not in reach and "decoys_gap_run44" not in reach and "run14_late" in reach
    cells, aims, _ = _fill(64, 600, 4)
    rows = {c["name"]: c for c in atlas.summary(atlas.Atlas(cells), 64)["corners"]}
    assert rows["run10_early"]["reachable"] is False and rows["run10_early"]["reads"] == 0
    assert "corner:run10_early" not in aims and aims["corner:run14_late"] > 0


def test_corner_bounds_are_bin_edges():
    """A corner's bins cover exactly its box: the first and last bin start and end on its bounds."""
    for c in corners.CORNERS:
        for axis, lo, hi in c.where:
            edges = descriptors.MAP_DIMENSIONS[axis]
            bins = c.bins(axis)
            assert edges[bins[0]] == lo and bins == list(range(bins[0], bins[-1] + 1))
            assert (bins[-1] == len(edges) - 1) if hi is None else edges[bins[-1] + 1] == hi
