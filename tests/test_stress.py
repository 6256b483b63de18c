"""The stress preset: determinism, legality, parameters checked by an independent parser, the
tolerance line on synthetic models with known break points, and the read budget."""

from __future__ import annotations

import json
import math
import pickle
from itertools import pairwise

import numpy as np
import pytest

from ffbench import datafiles, language, stress
from ffbench.errors import FFBenchError, UsageError
from ffbench.metrics import clopper_pearson


# ----------------------------------------------------------------------------- independent parser
def parse(text: str) -> dict:
    """What a compact string contains, read symbol by symbol (no ffbench helpers)."""
    ops = text[0::2]
    vals = [int(c) for c in text[1::2]]
    n = len(ops)
    assert ops[-1] == "r"
    writes = [j for j in range(n) if ops[j] == "w"]
    reads = [j for j in range(n) if ops[j] == "r"]
    decisive = max(j for j in writes if j < n - 1)
    bit = vals[decisive]
    run = 0
    while ops[n - 2 - run] == "i" and vals[n - 2 - run] != bit:
        run += 1
    return {"ops": ops, "vals": vals, "n": n, "writes": writes, "reads": reads, "decisive": decisive,
            "bit": bit, "opposite_run": run}


def strings(arr):
    return [bytes(row).decode("ascii") for row in arr]


def per_point(length):
    arr, cols = stress.sample_suite(length)
    texts = strings(arr)
    groups: dict[str, list[int]] = {}
    for row, pid in enumerate(cols["point"]):
        groups.setdefault(pid, []).append(row)
    return texts, cols, groups


LENGTHS = (12, 14, 30, 64, 128, 200, 512)


# ----------------------------------------------------------------------------- determinism, legality
def test_suite_is_deterministic_and_pinned():
    a1, c1 = stress.sample_suite(128)
    a2, c2 = stress.sample_suite(128)
    assert a1.tobytes() == a2.tobytes() and c1 == c2
    # Pinned content: the same bytes on any machine and any numpy that keeps PCG64's doubles.
    assert datafiles.content_sha256(a1) == "ca77b44bbbe502f56c1da6095cf06c79f80a479c217d90de3f88e7659b15c991"
    assert datafiles.content_sha256(stress.sample_suite(512)[0]) == "b20db12cfb6da5c52c9d0757549bd9f32bb7951e575d906e44725a14e46b9df8"


def test_seed_changes_rows_but_not_the_grid():
    a, ca = stress.sample_suite(64)
    b, cb = stress.sample_suite(64, seed=7)
    assert ca == cb and a.shape == b.shape and a.tobytes() != b.tobytes()


def test_first_rows_do_not_depend_on_num_and_points_do_not_depend_on_neighbours():
    big = {p.id: stress.sample_point(p, 200) for p in stress.grid(200, num=10)}
    for p in stress.grid(200, num=4):
        assert big[p.id][:4].tobytes() == stress.sample_point(p, 200).tobytes()
    # The streamed suite equals its points sampled one by one.
    arr, _ = stress.sample_suite(200, num=4)
    assert arr.tobytes() == np.concatenate([stress.sample_point(p, 200) for p in stress.grid(200, num=4)]).tobytes()


@pytest.mark.parametrize("length", [*range(12, 72, 2), 128, 254, 512, 1000])
def test_every_sequence_is_legal_at_any_even_length(length):
    arr, cols = stress.sample_suite(length)
    assert language.first_violation(arr, alphabet=2) is None
    assert arr.shape == (sum(p.num for p in stress.grid(length)), length)
    assert set(cols["family"]) == set(stress.FAMILIES)  # every family has a point from T = 12 on


@pytest.mark.parametrize("length", [4, 10, 13, 129, "64"])
def test_bad_lengths_are_usage_errors(length):
    with pytest.raises(UsageError, match="even length >= 12"):
        stress.grid(length)


def test_a_point_that_does_not_fit_is_refused():
    wide = next(p for p in stress.grid(512) if p.family == "distractor_run" and p.params["k"] == 254)
    with pytest.raises(UsageError, match="does not fit length 128"):
        stress.sample_point(wide, 128)


