"""Stop when asked (issue 23): Ctrl-C while API requests hang says "stopping..." at once, abandons
the requests in flight and exits within 2 s; a long Retry-After is said and capped by the model
arg ``max_retry_wait``."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.fault_server import MODEL, FaultServer

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openai") is None, reason="openai not installed")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_while_requests_hang_says_stopping_and_exits_within_2_s(tmp_path, sig):
    with FaultServer(faults=False, capacity=100, latency=60) as srv:  # every request hangs for a minute
        proc = subprocess.Popen(
            [sys.executable, "-m", "ffbench", "run", "--model", f"openai/{MODEL}", "--base-url", srv.url,
             "--model-arg", "echo=false", "--model-arg", "concurrency=4", "--scoring", "greedy", "--suite",
             "in_dist", "--length", "16", "--num", "8", "-o", str(tmp_path / "r"), "--no-record", "--no-progress"],
            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": os.getcwd(), "OPENAI_API_KEY": "sk-test"})
        deadline = time.time() + 60
        while srv.in_flight < 4:
            assert time.time() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.05)
        t0 = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - t0
    assert elapsed < 2.0, (elapsed, err)
    assert proc.returncode == 130 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert "ffbench: stopping..." in lines and lines[-1].startswith("ffbench: interrupted: 0 of 1 shards are kept")


def test_a_long_retry_after_is_said_and_capped(tmp_path):
    from tests.test_openai_faults import _backend

    notes = []
    with FaultServer(retry_after_ms=100_000_000) as srv:  # the first request is answered 429, Retry-After 100000 s
        backend = _backend(srv.url, max_retry_wait=0.2)
        backend.transport.notify = notes.append
        t0 = time.monotonic()
        backend.generate(["w0r"], 2)
        elapsed = time.monotonic() - t0
    assert elapsed < 5 and srv.injected["429"] == 1
    assert notes == [("openai server asks to wait 100000 s before retrying (HTTP 429: slow down); waiting 0.2 s "
                      "(max_retry_wait)")]


def test_ctrl_c_in_a_batch_of_50_hanging_requests_exits_within_2_s_and_resumes(tmp_path):
    """Shards of 50 sequences with up to 50 requests in flight, all hanging: the stop is as quick as with
    a few, and a rerun against the recovered server resumes to the same results as a run that was
    never interrupted."""
    import json

    import pyarrow.parquet as pq

    def command(out):
        return [sys.executable, "-m", "ffbench", "run", "--model", f"openai/{MODEL}", "--base-url", srv.url,
                "--model-arg", "echo=false", "--model-arg", "concurrency=50", "--scoring", "greedy", "--suite",
                "in_dist", "--length", "32", "--num", "100", "--batch-size", "50", "-o", str(out), "--no-record",
                "--no-progress"]

    env = {**os.environ, "PYTHONPATH": os.getcwd(), "OPENAI_API_KEY": "sk-test"}
    with FaultServer(faults=False, capacity=1000, latency=60) as srv:
        proc = subprocess.Popen(command(tmp_path / "r"), stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                env=env)
        deadline = time.time() + 60
        while srv.in_flight < 30:  # the first wave: each sequence's first read (about 40 distinct prompts)
            assert time.time() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.05)
        time.sleep(0.3)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - t0
        assert elapsed < 2.0, (elapsed, err)
        assert proc.returncode == 130 and "Traceback" not in err
        assert "ffbench: stopping..." in err.splitlines()
        assert err.strip().splitlines()[-1] == (f"ffbench: interrupted: 0 of 2 shards are kept in {tmp_path / 'r'}; "
                                                "rerun the same command to resume")
        srv.latency = 0.0  # the server recovers (the abandoned requests still hang on their own threads)
        for out in (tmp_path / "r", tmp_path / "fresh"):
            done = subprocess.run(command(out), capture_output=True, text=True, env=env, timeout=300, check=False)
            assert done.returncode == 0, done.stderr
    a = pq.read_table(tmp_path / "r" / "samples.parquet").to_pandas()
    b = pq.read_table(tmp_path / "fresh" / "samples.parquet").to_pandas()
    assert len(a) > 100 and a.equals(b)
    results = [json.loads((tmp_path / d / "results.json").read_text())["results"] for d in ("r", "fresh")]
    assert results[0] == results[1]


@pytest.mark.parametrize("command", ["run", "hunt"])
def test_ctrl_c_while_the_server_never_answers_its_model_listing_is_one_line(tmp_path, command):
    """A server that accepts connections and never answers: Ctrl-C while the model loads (its
    listing hangs) stops within 2 s with one line (not click's "aborted") and leaves no directory behind."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held = []
    threading.Thread(target=lambda: [held.append(listener.accept()) for _ in range(16)], daemon=True).start()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ffbench", command, "--model", "openai/m", "--base-url",
             f"http://127.0.0.1:{listener.getsockname()[1]}/v1", "--length", "16", "-o", str(tmp_path / "r"),
             "--no-progress", *(["--suite", "in_dist", "--num", "8", "--no-record"] if command == "run" else
                                ["--budget", "100"])],
            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": os.getcwd(), "OPENAI_API_KEY": "sk-test"})
        deadline = time.time() + 60
        while not held:
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.05)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        listener.close()
    assert elapsed < 2.0 and proc.returncode == 130, (elapsed, err)
    began = "scoring" if command == "run" else "the hunt"
    assert err.splitlines()[-2:] == ["ffbench: stopping...", f"ffbench: interrupted before {began} began; nothing was kept"]
    assert not (tmp_path / "r").exists()
