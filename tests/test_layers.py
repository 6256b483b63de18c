"""The layer contract: ``lint-imports`` keeps it (no import runs back up the layers, no circles), and
docs/architecture.md's module table describes exactly the layers it checks."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _contracts() -> list[dict]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["importlinter"]["contracts"]


def _documented_layers() -> dict[str, int]:
    """module -> layer number, from the table under "Modules" in docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Modules: one owner per idea", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| `([^`]+)` \|", section, flags=re.MULTILINE)
    return {name.rstrip("/"): int(layer) for layer, name in rows}


def test_lint_imports_keeps_the_layer_contract():
    lint = shutil.which("lint-imports") or shutil.which("lint-imports", path=os.path.dirname(sys.executable))
    if lint is None:
        pytest.skip("import-linter is not installed (pip install 'ffbench[test]')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([lint, "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert f"Contracts: {len(_contracts())} kept, 0 broken." in out.stdout


def test_the_docs_table_is_the_contract():
    layers = next(c for c in _contracts() if c["type"] == "layers")
    assert layers["containers"] == ["ffbench"] and layers["exhaustive"] is True
    contract = {m.strip(): len(layers["layers"]) - k
                for k, layer in enumerate(layers["layers"]) for m in layer.split("|")}
    assert _documented_layers() == contract
    # exhaustive: every module and package of ffbench has a layer
    children = {p.stem if p.is_file() else p.name for p in (ROOT / "ffbench").iterdir()
                if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    assert children == set(contract)