# ----------------------------------------------------------------------------- parameters, independently
@pytest.mark.parametrize("length", LENGTHS)
def test_distractor_run_sequences_have_their_parameters(length):
    texts, cols, groups = per_point(length)
    n = length // 2
    ks = sorted({cols["k"][rows[0]] for rows in groups.values() if cols["family"][rows[0]] == "distractor_run"})
    assert ks[-1] == n - 2 and all(k < n - 2 for k in ks[:-1])
    for rows in groups.values():
        if cols["family"][rows[0]] != "distractor_run":
            continue
        k, density, write_at = cols["k"][rows[0]], cols["density"][rows[0]], cols["write_at"][rows[0]]
        assert cols["decoys"][rows[0]] is None and cols["gap"][rows[0]] is None
        for row in rows:
            s = parse(texts[row])
            assert s["reads"] == [n - 1]
            run = range(n - 1 - k, n - 1)
            assert all(s["ops"][j] == "i" for j in run)
            opposite = sum(s["vals"][j] != s["bit"] for j in run)
            if density == 1.0:
                assert s["opposite_run"] == k
            else:
                assert opposite >= math.ceil(k / 2)
            if write_at == "start":
                assert s["writes"] == [0]
            else:
                assert s["decisive"] == n - 2 - k
                if s["decisive"] > 0:  # a stale write of the other bit opens the sequence
                    assert s["writes"] == [0, n - 2 - k] and s["vals"][0] != s["bit"]
                else:
                    assert s["writes"] == [0]


def test_half_density_runs_mix_forced_and_random_bits():
    texts, cols, groups = per_point(512)
    for pid, rows in groups.items():
        if cols["family"][rows[0]] != "distractor_run" or cols["density"][rows[0]] != 0.5:
            continue
        k = cols["k"][rows[0]]
        if k < 64:
            continue
        parsed = [parse(texts[r]) for r in rows]
        fractions = [np.mean([v != s["bit"] for v in s["vals"][-1 - k:-1]]) for s in parsed]
        # ceil(k/2) forced opposite, the rest fair coins: 3/4 expected. The sd of a row's fraction is
        # sqrt(1 / 8k) <= 0.044 at k >= 64, of the mean of 32 rows <= 0.008: 0.05 is six of them.
        assert abs(np.mean(fractions) - 0.75) < 0.05, pid
        assert min(fractions) < 1.0  # not a full run


@pytest.mark.parametrize("length", LENGTHS)
def test_decoy_writes_sequences_have_their_parameters(length):
    texts, cols, groups = per_point(length)
    n = length // 2
    run = (n - 2) // 2
    for rows in groups.values():
        if cols["family"][rows[0]] != "decoy_writes":
            continue
        m, placement = cols["decoys"][rows[0]], cols["placement"][rows[0]]
        assert cols["k"][rows[0]] is None
        layouts = set()
        for row in rows:
            s = parse(texts[row])
            before = [j for j in s["writes"] if j < s["decisive"]]
            assert len(before) == m and before[0] == 0
            assert all(s["vals"][j] != s["bit"] for j in before)
            if placement == "adjacent":
                assert before[1:] == list(range(s["decisive"] - m + 1, s["decisive"]))
            layouts.add(tuple(before))
        if placement == "spread" and 1 < m < s["decisive"] - 2:
            assert len(layouts) > 1  # the decoys move from row to row
            assert s["opposite_run"] == run == n - 2 - s["decisive"]
            assert s["reads"] == [n - 1]


@pytest.mark.parametrize("length", LENGTHS)
def test_write_distance_sequences_have_their_parameters(length):
    texts, cols, groups = per_point(length)
    n = length // 2
    seen = []
    for rows in groups.values():
        if cols["family"][rows[0]] != "write_distance":
            continue
        d = cols["distance"][rows[0]]
        seen.append(d)
        for row in rows:
            s = parse(texts[row])
            assert n - 1 - s["decisive"] == d and s["reads"] == [n - 1]
            assert all(s["ops"][j] == "i" for j in range(s["decisive"] + 1, n - 1))
            if d == n - 1:
                assert s["writes"] == [0]
            else:
                assert s["writes"] == [0, s["decisive"]] and s["vals"][0] != s["bit"]
    assert seen[-1] == n - 1 and seen == sorted(seen)


