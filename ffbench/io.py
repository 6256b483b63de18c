"""Crash-safe file writes: every file ffbench writes appears whole or not at all.

A file is written under a temporary name beside its target and renamed into place only when
complete (``os.replace`` is atomic on POSIX and Windows), so a run killed at any moment leaves
only complete files behind, and a reader never sees half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator

from ffbench.errors import FFBenchError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds."""
    target = Path(path)
    if target.is_dir():
        raise FFBenchError(f"{str(target)!r} is a directory; give a file name")
    if target.parent and not target.parent.exists():
        raise FFBenchError(f"output folder {str(target.parent)!r} does not exist")
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_json(path: str | os.PathLike, payload) -> None:
    """JSON (indented, key order kept) written atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read_json(path: str | os.PathLike, what: str = "file"):
    """Parsed JSON, or a one-line error naming the file."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FFBenchError(f"{what} {str(path)!r} does not exist") from None
    except (OSError, ValueError) as exc:
        raise FFBenchError(f"cannot read {what} {str(path)!r}: {exc}") from None
