"""What the report draws, gathered from run directories, shipped references, sweeps and the registry.

Nothing here writes HTML: it turns files into plain records (cells, replicate rows, failing reads
with the sequence they came from) so the page code only lays them out.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ffbench.errors import FFBenchError, UsageError
from ffbench.language import SUITE_GROUPS
from ffbench.schema import CellResult, RunResults
from ffbench.sources import SequenceStore

SUITE_ORDER = SUITE_GROUPS["paper"]  # in_dist, sparse, dense: how tables and plots order suites


@dataclass
class Model:
    """A model as the report shows it: a display name, a colour, and the cells of all its runs
    (several run directories of one model, e.g. the paper suites and a length sweep, merge)."""

    name: str
    runs: list[RunResults]
    color: str = "#333"

    @property
    def cells(self) -> list[CellResult]:
        """Cells of all runs, ordered suite, length, p_ignore, render, scoring. A later run's cell whose
        key an earlier run already measured is left out; cells of one run are all kept (two cells of a
        run may share a key and differ in their data)."""
        return [cell for _, cell in self.cells_with_runs()]

    def cells_with_runs(self) -> list[tuple[RunResults, CellResult]]:
        """:attr:`cells`, each with the run that holds it (whose samples hold its reads)."""
        seen, out = set(), []
        for run in self.runs:
            mine = [(run, c) for c in run.results if c.key not in seen]
            seen.update(c.key for c in run.results)
            out += mine
        suites = list(dict.fromkeys([*SUITE_ORDER] + [c.suite for _, c in out]))
        return sorted(out, key=lambda rc: (suites.index(rc[1].suite), rc[1].length, rc[1].p_ignore or 0,
                                           rc[1].render, rc[1].scoring, rc[1].variant))

    @property
    def reference(self) -> bool:
        return all(r.reference for r in self.runs)

    @property
    def model(self) -> str:
        return self.runs[0].model


@dataclass
class Replicate:
    config: str  # short label of the training config
    data_seed: int
    init_seed: int
    counts: dict[str, tuple[int, int]]  # suite -> (errors, reads)


@dataclass
class Sweep:
    name: str
    path: str
    replicates: list[Replicate] = field(default_factory=list)

    @property
    def suites(self) -> list[str]:
        return list(dict.fromkeys(s for r in self.replicates for s in r.counts))

    @property
    def configs(self) -> list[str]:
        return list(dict.fromkeys(r.config for r in self.replicates))


def is_sweep(path: str) -> bool:
    p = Path(path)
    return (p.is_file() and p.suffix == ".csv") or (p.is_dir() and (p / "table.csv").is_file()
                                                    and not (p / "results.json").exists())


def load_sweep(path: str) -> Sweep:
    """A sweep's table.csv (``ffbench sweep`` output) or the directory holding it."""
    p = Path(path)
    table = p / "table.csv" if p.is_dir() else p
    try:
        rows = list(csv.DictReader(table.open(encoding="utf-8")))
    except OSError as exc:
        raise UsageError(f"cannot read sweep table {str(table)!r}: {exc}") from None
    if not rows or "config" not in rows[0]:
        raise UsageError(f"{str(table)!r} is not an ffbench sweep table (needs config and <suite>_errors columns)")
    configs = [json.loads(r["config"]) for r in rows]
    labels = _config_labels(configs)
    suites = [c[:-len("_errors")] for c in rows[0] if c.endswith("_errors")]
    suites.sort(key=lambda name: SUITE_ORDER.index(name) if name in SUITE_ORDER else len(SUITE_ORDER))
    sweep = Sweep(p.name if p.is_dir() else p.stem, str(p))
    for row, label in zip(rows, labels):
        counts = {s: (int(row[f"{s}_errors"]), int(row[f"{s}_reads"])) for s in suites
                  if row.get(f"{s}_errors") not in (None, "")}
        sweep.replicates.append(Replicate(label, int(row["data_seed"]), int(row["init_seed"]), counts))
    return sweep


