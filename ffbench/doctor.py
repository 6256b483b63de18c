"""``ffbench doctor DIR``: verify a run or hunt directory, one line per problem, and with
``--repair`` remove what is damaged so that rerunning the same command rescores exactly that.

Every file a run keeps is checked the way it is read (:mod:`ffbench.rundir`): a shard must parse
with its page checksums right and hold the rows its metadata states; ``results.json`` must parse
and ``samples.parquet`` hold as many reads as it counts; the response cache must pass SQLite's
integrity check and hold only JSON bodies; a file a killed process left under its temporary name is
a leftover. A hunt directory's state, summary, glitches, samples and round files must parse.
Repairs only ever remove: what was removed is scored again by the next run, never guessed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ffbench.errors import UsageError
from ffbench.io import damage_errors, one_line


@dataclass
class Problem:
    path: Path  # the damaged file
    what: str  # what is wrong, in a few words
    repair: Callable[[], None]  # removes it (and what depends on it)
    after: str  # what a rerun then does


def kind_of(path: str | Path) -> str:
    """"run" or "hunt"; a directory that is neither is a UsageError (nothing of it is touched)."""
    from ffbench.hunt.huntdir import HuntDir
    from ffbench.rundir import RunDir

    root = Path(path)
    if not root.is_dir():
        raise UsageError(f"{str(root)!r} is not a directory")
    if (root / HuntDir.STATE).exists() or (root / HuntDir.SUMMARY).exists():
        return "hunt"
    if any((root / n).exists() for n in (RunDir.RESULTS, RunDir.IDENTITY, RunDir.SHARDS, RunDir.REQUESTS)):
        return "run"
    raise UsageError(f"{str(root)!r} is neither a run directory (results.json, identity.json, shards/) nor a hunt "
                     "directory (state.json)")


def diagnose(path: str | Path) -> list[Problem]:
    """Every problem of a run or hunt directory, in the order a repair should take them."""
    from ffbench.hunt.huntdir import HuntDir
    from ffbench.rundir import RunDir

    return _hunt_problems(HuntDir(path)) if kind_of(path) == "hunt" else _run_problems(RunDir(path))


def doctor(path: str | Path, repair: bool = False, echo: Callable[[str], None] = print) -> int:
    """Print one line per problem (and repair them, holding the directory's lock, so never under a
    running run); return the number of problems left unrepaired."""
    from ffbench.io import locked_directory

    root = Path(path)
    kind = kind_of(root)
    with locked_directory(root, f"{kind} directory", "wait for it to finish"):
        problems = diagnose(root)
        for problem in problems:
            if repair:
                problem.repair()
                echo(f"{problem.path}: {problem.what}; removed: {problem.after}")
            else:
                echo(f"{problem.path}: {problem.what}")
    if not problems:
        echo(f"{root}: {kind} directory ok")
    elif not repair:
        echo(f"{root}: {len(problems)} problem{'s' * (len(problems) != 1)}; 'ffbench doctor {root} --repair' removes "
             "what is damaged so that rerunning the same command scores it again")
    return 0 if repair else len(problems)


# ----------------------------------------------------------------------------- run directories
def _run_problems(rd) -> list[Problem]:
    out = []
    for leftover in sorted(rd.path.rglob(".*.partial-*")):
        out.append(Problem(leftover, "a partial file left by a killed process", _remover(leftover), "nothing was lost"))
    identity = rd.path / rd.IDENTITY
    if identity.exists() and _json_problem(identity):
        out.append(Problem(identity, _json_problem(identity), _remover(identity, *_finished_files(rd)),
                           "the next run starts this directory over"))
    problem = rd.finished_problem()
    if problem:
        out.append(Problem(rd.results, problem, _remover(*_finished_files(rd)),
                           "the next run scores the run again (from its kept shards)"))
    for cell, start, path in rd.shard_files():
        problem = rd.shard_problem(cell, start)
        if problem:
            out.append(Problem(path, problem, _remover(path), "the next run scores this shard again"))
    if rd.request_cache.exists():
        problem, bad_keys = _cache_problem(rd.request_cache)
        if problem:
            cache = rd.request_cache
            fix = _remover(cache, cache.with_name(cache.name + "-wal"), cache.with_name(cache.name + "-shm")) \
                if bad_keys is None else (lambda keys=bad_keys: _drop_rows(cache, keys))
            out.append(Problem(cache, problem, fix, "the next run asks the server again for what it held"
                               if bad_keys is None else "the next run asks again for those requests"))
    return out


def _finished_files(rd) -> list[Path]:
    return [rd.results, rd.samples]


def _cache_problem(path: Path) -> tuple[str | None, list[str] | None]:
    """(problem, keys of unreadable rows, or None when the whole file is unusable)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                return f"the response cache is damaged ({verdict[:80]})", None
            bad = []
            for key, body in db.execute("SELECT key, body FROM responses"):
                try:
                    if not isinstance(json.loads(body), dict):
                        bad.append(key)
                except ValueError:
                    bad.append(key)
    except sqlite3.Error as exc:
        return f"the response cache is unreadable ({one_line(exc)})", None
    if bad:
        return f"{len(bad)} cached responses are not JSON objects", bad
    return None, None


def _drop_rows(path: Path, keys: list[str]) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executemany("DELETE FROM responses WHERE key = ?", [(k,) for k in keys])
        db.commit()


# ----------------------------------------------------------------------------- hunt directories
def _hunt_problems(hd) -> list[Problem]:
    out = []
    for leftover in sorted(hd.path.rglob(".*.partial-*")):
        out.append(Problem(leftover, "a partial file left by a killed process", _remover(leftover), "nothing was lost"))
    outputs = [hd.summary, hd.glitches, hd.samples]
    if hd.state_file.exists() and _json_problem(hd.state_file):
        out.append(Problem(hd.state_file, _json_problem(hd.state_file),
                           _remover(hd.state_file, *outputs, hd.path / hd.ROUNDS),
                           "the next hunt starts this directory over"))
        return out
    if hd.summary.exists() and _json_problem(hd.summary):
        out.append(Problem(hd.summary, _json_problem(hd.summary), _remover(hd.summary),
                           "the next hunt with the same budget writes it again"))
    for path in [hd.glitches, hd.samples, *sorted((hd.path / hd.ROUNDS).glob("*.parquet"))]:
        if path.exists() and _parquet_problem(path):
            out.append(Problem(path, _parquet_problem(path), _remover(path),
                               "the next hunt with the same budget writes it again"))
    return out


# ----------------------------------------------------------------------------- shared
def _json_problem(path: Path) -> str | None:
    try:
        if not isinstance(json.loads(path.read_text(encoding="utf-8")), dict):
            return "not a JSON object"
    except (OSError, ValueError) as exc:
        return f"damaged ({one_line(exc)})"
    return None


def _parquet_problem(path: Path) -> str | None:
    import pyarrow.parquet as pq

    try:
        pq.read_table(path)
    except damage_errors() as exc:
        return f"damaged ({one_line(exc)})"
    return None


def _remover(*paths: Path) -> Callable[[], None]:
    def remove() -> None:
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
    return remove

