"""A result always belongs to the data and weights it names: resume, locks, registry, gate semantics.

Real files and real processes throughout: a run killed with SIGKILL, a data file regenerated with
other content, a checkpoint retrained in place, two ``ffbench run`` processes on one directory, a
corrupted registry. Exact counts and exit codes.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from ffbench import backends, check, datafiles, language
from ffbench.cli import main
from ffbench.registry import Registry
from ffbench.runs import load
from tests.conftest import needs_torch

pytestmark = needs_torch


def ffbench(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "ffbench", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def run_main(capsys, *args):
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _wait_for_shards(directory, n, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((directory / "shards").rglob("*.parquet"))) >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"no {n} shards appeared (exit {proc.poll()}): {proc.stderr.read() if proc.poll() else ''}")


def test_killed_run_then_changed_data_file_is_refused_never_merged(tmp_path, capsys):
    data = tmp_path / "f.parquet"
    datafiles.write_sequences(data, [language.sample(language.FFL.from_p_ignore(0.8, 128), 400, 1)])
    out = tmp_path / "r"
    args = ["run", "--model", "ffbench/lstm-ref", "--data", data, "--batch-size", 4, "--output-dir", out, "--no-record",
            "--no-progress"]
    proc = ffbench(*args)
    _wait_for_shards(out, 5, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "results.json").exists()
    # the file is regenerated with other content (another seed), same name, same size
    datafiles.write_sequences(data, [language.sample(language.FFL.from_p_ignore(0.8, 128), 400, 2)])
    code, _, err = run_main(capsys, *args)
    assert code == 2
    assert err.strip().splitlines() == [f"ffbench: error: '{out}' holds results of another run (data of {data} "
                                        "differ): use --rescore to discard them, or another --output-dir"]
    assert not (out / "results.json").exists()
    code, _, err = run_main(capsys, *args, "--rescore")
    assert code == 0, err
    res = load(str(out))
    new = datafiles.read_sequences(data)
    assert res.results[0].data_sha256 == new.sha256
    assert res.results[0].reads == len(language.extract_reads(new.sequences))  # every read of the new file, once
    assert len(res.samples) == res.results[0].reads


def _tiny(path, seed):
    from tests.models import build_tiny_model

    return build_tiny_model(path, "gpt2", seed=seed)


def test_retrained_weights_are_refused_and_never_filed_under_one_revision(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _tiny(tmp_path / "m", seed=0)
    reg = tmp_path / "reg.sqlite"
    args = ["run", "--model", "hf/./m", "--suite", "in_dist", "--length", 32, "--num", 6, "--output-dir", "r",
            "--registry", reg]
    code, out, err = run_main(capsys, *args, "--revision", "v1")
    assert code == 0, err
    v1 = load("r")
    assert v1.model == f"hf/{tmp_path.resolve() / 'm'}"  # a local path is normalised to its absolute path
    _tiny(tmp_path / "m", seed=1)  # retrained in place
    code, _, err = run_main(capsys, *args, "--revision", "v2")
    assert code == 2
    assert "holds results of another run (model weights (model.safetensors changed) differ)" in err
    assert [r["revision"] for r in Registry(reg).runs(f"hf/{tmp_path / 'm'}")] == ["v1"]  # nothing filed as v2
    code, _, err = run_main(capsys, *args, "--revision", "v2", "--rescore")
    assert code == 0, err
    v2 = load("r")
    assert v2.fingerprint["model"]["id"] != v1.fingerprint["model"]["id"]
    # the old weights' run cannot be filed under the new weights' revision
    old = tmp_path / "old"
    old.mkdir()
    (old / "results.json").write_text(json.dumps(v1.to_dict()))
    code, _, err = run_main(capsys, "record", old, "--revision", "v2", "--registry", reg)
    assert code == 1 and "registry already files other weights under" in err
    # hf/m, hf/./m and hf//abs/m are one model
    runs = Registry(reg).runs("hf/m")
    assert [r["revision"] for r in runs] == ["v1", "v2"]
    assert Registry(reg).runs(f"hf/{tmp_path / 'm'}") == runs
    assert backends.normalize("hf/./m") == backends.normalize("hf/m") == backends.normalize(f"hf//{tmp_path / 'm'}"[:-2]
                                                                                            + "/m")


def test_two_runs_on_one_directory_one_waits_out_with_the_pid(tmp_path):
    out = tmp_path / "r"
    reg = tmp_path / "reg.sqlite"
    args = ["run", "--model", "ffbench/lstm-ref", "--suite", "in_dist", "--num", 600, "--length", 256, "--batch-size", 8,
            "--output-dir", out, "--registry", reg, "--no-progress"]
    first = ffbench(*args)
    deadline = time.monotonic() + 60
    while not (out / ".lock.owner").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    second = ffbench(*args)
    assert second.wait(timeout=120) == 1
    err = second.stderr.read()
    assert f"run directory '{out}' is in use by pid {first.pid} on " in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert len(Registry(reg).runs("ffbench/lstm-ref")) == 1
    assert not (out / ".lock.owner").exists()
    # the lock of a process killed while holding it does not block the next run
    proc = ffbench(*args[:-5], "--output-dir", tmp_path / "k", "--no-record", "--no-progress")
    _wait_for_shards(tmp_path / "k", 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = ffbench(*args[:-5], "--output-dir", tmp_path / "k", "--no-record", "--no-progress")
    assert again.wait(timeout=300) == 0, again.stderr.read()


def test_corrupted_registry_fails_record_and_history(tmp_path, capsys):
    reg = tmp_path / "reg.sqlite"
    reg.write_bytes(b"this is not a database" * 100)
    code, _, err = run_main(capsys, "run", "--model", "ffbench/lstm-ref", "--suite", "in_dist", "--num", 3,
                            "--length", 32, "--output-dir", tmp_path / "r", "--registry", reg)
    assert code == 0 and "ffbench: warning: run not recorded: registry" in err  # the run itself is safe on disk
    code, _, err = run_main(capsys, "record", tmp_path / "r", "--registry", reg)
    assert code == 1
    assert err.strip().splitlines() == [f"ffbench: error: registry '{reg}' is unusable: file is not a database"]
    code, _, err = run_main(capsys, "report", tmp_path / "r", "--history", "--registry", reg, "--out",
                            tmp_path / "x.html", "--no-refs")
    assert code == 1 and "is unusable: file is not a database" in err
    assert not (tmp_path / "x.html").exists()


def _binomial_tail(b: int, n: int) -> float:
    """P(Binomial(n, 1/2) >= b), by hand."""
    return sum(math.comb(n, k) for k in range(b, n + 1)) / 2 ** n


def test_paired_gate_on_the_same_sequences_and_data_files_equal_to_a_suite(tmp_path, capsys):
    """A data file holding exactly the paper suite is that suite: comparable with --suite runs, and,
    scored on the very same sequences, gated by the exact McNemar test."""
    paper = tmp_path / "paper.parquet"
    code, _, _ = run_main(capsys, "generate", "--suite", "paper", "--num", 40, "--length", 128, "--out", paper)
    assert code == 0
    common = ["--length", 128, "--no-record"]
    run_main(capsys, "run", "--model", "ffbench/transformer-mix", "--suite", "paper", "--num", 40, *common,
             "--output-dir", tmp_path / "mix")
    code, _, err = run_main(capsys, "run", "--model", "ffbench/transformer-ref", "--data", paper, *common,
                            "--output-dir", tmp_path / "ref")
    assert code == 0, err
    ref, mix = load(str(tmp_path / "ref")), load(str(tmp_path / "mix"))
    assert [(c.suite, c.p_ignore) for c in ref.results] == [("in_dist", 0.8), ("sparse", 0.98), ("dense", 0.1)]
    assert ref.keys() == mix.keys()
    verdict = check.compare(ref, mix)
    assert [t.method for t in verdict.tests] == ["mcnemar"] * 3
    for t, c_ref, c_mix in zip(verdict.tests, ref.results, mix.results):
        wrong_ref = {(r["seq_index"], r["read_index"]) for r in ref.samples.query("cell == @c_ref.id and not correct")
                     .to_dict("records")}
        wrong_mix = {(r["seq_index"], r["read_index"]) for r in mix.samples.query("cell == @c_mix.id and not correct")
                     .to_dict("records")}
        b, c = len(wrong_ref - wrong_mix), len(wrong_mix - wrong_ref)
        assert t.discordant == (b, c)
        assert t.p_value == pytest.approx(_binomial_tail(b, b + c), rel=1e-12, abs=1e-300)
    dense = verdict.tests[2]
    assert dense.discordant[0] > 10 and dense.failed  # transformer-ref glitches on dense where -mix does not
    code, out, _ = run_main(capsys, "check", "-c", tmp_path / "ref", "-b", tmp_path / "mix")
    assert code == 1 and "exact McNemar (paired)" in out and "discordant reads" in out


def test_paired_p_value_by_hand():
    assert check.mcnemar_p(7, 1) == 9 / 256  # P(Bin(8, 1/2) >= 7) = (C(8,7) + C(8,8)) / 2^8
    assert check.mcnemar_p(0, 5) == 1.0
    assert check.mcnemar_p(3, 0) == 1 / 8


def test_zero_tolerance_and_latest_comparable_registry_baseline(tmp_path, capsys):
    reg = tmp_path / "reg.sqlite"
    base = ["--model", "ffbench/transformer-ref", "--num", 30, "--registry", reg]
    run_main(capsys, "run", *base, "--suite", "in_dist", "--length", 64, "--revision", "v1", "--output-dir", tmp_path / "a")
    run_main(capsys, "run", *base, "--suite", "dense", "--length", 32, "--revision", "v2", "--output-dir", tmp_path / "b")
    code, _, err = run_main(capsys, "run", *base, "--suite", "in_dist", "--length", 64, "--seed", 9, "--no-record",
                            "--output-dir", tmp_path / "c")
    assert code == 0, err
    code, out, err = run_main(capsys, "check", "-c", tmp_path / "c", "-b", "registry:ffbench/transformer-ref",
                              "--registry", reg)
    assert code == 0, out + err
    assert "baseline: registry:ffbench/transformer-ref@v1 recorded" in err  # v2 is later but shares no cell
    # zero tolerance: the dense run has errors, the in_dist run none
    code, out, _ = run_main(capsys, "check", "-c", tmp_path / "b", "--max-glitch-rate", 0)
    cell = load(str(tmp_path / "b")).results[0]
    assert cell.errors > 0 and code == 1 and "vs ceiling 0: any error fails the cell" in out
    code, out, _ = run_main(capsys, "check", "-c", tmp_path / "a", "--max-glitch-rate", 0)
    assert load(str(tmp_path / "a")).results[0].errors == 0 and code == 0


def test_finished_run_reused_only_with_identical_identity(tmp_path, capsys):
    args = ["run", "--model", "ffbench/transformer-ref", "--suite", "in_dist", "--num", 5, "--output-dir", tmp_path / "r",
            "--no-record"]
    assert run_main(capsys, *args)[0] == 0
    code, _, err = run_main(capsys, *args)
    assert code == 0 and "run already complete" in err
    code, _, err = run_main(capsys, *args[:-3], "--fewshot", *args[-3:])
    assert code == 2 and "holds results of another run (config (fewshot) differ)" in err
    identity = json.loads((tmp_path / "r" / "identity.json").read_text())
    assert identity["data"] == load(str(tmp_path / "r")).fingerprint["data"]
    assert np.isclose(load(str(tmp_path / "r")).results[0].accuracy, 1.0)


def test_registry_of_an_older_schema_is_migrated(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as con:
        con.executescript("""CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL,
            revision TEXT NOT NULL DEFAULT '', config_hash TEXT NOT NULL, created TEXT NOT NULL, recorded TEXT NOT NULL,
            run_dir TEXT, data_sha256 TEXT, ffbench_version TEXT, results_json TEXT NOT NULL,
            UNIQUE (model, revision, config_hash, created));
            CREATE TABLE cells (run_id INTEGER NOT NULL, suite TEXT, length INTEGER, p_ignore REAL, render TEXT,
            scoring TEXT, reads INTEGER, errors INTEGER, invalid INTEGER, glitch_rate REAL, ci_low REAL, ci_high REAL);""")
    reg = Registry(path)
    reg.record(load("ffbench/transformer-ref"), "shipped")
    assert reg.resolve("ffbench/transformer-ref@shipped").results[1].errors == 23_340


def test_runs_cut_short_are_not_compared_recorded_or_called_certified(tmp_path, capsys):
    stopped = tmp_path / "stopped"
    code, _, err = run_main(capsys, "run", "--model", "ffbench/transformer-ref", "--suite", "dense", "--num", 60,
                            "--stop-at-first-error", "--batch-size", 10, "--output-dir", stopped, "--registry",
                            tmp_path / "reg.sqlite")
    assert code == 0, err
    res = load(str(stopped))
    assert res.stop_reason == "first_error" and not res.complete
    code, _, err = run_main(capsys, "check", "-c", stopped, "-b", "ffbench/transformer-ref")
    assert code == 2 and "stopped early (first_error): its counts are not a sample of fixed size" in err
    code, out, _ = run_main(capsys, "check", "-c", stopped, "--max-glitch-rate", 0)  # the exact rule still applies
    assert code == 1 and "any error fails the cell" in out
    code, _, err = run_main(capsys, "record", stopped, "--registry", tmp_path / "reg.sqlite")
    assert code == 1 and "stopped early (first_error)" in err
    assert not (tmp_path / "reg.sqlite").exists() or Registry(tmp_path / "reg.sqlite").runs() == []
    # a certification that fails is a failed gate: exit 1, the run kept
    code, out, err = run_main(capsys, "run", "--model", "ffbench/transformer-ref", "--suite", "dense", "--num", 40,
                              "--certify", 1e-4, "--output-dir", tmp_path / "cert", "--no-record")
    assert code == 1 and "ffbench: error: not certified:" in err and load(str(tmp_path / "cert")).stop_reason == "refuted"
