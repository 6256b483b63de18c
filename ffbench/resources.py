"""Locate the data folders shipped with ffbench (``prompts/``, ``tasks/``, ``reports/``, ``baselines/``),
and the machine's memory available to a new allocation (what size checks refuse against).

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


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation on this machine (Linux MemAvailable), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"