@pytest.mark.parametrize("length", LENGTHS)
def test_dense_interference_sequences_have_their_parameters(length):
    texts, cols, groups = per_point(length)
    n = length // 2
    for rows in groups.values():
        if cols["family"][rows[0]] != "dense_interference":
            continue
        g = cols["gap"][rows[0]]
        for row in rows:
            s = parse(texts[row])
            assert s["writes"] == list(range(0, n - 1, g))
            values = [s["vals"][j] for j in s["writes"]]
            assert all(a != b for a, b in pairwise(values))  # alternating
            bounds = s["writes"] + [n]
            for lo, hi in pairwise(bounds):
                assert sum(s["ops"][j] == "r" for j in range(lo + 1, hi)) == 1  # one read per block
                assert all(s["vals"][j] != s["vals"][lo] for j in range(lo + 1, hi) if s["ops"][j] == "i")
            assert len(s["reads"]) == (n - 2) // g + 1


@pytest.mark.parametrize("length", (64, 512))
def test_every_point_asks_for_both_answers_equally(length):
    texts, _, groups = per_point(length)
    for pid, rows in groups.items():
        bits = [parse(texts[r])["vals"][-1] for r in rows]
        assert bits.count(0) == bits.count(1), pid


def test_point_ids_round_trip_and_name_the_columns():
    for p in stress.grid(512):
        family, params = stress.parse_point(p.id)
        assert family == p.family and params == p.params
        assert [type(v) for v in params.values()] == list(stress.FAMILIES[family].types)
    assert stress.parse_point("distractor_run(density=0.5,write_at=adjacent,k=16)")[1]["density"] == 0.5
    points = stress.grid(64)
    assert pickle.loads(pickle.dumps(points)) == points and len(set(points)) == len(points)  # for process pools
    for bad in ("nope(k=1)", "distractor_run(k=1)", "decoy_writes(decoys=x)", "write_distance"):
        with pytest.raises(FFBenchError, match="stress point"):
            stress.parse_point(bad)


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_the_suite_round_trips_through_data_files(tmp_path, suffix):
    arr, cols = stress.sample_suite(64)
    path = tmp_path / f"stress{suffix}"
    datafiles.write_sequences(path, [datafiles.Chunk(arr, cols)])
    back = datafiles.read_sequences(path)
    assert back.sequences.tobytes() == arr.tobytes()
    assert {k: back.columns[k] for k in stress.COLUMNS} == cols


# ----------------------------------------------------------------------------- cost
def test_the_preset_costs_a_few_thousand_reads():
    def reads(length):
        arr, _ = stress.sample_suite(length)
        counted = sum(t[0::2].count("r") for t in strings(arr))
        assert counted == sum(p.num * stress.reads_per_sequence(p, length) for p in stress.grid(length))
        return arr.shape[0], counted

    # The families of the second round: distractor_run 40 points x 32 + decoy_writes 10 x 32 + write_distance
    # 10 x 32 + dense 2 x 32 + 16 x 16 + 32 x 8 + 32 x 4 (sequences x reads each) = 2,624 reads at T = 128;
    # 56 x 32 + 10 x 32 + 14 x 32 + dense 2 x 128 + 4 x 64 + 8 x 32 + 16 x 16 = 3,584 at T = 512.
    # Added in the third round (tests/test_stress_grid.py counts them family by family): run_blocks,
    # reads_in_run and decoy_run, 3,626 reads at T = 128 and 6,678 at T = 512.
    assert reads(128) == (3272, 2624 + 3626)
    assert reads(512) == (4198, 3584 + 6678)


# ----------------------------------------------------------------------------- tolerance
def synthetic_verdicts(texts, wrong_if):
    """Per read, in row-major order: ``wrong_if(ops, vals, slot)`` decides a read is wrong."""
    correct = []
    for t in texts:
        ops, vals = t[0::2], t[1::2]
        for j, op in enumerate(ops):
            if op == "r":
                correct.append(not wrong_if(ops, vals, j))
    return correct


def opposite_run_before(ops, vals, j):
    run = 0
    while j - 1 - run >= 0 and ops[j - 1 - run] == "i" and vals[j - 1 - run] != vals[j]:
        run += 1
    return run


