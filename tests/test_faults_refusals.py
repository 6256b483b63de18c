"""Refuse before working (issue 23): sizes and memory are checked before a single sequence is
generated, a missing API key before any request, every way of passing a key behaves the same, a
signal removes partial files, and a full disk is one line after which the rerun resumes."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from ffbench.errors import FFBenchError
from ffbench.rundir import RunDir
from tests.test_cli import run_main
from tests.test_faults_rundir import Interrupting, _run, _same_as, full  # noqa: F401 (fixture)

FAST = ("--no-record", "--no-progress")


@pytest.mark.parametrize("argv, fragment", [
    (["--length", "1000000000000"], "1,000 sequences of length 1,000,000,000,000"),
    (["--num", "1000000000", "--dry-run"], "1,000,000,000 sequences of length 128"),
])
def test_run_and_dry_run_refuse_data_that_cannot_fit_in_memory_at_once(tmp_path, capsys, argv, fragment):
    t0 = time.perf_counter()
    code, out, err = run_main(capsys, "run", "--model", "ffbench/transformer-ref", "--suite", "in_dist", *argv,
                              "-o", tmp_path / "r", *FAST)
    assert time.perf_counter() - t0 < 5 and code == 2 and out == ""
    assert err.startswith("ffbench: error: the sequences of this run need about ") and fragment in err
    assert err.rstrip().endswith("is available: use a smaller --num or --length") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv, fragment", [
    (["--num", "10000000000"], "10,000,000,000 sequences of length 512 take at least 1192.1 GiB on disk"),
    (["--num", "10", "--length", "1000000000000"], "a chunk of 10 sequences of length 1,000,000,000,000 needs"),
])
def test_generate_refuses_what_cannot_fit_before_sampling(tmp_path, capsys, argv, fragment):
    t0 = time.perf_counter()
    code, _, err = run_main(capsys, "generate", *argv, "--out", tmp_path / "x.parquet")
    assert time.perf_counter() - t0 < 5 and code == 2 and fragment in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_sigterm_during_generate_removes_the_partial_file(tmp_path):
    out = tmp_path / "big.parquet"
    proc = subprocess.Popen([sys.executable, "-m", "ffbench", "generate", "--num", "50000000", "--length", "256",
                             "--out", str(out)], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    deadline = time.time() + 60
    while not any(p.name.startswith(".big.parquet.partial-") for p in tmp_path.iterdir()):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("provider, env", [("openai/gpt-4o-mini", "OPENAI_API_KEY"),
                                           ("anthropic/claude-haiku-4-5", "ANTHROPIC_API_KEY")])
def test_a_missing_key_for_the_vendor_api_is_one_line_before_any_request(tmp_path, capsys, monkeypatch, provider,
                                                                         env):
    monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL" if provider.startswith("openai") else "ANTHROPIC_BASE_URL", "")
    code, _, err = run_main(capsys, "run", "--model", provider, "--render", "chat", "--scoring", "greedy",
                            "--suite", "in_dist", "--num", "2", "-o", tmp_path / "r", *FAST)
    assert code == 2 and err == (f"ffbench: error: {provider} needs an API key ({env} is not set): set it, or pass "
                                 "--api-key KEY (or --model-arg api_key=KEY)\n")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("how", ["flag", "env", "model-arg"])
def test_every_way_of_passing_a_key_sends_it_and_writes_it_nowhere(tmp_path, capsys, monkeypatch, how):
    from tests.fault_server import MODEL, FaultServer

    secret = "sk-test-0123456789abcdef"
    seen = []
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FaultServer(faults=False) as srv:
        handler = srv.httpd.RequestHandlerClass
        original = handler.do_POST

        def spy(self):
            seen.append(self.headers.get("Authorization"))
            original(self)

        handler.do_POST = spy
        key_args = {"flag": ["--api-key", secret], "model-arg": ["--model-arg", f"api_key={secret}"], "env": []}[how]
        if how == "env":
            monkeypatch.setenv("OPENAI_API_KEY", secret)
        code, out, err = run_main(capsys, "run", "--model", f"openai/{MODEL}", "--base-url", srv.url, *key_args,
                                  "--model-arg", "echo=false", "--scoring", "greedy", "--suite", "in_dist",
                                  "--length", "16", "--num", "3", "-o", tmp_path / "r", *FAST)
    assert code == 0, err
    assert seen and set(seen) == {f"Bearer {secret}"}
    for path in (tmp_path / "r").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in out + err


def test_a_full_disk_is_one_line_and_the_rerun_resumes(tmp_path, monkeypatch, full):  # noqa: F811
    real = pq.write_table
    calls = []

    def write_table(table, where, *args, **kwargs):
        calls.append(where)
        if len(calls) == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, where, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", write_table)
    with pytest.raises(FFBenchError, match=r"^no space left on the device to write '.*/000000030\.parquet': free "
                                           r"some space and rerun the same command"):
        _run(tmp_path / "r")
    assert RunDir(tmp_path / "r").shard_count() == 3
    assert [p.name for p in (tmp_path / "r").rglob(".*partial*")] == []
    monkeypatch.setattr(pq, "write_table", real)
    again = Interrupting()
    _same_as(full, _run(tmp_path / "r", again), tmp_path / "r")
    assert again.texts == 80 - 30


def test_the_cli_says_a_full_disk_in_one_line(tmp_path, capsys, monkeypatch):
    class FullDisk(pq.ParquetWriter):
        def write_table(self, table, *args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "ParquetWriter", FullDisk)
    code, _, err = run_main(capsys, "generate", "--num", "10", "--length", "16", "--out", tmp_path / "x.parquet")
    assert code == 1 and err.startswith("ffbench: error: no space left on the device") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
