"""MkDocs hook: regenerate the reference pages from the code before every build (scripts/gen_reference.py)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def on_pre_build(config, **kwargs):
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "scripts"))
    import gen_reference

    gen_reference.write()
