"""``ffbench hunt --executor ray``: each round's candidates split over Ray actors through the engine
that ``ffbench run`` uses, giving the hunt of a local run: the same glitches, map counts, shapes and
margins, read for read. The estimate's samples have mixed lengths: they stay identical only because
each length is scored whole on one actor, as in the local batches (ffbench.hunt.job.split)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import needs_torch

pytestmark = [needs_torch, pytest.mark.integration,
              pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray not installed")]

ARGS = ["--model", "ffbench/transformer-ref", "--length", "32", "--seed", "3", "--no-progress"]
SEARCH = ["--budget", "600"]  # the map search, and the shrinking of its glitches
ESTIMATE = ["--budget", "400", "--budget-tokens", "6000", "--estimate", "in_dist"]  # tokens counted by an actor
TIMING = ("created", "updated")


def _hunt(out, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ffbench", "hunt", *ARGS, *extra, "--out", str(out)],
                          capture_output=True, text=True, timeout=600, check=False, env={**os.environ, "RAY_DEDUP_LOGS": "0"})


def _local_and_ray(tmp_path, args) -> tuple[dict, dict]:
    local = _hunt(tmp_path / "local", *args)
    assert local.returncode == 0, local.stderr
    ray = _hunt(tmp_path / "ray", *args, "--executor", "ray", "--workers", "2")
    assert ray.returncode == 0, ray.stderr
    assert "on 2 Ray workers" in ray.stderr
    a, b = (json.loads((tmp_path / d / "hunt.json").read_text()) for d in ("local", "ray"))
    assert {k: v for k, v in a.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}
    return a, b


def test_a_ray_hunt_equals_the_local_hunt(tmp_path):
    a, _ = _local_and_ray(tmp_path, SEARCH)
    assert a["glitches"]["distinct"] > 0 and a["map"]["cells"]  # something to compare: glitches and a map
    assert a["spent"]["shrink_reads"] > 0  # shrinking (units of mixed lengths) ran too
    ga, gb = (pd.read_parquet(tmp_path / d / "glitches.parquet") for d in ("local", "ray"))
    pd.testing.assert_frame_equal(ga, gb)  # every glitch, its reads and margins, in order


def test_a_ray_estimate_equals_the_local_estimate_sample_for_sample(tmp_path):
    a, _ = _local_and_ray(tmp_path, ESTIMATE)
    assert a["stop_reason"] == "exhausted" and a["spent"]["tokens"] <= 6000  # the token budget decided
    sa, sb = (pd.read_parquet(tmp_path / d / "samples.parquet") for d in ("local", "ray"))
    assert len(sa) == a["spent"]["reads"] and sa["text"].str.len().nunique() > 1  # samples of mixed lengths
    pd.testing.assert_frame_equal(sa, sb, check_exact=True)  # every sample's verdict, margin and weight


@pytest.mark.skipif(importlib.util.find_spec("openai") is None, reason="openai not installed")
def test_a_ray_hunt_of_an_api_model_through_faults_equals_the_local_hunt(tmp_path):
    """An API model on Ray actors: each actor reaches the server, retries its faults (429, 500,
    stalls, malformed bodies on first attempts) and the hunt equals a local one; every answer lands
    in the hunt directory's response cache, as locally; a finished hunt rerun sends nothing."""
    from tests.fault_server import MODEL, FaultServer

    api = ["--model", f"openai/{MODEL}", "--length", "16", "--seed", "3", "--no-progress", "--budget", "60",
           "--model-arg", "retry_base=0.01", "--model-arg", "timeout=1"]
    env = {**os.environ, "RAY_DEDUP_LOGS": "0", "OPENAI_API_KEY": "sk-test"}

    def hunt(out, *extra):
        return subprocess.run([sys.executable, "-m", "ffbench", "hunt", *api, "--base-url", srv.url, *extra,
                               "--out", str(out)], capture_output=True, text=True, timeout=600, env=env)

    with FaultServer(faults=True, stall=1.5) as srv:
        local = hunt(tmp_path / "local")
        assert local.returncode == 0, local.stderr
        ray = hunt(tmp_path / "ray", "--executor", "ray", "--workers", "2")
        assert ray.returncode == 0, ray.stderr
        assert "on 2 Ray workers" in ray.stderr and sum(srv.injected.values()) > 0  # faults were met and retried
        a, b = (json.loads((tmp_path / d / "hunt.json").read_text()) for d in ("local", "ray"))
        assert a["spent"]["reads"] == 60 and a["map"]["cells"]
        assert {k: v for k, v in a.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}
        import sqlite3

        cached = []
        for d in ("local", "ray"):
            with sqlite3.connect(tmp_path / d / "requests.sqlite") as con:
                tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
                cached.append(sum(con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables))
        assert cached[0] > 0 and cached[0] == cached[1]
        sent = srv.requests
        again = hunt(tmp_path / "ray", "--executor", "ray", "--workers", "2", "--budget", "60")
        assert again.returncode == 0, again.stderr
        assert srv.requests == sent  # a finished hunt rerun sends nothing


def _raises(kind: str):
    from ffbench.errors import UsageError

    if kind == "usage":
        raise UsageError("--length must be even, got 7")
    raise ValueError("bad value inside a worker")


def test_a_workers_error_reaches_the_driver_as_one_line():
    """An error inside a Ray worker: an ffbench error arrives as itself (its one line and exit status),
    any other becomes one FFBenchError line naming it, never Ray's traceback."""
    from ffbench import executors
    from ffbench.errors import FFBenchError, UsageError

    ray = executors.start_ray()
    remote = ray.remote(num_cpus=1, max_retries=0)(_raises)
    with pytest.raises(UsageError) as usage:
        executors._get(ray, remote.remote("usage"))
    assert str(usage.value) == "--length must be even, got 7"
    with pytest.raises(FFBenchError) as other:
        executors._get(ray, remote.remote("other"))
    assert str(other.value) == "a Ray worker failed: ValueError: bad value inside a worker"
    assert not isinstance(other.value, UsageError)
