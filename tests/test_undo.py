"""The UNDO flip-flop language (ffbench/undo.py) and the task dimension (ffbench/tasks.py).

The stack machine is checked against an independent per-character reference; the sampler's
instruction frequencies against the stated probabilities (the conditional law where no undo is
possible included); the validator's messages exactly; the retraction chains against the toggle
heuristic; and a run without --task against identities computed by ffbench before tasks existed."""

from __future__ import annotations

import numpy as np
import pytest

from ffbench import language, tasks, undo
from ffbench.errors import UsageError


def reference(text: str) -> tuple[list[int], list[int], list[int]]:
    """(answers, write distances, toggle answers) of every read, one character at a time."""
    stack, answers, distances, toggles = [], [], [], []
    state = None
    for slot in range(len(text) // 2):
        op, bit = text[2 * slot], int(text[2 * slot + 1])
        if op == "w":
            stack.append((slot, bit))
            state = bit
        elif op == "u":
            assert len(stack) > 1
            stack.pop()
            state = 1 - state
        elif op == "r":
            answers.append(stack[-1][1])
            distances.append(slot - stack[-1][0])
            toggles.append(state)
    return answers, distances, toggles


def test_sampled_sequences_agree_with_an_independent_stack_machine():
    arr = undo.sample(undo.UndoFFL(48, 0.25, 0.2, 0.25, 0.3), 400, seed=9)
    undo.validate(arr)
    reads, toggle = undo.extract_reads(arr), undo.toggle_predictions(arr)
    want = [reference(t) for t in language.to_strings(arr)]
    assert reads.target.tolist() == [a for w in want for a in w[0]]
    assert reads.write_distance.tolist() == [d for w in want for d in w[1]]
    assert toggle.tolist() == [t for w in want for t in w[2]]
    assert (reads.target == toggle).mean() < 0.95  # undos happen: the toggle is not the stack


def test_instruction_frequencies_match_the_stated_probabilities():
    """Where the stack holds two or more values an instruction is p; where it holds one, (p_w, p_r,
    p_i) / (1 - p_u) and never an undo. Tolerance: 5 standard errors of each frequency."""
    dist = undo.UndoFFL(64, 0.2, 0.15, 0.3, 0.35)
    arr = undo.sample(dist, 4000, seed=3)
    instr = arr[:, 0::2][:, 1:-1]
    depth_before = undo.trace(arr).depth[:, :-2]  # depth after slot t-1 = before slot t
    for deep, probs in ((True, dist.probabilities), (False, (0.2 / 0.65, 0.15 / 0.65, 0.3 / 0.65, 0.0))):
        where = instr[(depth_before > 1) == deep]
        assert where.size > 20_000
        for symbol, p in zip("wriu", probs):
            freq = (where == ord(symbol)).mean()
            assert abs(freq - p) <= 5 * np.sqrt(max(p * (1 - p), 1e-12) / where.size) + 1e-12, (deep, symbol, freq, p)
    data = arr[:, 1::2][arr[:, 0::2] != language.R] - language.ZERO
    assert abs(data.mean() - 0.5) <= 5 * 0.5 / np.sqrt(data.size)


def test_sampling_is_prefix_consistent_chunk_independent_and_apart_from_ffl():
    dist = undo.UndoFFL.from_p_ignore(0.4, 32)
    assert dist.probabilities == pytest.approx((0.2, 0.2, 0.4, 0.2))
    full = undo.sample(dist, 5000, seed=4)
    assert np.array_equal(undo.sample(dist, 7, seed=4), full[:7])
    assert np.array_equal(np.concatenate(list(undo.iter_sample(dist, 5000, 4, chunk_rows=10))), full)
    assert (full[:, 0::2] == undo.U).any()
    assert not np.array_equal(language.sample(language.FFL.from_p_ignore(0.4, 32), 5, 4), full[:5])


@pytest.mark.parametrize("text,message", [
    ("w0u0r0r0", "row 0, position 2: undo with nothing to undo: every earlier write but the first is already "
                 "undone (the first write is never undone)"),
    ("w0w1u0u1r0r0", "row 0, position 6: undo with nothing to undo: every earlier write but the first is already "
                     "undone (the first write is never undone)"),
    ("w0w1u0r1", "row 0, position 7: read 'r1' does not match the value on top of the undo stack 'w0' written at "
                 "position 0"),
    ("u0w1i0r1", "row 0, position 0: the first instruction must be 'w', got 'u'"),
    ("w0w1i0u0", "row 0, position 6: the last instruction must be 'r', got 'u'"),
    ("w0x1i0r0", "row 0, position 2: instruction symbol must be w, r, i or u, got 'x'"),
    ("w0w2i0r0", "row 0, position 3: data symbol must be a digit in 0..1, got '2'"),
])
def test_validator_names_the_rule_row_and_position(text, message):
    assert str(undo.first_violation(language.to_array([text]))) == message
    with pytest.raises(language.InvalidSequence, match="row 3, "):
        undo.validate(language.to_array(["w0" + "i1" * (len(text) // 2 - 2) + "r0"] * 3 + [text]), chunk_rows=2)


def test_an_undo_file_read_as_ffl_points_to_the_task():
    assert "pass --task undo" in str(language.first_violation(language.to_array(["w0w1u0r0"])))


@pytest.mark.parametrize("length", [8, 40, 130])
def test_retraction_chains_defeat_the_toggle_at_every_depth(length):
    arr, depths = undo.retraction_suite(length, num=6)
    assert depths == [d for d in undo.retraction_depths(length) for _ in range(6)]
    assert undo.retraction_depths(40) == [1, 2, 4, 8]
    reads = undo.extract_reads(arr)
    assert reads.seq_index.tolist() == list(range(arr.shape[0]))  # the final read is the only read
    assert reads.target.tolist() == [k % 2 for d in undo.retraction_depths(length) for k in range(6)]
    assert (undo.toggle_predictions(arr) != reads.target).all()
    assert reads.write_distance.tolist() == [2 * d + 1 for d in depths]
    for text, d in zip(language.to_strings(arr), depths):
        assert text[-2 * (2 * d + 2) :][0::2] == "w" * (d + 1) + "u" * d + "r"
    assert np.array_equal(undo.retraction_chains(length, 1, 6), arr[:6])


def test_retraction_depth_that_does_not_fit_is_refused():
    with pytest.raises(UsageError, match="retraction depth 4 does not fit length 16"):
        undo.retraction_chains(16, 4)
    with pytest.raises(UsageError, match="use T >= 8"):
        undo.retraction_suite(6)


def test_the_task_map_holds_ffl_as_before_and_refuses_what_undo_lacks():
    ffl = tasks.get(None)
    assert ffl is tasks.get("ffl") and tasks.config_value("ffl") is None and tasks.config_value("undo") == "undo"
    assert np.array_equal(ffl.sample(ffl.distribution(0.8, 64), 3, 1000),
                          language.sample(language.FFL.from_p_ignore(0.8, 64), 3, 1000))
    with pytest.raises(UsageError, match=r"unknown task 'regs' \(known: ffl, undo, registers, haystack\)"):
        tasks.get("regs")
    with pytest.raises(UsageError, match=r"--context-tokens is not available with --task undo \(it supports --task haystack\)"):
        tasks.get("undo").requires("context_tokens", "--context-tokens")
    tasks.get("undo").requires("hunt", "ffbench hunt")  # every task hunts now (haystack with ffl's map)
    with pytest.raises(UsageError, match="--task undo is binary"):
        tasks.get("undo").check_alphabet(4)
    demo = tasks.get("undo").demo()
    assert set(chr(c) for c in demo[0::2]) == set("wriu")
    undo.validate(demo[None])
