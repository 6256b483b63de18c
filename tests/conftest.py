"""Shared fixtures: tiny random models are built once per test session, never downloaded."""

from __future__ import annotations

import importlib.util
import os
import tempfile

import pytest

# Runs recorded by tests go to a throwaway registry, never the user's data directory.
os.environ["FFBENCH_REGISTRY"] = os.path.join(tempfile.mkdtemp(prefix="ffbench-test-registry-"), "registry.sqlite")
# ...and model-file hashes to a throwaway cache.
os.environ["FFBENCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="ffbench-test-cache-")

HAS_TORCH = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("transformers") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch and transformers not installed (pip install 'ffbench[hf]')")
# The ffbench/ provider (the reference models) needs torch and safetensors, not transformers.
HAS_NATIVE = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("safetensors") is not None
needs_native = pytest.mark.skipif(not HAS_NATIVE, reason="torch not installed: the ffbench/ provider needs it "
                                  "(pip install 'ffbench[native]')")


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module's tests: tiny models train fastest on one thread on a shared
    machine, and bitwise equality (kill-and-resume) holds only for a fixed thread count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory):
    if not HAS_TORCH:
        pytest.skip("torch and transformers not installed")
    from tests.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-gpt2", "gpt2")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    if not HAS_TORCH:
        pytest.skip("torch and transformers not installed")
    from tests.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama", "llama")


@pytest.fixture(scope="session")
def short_gpt2(tmp_path_factory):
    """A model whose context (48 tokens) is shorter than T = 64."""
    if not HAS_TORCH:
        pytest.skip("torch and transformers not installed")
    from tests.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "short-gpt2", "gpt2", max_positions=48)


# ----------------------------------------------------------------------------- time per test file
# The suite's wall time is stated in the README; this table shows where it goes (setup, call and
# teardown of every test, summed per file; a session fixture counts towards the first file using it).
_SECONDS_PER_FILE: dict[str, float] = {}


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::", 1)[0]
    _SECONDS_PER_FILE[path] = _SECONDS_PER_FILE.get(path, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    if not _SECONDS_PER_FILE:
        return
    terminalreporter.section("seconds per test file")
    for path, seconds in sorted(_SECONDS_PER_FILE.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{seconds:8.1f}  {path}")
    terminalreporter.write_line(f"{sum(_SECONDS_PER_FILE.values()):8.1f}  total")


def cli_exit(args) -> int:
    """``ffbench ARGS`` in this process; its exit status (0 when it returns)."""
    from ffbench.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
