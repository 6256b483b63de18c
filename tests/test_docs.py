"""The documentation site builds strictly (no broken link, no page left out of the navigation) and
its reference pages are what the code says today (scripts/gen_reference.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import gen_reference

HAS_MKDOCS = importlib.util.find_spec("mkdocs") is not None and importlib.util.find_spec("material") is not None


def test_reference_pages_are_current():
    """Compared word by word: another click version may wrap the help text differently."""
    for path, text in gen_reference.pages().items():
        assert path.read_text().split() == text.split(), f"{path.name} is stale: run python scripts/gen_reference.py"


def test_cli_reference_covers_every_command():
    from ffbench.cli import cli

    page = gen_reference.cli_page()
    assert [line[len("## ffbench "):] for line in page.splitlines() if line.startswith("## ffbench ")] == \
        sorted(cli.commands)
    assert "  --json FILE" in page and "Usage: ffbench check [OPTIONS]" in page


@pytest.mark.skipif(not HAS_MKDOCS, reason="mkdocs-material not installed (pip install mkdocs-material; CI does)")
def test_site_builds_strictly(tmp_path):
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    built = {p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site").rglob("index.html")}
    assert {"index.html", "ci/index.html", "reference/cli/index.html", "reference/python/index.html",
            "research/hunt/index.html", "architecture/index.html"} <= built
