"""The stress grid through ``ffbench run``, ``generate``, results.json and the gate."""

from __future__ import annotations

import numpy as np
import pytest

from ffbench import check, runner, stress
from ffbench.errors import UsageError
from ffbench.backends import resolve
from ffbench.cli import main
from ffbench.runs import load
from tests.conftest import needs_torch

pytestmark = needs_torch


def _run(tmp_path, name, model="ffbench/transformer-ref", **kw):
    cfg = runner.RunConfig(model=model, suites=["stress"], lengths=[32], num=4, **kw)
    return runner.run(cfg, str(tmp_path / name), resolve(model), progress=False, echo=lambda m: None)


def test_stress_cell_breaks_down_per_point_and_family(tmp_path):
    res = _run(tmp_path, "a")
    (cell,) = res.results
    points = stress.grid(32, num=4)
    assert cell.key.suite == "stress" and cell.source.kind == "stress" and cell.num_sequences == 4 * len(points)
    assert [row["point"] for row in cell.by_point] == [p.id for p in points]  # every point, in grid order
    assert sum(row["reads"] for row in cell.by_point) == cell.reads
    assert sum(row["errors"] for row in cell.by_point) == cell.errors
    samples = res.samples
    assert set(samples.family) == set(stress.FAMILIES)
    for row in cell.by_point:
        mine = samples[samples.point == row["point"]]
        assert len(mine) == row["reads"] and int((~mine.correct).sum()) == row["errors"]
        family, params = stress.parse_point(row["point"])
        for name, value in params.items():  # the parameter columns hold the point's own parameters
            assert (mine[name] == value).all() and row[name] == value
    # one tolerance per family and fixed parameters, each computed from exactly its points' counts
    expected = stress.profile(stress.count_outcomes(samples.point.tolist(), samples.correct.tolist(),
                                                    samples.position.tolist(), 32))
    assert [t["line"] for t in cell.tolerances] == [t.line for t in expected]
    # each line states the region it was measured on: T, the positions of its reads, their thirds
    for tol in cell.tolerances:
        mine = samples[samples.family == tol["family"]]
        for name, value in tol["fixed"].items():
            mine = mine[mine[name] == value]
        assert tol["region"] == {"family": tol["family"], "length": 32, "fixed": tol["fixed"],
                                 "positions": [int(mine.position.min()), int(mine.position.max())],
                                 "thirds": tol["region"]["thirds"]}
        assert tol["line"].split(": ")[1].startswith("at T = 32, reads at position")


def test_generated_stress_file_is_the_stress_suite_and_the_gate_tests_each_point(tmp_path, capsys):
    out = tmp_path / "s.parquet"
    try:
        main(["generate", "--suite", "stress", "--length", 32, "--num", 4, "--out", str(out)])
    except SystemExit as exc:
        assert exc.code in (0, None)
    capsys.readouterr()
    ref = _run(tmp_path, "ref")
    cfg = runner.RunConfig(model="ffbench/transformer-mix", data=[str(out)], lengths=[32])
    with pytest.raises(UsageError, match="--num 1000000 exceeds the 216 sequences of .*s.parquet \\(part .stress.\\)"):
        runner.run(runner.RunConfig(model="ffbench/transformer-mix", data=[str(out)], num=10 ** 6), str(tmp_path / "x"),
                   resolve("ffbench/transformer-mix"), progress=False, echo=lambda m: None)
    assert not (tmp_path / "x").exists()
    mix = runner.run(cfg, str(tmp_path / "mix"), resolve("ffbench/transformer-mix"), progress=False, echo=lambda m: None)
    (a,), (b,) = ref.results, mix.results
    # --num 4 per point is not the preset's default sizes: the file is a stress file, scored per family
    assert b.by_point and [r["point"] for r in b.by_point] == [r["point"] for r in a.by_point]
    assert np.array_equal(mix.samples.point, ref.samples.point)


def test_the_default_stress_file_is_recognised_and_paired(tmp_path, capsys):
    out = tmp_path / "s.parquet"
    try:
        main(["generate", "--suite", "stress", "--length", 16, "--out", str(out)])
    except SystemExit as exc:
        assert exc.code in (0, None)
    capsys.readouterr()
    cfg = dict(model="ffbench/transformer-ref", lengths=[16])
    suite = runner.run(runner.RunConfig(suites=["stress"], **cfg), str(tmp_path / "a"), resolve(cfg["model"]),
                       progress=False, echo=lambda m: None)
    data = runner.run(runner.RunConfig(data=[str(out)], **cfg), str(tmp_path / "b"), resolve(cfg["model"]),
                      progress=False, echo=lambda m: None)
    assert data.results[0].source.kind == "stress" and data.results[0].source.path == str(out)
    assert data.results[0].key == suite.results[0].key and data.results[0].data_sha256 == suite.results[0].data_sha256
    verdict = check.compare(data, suite)
    assert len(verdict.tests) == len(stress.grid(16)) and {t.method for t in verdict.tests} == {"mcnemar"}
    assert all(t.discordant == (0, 0) for t in verdict.tests) and verdict.passed  # the same model, the same reads


def test_stress_run_summary_prints_tolerances(tmp_path, capsys):
    code = 0
    try:
        main(["run", "--model", "ffbench/lstm-ref", "--suite", "stress", "--length", 32, "--num", 2, "--output-dir",
              str(tmp_path / "r"), "--no-record"])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr().out
    assert code in (0, None)
    assert "stress profile, stress T=32 symbolic choice (exact 95% intervals):" in out
    assert "  distractor_run (density=1.0, write_at=start): " in out
    res = load(str(tmp_path / "r"))
    assert all(f"  {t['line']}" in out for t in res.results[0].tolerances)
