"""Crash-safe file writes: every file ffbench writes appears whole or not at all.

A file is written under a temporary name beside its target and renamed into place only when
complete (``os.replace`` is atomic on POSIX and Windows), so a run killed at any moment leaves
only complete files behind, and a reader never sees half of one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import socket
from pathlib import Path
from typing import Iterator

from ffbench.errors import FFBenchError, UsageError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{str(target)!r} is a directory; give a file name")
    if target.parent and not target.parent.exists():
        raise UsageError(f"output folder {str(target.parent)!r} does not exist")
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if is_disk_full(exc):
            raise disk_full(target) from None
        raise


DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def is_disk_full(exc: BaseException) -> bool:
    """An error that says the disk (or the user's quota) is full, from the OS or from SQLite."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return True
    return type(exc).__name__ == "OperationalError" and "disk is full" in str(exc)


def disk_full(target) -> FFBenchError:
    return FFBenchError(f"no space left on the device to write {str(target)!r}: free some space and rerun the same "
                        "command; everything written before is kept and resumed")


def write_json(path: str | os.PathLike, payload) -> None:
    """JSON (indented, key order kept) written atomically, credentials in URLs masked (:mod:`ffbench.redact`)."""
    from ffbench import redact

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(redact.value(payload), indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read_json(path: str | os.PathLike, what: str = "file"):
    """Parsed JSON, or a one-line error naming the file."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FFBenchError(f"{what} {str(path)!r} does not exist") from None
    except (OSError, ValueError) as exc:
        raise FFBenchError(f"cannot read {what} {str(path)!r}: {exc}") from None


@contextlib.contextmanager
def locked_directory(path: Path, what: str, elsewhere: str, lock_name: str = ".lock", owner_name: str = ".lock.owner"):
    """Hold directory ``path`` for this process (creating it): a second holder fails at once with one
    line naming the first one's pid (``what``: "run directory"; ``elsewhere``: how to avoid the clash).
    The lock is the operating system's (``filelock``), so a crashed holder never blocks; the owner
    file only names the holder while it runs."""
    from filelock import FileLock, Timeout

    path.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path / lock_name), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise FFBenchError(f"{what} {str(path)!r} is in use by {_owner(path / owner_name)}; wait for it to finish "
                           f"or {elsewhere}") from None
    owner = path / owner_name
    try:
        write_json(owner, {"pid": os.getpid(), "host": socket.gethostname(),
                           "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
        yield path
    finally:
        with contextlib.suppress(OSError):
            owner.unlink()
        lock.release()


def _owner(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f"pid {info['pid']} on {info['host']} (since {info['started']})"
    except (OSError, ValueError, KeyError):
        return "another process"


def damage_errors() -> tuple:
    """What reading a damaged file raises (pyarrow's errors included), as opposed to a bug."""
    import pyarrow as pa

    return (OSError, ValueError, TypeError, KeyError, NotImplementedError, pa.ArrowException)


def one_line(exc: BaseException) -> str:
    """An exception as a short line (pyarrow's messages can span lines and repeat the file's path,
    which the caller names already)."""
    import re

    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return re.sub(r"^Could not open Parquet input source '[^']*': ", "", text)[:160]
