"""The results registry: every finished run recorded in one embedded SQLite database.

Release pipelines ask it two questions: "what did release X of this model score?" (the baseline of
``ffbench check --baseline registry:MODEL@REV``) and "how has this model's glitch rate moved across
releases?" (``ffbench history``, the report's history plot). A run is stored whole (its
``results.json`` payload) plus one row per cell, so a registry entry is as good a baseline as the
run directory it came from, even after that directory is gone.

Two CI jobs may record at the same moment: the database runs in WAL mode, every write is one
``BEGIN IMMEDIATE`` transaction, and a writer waits (``busy_timeout``) rather than failing, so no
record is lost or half-written. Recording the same run twice is a no-op.

Location: ``--registry PATH``, else ``$FFBENCH_REGISTRY``, else the user's data directory
(``$XDG_DATA_HOME/ffbench/registry.sqlite``, ``~/Library/Application Support/ffbench`` on macOS,
``%LOCALAPPDATA%\\ffbench`` on Windows).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import sqlite3
import sys
from contextlib import contextmanager
from pathlib import Path

from ffbench.errors import FFBenchError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    revision TEXT NOT NULL DEFAULT '',
    config_hash TEXT NOT NULL,
    created TEXT NOT NULL,
    recorded TEXT NOT NULL,
    run_dir TEXT,
    data_sha256 TEXT,
    ffbench_version TEXT,
    results_json TEXT NOT NULL,
    UNIQUE (model, revision, config_hash, created)
);
CREATE TABLE IF NOT EXISTS cells (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    suite TEXT, length INTEGER, p_ignore REAL, render TEXT, scoring TEXT,
    reads INTEGER, errors INTEGER, invalid INTEGER, glitch_rate REAL, ci_low REAL, ci_high REAL
);
CREATE INDEX IF NOT EXISTS runs_model ON runs (model, revision);
"""


def default_path() -> Path:
    if env := os.environ.get("FFBENCH_REGISTRY"):
        return Path(env).expanduser()
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "ffbench" / "registry.sqlite"


def config_hash(results: dict) -> str:
    return hashlib.sha256(json.dumps(results.get("config", {}), sort_keys=True).encode()).hexdigest()[:16]


class Registry:
    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path).expanduser() if path else default_path()

    @contextmanager
    def _connect(self, write: bool):
        if not write and not self.path.exists():
            raise FFBenchError(f"no registry at {str(self.path)!r} (runs are recorded there by 'ffbench run'; "
                               "choose another with --registry PATH)")
        if write:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        except sqlite3.Error as exc:
            raise FFBenchError(f"cannot open registry {str(self.path)!r}: {exc}") from None
        try:
            con.execute("PRAGMA busy_timeout = 60000")
            if write:
                con.execute("PRAGMA journal_mode = WAL")
                con.execute("BEGIN IMMEDIATE")
                for statement in filter(str.strip, SCHEMA.split(";")):  # not executescript: it commits
                    con.execute(statement)
            yield con
            if write:
                con.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if write and con.in_transaction:
                con.execute("ROLLBACK")
            raise FFBenchError(f"registry {str(self.path)!r}: {exc}") from None
        except BaseException:
            if write and con.in_transaction:
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    def record(self, results: dict, revision: str = "", run_dir: str | None = None) -> int | None:
        """Store a finished run (a results.json payload); return its id, or None if already stored."""
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        with self._connect(write=True) as con:
            cur = con.execute(
                "INSERT OR IGNORE INTO runs (model, revision, config_hash, created, recorded, run_dir, data_sha256,"
                " ffbench_version, results_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (results["model"], revision or "", config_hash(results), results.get("created", now), now,
                 None if run_dir is None else str(Path(run_dir).resolve()), results.get("data_sha256"),
                 results.get("ffbench_version"), json.dumps(results)))
            if cur.rowcount == 0:
                return None
            run_id = cur.lastrowid
            con.executemany(
                "INSERT INTO cells VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, c["suite"], c["length"], c.get("p_ignore"), c["render"], c["scoring"], c["reads"],
                  c["errors"], c.get("invalid", 0), c["glitch_rate"], c["ci95"][0], c["ci95"][1])
                 for c in results["results"]])
            return run_id

    def runs(self, model: str | None = None, revision: str | None = None) -> list[dict]:
        """Recorded runs (oldest first), each with its id, revision, created time and results payload."""
        sql, args = "SELECT id, model, revision, created, run_dir, results_json FROM runs", []
        where = []
        if model is not None:
            where.append("model = ?")
            args.append(model)
        if revision is not None:
            where.append("revision = ?")
            args.append(revision)
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._connect(write=False) as con:
            rows = con.execute(sql + " ORDER BY created, id", args).fetchall()
        return [{"id": i, "model": m, "revision": r, "created": c, "run_dir": d, "results": json.loads(j)}
                for i, m, r, c, d, j in rows]

    def models(self) -> list[str]:
        with self._connect(write=False) as con:
            return [m for (m,) in con.execute("SELECT DISTINCT model FROM runs ORDER BY model")]

    def resolve(self, ref: str) -> dict:
        """``MODEL@REV`` (latest run of that revision) or ``MODEL`` (latest run) -> results payload."""
        model, _, revision = ref.rpartition("@") if "@" in ref else (ref, "", None)
        found = self.runs(model, revision)
        if not found:
            what = f"{model!r}" + (f" at revision {revision!r}" if revision is not None else "")
            known = ", ".join(self.models()) or "none"
            raise FFBenchError(f"registry {str(self.path)!r} has no run of {what} (models: {known})")
        return found[-1]["results"]
