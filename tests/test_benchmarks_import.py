"""The benchmarks only import ffbench names that exist.

Benchmarks are run by hand, not by the suite, so a refactor that moves a function (say, checkpoint
loading out of the trainer) would otherwise leave them broken until someone reproduces a result.
Every ``from ffbench... import NAME`` in ``benchmarks/*.py``, at any depth, must resolve.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from tests.conftest import HAS_TORCH

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("ffbench", "tests"):
            for alias in node.names:
                yield node.module, alias.name


@pytest.mark.skipif(not HAS_TORCH, reason="the benchmarks import torch-backed modules")
@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_every_ffbench_name_a_benchmark_imports_exists(path):
    missing = []
    for module, name in _imports(path):
        mod = importlib.import_module(module)
        if not hasattr(mod, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"{module}.{name}")
    assert not missing, f"{path.name} imports names that no longer exist: {', '.join(missing)}"


def test_the_benchmarks_are_found():
    assert {"scoring.py", "stress.py", "hunt.py", "train.py"} <= {p.name for p in BENCHMARKS}
