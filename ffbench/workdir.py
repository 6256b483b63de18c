"""What every ffbench work directory shares (a run's, a hunt's): one process at a time, the response
cache's file names, and refusing a path that is not a directory.

:class:`ffbench.rundir.RunDir` and :class:`ffbench.hunt.huntdir.HuntDir` specialise it with their
own files; each stays the only code that knows them. Writes go through :mod:`ffbench.io`
(temporary name, then rename), so a directory killed at any moment holds only complete files.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ffbench.errors import UsageError
from ffbench.io import locked_directory


class WorkDir:
    KIND = "work directory"  # what the lock's refusal calls it
    FLAG = "--out"  # the option that names it, in refusals
    REQUESTS = "requests.sqlite"  # remote providers: every response by request hash
    LOCK = ".lock"
    OWNER = ".lock.owner"  # the lock holder's pid, while held

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def request_cache(self) -> Path:
        return self.path / self.REQUESTS

    @classmethod
    def cache_files(cls) -> tuple[str, ...]:
        """The response cache's files (SQLite keeps a write-ahead log and its index beside it)."""
        return cls.REQUESTS, cls.REQUESTS + "-wal", cls.REQUESTS + "-shm"

    def check_usable(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"{self.FLAG} {str(self.path)!r} exists and is not a directory")

    @contextlib.contextmanager
    def lock(self):
        """Hold this directory for one process (creating it). A second process on it fails at once
        with the holder's pid; a crashed holder's lock is released by the operating system, so it
        never blocks forever."""
        self.check_usable()
        with locked_directory(self.path, self.KIND, f"choose another {self.FLAG}", self.LOCK, self.OWNER):
            yield self
