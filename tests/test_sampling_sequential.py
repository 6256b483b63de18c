"""Sequential stopping per read with repeats (issue 27, item 3): under ``--certify`` a read stops
being asked once its majority of K is settled, under ``--stop-at-first-error`` at its first wrong
answer. The rule is checked against brute force over every completion, and end to end against the
fake server's sampled model: every read was asked exactly as long as the rule says, each answer
asked is one request, and the majority is the one all K answers would give."""

from __future__ import annotations

import importlib.util
import itertools

import numpy as np
import pytest

from ffbench import sampling
from ffbench.control import RunControl
from tests.fault_server import FaultServer
from tests.test_sampling import _cfg, _ref

K = 5


def _majority_right(answers, target) -> bool:
    return bool(sampling.majority(np.array([answers]), np.array([target]))[1][0])


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_settled_is_exactly_when_no_answers_to_come_can_change_the_majority(k):
    values = (1, 0, -1)  # the target, the other bit, no answer
    for r in range(k + 1):
        for asked in itertools.product(values, repeat=r):
            outcomes = {_majority_right(list(asked) + list(rest), 1)
                        for rest in itertools.product(values, repeat=k - r)}
            assert sampling.settled(np.array(asked, dtype=np.int64), 1, k, sampling.UNTIL_SETTLED) == (
                len(outcomes) == 1), asked
            first_wrong = any(a != 1 for a in asked) or r == k
            assert sampling.settled(np.array(asked, dtype=np.int64), 1, k, sampling.UNTIL_FIRST_WRONG) == first_wrong
            assert sampling.settled(np.array(asked, dtype=np.int64), 1, k, None) == (r == k)


def _run(srv, tmp_path, name, control):
    import pyarrow.parquet as pq

    from ffbench import runner

    out = str(tmp_path / name)
    res = runner.run(_cfg(srv.url, repeats=K, num=20), out, _ref(srv.url, out), progress=False,
                     echo=lambda m: None, control=control)
    return res, pq.read_table(f"{out}/samples.parquet").to_pandas()


@pytest.mark.skipif(importlib.util.find_spec("openai") is None, reason="openai not installed")
def test_certify_stops_sampling_a_read_once_its_majority_is_settled(tmp_path):
    with FaultServer(faults=False, sampled=0.6, sample_seed=5) as srv:
        res, rows = _run(srv, tmp_path, "c", RunControl(certify=0.5))
        served = sum(srv.served.values())
    cell = res.results[0]
    for answers, target, n in zip(rows["predictions"], rows["target"], rows["repeats"]):
        answers = np.asarray(answers)
        assert answers.size == n and 1 <= n <= K
        assert n == K or sampling.settled(answers, target, K, sampling.UNTIL_SETTLED)
        assert not sampling.settled(answers[:-1], target, K, sampling.UNTIL_SETTLED)  # not asked one too many
    assert served == rows["repeats"].sum()  # one request per answer asked
    assert (rows["repeats"] < K).mean() > 0.5  # most reads settle early
    _, correct = sampling.majority(np.array([list(a) + [sampling.NOT_ASKED] * (K - len(a)) for a in rows["predictions"]]),
                                   rows["target"].to_numpy())
    assert (correct == rows["correct"].to_numpy()).all() and cell.errors == int((~correct).sum())
    s = cell.sampled
    assert s["sequential"] is True and s["answers"] == rows["repeats"].sum() and s["repeats"] == K
    assert s["error_probability"] == pytest.approx((rows["wrong_repeats"] / rows["repeats"]).mean())


@pytest.mark.skipif(importlib.util.find_spec("openai") is None, reason="openai not installed")
def test_stop_at_first_error_stops_a_read_at_its_first_wrong_answer_and_the_run_after_its_shard(tmp_path):
    with FaultServer(faults=False, sampled=0.3, sample_seed=2) as srv:
        res, rows = _run(srv, tmp_path, "f", RunControl(stop_at_first_error=True))
    for answers, target in zip(rows["predictions"], rows["target"]):
        wrong = np.asarray(answers) != target
        assert (len(answers) == K and not wrong.any()) or (wrong[-1] and not wrong[:-1].any())
    assert res.stop_reason == "first_error" and (rows["wrong_repeats"] > 0).any()
    assert rows["seq_index"].max() < 10  # the first shard (10 sequences) held a glitch: nothing after it


@pytest.mark.skipif(importlib.util.find_spec("openai") is None, reason="openai not installed")
def test_a_resumed_sampled_run_stops_at_a_kept_shard_whose_read_glitched_once(tmp_path):
    """A kept shard counts for --stop-at-first-error by its reads with any wrong answer, not by its
    wrong majority answers: a rerun with the flag stops on it without asking anything more."""
    with FaultServer(faults=False, sampled=0.3, sample_seed=2) as srv:
        first, rows = _run(srv, tmp_path, "r", RunControl(certify=0.999))  # certified after its first shard
        assert first.stop_reason == "certified" and rows["seq_index"].max() < 10
        assert ((rows["wrong_repeats"] > 0) & rows["correct"]).any()  # a read glitched once, its majority right
        served = sum(srv.served.values())
        again, _ = _run(srv, tmp_path, "r", RunControl(stop_at_first_error=True))
        assert sum(srv.served.values()) == served  # nothing asked again
    assert again.stop_reason == "first_error"


def test_first_error_stops_on_a_read_wrong_in_any_answer_even_when_no_majority_is_wrong():
    from ffbench.control import Controller

    ctl = Controller(RunControl(stop_at_first_error=True))
    ctl.observe("c", 0, 10, 2, {}, "shard 1", glitched=0)
    assert ctl.stop is None
    ctl.observe("c", 0, 10, 2, {}, "shard 2", glitched=2)  # no wrong majority answer, two reads glitched once
    assert (ctl.stop, ctl.stop_detail) == ("first_error", "2 reads with a wrong answer in shard 2")
