"""Locate the data folders shipped with ffbench (``prompts/``, ``tasks/``, ``reports/``, ``baselines/``).

In a source checkout (or an editable install) they are top-level folders beside the package; in a
wheel the build copies them into the package (see ``[tool.hatch.build.targets.wheel.force-include]``).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent

# The shipped reference checkpoints and their committed runs: ``baselines/<name>/`` holds
# ``model.safetensors`` and configs, ``run/`` (the paper suites) and further run folders.
BASELINES_DIR = _PACKAGE / "baselines"


def resource_dir(name: str) -> Path:
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"ffbench data folder {name!r} not found beside {_PACKAGE}")