def _flatten(cfg: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


BUDGET_KEYS = ("steps", "lr")


def _config_labels(configs: list[dict]) -> list[str]:
    """Name each config by what differs between the sweep's configs (seeds excluded)."""
    flat = [_flatten(c) for c in configs]
    keys = sorted({k for f in flat for k in f} - {"data_seed", "init_seed"})
    varying = [k for k in keys if len({json.dumps(f.get(k)) for f in flat}) > 1]
    # The training budget is always named, so a sweep of one config still says what it trained.
    named = [k for k in BUDGET_KEYS if k in keys and k not in varying] + varying
    labels = []
    for f in flat:
        base = f"{f.get('model.arch', 'model')}"
        parts = [f"{k.split('.')[-1]}={f.get(k)}" for k in named if k != "model.arch"]
        labels.append(" ".join([base] + parts))
    return labels


# ----------------------------------------------------------------------------- failing reads
@dataclass
class FailingRead:
    cell: CellResult
    seq_index: int
    position: int  # index of the answer digit in the compact string
    target: int
    prediction: int
    write_distance: int
    output: str | None
    margin: float
    sequence: str | None  # the compact FFL string, when its source can still be read or regenerated
    point: str | None = None  # the stress point id, for reads of the stress grid
    truncated: bool = False  # the reply hit the token budget before it named an answer


def task_of(cell: CellResult) -> str:
    """The task (``--task``, docs/tasks.md) a cell's reads are of: its source's, or its variant's
    ``task=NAME`` (cells of imported runs carry no source); ffl when it names none."""
    if cell.source is not None and cell.source.task:
        return cell.source.task
    return next((p[len("task="):] for p in cell.variant.split("+") if p.startswith("task=")), "ffl")


def hunt_task(hunt: Hunt) -> str:
    """The task a hunt searched (its config's ``task``; ffl when it names none)."""
    return str((hunt.summary.get("config") or {}).get("task") or "ffl")


def is_stress(cell: CellResult) -> bool:
    """A cell whose reads carry stress points (drawn as heatmaps rather than as one rate)."""
    return bool(cell.by_point)


def failing_reads(run: RunResults, per_cell: int, store: SequenceStore | None = None,
                  where=lambda cell: True) -> list[FailingRead]:
    """Up to ``per_cell`` failing reads of each cell (selected by the cell's own id) for which
    ``where(cell)`` holds, with their sequences."""
    if run.samples_path is None or per_cell <= 0:
        return []
    store = store or SequenceStore()
    out = []
    for cell in run.results:
        table = run.failing(cell, per_cell) if where(cell) else None
        if table is not None:
            out += [_failing_read(cell, r, store) for r in table.to_pylist()]
    return out


def first_failures(run: RunResults, cell: CellResult, point_ids: list[str],
                   store: SequenceStore | None = None) -> list[FailingRead]:
    """The first failing read of ``cell`` at each stress point of ``point_ids`` that has one among the
    run's samples (a shipped reference keeps only some of its failing reads), in that order."""
    if run.samples_path is None or not point_ids:
        return []
    table = run.failing(cell)
    if table is None or "point" not in table.column_names:
        return []
    first: dict[str, dict] = {}
    for row in table.to_pylist():
        first.setdefault(row["point"], row)
    store = store or SequenceStore()
    return [_failing_read(cell, first[p], store) for p in point_ids if p in first]


def _failing_read(cell: CellResult, r: dict, store: SequenceStore) -> FailingRead:
    return FailingRead(cell, int(r["seq_index"]), int(r["position"]), int(r["target"]), int(r["prediction"]),
                       int(r["write_distance"]), r.get("output"),
                       float("nan") if r.get("margin") is None else float(r["margin"]),
                       _sequence(cell, int(r["seq_index"]), store), r.get("point"), bool(r.get("truncated")))


def _sequence(cell: CellResult, seq_index: int, store: SequenceStore) -> str | None:
    from ffbench import language

    if cell.source is None:
        return None
    try:
        arr, _, sha = store.get(cell.source)
    except (FFBenchError, OSError):
        return None  # a moved data file: show the read without its context
    if (cell.data_sha256 and sha != cell.data_sha256) or seq_index >= arr.shape[0]:
        return None  # the file changed since the run: its rows are not the sequences that were scored
    return language.to_strings(arr[seq_index:seq_index + 1])[0]


def attention_maps(run: RunResults, reads: list[FailingRead], limit: int) -> list[tuple[FailingRead, np.ndarray]]:
    """Attention rows (layers x heads x T) at each failing read's query, for native Transformers whose
    checkpoint on disk is still the one the run scored (same fingerprint)."""
    if not run.model.startswith("ffbench/"):
        return []
    try:
        from ffbench import identity
        from ffbench.backends.native import NativeBackend, resolve

        name = run.model[len("ffbench/"):]
        scored = (run.fingerprint.get("model") or {}).get("id")
        if scored and identity.directory_fingerprint(resolve(name))["id"] != scored:
            return []  # the checkpoint changed since the run: its attention would not explain these reads
        backend = NativeBackend(name, device="cpu")
        if backend.cfg.arch != "transformer":
            return []
    except Exception:  # noqa: BLE001 - no torch, a moved checkpoint: the report goes on without maps
        return []
    out = []
    for read in [r for r in reads if r.sequence][:limit]:
        query = read.position - 1  # the 'r' token predicts the answer digit
        maps = backend.attention(read.sequence, [query])[:, :, 0, :query + 1]
        out.append((read, maps))
    backend.close()
    return out


# ----------------------------------------------------------------------------- hunts
@dataclass
class Hunt:
    """A hunt directory as the report reads it: its ``hunt.json`` summary and the rows of its
    ``glitches.parquet`` (empty when the hunt found none), in file order (a row's index is its
    ``seq_index`` when the file is replayed with ``ffbench run --data``)."""

    path: str
    summary: dict
    glitches: list[dict]

    @property
    def model(self) -> str:
        return str(self.summary.get("model") or (self.summary.get("config") or {}).get("model") or "?")


def is_hunt(path: str) -> bool:
    """A directory written by ``ffbench hunt`` (it holds the hunt's summary and is not a run directory)."""
    from ffbench.hunt.huntdir import HuntDir
    from ffbench.rundir import RunDir

    p = Path(path)
    return p.is_dir() and HuntDir(p).summary.is_file() and not (p / RunDir.RESULTS).exists()


HUNT_KEYS = ("config", "spent", "glitches", "families")


def load_hunt(path: str) -> Hunt:
    """A hunt directory's summary and glitches; a file that is not a hunt's is a one-line error."""
    from ffbench.hunt.huntdir import HuntDir
    from ffbench.io import read_json

    hd = HuntDir(path)
    summary = read_json(hd.summary, "hunt summary")
    missing = [k for k in HUNT_KEYS if not isinstance(summary, dict) or k not in summary]
    if missing:
        raise UsageError(f"{str(hd.summary)!r} is not an ffbench hunt summary (no {', '.join(missing)})")
    rows: list[dict] = []
    if hd.glitches.is_file():
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(hd.glitches).to_pylist()
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
            raise UsageError(f"cannot read {str(hd.glitches)!r}: {exc}") from None
    return Hunt(str(path), summary, rows)
