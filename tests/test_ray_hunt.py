"""``ffbench hunt --executor ray``: each round's candidates split over Ray actors through the engine
that ``ffbench run`` uses, giving the hunt of a local run: the same glitches, map counts, shapes and
margins, read for read (the reference model's scores do not depend on how its sequences are batched)."""

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

ARGS = ["--model", "ffbench/transformer-ref", "--budget", "600", "--length", "32", "--seed", "3", "--no-progress"]
TIMING = ("created", "updated")


def _hunt(out, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ffbench", "hunt", *ARGS, *extra, "--out", str(out)],
                          capture_output=True, text=True, timeout=600, check=False, env={**os.environ, "RAY_DEDUP_LOGS": "0"})


def test_a_ray_hunt_equals_the_local_hunt(tmp_path):
    local = _hunt(tmp_path / "local")
    assert local.returncode == 0, local.stderr
    ray = _hunt(tmp_path / "ray", "--executor", "ray", "--workers", "2")
    assert ray.returncode == 0, ray.stderr
    assert "on 2 Ray workers" in ray.stderr
    a, b = (json.loads((tmp_path / d / "hunt.json").read_text()) for d in ("local", "ray"))
    assert a["glitches"]["distinct"] > 0 and a["map"]["cells"]  # something to compare: glitches and a map
    assert a["spent"]["shrink_reads"] > 0  # shrinking (the last-read units) ran too
    assert {k: v for k, v in a.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}
    ga, gb = (pd.read_parquet(tmp_path / d / "glitches.parquet") for d in ("local", "ray"))
    pd.testing.assert_frame_equal(ga, gb)  # every glitch, its reads and margins, in order
