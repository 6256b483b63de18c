"""The run directory: the only code that knows its file names (contract: docs/architecture.md).

Finished run::

    results.json       the results (ffbench.schema.RunResults); its presence means "complete"
    samples.parquet    one row per scored read
    identity.json      config + data hashes + model fingerprint this directory holds work for
                       (written before the first shard; results.json repeats it as ``fingerprint``)
    requests.sqlite    API backends only: the response cache (and batch job ids)
    .lock              one ``ffbench run`` at a time (.lock.owner names the holder's pid meanwhile)

While a run is under way (or after it was interrupted, or when a stopping rule such as
``--stop-at-first-error`` ended it before every shard was scored), also::

    shards/<cell id>/<first sequence>.parquet   one file per finished unit of work

Every file is written under a temporary name and renamed into place, so a run killed at any
moment leaves only complete files, and a rerun with an identical identity resumes without
rescoring anything. A directory holding work of another identity is refused, never mixed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from ffbench.errors import UsageError
from ffbench.identity import RunIdentity
from ffbench.io import atomic_path, locked_directory, read_json, write_json

SAMPLE_COLUMNS = ("cell", "suite", "length", "p_ignore", "render", "scoring", "seq_index", "read_index", "position",
                  "target", "prediction", "correct", "invalid", "truncated", "write_distance", "evidence_distance",
                  "margin", "per_read", "output", "family", "point")  # then one column per stress parameter


class RunDir:
    RESULTS = "results.json"
    SAMPLES = "samples.parquet"
    IDENTITY = "identity.json"
    SHARDS = "shards"
    REQUESTS = "requests.sqlite"
    LOCK = ".lock"
    OWNER = ".lock.owner"
    FAILURES = "failures.parquet"  # shipped references keep only their failing reads

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def results(self) -> Path:
        return self.path / self.RESULTS

    @property
    def samples(self) -> Path:
        return self.path / self.SAMPLES

    @property
    def request_cache(self) -> Path:
        return self.path / self.REQUESTS

    @property
    def shards(self) -> Path:
        return self.path / self.SHARDS

    def is_complete(self) -> bool:
        return self.results.is_file()

    def check_usable(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"output dir {str(self.path)!r} exists and is not a directory")

    # ------------------------------------------------------------------ locking
    @contextlib.contextmanager
    def lock(self):
        """Hold this directory for one process (creating it). A second ``ffbench run`` on the same
        directory fails at once with the holder's pid; a crashed holder's lock is released by the
        operating system, so it never blocks forever."""
        self.check_usable()
        with locked_directory(self.path, "run directory", "choose another --output-dir", self.LOCK, self.OWNER):
            yield self

    # ------------------------------------------------------------------ identity
    def identity(self) -> RunIdentity | None:
        """The identity of the work this directory holds (in progress or finished), or None."""
        if (self.path / self.IDENTITY).is_file():
            return RunIdentity.from_dict(read_json(self.path / self.IDENTITY, "run identity"))
        if self.results.is_file():
            raw = read_json(self.results, "results")
            fp = raw.get("fingerprint") or {}
            return RunIdentity(raw.get("config") or {}, fp.get("data") or {}, fp.get("model") or {})
        return None

    def holds_work(self) -> bool:
        return self.identity() is not None or self.shards.exists() or self.request_cache.exists()

    def start(self, identity: RunIdentity) -> None:
        write_json(self.path / self.IDENTITY, identity.as_dict())

    def clear(self) -> None:
        """Forget everything this directory holds (``--rescore``); the lock stays held."""
        for name in (self.RESULTS, self.SAMPLES, self.IDENTITY, self.REQUESTS, self.REQUESTS + "-wal",
                     self.REQUESTS + "-shm"):
            with contextlib.suppress(FileNotFoundError):
                (self.path / name).unlink()
        shutil.rmtree(self.shards, ignore_errors=True)

    def remove_if_empty(self) -> None:
        """After a run that failed before scoring anything: leave no directory behind."""
        leftovers = [p for p in self.path.iterdir() if p.name not in (self.LOCK, self.OWNER, self.IDENTITY)] \
            if self.path.is_dir() else []
        if not leftovers:
            shutil.rmtree(self.path, ignore_errors=True)

    # ------------------------------------------------------------------ shards
    def _shard(self, cell_id: str, start: int) -> Path:
        return self.shards / cell_id / f"{start:09d}.parquet"

    def has_shard(self, cell_id: str, start: int) -> bool:
        return self._shard(cell_id, start).is_file()

    def shard_count(self) -> int:
        return sum(1 for _ in self.shards.glob("*/*.parquet")) if self.shards.is_dir() else 0

    def write_shard(self, cell_id: str, start: int, table, usage: dict) -> None:
        import pyarrow.parquet as pq

        path = self._shard(cell_id, start)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(table.schema.metadata or {})
        meta[b"ffbench_usage"] = json.dumps(usage).encode()
        with atomic_path(path) as tmp:
            pq.write_table(table.replace_schema_metadata(meta), tmp)

    def read_shard(self, cell_id: str, start: int):
        """(table, usage) of a finished shard."""
        import pyarrow.parquet as pq

        t = pq.read_table(self._shard(cell_id, start))
        usage = json.loads((t.schema.metadata or {}).get(b"ffbench_usage", b"{}"))
        return t.replace_schema_metadata(None), usage

    # ------------------------------------------------------------------ finishing and loading
    def read_counts(self, cell_id: str, start: int) -> tuple[int, int, dict]:
        """(wrong reads, reads, usage) of a finished shard, reading only its ``correct`` column."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        path = self._shard(cell_id, start)
        correct = pq.read_table(path, columns=["correct"]).column("correct")
        usage = json.loads((pq.read_schema(path).metadata or {}).get(b"ffbench_usage", b"{}"))
        wrong = len(correct) - int(pc.sum(correct).as_py() or 0)
        return wrong, len(correct), usage

    def finish(self, results, table, keep_shards: bool = False) -> None:
        """Write samples then results (results.json last: its presence means the run is finished).

        A run that a stopping rule ended before every shard was scored keeps its shards, so that a
        rerun under other stopping flags scores on from them (:meth:`reopen`)."""
        import pyarrow.parquet as pq

        with atomic_path(self.samples) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        write_json(self.results, results.to_dict())
        if not keep_shards:
            shutil.rmtree(self.shards, ignore_errors=True)

    def reopen(self) -> None:
        """Turn a stopped run back into unfinished work: its results go, its shards stay."""
        for path in (self.results, self.samples):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def load(self, label: str | None = None, reference: bool = False):
        """The finished run in this directory (``results.json`` plus its samples or failing reads)."""
        from ffbench.schema import RunResults

        label = label or str(self.path)
        if not self.results.is_file():
            hint = " (the run is unfinished: rerun the same 'ffbench run' to complete it)" \
                if (self.path / self.IDENTITY).exists() or self.shards.exists() else ""
            raise UsageError(f"{label!r} is not a finished run directory: no {self.RESULTS}{hint}")
        raw = read_json(self.results, "results")
        for name, complete in ((self.SAMPLES, True), (self.FAILURES, False)):
            if (self.path / name).is_file():
                return RunResults.from_dict(raw, label, self.path / name, complete, reference)
        return RunResults.from_dict(raw, label, None, True, reference)

    def write_reference(self, results, failures_table) -> None:
        """A shipped reference: results plus only the failing reads (small enough to ship)."""
        import pyarrow.parquet as pq

        self.path.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path / self.FAILURES) as tmp:
            pq.write_table(failures_table, tmp, compression="zstd")
        write_json(self.results, results.to_dict())
