"""Stress tolerance lines of a sampled run (issue 27): judged on the per-read error probability.
A point is clean when none of its answers is wrong; the line counts answers with the cluster-robust
interval of the point's mean per-read error probability. Checked against the samples themselves."""

from __future__ import annotations

import importlib.util

import pyarrow.parquet as pq
import pytest

from ffbench import runner, stress
from tests.fault_server import FaultServer
from tests.test_sampling import _cfg, _ref

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openai") is None, reason="openai not installed")


def test_sampled_stress_tolerances_count_answers_and_fail_where_any_answer_is_wrong(tmp_path):
    out = str(tmp_path / "r")
    with FaultServer(faults=False, sampled=0.2, sample_seed=1) as srv:
        res = runner.run(_cfg(srv.url, suites=["stress"], repeats=3, num=3, lengths=[32], batch_size=50), out,
                         _ref(srv.url, out), progress=False, echo=lambda m: None)
    rows = pq.read_table(f"{out}/samples.parquet").to_pandas()
    cell = res.results[0]
    by_id = {p["point"]: p for p in cell.by_point}
    for point, group in rows.groupby("point"):
        entry = by_id[point]
        assert (entry["reads"], entry["errors"]) == (len(group), int((~group["correct"]).sum()))  # majority answers
        assert (entry["answers"], entry["wrong_answers"]) == (int(group["repeats"].sum()), int(group["wrong_repeats"].sum()))
        assert entry["error_probability"] == pytest.approx((group["wrong_repeats"] / group["repeats"]).mean())
        lo, hi = entry["error_probability_ci95"]
        assert lo <= entry["error_probability"] <= hi
    wrong_at = rows.groupby("point")["wrong_repeats"].sum()
    failures = 0
    for tol in cell.tolerances:
        family = stress.FAMILIES[tol["family"]]
        ids = {v[tol["axis"]]: stress.Point(tol["family"], stress.Params({**tol["fixed"], tol["axis"]: v[tol["axis"]]}),
                                            0).id for v in tol["values"]}
        for v in tol["values"]:
            point = by_id[ids[v[tol["axis"]]]]
            assert v["unit"] == "answers" and (v["reads"], v["errors"]) == (point["answers"], point["wrong_answers"])
            assert v["ci95"] == point["error_probability_ci95"]
        failing = [v[tol["axis"]] for v in tol["values"] if wrong_at[ids[v[tol["axis"]]]] > 0]
        assert tol["first_failure"] == (failing[0] if failing else None), tol["line"]
        failures += bool(failing)
        if failing:
            first = next(v for v in tol["values"] if v[tol["axis"]] == failing[0])
            lo, hi = first["ci95"]
            assert f"({first['errors']:,} of {first['reads']:,} answers wrong, 95% CI [{lo:.2g}, {hi:.2g}])" in tol["line"]
        assert family.axis == tol["axis"]
    assert failures >= 2 and len(cell.tolerances) >= 5  # the sampled model glitches on several families