def lines_for(length, wrong_if):
    arr, cols = stress.sample_suite(length)
    reads = language.extract_reads(arr)
    point_of_read = np.asarray(cols["point"], dtype=object)[reads.seq_index]
    correct = synthetic_verdicts(strings(arr), wrong_if)
    return {t.line.split(":")[0]: t for t in stress.profile(stress.count_outcomes(point_of_read, correct))}


def test_tolerance_line_of_a_model_that_breaks_at_32_opposite_ignores():
    tol = lines_for(512, lambda ops, vals, j: opposite_run_before(ops, vals, j) >= 32)
    start = tol["distractor_run (density=1.0, write_at=start)"]
    assert start.line == (
        "distractor_run (density=1.0, write_at=start): right on every read up to k = 24 (0 errors in 32 reads, "
        "rate < 8.9e-02 at 95%), first failure at k = 32 (32 of 32 wrong, 95% CI [0.89, 1]); errors at all 6 "
        "larger values")
    assert (start.clean_through, start.first_failure, start.recovers) == (24, 32, False)
    assert tol["distractor_run (density=1.0, write_at=adjacent)"].line == start.line.replace("start", "adjacent")
    for placement in ("spread", "adjacent"):
        decoys = tol[f"decoy_writes (placement={placement})"]
        assert decoys.line == (f"decoy_writes (placement={placement}): fails already at decoys = 1 (32 of 32 wrong, "
                               "95% CI [0.89, 1]); errors at all 4 larger values")
        assert decoys.clean_through is None
    assert tol["write_distance"].line == (
        "write_distance: right on every read up to distance = 255 (0 errors in 32 reads, rate < 8.9e-02 at 95%), "
        "no failure on the grid")
    assert tol["dense_interference"].line == (
        "dense_interference: right on every read down to gap = 2 (0 errors in 256 reads, rate < 1.2e-02 at 95%), "
        "no failure on the grid")


def test_tolerance_reports_recovery_and_the_smaller_is_harder_direction():
    # Wrong only on runs of 32 to 63 opposite ignores: clean again from k = 64 on.
    tol = lines_for(512, lambda ops, vals, j: 32 <= opposite_run_before(ops, vals, j) < 64)
    start = tol["distractor_run (density=1.0, write_at=start)"]
    assert start.line.endswith("first failure at k = 32 (32 of 32 wrong, 95% CI [0.89, 1]); "
                               "clean again at k = 64, 96, 128, 192, 254")
    assert start.clean_after == (64, 96, 128, 192, 254) and start.recovers
    # Wrong when two writes fall among the four instructions before a read: only gap 2 does that, and
    # there every read but each sequence's first (2 sequences x 127 of 128 reads).
    tol = lines_for(512, lambda ops, vals, j: ops[max(0, j - 4):j].count("w") >= 2)
    assert tol["dense_interference"].line == (
        "dense_interference: right on every read down to gap = 4 (0 errors in 256 reads, rate < 1.2e-02 at 95%), "
        "first failure at gap = 2 (254 of 256 wrong, 95% CI [0.97, 1])")
    assert json.loads(json.dumps(tol["dense_interference"].as_dict()))["values"][-1] == {
        "gap": 2, "reads": 256, "errors": 254, "ci95": list(clopper_pearson(254, 256))}


def test_tolerance_takes_one_series_and_skips_empty_points():
    p = stress.Params
    row = lambda k, reads, errors: stress.Outcome("distractor_run", p((("density", 1.0), ("write_at", "start"),
                                                                       ("k", k))), reads, errors)
    t = stress.tolerance([row(8, 10, 0), row(4, 10, 0), row(16, 0, 0), row(2, 10, 1)])
    assert t.line == ("distractor_run (density=1.0, write_at=start): fails already at k = 2 (1 of 10 wrong, 95% CI "
                      "[0.0025, 0.45]); clean again at k = 4, 8")
    other = stress.Outcome("distractor_run", p((("density", 0.5), ("write_at", "start"), ("k", 4))), 10, 0)
    with pytest.raises(FFBenchError, match="one family with fixed parameters"):
        stress.tolerance([row(2, 10, 0), other])
    with pytest.raises(FFBenchError, match="no reads"):
        stress.tolerance([row(2, 0, 0)])
    with pytest.raises(FFBenchError, match="impossible"):
        stress.tolerance([row(2, 3, 4)])
