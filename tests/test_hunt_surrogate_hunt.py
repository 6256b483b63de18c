"""``ffbench hunt --estimate TARGET --estimator surrogate`` through the driver, on the deterministic
synthetic model of tests/test_hunt.py (wrong exactly when a read's write distance exceeds k): the
stored reads recompute hunt.json's estimate, an interrupted hunt resumes to the uninterrupted one,
refusals come before work, and the report shows the estimate. The estimator's statistics (coverage,
bias, savings) are tested in tests/test_hunt_surrogate.py."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from ffbench import language
from ffbench.errors import Interrupted, UsageError
from ffbench.hunt import HuntConfig, estimator, surrogate_hunt
from ffbench.hunt.driver import plan
from ffbench.hunt.huntdir import HuntDir
from tests.conftest import needs_native, needs_torch
from tests.test_hunt import WriteDistanceModel, _hunt
from tests.test_hunt_estimate import true_rate

pytestmark = [needs_native, needs_torch]
BUDGET, K = 1500, 3


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("surrogate")
    model = WriteDistanceModel(k=K)
    summary = _hunt(tmp, "whole", budget=BUDGET, estimate="dense", estimator="surrogate", model=model)
    return tmp, summary, model.calls


def test_the_estimate_recomputes_from_the_stored_reads(whole):
    tmp, s, _ = whole
    est, res = s["estimate"], s["estimate"]["result"]
    table = pq.read_table(tmp / "whole" / "samples.parquet")
    target = estimator.parse_target("dense", 32)
    # every scored read is stored, whole sequences only, and they are the reads spent
    assert table.num_rows == res["samples"] == s["spent"]["reads"] <= BUDGET
    arr, wrong = surrogate_hunt.scored_sequences(table)
    assert arr.shape[0] == est["scored_sequences"] == s["spent"]["sequences"]
    assert np.count_nonzero(arr[:, 0::2] == language.R) == table.num_rows and wrong.sum() == res["hits"]
    # the verdicts are the synthetic model's: wrong exactly beyond write distance K
    assert np.array_equal(wrong, language.extract_reads(arr).write_distance > K)
    again = surrogate_hunt.recompute(table, target, seed=0, free=est["free_sequences"])
    assert again.rate == pytest.approx(res["rate"], rel=1e-9) and again.se == pytest.approx(res["std_error"], rel=1e-9)
    assert np.allclose(again.guess, table.column("guess").to_numpy())
    assert np.array_equal(again.fold, table.column("fold").to_numpy())
    assert est["method"] == "surrogate" and 0 < res["variance_left"] < 1
    assert res["ci95"][0] <= true_rate(target.dist, K) <= res["ci95"][1]  # at this seed; coverage: test_hunt_surrogate
    assert est["iid_same_reads"]["reads"] == res["samples"] and est["iid_same_reads"]["read_ratio"] > 1
    # failing sequences confirmed and reported, each failing read beyond write distance K
    g = pq.read_table(tmp / "whole" / "glitches.parquet").to_pandas()
    assert len(g) == s["glitches"]["distinct"] > 0 and (g.origin == "estimate").all()
    for _, row in g.iterrows():
        reads = language.extract_reads(language.to_array([row.text]))
        far = set(reads.position[reads.write_distance > K].tolist())
        assert set(row.failing_positions) == far


def test_an_interrupted_surrogate_hunt_resumes_to_the_same_result(whole, tmp_path):
    tmp, s, calls = whole
    with pytest.raises(Interrupted):
        _hunt(tmp_path, "cut", budget=BUDGET, estimate="dense", estimator="surrogate",
              model=WriteDistanceModel(k=K, interrupt_at=calls // 2))
    cut = json.loads((tmp_path / "cut" / "hunt.json").read_text())
    assert cut["estimate"]["result"] is None and "rerun" in cut["estimate"]["reason"]
    assert 0 < HuntDir(tmp_path / "cut").read_state()["spent"]["reads"] < s["spent"]["reads"]
    resumed = _hunt(tmp_path, "cut", budget=BUDGET, estimate="dense", estimator="surrogate",
                    model=WriteDistanceModel(k=K))
    assert resumed["estimate"] == s["estimate"] and resumed["glitches"] == s["glitches"]
    assert resumed["spent"] == s["spent"]
    a, b = (pq.read_table(d / "samples.parquet") for d in (tmp / "whole", tmp_path / "cut"))
    assert a.equals(b)


def test_the_estimator_enters_the_identity_only_when_not_the_default():
    base = {"model": "ffbench/transformer-ref", "budget": 5000, "length": 32, "estimate": "dense"}
    assert "estimator" not in HuntConfig(**base).identity()
    assert HuntConfig(**base, estimator="surrogate").identity()["estimator"] == "surrogate"


@pytest.mark.parametrize("kw,message", [
    ({"estimator": "surrogate", "estimate": None}, "--estimator surrogate chooses how --estimate estimates"),
    ({"estimator": "surrogate", "budget": 300}, "needs at least 100 scored sequences"),
    ({"estimator": "bananas"}, "--estimator must be one of importance, surrogate"),
    ({"estimator": "surrogate", "task": "undo", "length": 64}, "--task undo hunts with the map search only"),
    ({"estimator": "surrogate", "task": "undo", "length": 64, "estimate": None}, "drop --estimate, --estimator"),
])
def test_refusals_before_work(kw, message):
    cfg = HuntConfig(**{"model": "ffbench/transformer-ref", "budget": 5000, "length": 32, "estimate": "dense", **kw})
    with pytest.raises(UsageError, match=message):
        plan(cfg)


def test_the_report_shows_the_surrogate_estimate(whole):
    from ffbench.report import build_report

    tmp, s, _ = whole
    res, same = s["estimate"]["result"], s["estimate"]["iid_same_reads"]
    html = build_report([str(tmp / "whole")], [], attention_reads=0)
    lo, hi = res["ci95"]
    assert (f"<tr><td>learned guess (control variate)</td><td class=num>{res['samples']:,}</td>"
            f"<td class=num>{res['rate']:.3g}</td><td class=num>[{lo:.3g}, {hi:.3g}]</td>") in html
    assert f"{same['read_ratio']:.3g}× the reads spent here (fitting included)" in html
    assert "estimate under dense (surrogate)" in html


def test_the_token_budget_stops_the_scored_sequences(tmp_path):
    s = _hunt(tmp_path, budget=5000, budget_tokens=32 * 150, estimate="dense", estimator="surrogate",
              model=WriteDistanceModel(k=K))
    # the synthetic model counts a character as a token: exactly 150 whole sequences of 32 characters
    assert s["stop_reason"] == "token budget" and s["spent"]["tokens"] == 32 * 150
    assert s["spent"]["sequences"] == s["estimate"]["scored_sequences"] == 150
    assert s["estimate"]["result"]["samples"] == s["spent"]["reads"] < 5000


def test_without_torch_the_surrogate_is_refused_in_one_line(monkeypatch):
    real = surrogate_hunt.importlib.util.find_spec
    monkeypatch.setattr(surrogate_hunt.importlib.util, "find_spec", lambda name: None if name == "torch" else real(name))
    cfg = HuntConfig(model="ffbench/transformer-ref", budget=5000, length=32, estimate="dense", estimator="surrogate")
    with pytest.raises(UsageError, match="install torch"):
        plan(cfg)


def test_the_cli_refuses_before_work_with_exit_2(tmp_path, capsys):
    from tests.conftest import cli_exit

    out = tmp_path / "h"
    args = ["hunt", "--model", "ffbench/transformer-ref", "--length", "32", "--out", str(out), "--estimator",
            "surrogate", "--estimate", "dense", "--budget", "100"]
    assert cli_exit(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs at least 100 scored sequences of dense" in err
    assert not out.exists()
