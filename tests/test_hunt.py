"""``ffbench hunt`` end to end: replay of every glitch through ``ffbench run --data``, resume after an
interruption, identity and lock refusals, budgets, the estimate's stored weights, usage errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ffbench import backends, language
from ffbench.backends.base import Backend, Capabilities, SpanScores
from ffbench.errors import FFBenchError, Interrupted
from ffbench.hunt import HuntConfig, estimator, hunt
from ffbench.hunt.huntdir import HuntDir
from tests.conftest import cli_exit, needs_native, needs_torch


class WriteDistanceModel(Backend):
    """A synthetic model: wrong exactly on reads whose write distance exceeds ``k``; the margin
    (log p(target) - log p(other)) is k + 0.5 - distance. Reads the symbolic rendering."""

    provider = "synthetic"
    capabilities = Capabilities(dense=True)

    def __init__(self, k: int = 3, interrupt_at: int | None = None):
        super().__init__("write-distance")
        self.k, self.calls, self.interrupt_at = k, 0, interrupt_at

    def score_dense(self, requests):
        self.calls += 1
        if self.interrupt_at is not None and self.calls >= self.interrupt_at:
            raise KeyboardInterrupt
        out = []
        for r in requests:
            lp = np.zeros((len(r.spans), 2))
            for j, (a, _) in enumerate(r.spans.tolist()):
                slot = (a - 1) // 2
                distance = slot - r.text[0:a:2].rfind("w")
                target = int(r.text[a])
                lp[j, 1 - target] = -(self.k + 0.5 - distance)
            out.append(SpanScores(lp, lp.argmax(axis=1)))
        return out

    def count_tokens(self, text):
        return len(text)


def synthetic_ref(model: Backend):
    ref = backends.resolve("ffbench/transformer-ref")
    ref.load = lambda: model
    return ref


def _hunt(tmp_path, name="h", model=None, **kw):
    cfg = HuntConfig(**{"model": "ffbench/transformer-ref", "budget": 600, "length": 32, **kw})
    return hunt(cfg, str(tmp_path / name), synthetic_ref(model or WriteDistanceModel()), echo=lambda m: None)


def _cli(args) -> int:
    return cli_exit(args)


# ----------------------------------------------------------------------------- the real model
@needs_torch
def test_every_glitch_replays_as_a_failure_through_ffbench_run(tmp_path, capsys):
    out = tmp_path / "hunt"
    assert _cli(["hunt", "--model", "ffbench/transformer-ref", "--budget", 400, "--length", 32, "--out", out]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "hunt.json").read_text())
    glitches = pd.read_parquet(out / "glitches.parquet")
    assert summary["glitches"]["distinct"] == len(glitches) > 0 and f"{len(glitches):,} distinct" in printed
    assert summary["spent"]["reads"] <= 400 and summary["stop_reason"] == "budget"
    texts = glitches.text.tolist()
    assert len(set(texts)) == len(texts) and (glitches.suite == "hunt").all()
    language.validate(language.to_array(texts), alphabet=2)  # every emitted sequence is legal
    for _, row in glitches.iterrows():  # the failing reads are reads, at the positions claimed
        reads = language.extract_reads(language.to_array([row.text]))
        assert set(row.failing_positions) <= set(reads.position.tolist())
        assert len(row.failing_positions) == len(row.margins) == len(row.rescored_margins)
        assert all(m <= 0 for m in row.margins) and all(m <= 0 for m in row.rescored_margins)
    run_dir = tmp_path / "replay"
    assert _cli(["run", "--model", "ffbench/transformer-ref", "--data", out / "glitches.parquet", "--output-dir",
                 run_dir, "--no-record"]) == 0
    samples = pd.read_parquet(run_dir / "samples.parquet")
    for seq, row in glitches.iterrows():
        mine = samples[samples.seq_index == seq].set_index("position")
        assert not mine.loc[list(row.failing_positions), "correct"].any()  # every glitch replays as a failure
    # the stress columns travel: a stress-family glitch keeps its point in the replayed samples
    stress_rows = glitches[glitches.point.notna()]
    for seq, row in stress_rows.iterrows():
        assert (samples[samples.seq_index == seq].point == row.point).all()
    # a glitch set is a regression suite: the same model passes against itself, and a zero ceiling fails it
    assert _cli(["check", "--candidate", run_dir, "--baseline", run_dir]) == 0
    assert _cli(["check", "--candidate", run_dir, "--max-glitch-rate", 0]) == 1
    # the i.i.d. comparison comes from the shipped reference run of the same builtin
    iid = summary["iid"]
    assert iid["reference"] is None or iid["reference"] == "ffbench/transformer-ref"


# ----------------------------------------------------------------------------- resume, identity, lock
@needs_native
@pytest.mark.parametrize("search", ["map", "bandit"])
def test_an_interrupted_hunt_resumes_to_exactly_the_uninterrupted_result(tmp_path, search):
    model = WriteDistanceModel()
    whole = _hunt(tmp_path, "whole", budget=1500, model=model, search=search)
    # interrupted in its last round (the map's first round also shrinks, in many calls)
    cut_at = 3 if search == "bandit" else model.calls - 1
    with pytest.raises(Interrupted, match="rerun the same command to resume"):
        _hunt(tmp_path, "cut", budget=1500, model=WriteDistanceModel(interrupt_at=cut_at), search=search)
    state = HuntDir(tmp_path / "cut").read_state()
    assert 0 < state["spent"]["reads"] < 1500
    resumed = _hunt(tmp_path, "cut", budget=1500, search=search)
    a, b = (json.loads((tmp_path / d / "state.json").read_text()) for d in ("whole", "cut"))
    assert a == {**b, "created": a["created"]}  # every count, cell, elite, shape and glitch
    assert whole["glitches"] == resumed["glitches"] and whole.get("map") == resumed.get("map")
    assert whole.get("shapes") == resumed.get("shapes")
    g = pd.read_parquet(tmp_path / "cut" / "glitches.parquet")
    assert len(g) == whole["glitches"]["distinct"] > 0
    # every reported glitch really fails the synthetic model: a read with write distance > 3
    for _, row in g.iterrows():
        assert all(d > 3 for d in row.failing_write_distance)


@needs_native
def test_a_finished_hunt_is_not_rescored_and_a_larger_budget_continues_it(tmp_path):
    model = WriteDistanceModel()
    first = _hunt(tmp_path, model=model, budget=600)
    calls = model.calls
    again = _hunt(tmp_path, model=model, budget=600)
    assert model.calls == calls and again["spent"] == first["spent"]
    more = _hunt(tmp_path, model=model, budget=1200)
    assert model.calls > calls and 600 < more["spent"]["reads"] <= 1200
    assert more["glitches"]["distinct"] >= first["glitches"]["distinct"]


@needs_native
def test_another_config_or_model_is_refused(tmp_path):
    _hunt(tmp_path, budget=300)
    with pytest.raises(FFBenchError, match=r"holds another hunt \(config \(seed\) differ\)"):
        _hunt(tmp_path, budget=300, seed=1)
    ref = backends.resolve("ffbench/transformer-mix")
    ref.load = WriteDistanceModel
    with pytest.raises(FFBenchError, match="holds another hunt"):
        hunt(HuntConfig(model="ffbench/transformer-ref", budget=300, length=32), str(tmp_path / "h"), ref,
             echo=lambda m: None)


@needs_native
def test_a_bandit_hunt_from_before_the_map_search_resumes_as_a_bandit(tmp_path):
    _hunt(tmp_path, budget=300, search="bandit")
    hd = HuntDir(tmp_path / "h")
    state = hd.read_state()
    del state["identity"]["config"]["search"]  # as written before the map search existed
    hd.write_state(state)
    with pytest.raises(FFBenchError, match=r"holds another hunt \(config \(search\) differ\)"):
        _hunt(tmp_path, budget=600)
    assert _hunt(tmp_path, budget=600, search="bandit")["spent"]["reads"] > 300


@needs_native
def test_a_directory_in_use_is_refused(tmp_path):
    from filelock import FileLock

    (tmp_path / "h").mkdir()
    with FileLock(str(tmp_path / "h" / ".lock")), pytest.raises(FFBenchError, match="in use"):
        _hunt(tmp_path)


@needs_native
def test_budgets_are_kept(tmp_path):
    s = _hunt(tmp_path, "reads", budget=777)
    assert s["spent"]["reads"] <= 777 and s["budget"]["reads"] == 777
    t = _hunt(tmp_path, "tokens", budget=10_000, budget_tokens=3000)
    assert 0 < t["spent"]["tokens"] <= 3000 and t["stop_reason"] in ("token budget", "exhausted")


@needs_native
def test_the_hunt_finds_the_synthetic_break_point_fast(tmp_path):
    """The model fails only at write distance > 3: the bandit should spend most reads where that happens."""
    s = _hunt(tmp_path, budget=3000, search="bandit")
    assert s["glitches"]["per_scored_read"] > 0.3  # re-scoring included
    fams = {f["family"]: f for f in s["families"]}
    paying = sum(f["reads"] for f in fams.values() if f["glitches_per_read"] > 0.9)
    barren = sum(f["reads"] for f in fams.values() if f["glitches_per_read"] < 0.1)
    assert paying > 1500 and barren < 100  # dense_interference never has a write distance > 3: left alone
    assert sum(f["reads"] for f in fams.values()) == s["spent"]["reads"]


# ----------------------------------------------------------------------------- the estimate through the driver
@needs_native
def test_estimate_writes_every_weight_and_its_result_recomputes(tmp_path):
    s = _hunt(tmp_path, budget=3000, estimate="dense", model=WriteDistanceModel(k=6))
    est = s["estimate"]
    result = est["result"]
    samples = pd.read_parquet(tmp_path / "h" / "samples.parquet")
    assert len(samples) == s["spent"]["reads"] == 3000 and (samples.weight > 0).all()
    final = samples[samples.phase == "final"]
    assert len(final) == result["samples"] and len(samples) - len(final) == est["adapt_reads"]
    target = estimator.parse_target("dense", 32)
    recomputed = (final.weight * ~final.correct).sum() / len(final) / target.expected_reads()
    assert recomputed == pytest.approx(result["rate"], rel=1e-12)
    # the synthetic model's rate under FFL(0.1) at T = 32 in closed form (see test_hunt_estimate)
    from tests.test_hunt_estimate import true_rate

    truth = true_rate(target.dist, 6)
    assert result["ci95"][0] <= truth <= result["ci95"][1]
    assert est["iid_same_reads"]["reads_for_same_width"] > 0
    # every failing sample is a reported glitch, padded to T, failing at the position recorded
    g = pd.read_parquet(tmp_path / "h" / "glitches.parquet")
    assert (g.origin == "estimate").all() and len(g) >= 1
    assert all(len(t) == 32 for t in g.text)


# ----------------------------------------------------------------------------- usage errors
@pytest.mark.parametrize("args,message", [
    (["--estimate", "FFL(2)"], "p_ignore must lie in [0, 1]"),
    (["--estimate", "bananas"], "unknown --estimate target"),
    (["--length", "7"], "--length must be an even integer >= 8"),
    (["--family", "nope"], "unknown hunt family 'nope'"),
    (["--render", "nope"], "unknown rendering 'nope'"),
    (["--budget", "0"], "0 is not in the range x>=1"),
])
def test_usage_errors_exit_2_with_one_line_and_make_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "h"
    base = {"--model": "ffbench/transformer-ref", "--budget": "10", "--out": str(out)}
    for flag, value in zip(args[0::2], args[1::2]):
        base[flag] = value
    argv = ["hunt"] + [x for kv in base.items() for x in kv]
    assert _cli(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@needs_native
def test_an_estimate_interrupted_in_its_first_round_leaves_nothing_and_starts_clean(tmp_path):
    with pytest.raises(Interrupted):
        _hunt(tmp_path, budget=600, estimate="dense", model=WriteDistanceModel(interrupt_at=1))
    assert not (tmp_path / "h").exists()
    with pytest.raises(Interrupted):
        _hunt(tmp_path, budget=600, estimate="dense", model=WriteDistanceModel(interrupt_at=3))
    state = HuntDir(tmp_path / "h").read_state()  # round 0: its scoring and its confirmation; cut in round 1
    assert state is not None and state["round"] == 1 and state["spent"]["reads"] == 200
    done = _hunt(tmp_path, budget=600, estimate="dense")
    assert done["spent"]["reads"] == 600
    assert len(pd.read_parquet(tmp_path / "h" / "samples.parquet")) == 600
