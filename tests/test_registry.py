"""The results registry: record, resolve MODEL@REV, history, and concurrent writers."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from ffbench.errors import FFBenchError
from ffbench.registry import Registry
from ffbench.schema import RunResults
from tests.conftest import needs_torch
from tests.rundirs import cell, write_run


def _results(model, errors, created, fingerprint=None):
    return RunResults.from_dict({"model": model, "created": created, "config": {"model": model}, "data_sha256": "x",
                                 "ffbench_version": "t", "fingerprint": {"model": fingerprint or {"id": "w1"}},
                                 "results": [cell("sparse", errors, 10_000), cell("dense", 0, 5_000)]})


def test_record_resolve_and_idempotence(tmp_path):
    reg = Registry(tmp_path / "r.sqlite")
    assert reg.record(_results("hf/m", 3, "2026-01-01T00:00:00+00:00"), "v1") is not None
    assert reg.record(_results("hf/m", 3, "2026-01-01T00:00:00+00:00"), "v1") is None  # same run again
    reg.record(_results("hf/m", 9, "2026-02-01T00:00:00+00:00"), "v2")
    reg.record(_results("hf/other", 1, "2026-02-02T00:00:00+00:00"), "v1")
    assert [r["revision"] for r in reg.runs("hf/m")] == ["v1", "v2"]
    assert reg.resolve("hf/m@v1").results[0].errors == 3
    assert reg.resolve("hf/m").results[0].errors == 9  # latest
    with pytest.raises(FFBenchError, match="no run of 'hf/m' at revision 'v3'.*hf/other"):
        reg.resolve("hf/m@v3")
    with sqlite3.connect(tmp_path / "r.sqlite") as con:
        assert con.execute("SELECT COUNT(*) FROM cells").fetchone()[0] == 6


WRITER = """
import sys
from ffbench.registry import Registry
from tests.test_registry import _results
reg = Registry(sys.argv[1])
for k in range(int(sys.argv[3])):
    reg.record(_results(sys.argv[2], k, f"2026-03-01T00:00:{k:02d}+00:00"), f"r{k}")
"""


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    path = tmp_path / "shared.sqlite"
    n = 40
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"hf/job{j}", str(n)],
                              stderr=subprocess.PIPE, text=True) for j in range(2)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 2 * n
        assert con.execute("SELECT COUNT(*) FROM cells").fetchone()[0] == 2 * n * 2
    reg = Registry(path)
    assert [r["revision"] for r in reg.runs("hf/job1")] == [f"r{k}" for k in range(n)]


def test_cli_record_history_and_registry_baseline(tmp_path):
    reg = tmp_path / "cli.sqlite"
    old = write_run(tmp_path / "old", "hf/org/m", [cell("sparse", 2, 100_000)], created="2026-01-01T00:00:00+00:00")
    new = write_run(tmp_path / "new", "hf/org/m", [cell("sparse", 50, 100_000)], created="2026-02-01T00:00:00+00:00")

    def ff(*args):
        return subprocess.run([sys.executable, "-m", "ffbench", *map(str, args), "--registry", reg],
                              capture_output=True, text=True)

    assert ff("record", old, "--revision", "v1").returncode == 0
    assert ff("record", new, "--revision", "v2").returncode == 0
    hist = ff("history", "--model", "hf/org/m")
    assert hist.returncode == 0
    assert hist.stdout.index("revision v1") < hist.stdout.index("revision v2")
    assert "50 errors in 100,000 reads" in hist.stdout
    gate = ff("check", "--candidate", new, "--baseline", "registry:hf/org/m@v1")
    assert gate.returncode == 1, gate.stdout + gate.stderr
    missing = ff("check", "--candidate", new, "--baseline", "registry:hf/org/m@v9")
    assert missing.returncode == 2 and "no run of 'hf/org/m' at revision 'v9'" in missing.stderr
    report = subprocess.run([sys.executable, "-m", "ffbench", "report", "registry:hf/org/nosuch", "--registry", reg,
                             "--out", tmp_path / "r.html"], capture_output=True, text=True)  # a bad reference: usage
    assert report.returncode == 2 and report.stderr.count("\n") == 1 and "no run of 'hf/org/nosuch'" in report.stderr


@needs_torch
def test_run_records_itself(tmp_path):
    reg = tmp_path / "runs.sqlite"
    base = [sys.executable, "-m", "ffbench", "run", "--model", "ffbench/lstm-ref", "--suite", "in_dist", "--num", "4",
            "--length", "64", "--registry", str(reg)]
    res = subprocess.run(base + ["--revision", "v1", "-o", str(tmp_path / "a")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert f"registry: recorded as #1 in {reg} (revision v1)" in res.stdout
    subprocess.run(base + ["--no-record", "--seed", "5", "-o", str(tmp_path / "b")], check=True, capture_output=True)
    runs = Registry(reg).runs("ffbench/lstm-ref")
    assert [r["revision"] for r in runs] == ["v1"]
    assert runs[0]["run_dir"] == str((tmp_path / "a").resolve())
    assert runs[0]["results"].results[0].reads == json.loads((tmp_path / "a" / "results.json").read_text())[
        "results"][0]["reads"]
