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

What is kept is verified when it is read, never trusted for existing: a shard must parse (its
parquet pages carry checksums) and hold exactly the rows it should (its cell, its sequence range,
its read count: :meth:`RunDir.shard_problem`), and a finished run's samples must hold as many
rows as its results count (:meth:`RunDir.finished_problem`). A file that cannot be read or holds
other rows is a problem named in one line, never a traceback; a damaged shard is rescored.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

from ffbench.errors import Damaged, FFBenchError, UsageError
from ffbench.identity import RunIdentity
from ffbench.io import atomic_path, damage_errors, one_line, read_json, write_json
from ffbench.workdir import WorkDir

SAMPLE_COLUMNS = ("cell", "suite", "length", "p_ignore", "render", "scoring", "seq_index", "read_index", "position",
                  "target", "prediction", "correct", "invalid", "truncated", "write_distance", "evidence_distance",
                  "margin", "per_read", "output", "family", "point")  # then one column per stress parameter


class RunDir(WorkDir):
    KIND = "run directory"
    FLAG = "--output-dir"
    RESULTS = "results.json"
    SAMPLES = "samples.parquet"
    IDENTITY = "identity.json"
    SHARDS = "shards"
    FAILURES = "failures.parquet"  # shipped references keep only their failing reads

    @property
    def results(self) -> Path:
        return self.path / self.RESULTS

    @property
    def samples(self) -> Path:
        return self.path / self.SAMPLES

    @property
    def shards(self) -> Path:
        return self.path / self.SHARDS

    def is_complete(self) -> bool:
        return self.results.is_file()

    # ------------------------------------------------------------------ identity
    def identity(self) -> RunIdentity | None:
        """The identity of the work this directory holds (in progress or finished), or None (also
        when the file that says it is damaged: such work is of unknown provenance)."""
        if (self.path / self.IDENTITY).is_file():
            with contextlib.suppress(FFBenchError, AttributeError, TypeError, KeyError):
                return RunIdentity.from_dict(read_json(self.path / self.IDENTITY, "run identity"))
            return None
        if self.results.is_file():
            try:
                raw = read_json(self.results, "results")
                if not isinstance(raw, dict):
                    return None
            except FFBenchError:
                return None
            fp = raw.get("fingerprint") or {}
            return RunIdentity(raw.get("config") or {}, fp.get("data") or {}, fp.get("model") or {})
        return None

    def holds_work(self) -> bool:
        return self.identity() is not None or self.shards.exists() or self.request_cache.exists()

    def start(self, identity: RunIdentity) -> None:
        write_json(self.path / self.IDENTITY, identity.as_dict())

    def clear(self) -> None:
        """Forget everything this directory holds (``--rescore``); the lock stays held."""
        for name in (self.RESULTS, self.SAMPLES, self.IDENTITY, *self.cache_files()):
            with contextlib.suppress(FileNotFoundError):
                (self.path / name).unlink()
        shutil.rmtree(self.shards, ignore_errors=True)

    def remove_if_empty(self) -> None:
        """After a run that failed before scoring anything: leave no directory behind (a response
        cache that holds no answer and no batch job is nothing)."""
        ignored = {self.LOCK, self.OWNER, self.IDENTITY}
        if self._cache_is_empty():
            ignored |= set(self.cache_files())
        leftovers = [p for p in self.path.iterdir() if p.name not in ignored] if self.path.is_dir() else []
        if not leftovers:
            shutil.rmtree(self.path, ignore_errors=True)

    def _cache_is_empty(self) -> bool:
        import sqlite3

        if not self.request_cache.exists():
            return True
        try:
            with contextlib.closing(sqlite3.connect(f"file:{self.request_cache}?mode=ro", uri=True)) as db:
                return all(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0
                           for table in ("responses", "batch_jobs"))
        except sqlite3.Error:
            return False

    # ------------------------------------------------------------------ shards
    def _shard(self, cell_id: str, start: int) -> Path:
        return self.shards / cell_id / f"{start:09d}.parquet"

    def has_shard(self, cell_id: str, start: int) -> bool:
        return self._shard(cell_id, start).is_file()

    def shard_files(self) -> list[tuple[str, int, Path]]:
        """(cell id, first sequence, path) of every kept shard file."""
        if not self.shards.is_dir():
            return []
        out = []
        for path in sorted(self.shards.glob("*/*.parquet")):
            if path.stem.isdigit():
                out.append((path.parent.name, int(path.stem), path))
        return out

    def shard_problem(self, cell_id: str, start: int, stop: int | None = None, reads: int | None = None) -> str | None:
        """What is wrong with a kept shard, in a few words, or None when it holds what it should.

        The shard must parse with every page checksum right, and its rows must be exactly the
        reads of sequences ``[start, stop)`` of cell ``cell_id``, ``reads`` of them. ``stop`` and
        ``reads`` default to what the shard's own metadata says it holds (what ``ffbench doctor``
        checks without a plan); a runner passes what its plan says, so a copied shard is caught.
        """
        import pyarrow.compute as pc

        path = self._shard(cell_id, start)
        try:
            table, meta = _read_parquet(path)
            json.loads(meta.get(b"ffbench_usage", b"{}"))
            stated = json.loads(meta.get(b"ffbench_shard", b"{}"))
        except damage_errors() as exc:
            return f"unreadable ({one_line(exc)})"
        stop = stated.get("stop") if stop is None else stop
        reads = stated.get("reads") if reads is None else reads
        if stated and (stated.get("cell"), stated.get("start")) != (cell_id, start):
            return f"holds the shard of {stated.get('cell')}/{stated.get('start')}"
        missing = [c for c in ("cell", "seq_index", "correct") if c not in table.column_names]
        if missing:
            return f"lacks the column {missing[0]}"
        if reads is not None and table.num_rows != reads:
            return f"holds {table.num_rows} reads, should hold {reads}"
        if table.num_rows == 0:
            return None
        cells = pc.unique(table.column("cell")).to_pylist()
        if cells != [cell_id]:
            return f"holds reads of cell {next(c for c in cells if c != cell_id)}"
        lo, hi = pc.min_max(table.column("seq_index")).values()
        if lo.as_py() < start or (stop is not None and hi.as_py() >= stop):
            return f"holds sequences {lo.as_py()}-{hi.as_py()}, should hold {start}-{'' if stop is None else stop - 1}"
        return None

    def drop_shard(self, cell_id: str, start: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._shard(cell_id, start).unlink()

    def shard_count(self) -> int:
        return sum(1 for _ in self.shards.glob("*/*.parquet")) if self.shards.is_dir() else 0

    def write_shard(self, cell_id: str, start: int, table, usage: dict, stop: int | None = None) -> None:
        """Keep a scored shard, stating what it holds (cell, sequence range, reads) in its metadata
        and a checksum on every page, so that :meth:`shard_problem` can tell it is whole."""
        import pyarrow.parquet as pq

        path = self._shard(cell_id, start)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(table.schema.metadata or {})
        meta[b"ffbench_usage"] = json.dumps(usage).encode()
        meta[b"ffbench_shard"] = json.dumps({"cell": cell_id, "start": start, "stop": stop,
                                             "reads": table.num_rows}).encode()
        with atomic_path(path) as tmp:
            pq.write_table(table.replace_schema_metadata(meta), tmp, write_page_checksum=True)

    def read_shard(self, cell_id: str, start: int):
        """(table, usage) of a finished shard."""
        import pyarrow.parquet as pq

        t = pq.read_table(self._shard(cell_id, start), page_checksum_verification=True)
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

    def glitched_count(self, cell_id: str, start: int) -> int | None:
        """Reads of a finished shard with any wrong answer among their repeats (None without repeats):
        what ``--stop-at-first-error`` stops on in a sampled run."""
        import pyarrow.parquet as pq

        path = self._shard(cell_id, start)
        if "wrong_repeats" not in pq.read_schema(path).names:
            return None
        wrong = pq.read_table(path, columns=["wrong_repeats"]).column("wrong_repeats").to_numpy()
        return int((wrong > 0).sum())

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
        """The finished run in this directory (``results.json`` plus its samples or failing reads),
        verified: damaged files are one line naming them and how to recover."""
        label = label or str(self.path)
        if not self.results.is_file():
            hint = " (the run is unfinished: rerun the same 'ffbench run' to complete it)" \
                if (self.path / self.IDENTITY).exists() or self.shards.exists() else ""
            raise UsageError(f"{label!r} is not a finished run directory: no {self.RESULTS}{hint}")
        results, problem = self._load_checked(label, reference)
        if problem:
            raise Damaged(f"{label!r}: {problem}; rerun the same 'ffbench run' to rescore it "
                               f"(or 'ffbench doctor {self.path} --repair')")
        return results

    def finished_problem(self) -> str | None:
        """What is wrong with this finished run's files, or None (also None when unfinished)."""
        if not self.results.is_file():
            return None
        return self._load_checked(str(self.path), False)[1]

    def _load_checked(self, label: str, reference: bool):
        from ffbench.schema import RunResults

        try:
            raw = json.loads(self.results.read_text(encoding="utf-8"))
            path = next((self.path / n for n in (self.SAMPLES, self.FAILURES) if (self.path / n).is_file()), None)
            results = RunResults.from_dict(raw, label, path, path is None or path.name == self.SAMPLES, reference)
        except (OSError, ValueError, FFBenchError) as exc:
            return None, f"{self.RESULTS} is damaged ({one_line(exc)})"
        if path is None:
            return results, None
        try:
            import pyarrow.parquet as pq

            rows = pq.read_metadata(path).num_rows
        except damage_errors() as exc:
            return results, f"{path.name} is damaged ({one_line(exc)})"
        if path.name == self.SAMPLES and rows != sum(c.reads for c in results.results):
            return results, f"{path.name} holds {rows} reads, {self.RESULTS} counts {sum(c.reads for c in results.results)}"
        return results, None

    def write_reference(self, results, failures_table) -> None:
        """A shipped reference: results plus only the failing reads (small enough to ship)."""
        import pyarrow.parquet as pq

        self.path.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path / self.FAILURES) as tmp:
            pq.write_table(failures_table, tmp, compression="zstd")
        write_json(self.results, results.to_dict())


def _read_parquet(path: Path):
    """(table, schema metadata) of a parquet file, every page checksum verified."""
    import pyarrow.parquet as pq

    table = pq.read_table(path, page_checksum_verification=True)
    return table, dict(table.schema.metadata or {})

