"""The run directory (DESIGN.md): ``results.json``, ``samples.parquet``, and while a run is under
way ``config.json`` plus one shard file per finished unit of work under ``shards/``.

Every file is written to a temporary name and renamed into place, so a run killed at any moment
leaves only complete files; a rerun with the same config skips every shard already on disk and
never rescores it. A directory holding a different config is refused rather than mixed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ffbench.datafiles import atomic_path
from ffbench.errors import FFBenchError

SAMPLE_COLUMNS = ("suite", "length", "p_ignore", "render", "scoring", "seq_index", "read_index", "position",
                  "target", "prediction", "correct", "invalid", "write_distance", "evidence_distance", "margin",
                  "per_read", "output")


def write_json(path: Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def results(self) -> Path:
        return self.path / "results.json"

    @property
    def samples(self) -> Path:
        return self.path / "samples.parquet"

    @property
    def shards(self) -> Path:
        return self.path / "shards"

    def check(self, config: dict) -> None:
        """Refuse a directory that holds a run of a different config (before any work starts)."""
        cfg_path = self.path / "run_config.json"
        if self.path.exists() and not self.path.is_dir():
            raise FFBenchError(f"output dir {str(self.path)!r} exists and is not a directory")
        existing = None
        if cfg_path.exists():
            existing = json.loads(cfg_path.read_text())
        elif self.results.exists():
            existing = json.loads(self.results.read_text()).get("config")
        if existing is not None and existing != config:
            changed = sorted(k for k in set(existing) | set(config) if existing.get(k) != config.get(k))
            raise FFBenchError(f"output dir {str(self.path)!r} holds a run with a different config "
                               f"({', '.join(changed)}); choose another --output-dir")

    def open(self, config: dict) -> None:
        """Create the directory for ``config`` (after :meth:`check`)."""
        self.check(config)
        self.shards.mkdir(parents=True, exist_ok=True)
        if not (self.path / "run_config.json").exists():
            write_json(self.path / "run_config.json", config)

    def shard_path(self, cell_key: str, start: int) -> Path:
        return self.shards / cell_key / f"{start:09d}.parquet"

    def finish(self, results: dict, table) -> None:
        """Write samples then results (results.json last: its presence means the run is complete)."""
        import pyarrow.parquet as pq

        with atomic_path(self.samples) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        write_json(self.results, results)
        import shutil

        shutil.rmtree(self.shards, ignore_errors=True)
        (self.path / "run_config.json").unlink(missing_ok=True)
