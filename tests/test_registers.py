"""Flip-flops with k named registers (ffbench/registers.py, --task registers): an independent
reference machine, the sampler's stated statistics, the validator's messages, the stale-register
stress family, rendering, and a run sweeping k on a tiny model."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from ffbench import language, registers, render
from ffbench.errors import UsageError
from tests.conftest import cli_exit


def reference(text: str) -> tuple[list[int], list[int], list[int]]:
    """(answers, write distances, one-variable answers) of every read, one instruction at a time."""
    value, when, answers, distances, single, last = {}, {}, [], [], [], None
    for slot in range(len(text) // 3):
        op, reg, bit = text[3 * slot], text[3 * slot + 1], int(text[3 * slot + 2])
        if op == "w":
            value[reg], when[reg], last = bit, slot, bit
        elif op == "r":
            answers.append(value[reg])
            distances.append(slot - when[reg])
            single.append(last)
    return answers, distances, single


@pytest.mark.parametrize("k", [1, 3, 8])
def test_sampled_sequences_agree_with_an_independent_machine(k):
    arr = registers.sample(registers.Registers(60, k, 0.3, 0.3, 0.4), 300, seed=k)
    registers.validate(arr)
    reads = registers.extract_reads(arr)
    want = [reference(t) for t in language.to_strings(arr)]
    assert reads.target.tolist() == [a for w in want for a in w[0]]
    assert reads.write_distance.tolist() == [d for w in want for d in w[1]]
    assert registers.one_variable_predictions(arr).tolist() == [s for w in want for s in w[2]]
    assert (arr[:, 1::3] - ord("a")).max() == k - 1


def test_statistics_match_the_stated_law():
    """Middle instructions are w, r, i with p; a write's or ignore's register is uniform over k; a read's
    is uniform over the registers written before it. Tolerance: 5 standard errors."""
    dist, k = registers.Registers(96, 4, 0.2, 0.3, 0.5), 4
    arr = registers.sample(dist, 3000, seed=1)
    op, reg = arr[:, 0::3][:, 1:-1], arr[:, 1::3][:, 1:-1] - ord("a")
    for symbol, p in zip("wri", (0.2, 0.3, 0.5)):
        freq = (op == ord(symbol)).mean()
        assert abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / op.size)
    not_read = reg[op != ord("r")]
    for r in range(k):
        assert abs((not_read == r).mean() - 1 / k) <= 5 * np.sqrt((1 / k) * (1 - 1 / k) / not_read.size)
    # A read right after only the first write must name that register.
    first = arr[:, 1] == arr[:, 4]
    assert first[arr[:, 3] == ord("r")].all()


def test_sampling_is_prefix_consistent_and_depends_on_k():
    d2, d3 = registers.Registers.from_p_ignore(0.5, 30, 2), registers.Registers.from_p_ignore(0.5, 30, 3)
    full = registers.sample(d2, 5000, 2)
    assert np.array_equal(registers.sample(d2, 9, 2), full[:9])
    assert np.array_equal(np.concatenate(list(registers.iter_sample(d2, 5000, 2, chunk_rows=1))), full)
    assert not np.array_equal(registers.sample(d3, 9, 2), full[:9])


@pytest.mark.parametrize("text,message", [
    ("wa1rb1ra1", "row 0, position 4: read of register 'b', which no earlier instruction writes"),
    ("wa1wb0ra0", "row 0, position 8: read 'ra0' does not match the most recent write to register 'a' 'wa1' at "
                  "position 0"),
    ("wa1wz0ra1", "row 0, position 4: register name must be a letter in a..h, got 'z'"),
    ("ra1wa0ra0", "row 0, position 0: the first instruction must be a write, got 'r'"),
    ("wa1ia0ia1", "row 0, position 6: the last instruction must be a read, got 'i'"),
    ("wa1ua0ra1", "row 0, position 3: operation must be w, r or i, got 'u'"),
    ("wa1", "row 0, position 3: length must be a multiple of 3 and >= 6 (three characters per instruction), got 3"),
])
def test_validator_names_the_rule_row_and_position(text, message):
    assert str(registers.first_violation(language.to_array([text]))) == message


@pytest.mark.parametrize("k", [1, 2, 5])
def test_stale_reads_defeat_one_variable_past_interleaved_writes(k):
    arr, cols = registers.stale_suite(48, k, num=4)
    distances = registers.stale_distances(48)
    assert distances == [1, 2, 4, 8, 15]
    fillers = ["writes", "ignores"] if k >= 2 else ["ignores"]
    assert cols["placement"] == [f for f in fillers for _ in distances for _ in range(4)]
    assert cols["distance"] == [d for _ in fillers for d in distances for _ in range(4)]
    reads = registers.extract_reads(arr)
    assert reads.seq_index.tolist() == list(range(arr.shape[0]))  # one read per sequence, the final one
    assert reads.write_distance.tolist() == cols["distance"]
    assert reads.target.tolist() == [j % 2 for _ in range(len(fillers) * len(distances)) for j in range(4)]
    wrong = registers.one_variable_predictions(arr) != reads.target
    interleaved = (np.array(cols["placement"]) == "writes") & (np.array(cols["distance"]) > 1)
    assert wrong[interleaved].all() and not wrong[~interleaved].any()


def test_renderings_name_the_register_and_mark_every_answer():
    seq = language.to_array(["wa1wc0ib1rc0ra1"])[0]
    out = render.render(seq, "lightswitch_registers")
    assert out.text == ("Alice turns the kitchen light on. Alice turns the bedroom light off. Bob eats an apple in "
                        "the hall. The bedroom light is turned off. The kitchen light is turned on.")
    assert [out.text[s:e] for s, e in out.spans] == [" off", " on"] and out.targets.tolist() == [0, 1]
    sym = render.render(seq, "symbolic_registers")
    assert sym.text == "wa1wc0ib1rc0ra1" and sym.spans.tolist() == [[11, 12], [14, 15]]
    two = dataclasses.replace(render.load_template("symbolic_registers"), registers=("a", "b"))
    with pytest.raises(UsageError, match="names 2 registers, the sequence uses register 'c'"):
        render.render(seq, two)

def test_run_sweeps_k_with_the_one_variable_column(tiny_gpt2, tmp_path):
    out = tmp_path / "run"
    assert cli_exit(["run", "--model", f"hf/{tiny_gpt2}", "--task", "registers", "--registers", "2,3",
                     "--suite", "in_dist,stale", "--length", "24", "--num", "3", "--no-record",
                     "--output-dir", out]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["task"] == "registers" and results["config"]["registers"] == [2, 3]
    cells = {c["suite"]: c for c in results["results"]}
    assert sorted(cells) == ["in_dist_k2", "in_dist_k3", "stale_k2", "stale_k3"]
    for k in (2, 3):
        iid = registers.sample(registers.Registers.from_p_ignore(0.8, 24, k), 3, 1000)
        assert cells[f"in_dist_k{k}"]["reads"] == len(registers.extract_reads(iid))
        chains, _ = registers.stale_suite(24, k, 3)
        assert cells[f"stale_k{k}"]["reads"] == chains.shape[0]
        assert cells[f"stale_k{k}"]["source"]["registers"] == k
    samples = pd.read_parquet(out / "samples.parquet")
    stale = samples[samples.suite == "stale_k3"]
    assert stale.one_variable.tolist() == registers.one_variable_predictions(registers.stale_suite(24, 3, 3)[0]).tolist()
    for cell in results["results"]:
        assert sum(b["reads"] for b in cell["by_read_position"]) == cell["reads"]
