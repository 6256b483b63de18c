"""Issue 24's external probe against lstm-ref, rebuilt here without ffbench's stress code: a write at
the start, k ignores carrying the opposite bit, a read, then filler to length T. The probe found
lstm-ref right on that read at 10-13 opposite ignores and wrong from 14 on, at T = 128 and T = 512,
while the second round's lines said "up to k = 16" (adjacent) and "up to k = 24" (start). The run_blocks
line (whose first block is exactly this shape) must not be contradicted by it: at most k = 13."""

from __future__ import annotations

import numpy as np
import pytest

from ffbench import language, stress
from tests.conftest import needs_torch


def probe_sequences(length: int, k: int, seed: int = 0) -> np.ndarray:
    """Two sequences (decisive bit 0 and 1) of length T: ``w b``, k x ``i (1-b)``, ``r b``, then random
    filler ignores and a final read of ``b`` (the probe scores only the first read; a causal model's
    answer to it does not depend on what follows)."""
    rng = np.random.default_rng([seed, k, length])
    out = []
    for b in (0, 1):
        text = f"w{b}" + f"i{1 - b}" * k + f"r{b}"
        filler = length // 2 - (k + 2) - 1
        text += "".join(f"i{x}" for x in rng.integers(0, 2, filler)) + f"r{b}"
        out.append(np.frombuffer(text.encode(), np.uint8))
    arr = np.stack(out)
    language.validate(arr, alphabet=2)
    return arr


def verdicts(net, arr: np.ndarray) -> np.ndarray:
    from ffbench import rules
    from ffbench.train.model import encode_array
    from ffbench.train.trainer import read_logprobs

    return rules.choice_correct(read_logprobs(net, encode_array(arr), batch_size=64),
                                language.extract_reads(arr).target)


def probe_reads(net, length: int, ks) -> list[dict]:
    """The probe's first reads, in :func:`ffbench.stress.check_line`'s input format (as run_blocks reads)."""
    out = []
    for k in ks:
        arr = probe_sequences(length, k)
        reads, ok = language.extract_reads(arr), verdicts(net, arr)
        for j in np.flatnonzero(reads.read_index == 0):
            assert reads.position[j] == 2 * (k + 1) + 1
            out.append({"family": "run_blocks", "k": k, "T": length, "position": int(reads.position[j]),
                        "wrong": not ok[j]})
    return out


def run_blocks_line(net, length: int) -> stress.Tolerance:
    """lstm-ref's run_blocks tolerance at T, from the grid's run_blocks points."""
    points = [p for p in stress.grid(length) if p.family == "run_blocks"]
    arr = np.concatenate([stress.sample_point(p, length) for p in points])
    ids = np.concatenate([[p.id] * p.num for p in points])
    reads = language.extract_reads(arr)
    outcomes = stress.count_outcomes(ids[reads.seq_index], verdicts(net, arr), reads.position, length)
    (line,) = stress.profile(outcomes)
    return line


@needs_torch
@pytest.mark.parametrize("length", (128, 512))
def test_lstm_ref_run_blocks_line_is_not_contradicted_by_the_probe(length, one_thread):
    from ffbench.backends.native import resolve
    from ffbench.train.checkpoint import load_checkpoint

    net, _ = load_checkpoint(resolve("lstm-ref"), "cpu")
    probe = probe_reads(net, length, range(1, 31))
    wrong = sorted({r["k"] for r in probe if r["wrong"]})
    assert wrong == list(range(14, 31))  # what the external check saw: right through 13, wrong from 14 on
    line = run_blocks_line(net, length)
    assert line.clean_through <= 13 and line.first_failure == 14
    check = stress.check_line(line, probe)
    assert check.holds and check.claimed == 2 * line.clean_through
    # A line that claimed 16 over the same region (the second round's adjacent line) is contradicted.
    bolder = {**line.as_dict(), "clean_through": 16}
    assert sorted(r["k"] for r in stress.check_line(bolder, probe).contradicting) == [14, 14, 15, 15, 16, 16]


@needs_torch
def test_the_shipped_lstm_ref_lines_hold_against_the_probe(one_thread):
    """The lines ffbench ships for lstm-ref (``baselines/lstm-ref/stress``) at T = 128 and 512: run_blocks
    covers the probe's reads and says at most 13; the distractor_run lines say they were measured at
    the last position only, so the probe's early reads are outside their region."""
    import json

    from ffbench.backends.native import resolve
    from ffbench.resources import BASELINES_DIR
    from ffbench.train.checkpoint import load_checkpoint

    net, _ = load_checkpoint(resolve("lstm-ref"), "cpu")
    results = json.loads((BASELINES_DIR / "lstm-ref" / "stress" / "results.json").read_text())["results"]
    for cell in (c for c in results if c["length"] in (128, 512)):
        probe = probe_reads(net, cell["length"], range(1, 31))
        (blocks,) = [t for t in cell["tolerances"] if t["family"] == "run_blocks"]
        check = stress.check_line(blocks, probe)
        assert blocks["clean_through"] <= 13 and check.holds and check.in_region == len(probe) == 60
        for tol in (t for t in cell["tolerances"] if t["family"] == "distractor_run"):
            assert tol["region"]["positions"] == [cell["length"] - 1] * 2
            as_distractor = [{**r, "family": "distractor_run", **tol["fixed"]} for r in probe]
            assert stress.check_line(tol, as_distractor).in_region == 0
