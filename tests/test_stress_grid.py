"""The third-round stress families (reads early, middle and late; reads inside one run; decoys x long
runs), read by an independent parser; tolerance lines as the minimum over positions, with their
region; and the check of a line against arbitrary scored reads."""

from __future__ import annotations

import json
import math
from itertools import pairwise

import numpy as np
import pytest

from ffbench import language, stress
from ffbench.errors import UsageError

LENGTHS = (12, 14, 32, 64, 128, 200, 512)


def strings(arr):
    return [bytes(row).decode("ascii") for row in arr]


def rows_of(family, length):
    """(point, compact strings) for every point of ``family`` at ``length``."""
    return [(p, strings(stress.sample_point(p, length))) for p in stress.grid(length) if p.family == family]


def opposite_run(ops, vals, j):
    """Ignores right before slot j whose bit differs from the read's (stops at anything else)."""
    run = 0
    while j - 1 - run >= 0 and ops[j - 1 - run] == "i" and vals[j - 1 - run] != vals[j]:
        run += 1
    return run


# ----------------------------------------------------------------------------- the grids, written out
def test_the_axis_grids_are_the_documented_ones():
    ks = lambda f, t: [p.params[stress.FAMILIES[f].axis] for p in stress.grid(t) if p.family == f]
    assert ks("run_blocks", 128) == [1, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 30]
    assert ks("run_blocks", 512)[-9:] == [32, 40, 48, 56, 64, 80, 96, 112, 126]
    assert ks("reads_in_run", 128) == [1, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 30]
    assert ks("reads_in_run", 512)[-5:] == [64, 80, 96, 112, 126]
    assert [(p.params["decoys"], p.params["run"]) for p in stress.grid(128) if p.family == "decoy_run"] == [
        (m, r) for m, top in ((2, 60), (10, 52)) for r in (1, 2, 4, 8, 12, 16, 24, 32, 48, top)]


