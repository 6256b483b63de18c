"""Imported reads -> an ffbench run directory (samples.parquet and results.json, docs/architecture.md).

Every read is placed by ffbench itself: the cell's sequences are regenerated from its
:class:`~ffbench.sources.SourceSpec`, and each imported read's (sequence, read) index gives its
position, target, write and evidence distances and stress point, exactly the columns ``ffbench run``
writes; a target the log disagrees with is an error, never overwritten.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from ffbench import __version__, sources
from ffbench.errors import FFBenchError, UsageError


@dataclass
class ImportedRead:
    prediction: int  # -1: named no answer
    invalid: bool = False
    truncated: bool = False
    output: str | None = None
    margin: float = float("nan")
    target: int | None = None  # what the log says the target is (checked against ffbench's)


@dataclass
class ImportedCell:
    source: sources.SourceSpec
    render: str
    scoring: str  # choice | greedy
    variant: str
    reads: dict[tuple[int, int], ImportedRead]  # (seq_index, read_index) -> outcome


@dataclass
class Imported:
    """What a reader found in a log: its cells and who was scored, by which harness."""

    harness: str  # inspect | lm-eval
    model: str
    cells: list[ImportedCell]
    config: dict  # recorded as results.json ``config`` (the harness's task and arguments)
    model_identity: dict  # what identifies the model in the log (name, arguments, base URL)
    log: str
    notes: list[str] = field(default_factory=list)


def samples_table(cell: ImportedCell, cell_id: str, store: sources.SequenceStore):
    """The cell's reads as samples.parquet rows, in ffbench's column order."""
    import pyarrow as pa

    from ffbench.rundir import SAMPLE_COLUMNS
    from ffbench.runner import stress_columns

    _, flat, _ = store.get(cell.source)
    index = {(int(s), int(r)): k for k, (s, r) in enumerate(zip(flat.seq_index.tolist(), flat.read_index.tolist()))}
    missing = [key for key in cell.reads if key not in index]
    if missing:
        raise FFBenchError(f"the log holds read {missing[0][1]} of sequence {missing[0][0]} of {cell.source.label} "
                           f"T={cell.source.length}, which those sequences do not have: not ffbench's sequences")
    keys = sorted(cell.reads, key=lambda key: index[key])
    rows = np.array([index[key] for key in keys], dtype=np.int64)
    got = [cell.reads[key] for key in keys]
    target = flat.target[rows]
    for key, read, t in zip(keys, got, target.tolist()):
        if read.target is not None and read.target != t:
            raise FFBenchError(f"the log's target of sequence {key[0]} read {key[1]} ({read.target}) is not the "
                               f"sequence's ({t}): the log scored other sequences than its arguments name")
    prediction = np.array([r.prediction for r in got], dtype=np.int64)
    src, n = cell.source, len(keys)
    columns = {
        "cell": pa.array([cell_id] * n, pa.string()), "suite": pa.array([src.label] * n, pa.string()),
        "length": pa.array(np.full(n, src.length, np.int32)),
        "p_ignore": pa.array(np.full(n, np.nan if src.p_ignore is None else src.p_ignore)),
        "render": pa.array([cell.render] * n, pa.string()), "scoring": pa.array([cell.scoring] * n, pa.string()),
        "seq_index": pa.array(flat.seq_index[rows]), "read_index": pa.array(flat.read_index[rows]),
        "position": pa.array(flat.position[rows]), "target": pa.array(target), "prediction": pa.array(prediction),
        "correct": pa.array(prediction == target), "invalid": pa.array([r.invalid for r in got], pa.bool_()),
        "truncated": pa.array([r.truncated for r in got], pa.bool_()),
        "write_distance": pa.array(flat.write_distance[rows].astype(np.int64)),
        "evidence_distance": pa.array(flat.evidence_distance[rows].astype(np.int64)),
        "margin": pa.array([r.margin for r in got], pa.float64()), "per_read": pa.array([True] * n),
        "output": pa.array([r.output for r in got], pa.string()),
    }
    columns.update(stress_columns(store.columns(cell.source), flat.seq_index[rows]))
    assert tuple(columns)[: len(SAMPLE_COLUMNS)] == SAMPLE_COLUMNS
    return pa.table(columns)


def results(imported: Imported, model: str | None = None):
    """(RunResults, samples table) of an import."""
    import pyarrow as pa

    from ffbench.runner import Cell, cell_result
    from ffbench.schema import RunResults

    store = sources.SequenceStore()
    cells, tables, data = [], [], {}
    for c in imported.cells:
        arr, _, sha = store.get(c.source)
        cell = Cell(c.source, c.render, c.scoring, c.variant)
        table = samples_table(c, f"{cell.key.slug()}-{sha[:12]}", store)
        tables.append(table)
        cells.append(cell_result(cell, int(arr.shape[0]), table, sha))
        cells[-1] = _planned(cells[-1], int(arr.shape[0]))
        data[c.source.describe()] = sha
    model_fp = {"kind": "imported", "harness": imported.harness, **imported.model_identity}
    model_fp["id"] = _digest(model_fp)
    combined = hashlib.sha256("".join(f"{k}:{v}\n" for k, v in sorted(data.items())).encode()).hexdigest()
    config = {**imported.config, "imported_from": imported.harness}
    run = RunResults(
        model=model or imported.model, config=config, results=cells, backend={"provider": imported.harness},
        ffbench_version=__version__, created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        fingerprint={"config_sha256": _digest(config), "data": data, "model": model_fp}, data_sha256=combined,
        stop_reason="complete", stop_detail=f"imported from the {imported.harness} log {imported.log}"
        + "".join(f"; {note}" for note in imported.notes))
    return run, pa.concat_tables(tables)


def _planned(cell, num: int):
    from dataclasses import replace

    return replace(cell, complete=True, planned_sequences=num)


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def write_run(imported: Imported, out: str, model: str | None = None):
    """Write the import as run directory ``out`` (new, or empty); return its RunResults as loaded back."""
    from ffbench.rundir import RunDir

    if not imported.cells:
        raise FFBenchError(f"{imported.log}: no scored reads of an ffbench task")
    run, table = results(imported, model)
    rd = RunDir(out)
    rd.check_usable()
    if rd.path.is_dir() and any(rd.path.iterdir()):
        raise UsageError(f"--out {out!r} exists and is not empty: choose another run directory")
    with rd.lock():
        rd.finish(run, table)
    return rd.load(out)
