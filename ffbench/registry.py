"""The results registry: every finished run recorded in one embedded SQLite database.

Release pipelines ask it two questions: "what did release X of this model score?" (the baseline of
``ffbench check --baseline registry:MODEL@REV``) and "how has this model's glitch rate moved across
releases?" (``ffbench history``, the report's history plot). A run is stored whole (its
``results.json`` payload) plus one row per cell, so a registry entry is as good a baseline as the
run directory it came from, even after that directory is gone.

Each record carries the model's fingerprint (what the weights were), and a revision label never
silently covers two different sets of weights: recording a run whose fingerprint differs from the
one already filed under the same model and revision is refused. Model names are normalised
(``hf/./m`` and ``hf//abs/m`` are one model).

Two CI jobs may record at the same moment: the database runs in WAL mode, every write is one
``BEGIN IMMEDIATE`` transaction, and a writer waits (``busy_timeout``) rather than failing, so no
record is lost or half-written. Recording the same run twice is a no-op (and uses up no id, so
ids count recorded runs). A record's ``run_dir`` is where its run lives: when another run is
recorded from the same directory (``--rescore`` replaced it), earlier records there lose it.

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

from ffbench.errors import FFBenchError, UsageError
from ffbench.schema import CellKey, RunResults

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
# Columns added after the first release of the registry (added to older databases on first write).
MIGRATIONS = {"runs": {"fingerprint": "TEXT"}, "cells": {"variant": "TEXT", "data_sha256": "TEXT", "cell_id": "TEXT"}}


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


def config_hash(results: RunResults) -> str:
    return hashlib.sha256(json.dumps(results.config, sort_keys=True).encode()).hexdigest()[:16]


def normalize_model(model: str) -> str:
    """The registry's spelling of a model spec (see ``ffbench.backends.normalize``)."""
    from ffbench import backends

    try:
        return backends.normalize(model)
    except FFBenchError:
        return model  # an unknown provider (a plugin not installed here): keep the name as recorded


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
                _migrate(con)
            yield con
            if write:
                con.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if write and con.in_transaction:
                con.execute("ROLLBACK")
            raise FFBenchError(f"registry {str(self.path)!r} is unusable: {exc}") from None
        except BaseException:
            if write and con.in_transaction:
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    def record(self, results: RunResults, revision: str = "", run_dir: str | None = None) -> int | None:
        """Store a finished run; return its id, or None if it was stored already."""
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        model = normalize_model(results.model)
        fp = (results.fingerprint.get("model") or {}).get("id")
        with self._connect(write=True) as con:
            if revision and fp:
                other = con.execute("SELECT id, fingerprint FROM runs WHERE model = ? AND revision = ? AND "
                                    "fingerprint IS NOT NULL AND fingerprint != ?", (model, revision, fp)).fetchone()
                if other:
                    raise FFBenchError(f"registry already files other weights under {model} revision {revision!r} "
                                       f"(run #{other[0]}, fingerprint {other[1][:12]}; this run {fp[:12]}): "
                                       "record it under another --revision")
            key = (model, revision or "", config_hash(results), results.created or now)
            if con.execute("SELECT 1 FROM runs WHERE model = ? AND revision = ? AND config_hash = ? AND created = ?",
                           key).fetchone():
                return None  # asked before inserting: an ignored insert would still use up an id (AUTOINCREMENT)
            where = None if run_dir is None else str(Path(run_dir).resolve())
            if where is not None:  # the directory now holds this run: earlier records keep their results, not it
                con.execute("UPDATE runs SET run_dir = NULL WHERE run_dir = ?", (where,))
            cur = con.execute(
                "INSERT INTO runs (model, revision, config_hash, created, recorded, run_dir, data_sha256,"
                " ffbench_version, results_json, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*key[:4], now, where, results.data_sha256, results.ffbench_version,
                 json.dumps(results.with_model(model).to_dict()), fp))
            run_id = cur.lastrowid
            con.executemany(
                "INSERT INTO cells (run_id, suite, length, p_ignore, render, scoring, reads, errors, invalid, "
                "glitch_rate, ci_low, ci_high, variant, data_sha256, cell_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, c.suite, c.length, c.p_ignore, c.render, c.scoring, c.reads, c.errors, c.invalid,
                  c.glitch_rate, c.ci95[0], c.ci95[1], c.variant, c.data_sha256, c.id) for c in results.results])
            return run_id

    def runs(self, model: str | None = None, revision: str | None = None) -> list[dict]:
        """Recorded runs (oldest first): id, model, revision, created, run_dir and the RunResults."""
        sql, args = "SELECT id, model, revision, created, run_dir, results_json FROM runs", []
        where = []
        if model is not None:
            where.append("model = ?")
            args.append(normalize_model(model))
        if revision is not None:
            where.append("revision = ?")
            args.append(revision)
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._connect(write=False) as con:
            rows = con.execute(sql + " ORDER BY created, id", args).fetchall()
        out = []
        for i, m, r, c, d, j in rows:
            label = f"registry:{m}@{r}" if r else f"registry:{m} (#{i})"
            out.append({"id": i, "model": m, "revision": r, "created": c, "run_dir": d,
                        "results": RunResults.from_dict(json.loads(j), label)})
        return out

    def models(self) -> list[str]:
        with self._connect(write=False) as con:
            return [m for (m,) in con.execute("SELECT DISTINCT model FROM runs ORDER BY model")]

    def resolve(self, ref: str, comparable_to: set[CellKey] | None = None) -> RunResults:
        """``MODEL@REV`` (latest run of that revision) or ``MODEL`` (latest run; with ``comparable_to``,
        the latest run sharing a cell with those keys) -> its RunResults."""
        model, _, revision = ref.rpartition("@") if "@" in ref else (ref, "", None)
        found = self.runs(model, revision)
        if not found:
            what = f"{model!r}" + (f" at revision {revision!r}" if revision is not None else "")
            known = ", ".join(self.models()) or "none"
            raise UsageError(f"registry {str(self.path)!r} has no run of {what} (models: {known})")
        if comparable_to is not None:
            comparable = [e for e in found if e["results"].keys() & comparable_to]
            if not comparable:
                raise UsageError(f"registry {str(self.path)!r} has {len(found)} run(s) of {model!r} but none shares "
                                   "a cell (suite, length, p_ignore, render, scoring, variant) with the candidate")
            found = comparable
        return found[-1]["results"]


def _migrate(con) -> None:
    for table, columns in MIGRATIONS.items():
        have = {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns.items():
            if name not in have:
                con.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
