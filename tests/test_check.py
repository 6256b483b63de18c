"""The CI gate: exit codes on crafted runs, exact p-values, Holm, JUnit and Markdown outputs."""

from __future__ import annotations

import subprocess
import sys
from xml.etree import ElementTree as ET

import pytest

from ffbench import check
from tests.rundirs import cell, write_run


def _gate(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ffbench", "check", *map(str, args)], capture_output=True, text=True,
                          env=env)


@pytest.fixture
def pair(tmp_path):
    def make(base_cells, cand_cells):
        b = write_run(tmp_path / "base", "hf/org/model", base_cells)
        c = write_run(tmp_path / "cand", "hf/org/model", cand_cells)
        return c, b
    return make


def test_clear_regression_fails(pair, tmp_path):
    cand, base = pair([cell("sparse", 2, 100_000), cell("dense", 10, 30_000)],
                      [cell("sparse", 60, 100_000), cell("dense", 9, 30_000)])
    res = _gate("--candidate", cand, "--baseline", base, "--junit", tmp_path / "j.xml")
    assert res.returncode == 1, res.stderr
    assert "FAIL  sparse T=512 p=0.98 symbolic choice [regression]" in res.stdout
    assert "ok    dense" in res.stdout
    root = ET.parse(tmp_path / "j.xml").getroot()
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert root.tag == "testsuites" and len(cases) == int(suite.get("tests")) == 2
    assert [c.find("failure") is not None for c in cases] == [True, False]
    assert int(suite.get("failures")) == 1 == int(root.get("failures"))


def test_identical_counts_pass_and_the_same_gate_fails_a_rise(pair, tmp_path):
    from math import comb

    n = 100_000
    cand, base = pair([cell("sparse", 5, n)], [cell("sparse", 5, n)])
    res = _gate("-c", cand, "-b", base)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "PASS" in res.stdout and "ok    sparse" in res.stdout
    # Fisher's one-sided p of 5 vs 5 errors, from the hypergeometric written out: P(X >= 5 of the 10 errors)
    fisher = sum(comb(n, k) * comb(n, 10 - k) for k in range(5, 11)) / comb(2 * n, 10)
    assert check.regression_p(5, n, 5, n) == pytest.approx(fisher, rel=1e-9) and fisher > 0.5
    # the control: the same gate against the same baseline fails once only the candidate's count rises
    worse = write_run(tmp_path / "worse", "hf/org/model", [cell("sparse", 40, n)])
    res = _gate("-c", worse, "-b", base)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "FAIL  sparse T=512 p=0.98 symbolic choice [regression]" in res.stdout


def test_borderline_rise_within_noise_passes(pair):
    # 3 -> 8 errors in 100k reads: Fisher one-sided p = (165 + 55 + 11 + 1) / 2048 = 0.113
    cand, base = pair([cell("sparse", 3, 100_000)], [cell("sparse", 8, 100_000)])
    assert check.regression_p(8, 100_000, 3, 100_000) == pytest.approx(232 / 2048, rel=1e-3)
    res = _gate("-c", cand, "-b", base)
    assert res.returncode == 0, res.stdout
    # ... while 3 -> 20 is a real regression.
    assert check.regression_p(20, 100_000, 3, 100_000) < 1e-3


def test_ceiling(tmp_path):
    over = write_run(tmp_path / "over", "m", [cell("dense", 30, 10_000)])
    near = write_run(tmp_path / "near", "m", [cell("dense", 12, 10_000)])
    assert _gate("-c", over, "--max-glitch-rate", "1e-3").returncode == 1
    res = _gate("-c", near, "--max-glitch-rate", "1e-3")  # 1.2e-3 observed, not shown to be above 1e-3
    assert res.returncode == 0, res.stdout
    assert check.ceiling_p(12, 10_000, 1e-3) == pytest.approx(0.303, abs=0.01)


def test_holm_controls_many_cells():
    assert check.holm([0.03] * 5, 0.05) == [False] * 5
    assert check.holm([0.001, 0.02, 0.04], 0.05) == [True, True, True]  # 0.001<.0167, 0.02<.025, 0.04<.05
    assert check.holm([0.001, 0.03, 0.04], 0.05) == [True, False, False]


def test_markdown_summary_appended(pair, tmp_path):
    cand, base = pair([cell("sparse", 2, 100_000)], [cell("sparse", 60, 100_000)])
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n")
    import os

    res = _gate("-c", cand, "-b", base, env={**os.environ, "GITHUB_STEP_SUMMARY": str(summary)})
    assert res.returncode == 1
    text = summary.read_text()
    assert text.startswith("earlier step\n")
    assert "### ffbench check: FAIL (1 of 1 tests)" in text
    assert "| sparse T=512 p=0.98 symbolic choice | regression | fisher | 60/100,000" in text


def test_usage_errors_exit_2(pair, tmp_path):
    cand, base = pair([cell("sparse", 2, 100_000)], [cell("dense", 2, 100_000)])
    for args in (["-c", tmp_path / "missing", "-b", base],  # no such run
                 ["-c", cand, "-b", base],  # no common cell
                 ["-c", cand, "-b", base, "--alpha", "1.5"],
                 ["-c", cand]):  # neither baseline nor ceiling
        res = _gate(*args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert res.stderr.startswith("ffbench: error:") and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1


def test_shipped_reference_as_baseline(tmp_path):
    ref = __import__("ffbench.runs", fromlist=["load"]).load("ffbench/transformer-ref")
    sparse = next(c for c in ref.results if c.suite == "sparse")
    better = write_run(tmp_path / "better", "m", [cell("sparse", 10, sparse.reads, length=sparse.length)])
    assert _gate("-c", better, "-b", "ffbench/transformer-ref").returncode == 0
    worse = write_run(tmp_path / "worse", "m", [cell("sparse", sparse.errors + 2000, sparse.reads,
                                                     length=sparse.length)])
    assert _gate("-c", worse, "-b", "ffbench/transformer-ref").returncode == 1


def test_missing_baseline_allowed_only_with_a_ceiling(tmp_path):
    cand = write_run(tmp_path / "c", "m", [cell("dense", 30, 10_000)])
    reg = ["--registry", tmp_path / "empty.sqlite"]
    assert _gate("-c", cand, "-b", "registry:m", *reg).returncode == 2
    assert _gate("-c", cand, "-b", "registry:m", "--allow-missing-baseline", *reg).returncode == 2  # no ceiling
    res = _gate("-c", cand, "-b", "registry:m", "--allow-missing-baseline", "--max-glitch-rate", "1e-3", *reg)
    assert res.returncode == 1 and "[ceiling]" in res.stdout  # 30 in 10,000 is above 1e-3
    res = _gate("-c", cand, "-b", "registry:m", "--allow-missing-baseline", "--max-glitch-rate", "1e-2", *reg)
    assert res.returncode == 0, res.stdout
