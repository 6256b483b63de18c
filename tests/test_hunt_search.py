"""The hunter's generators and moves: every sequence legal, every parameter what it claims, and the
bandit choosing what pays."""

from __future__ import annotations

import numpy as np
import pytest

from ffbench import language
from ffbench.hunt import bandit, families, mutations
from ffbench.stress import Params


def planted_facts(text: str, slot: int) -> dict:
    """What surrounds the read at instruction ``slot``, read symbol by symbol (no ffbench helpers)."""
    ops, vals = text[0::2], [int(c) for c in text[1::2]]
    assert ops[slot] == "r"
    write = max(j for j in range(slot) if ops[j] == "w")
    bit = vals[write]
    between = list(range(write + 1, slot))
    decoys = 0
    while write - 1 - decoys >= 0 and ops[write - 1 - decoys] == "w" and vals[write - 1 - decoys] != bit:
        decoys += 1
    return {"distance": slot - write, "only_ignores": all(ops[j] == "i" for j in between),
            "opposite": sum(vals[j] != bit for j in between), "between": len(between), "decoys": decoys}


@pytest.mark.parametrize("length", [8, 12, 30, 64, 128, 200])
def test_every_family_point_yields_legal_sequences_at_any_length(length):
    rng = np.random.default_rng(length)
    arms = families.arms(length)
    assert arms, "some point fits every length >= 8"
    for family, params in arms:
        arr = families.FAMILIES[family].sample(params, length, rng, 3)
        assert arr.shape == (3, length)
        assert language.first_violation(arr, alphabet=2) is None


def test_planted_points_have_exactly_their_parameters():
    rng = np.random.default_rng(0)
    fam = families.FAMILIES["planted"]
    points = fam.points(128)
    assert len(points) > 100
    for params in points:
        slot = fam.read_slot(params, 64)
        for text in language.to_strings(fam.sample(params, 128, rng, 4)):
            facts = planted_facts(text, slot)
            assert facts["distance"] == params["distance"] and facts["only_ignores"]
            # at least ceil(density * between) distractors carry the other bit; the rest are random, as in stress
            assert facts["opposite"] >= int(np.ceil(params["density"] * facts["between"] - 1e-9))
            if params["density"] == 1.0:
                assert facts["opposite"] == facts["between"]
            # decoys right before the decisive write carry the other bit; an earlier filler write may extend the run
            assert facts["decoys"] >= params["decoys"]


def test_stress_families_are_drawn_afresh_with_both_bits():
    rng = np.random.default_rng(1)
    fam = families.FAMILIES["distractor_run"]
    params = Params((("density", 1.0), ("write_at", "start"), ("k", 16)))
    arr = fam.sample(params, 64, rng, 40)
    texts = language.to_strings(arr)
    assert len(set(texts)) == 40  # fresh filler every draw
    assert {t[-1] for t in texts} == {"0", "1"}  # random decisive bits, both answers asked
    for t in texts:  # the run: the 16 ignores before the final read all carry the other bit
        assert all(t[2 * j] == "i" and t[2 * j + 1] != t[-1] for j in range(31 - 16, 31))


def test_ffl_points_span_the_tails_and_sum_to_one():
    pts = families.FAMILIES["ffl"].points(64)
    assert {p["p_ignore"] for p in pts} >= {0.1, 0.8, 0.98, 0.995}
    for p in pts:
        assert abs(p["p_write"] + p["p_read"] + p["p_ignore"] - 1) < 1e-9


def test_every_move_keeps_sequences_legal_and_changes_them():
    rng = np.random.default_rng(2)
    seqs = language.sample(language.FFL.from_p_ignore(0.5, 48), 60, 3)
    applied = {m: 0 for m in mutations.MOVES}
    for seq in seqs:
        reads = np.flatnonzero(seq[0::2] == language.R)
        for move in mutations.MOVES:
            out = mutations.mutate(seq, int(reads[-1]), rng, move)
            if out is None:
                continue
            child, name = out
            assert name == move and child.shape == seq.shape and not np.array_equal(child, seq)
            assert language.first_violation(child[None], alphabet=2) is None
            applied[move] += 1
    assert all(applied.values()), applied  # every move applies somewhere


def test_stretch_lengthens_the_run_before_the_weak_read():
    rng = np.random.default_rng(4)
    seq = language.to_array(["w1i0i0i0i1w0i1i1i0r0"])[0]
    for _ in range(10):
        out = mutations.mutate(seq, 9, rng, "stretch")
        if out is None:
            continue
        child = language.to_strings(out[0][None])[0]
        assert child[18] == "r" and child.count("i") == seq.tobytes().decode().count("i")
        # the decisive write moved one instruction further from the read
        assert child[10] == "i" and child[8] == "w"


def test_neighbours_are_distinct_legal_variants():
    rng = np.random.default_rng(5)
    seq = language.sample(language.FFL.from_p_ignore(0.8, 64), 1, 9)[0]
    got = mutations.neighbours(seq, 31, rng, 25)
    keys = {c.tobytes() for c, _ in got}
    assert len(got) == 25 and len(keys) == 25 and seq.tobytes() not in keys
    for child, moves in got:
        assert 1 <= len(moves) <= 3 and language.first_violation(child[None], alphabet=2) is None


def test_bandit_spends_on_the_arm_that_pays():
    rng = np.random.default_rng(6)
    b = bandit.Bandit({"a": "f", "b": "f", "c": "g"})
    truth = {"a": 0.001, "b": 0.2, "c": 0.001}
    for _ in range(300):
        (arm,) = b.choose(rng, 1)
        wrong = rng.random() < truth[arm]
        b.update(arm, 1, float(wrong), int(wrong), int(wrong))
    picks = b.choose(rng, 200)
    assert picks.count("b") > 150
    assert b.stats["b"].reads > b.stats["a"].reads + b.stats["c"].reads


def test_reward_counts_near_misses_and_failures():
    r = bandit.reward(np.array([True, True, False, True]), np.array([9.0, 0.01, -2.0, np.nan]))
    assert r[0] < 1e-3 and 0.98 < r[1] < 1 and r[2] == 1.0 and r[3] == 0.0


def test_bandit_state_round_trips():
    rng = np.random.default_rng(7)
    b = bandit.Bandit({"a": "f", "b": "g"})
    b.update("a", 3, 0.5, 1, 1)
    b.skip("b", 2)
    c = bandit.Bandit({"a": "f", "b": "g"})
    c.load(b.state())
    assert c.state() == b.state()
    assert b.choose(np.random.default_rng(1), 5) == c.choose(np.random.default_rng(1), 5)
    assert rng is not None
