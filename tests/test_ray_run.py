"""``ffbench run --executor ray``: shards on Ray actors, identical read for read to a local run, also
when a worker is killed midway (Ray restarts it and re-scores its shard in flight)."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time

import pytest

from ffbench.runs import load
from tests.conftest import needs_torch

pytestmark = [needs_torch, pytest.mark.integration,
              pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray not installed")]

ARGS = ["--model", "ffbench/transformer-ref", "--suite", "in_dist,dense", "--num", "240", "--batch-size", "8",
        "--no-record", "--no-progress"]


def _ffbench(*args):
    return subprocess.Popen([sys.executable, "-m", "ffbench", "run", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "RAY_DEDUP_LOGS": "0"})


def _worker_pids(exclude=()) -> list[int]:
    out = subprocess.run(["pgrep", "-f", "ray::ShardWorker"], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out if int(p) not in exclude]


def test_ray_run_equals_local_run_even_when_a_worker_is_killed(tmp_path):
    local = _ffbench(*ARGS, "--output-dir", tmp_path / "local")
    assert local.wait(timeout=600) == 0, local.stderr.read()
    before = set(_worker_pids())
    ray = _ffbench(*ARGS, "--executor", "ray", "--workers", 2, "--output-dir", tmp_path / "ray")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and ray.poll() is None:
        if len(list((tmp_path / "ray" / "shards").rglob("*.parquet"))) >= 6:
            break
        time.sleep(0.05)
    workers = _worker_pids(before)
    assert len(workers) == 2, workers
    os.kill(workers[0], signal.SIGKILL)  # a worker dies with a shard in flight
    # Ray restarts it: its shard in flight can only finish on the new process, so one must appear
    # (it loads the model, seconds) before the run ends
    restarted = []
    while not restarted and ray.poll() is None and time.monotonic() < deadline:
        restarted = _worker_pids(before | set(workers))
        time.sleep(0.05)
    out, err = ray.communicate(timeout=600)
    assert len(restarted) == 1, "no worker was restarted after the kill"
    assert ray.returncode == 0, err
    a, b = load(str(tmp_path / "local")), load(str(tmp_path / "ray"))
    assert a.samples.equals(b.samples)  # every read, in order, with the same verdict and margin
    assert [c.to_dict() for c in a.results] == [c.to_dict() for c in b.results]
    assert b.backend["executor"] == "ray" and b.backend["workers"] == 2
    assert a.fingerprint == b.fingerprint
    # the run of a killed worker is not a different run: rerunning locally finds it complete
    again = _ffbench(*ARGS, "--output-dir", tmp_path / "ray")
    assert again.wait(timeout=300) == 0 and "run already complete" in again.stderr.read()


def test_ray_run_keeps_max_cost_like_a_local_run(tmp_path):
    """--max-cost with shards in flight on two actors: a shard is sent only when the spent cost, the
    estimated cost of the shards in flight and its own fit the budget, so the Ray run stops after the
    same three shards (20 sequences at T=128: 2,560 tokens, $0.00256 at $1 per million) as a local run."""
    args = ["--model", "ffbench/transformer-ref", "--suite", "in_dist", "--num", "200", "--batch-size", "20",
            "--no-record", "--no-progress", "--max-cost", "0.0077", "--price-in", "1"]
    runs = {}
    for name, extra in {"local": [], "ray": ["--executor", "ray", "--workers", 2]}.items():
        proc = _ffbench(*args, *extra, "--output-dir", tmp_path / name)
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        runs[name] = load(str(tmp_path / name))
    for res in runs.values():
        assert res.stop_reason == "max_cost" and res.results[0].num_sequences == 60
        assert res.usage["prompt_tokens"] == 3 * 2560
    assert runs["local"].samples.equals(runs["ray"].samples)