def test_read_counts_are_exact():
    """Reads per point = sequences x reads per sequence, both from the documented rules."""
    def expected(family, length):
        n, total = length // 2, 0
        for p in stress.grid(length):
            if p.family != family:
                continue
            per = {"run_blocks": n // (p.params.get("k", 0) + 2),
                   "reads_in_run": (n - 1) // (p.params.get("gap", 0) + 1), "decoy_run": 1}[family]
            least = 4 if family == "run_blocks" else 2
            want = 32 if family == "decoy_run" else min(32, max(least, 2 * math.ceil(math.ceil(128 / per) / 2)))
            assert p.num == want, p.id
            total += want * per
        return total

    for length, counts in ((128, (1434, 1552, 640)), (512, (2940, 2842, 896))):
        assert tuple(expected(f, length) for f in ("run_blocks", "reads_in_run", "decoy_run")) == counts
        for family in ("run_blocks", "reads_in_run", "decoy_run"):
            counted = sum(t[0::2].count("r") for _, texts in rows_of(family, length) for t in texts)
            assert counted == sum(p.num * stress.reads_per_sequence(p, length)
                                  for p in stress.grid(length) if p.family == family)


# ----------------------------------------------------------------------------- parameters, independently
@pytest.mark.parametrize("length", LENGTHS)
def test_run_blocks_tile_the_sequence_from_its_first_instruction(length):
    n = length // 2
    for p, texts in rows_of("run_blocks", length):
        k = p.params["k"]
        assert n // (k + 2) >= 2  # at least two blocks: an early read and a late one
        for row, t in enumerate(texts):
            assert language.first_violation(np.frombuffer(t.encode(), np.uint8)[None], alphabet=2) is None
            ops, vals = t[0::2], [int(c) for c in t[1::2]]
            reads = [j for j, o in enumerate(ops) if o == "r"]
            assert len(reads) == n // (k + 2) and reads[0] == k + 1 and reads[-1] == n - 1
            assert ops[0] == "w" and vals[0] == row % 2  # the decisive bit alternates over rows
            for b, j in enumerate(reads):  # write, exactly k opposite ignores, read; bits alternate per block
                assert ops[j - k - 1] == "w" and vals[j - k - 1] == vals[j] == (row + b) % 2
                assert opposite_run(ops, vals, j) == k
            assert ops.count("w") == len(reads)


@pytest.mark.parametrize("length", LENGTHS)
def test_reads_in_run_read_inside_one_opposite_run(length):
    n = length // 2
    for p, texts in rows_of("reads_in_run", length):
        g = p.params["gap"]
        for t in texts:
            ops, vals = t[0::2], [int(c) for c in t[1::2]]
            reads = [j for j, o in enumerate(ops) if o == "r"]
            decisive = max(j for j, o in enumerate(ops) if o == "w")
            assert len(reads) == (n - 1) // (g + 1) >= 2 and reads[-1] == n - 1
            assert all(j > decisive for j in reads)  # one write decides every read
            evidence = [decisive, *reads]
            for a, b in pairwise(evidence):  # exactly gap opposite ignores since the previous read
                assert b - a == g + 1 and opposite_run(ops, vals, b) == g and vals[b] == vals[decisive]
            if decisive:  # room before it: a stale write of the other bit opens the sequence
                assert ops.count("w") == 2 and ops[0] == "w" and vals[0] != vals[decisive]


@pytest.mark.parametrize("length", LENGTHS)
def test_decoy_run_puts_many_decoys_before_a_long_run(length):
    n = length // 2
    for p, texts in rows_of("decoy_run", length):
        m, run = p.params["decoys"], p.params["run"]
        for t in texts:
            ops, vals = t[0::2], [int(c) for c in t[1::2]]
            decisive = n - 2 - run
            assert ops[decisive] == "w" and ops.count("r") == 1 and opposite_run(ops, vals, n - 1) == run
            decoys = [j for j, o in enumerate(ops[:decisive]) if o == "w"]
            assert decoys == [0, *range(decisive - m + 1, decisive)] and len(decoys) == m
            assert all(vals[j] != vals[decisive] for j in decoys)


# ----------------------------------------------------------------------------- the minimum over positions
def lines(length, wrong_if):
    """Tolerances of a rule-based model: ``wrong_if(ops, vals, slot, n)`` per read."""
    arr, cols = stress.sample_suite(length)
    reads = language.extract_reads(arr)
    correct = []
    for t in strings(arr):
        ops, vals = t[0::2], t[1::2]
        correct += [not wrong_if(ops, vals, j, len(ops)) for j, o in enumerate(ops) if o == "r"]
    points = np.asarray(cols["point"], dtype=object)[reads.seq_index]
    tols = stress.profile(stress.count_outcomes(points, correct, reads.position, length))
    return {t.line.split(":")[0]: t for t in tols}, points, reads, np.asarray(correct)


def test_a_model_that_fails_only_early_sets_the_line_at_every_position():
    # Wrong on 14 or more opposite ignores before a read in the first third of the sequence, right
    # everywhere else: run_blocks' later reads stay right, and from k = 24 on its first read is no
    # longer early.
    def early_only(ops, vals, j, n):
        return 3 * j < n and opposite_run(ops, vals, j) >= 14

    tol, *_ = lines(128, early_only)
    t = tol["run_blocks"]
    assert (t.clean_through, t.first_failure, t.length, t.span, t.thirds) == (12, 14, 128, (5, 127),
                                                                               ("early", "middle", "late"))
    # per third: the early reads fail from 14, the others never; the line is the minimum
    assert {third: (c, f) for third, c, f in t.by_third} == {
        "early": (12, 14), "middle": (30, None), "late": (30, None)}
    assert t.line == (
        "run_blocks: at T = 128, reads at positions 5-127 (early, middle, late): right on every read up to k = 12 "
        "at every position (0 errors in 128 reads, rate < 2.3e-02 at 95%), first failure at k = 14 (32 of 128 "
        "wrong, 95% CI [0.18, 0.33]) [early 32/32, middle 0/32, late 0/64]; clean again at k = 24, 28, 30")
    # the late-only family says its region: one position, and no claim about others
    start = tol["distractor_run (density=1.0, write_at=start)"]
    assert start.span == (127, 127) and start.thirds == ("late",)
    assert start.line.startswith("distractor_run (density=1.0, write_at=start): at T = 128, reads at position 127 "
                                 "(late): right on every read up to k = 62")
    d = json.loads(json.dumps(t.as_dict()))
    assert d["region"] == {"family": "run_blocks", "length": 128, "fixed": {}, "positions": [5, 127],
                           "thirds": ["early", "middle", "late"]}
    assert d["by_third"]["early"] == {"clean_through": 12, "first_failure": 14}
    assert d["values"][7] == {"k": 14, "reads": 128, "errors": 32, "ci95": d["values"][7]["ci95"], "by_third": {
        "early": {"reads": 32, "errors": 32}, "middle": {"reads": 32, "errors": 0}, "late": {"reads": 64, "errors": 0}}}


def test_a_model_that_fails_only_late_lowers_the_line_too():
    tol, *_ = lines(128, lambda ops, vals, j, n: j >= 2 * n / 3 and opposite_run(ops, vals, j) >= 20)
    t = tol["reads_in_run"]
    assert (t.clean_through, t.first_failure) == (16, 20)
    assert {third: (c, f) for third, c, f in t.by_third} == {"early": (20, None), "middle": (30, None),
                                                                  "late": (16, 20)}


# ----------------------------------------------------------------------------- checking a line
def test_the_checker_finds_exactly_the_reads_that_contradict_a_line():
    tol, points, reads, correct = lines(128, lambda ops, vals, j, n: opposite_run(ops, vals, j) >= 14)
    line = tol["run_blocks"]
    assert line.clean_through == 12
    # The run's own reads never contradict it.
    own = [{"family": "run_blocks", "k": stress.parse_point(p)[1]["k"], "T": 128, "position": int(pos),
            "wrong": not ok} for p, pos, ok in zip(points, reads.position, correct) if p.startswith("run_blocks")]
    check = stress.check_line(line, own)
    assert check.holds and check.in_region == 1434 and check.claimed == sum(r["k"] <= 12 for r in own)
    hand = [
        {"family": "run_blocks", "k": 13, "T": 128, "position": 29, "wrong": True},   # between grid values: not claimed
        {"family": "run_blocks", "k": 11, "T": 128, "position": 25, "wrong": True},   # claimed and wrong: contradicts
        {"family": "run_blocks", "k": 11, "T": 128, "position": 25, "wrong": False},  # claimed and right
        {"family": "run_blocks", "k": 3, "T": 128, "position": 3, "wrong": True},     # before the first position measured
        {"family": "run_blocks", "k": 3, "T": 512, "position": 9, "wrong": True},     # another length
        {"family": "reads_in_run", "gap": 3, "T": 128, "position": 9, "wrong": True},  # another family
        {"family": "run_blocks", "k": 12, "T": 128, "position": 127, "wrong": True, "note": "x"},  # contradicts
    ]
    check = stress.check_line(line.as_dict(), hand)  # the results.json form works the same
    assert (check.in_region, check.claimed) == (4, 3)
    assert [(r["k"], r["position"]) for r in check.contradicting] == [(11, 25), (12, 127)]
    # fixed parameters must match: a density-0.5 read is outside a density-1.0 line
    start = tol["distractor_run (density=1.0, write_at=start)"].as_dict()
    read = {"family": "distractor_run", "density": 0.5, "write_at": "start", "k": 1, "T": 128, "position": 127,
            "wrong": True}
    assert stress.check_line(start, [read]).in_region == 0
    assert not stress.check_line(start, [{**read, "density": 1.0}]).holds


def test_the_checker_refuses_reads_it_cannot_place():
    tol, *_ = lines(64, lambda ops, vals, j, n: False)
    line = tol["distractor_run (density=1.0, write_at=start)"]
    with pytest.raises(UsageError, match="read 0: missing position"):
        stress.check_line(line, [{"family": "distractor_run", "T": 64, "wrong": True}])
    with pytest.raises(UsageError, match="read 0: a distractor_run read needs its parameters write_at, k"):
        stress.check_line(line, [{"family": "distractor_run", "density": 1.0, "T": 64, "position": 63, "wrong": True}])
    bare = stress.tolerance([stress.Outcome("write_distance", stress.Params((("distance", 4),)), 10, 0)])
    with pytest.raises(UsageError, match="states no region"):
        stress.check_line(bare, [])
