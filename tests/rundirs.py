"""Crafted run directories: exact error counts for the report, the gate and the registry tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ffbench import language, metrics


def cell(suite: str, errors: int, reads: int, length: int = 512, p_ignore: float | None = None,
         render: str = "symbolic", scoring: str = "choice") -> dict:
    p = {"in_dist": 0.8, "sparse": 0.98, "dense": 0.1}.get(suite) if p_ignore is None else p_ignore
    lo, hi = metrics.clopper_pearson(errors, reads)
    return {"suite": suite, "length": length, "p_ignore": p, "render": render, "scoring": scoring, "variant": "",
            "data_sha256": f"crafted-{suite}-{length}-{reads}",
            "num_sequences": max(1, reads // 10), "reads": reads, "errors": errors, "invalid": 0,
            "glitch_rate": errors / reads, "accuracy": 1 - errors / reads, "ci95": [lo, hi],
            "by_write_distance": [{"bucket": "1", "reads": reads // 2, "errors": errors // 2,
                                   "glitch_rate": (errors // 2) / (reads // 2)},
                                  {"bucket": "2-3", "reads": reads - reads // 2, "errors": errors - errors // 2,
                                   "glitch_rate": (errors - errors // 2) / (reads - reads // 2)}]}


def write_run(path: Path, model: str, cells: list[dict], created: str = "2026-11-01T00:00:00+00:00",
              config: dict | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    results = {"schema_version": 2, "model": model, "backend": {"provider": model.split("/")[0]},
               "ffbench_version": "test", "created": created, "config": config or {"model": model, "note": "crafted"},
               "fingerprint": {"model": {"kind": "name", "id": f"crafted-{model}"}},
               "data_sha256": "0" * 64, "usage": {}, "results": cells}
    (path / "results.json").write_text(json.dumps(results))
    return path


def write_failing_run(path: Path, model: str, output: str | None = None, length: int = 64, num: int = 8) -> Path:
    """A real in_dist run layout whose samples hold the first read of each sequence as a failure."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ffbench.datafiles import content_sha256
    from ffbench.schema import CellResult
    from ffbench.sources import SourceSpec

    config = {"model": model, "model_args": {}, "suites": ["in_dist"], "data": [], "lengths": [length],
              "p_ignore": [], "num": num, "seed": None, "renders": ["symbolic"], "scorings": ["greedy"],
              "fewshot": False, "per_read": False, "alphabet": 2, "batch_size": None, "base_url": None}
    arr = language.sample(language.FFL.from_p_ignore(0.8, length), num, 1000)
    source = SourceSpec("suite", "in_dist", length, num, 0.8, 1000)
    reads = language.extract_reads(arr)
    first = np.flatnonzero(reads.read_index == 0)
    n = len(reads)
    wrong = np.zeros(n, bool)
    wrong[first] = True
    pred = np.where(wrong, 1 - reads.target, reads.target)
    entry = dict(cell("in_dist", int(wrong.sum()), n, length=length, scoring="greedy"), num_sequences=num,
                 source=source.as_dict(), data_sha256=content_sha256(arr))
    cell_id = CellResult.from_dict(entry).id
    table = pa.table({
        "cell": [cell_id] * n, "suite": ["in_dist"] * n, "length": np.full(n, length, np.int32), "p_ignore": np.full(n, 0.8),
        "render": ["symbolic"] * n, "scoring": ["greedy"] * n, "seq_index": reads.seq_index,
        "read_index": reads.read_index, "position": reads.position, "target": reads.target, "prediction": pred,
        "correct": ~wrong, "invalid": np.zeros(n, bool), "write_distance": reads.write_distance.astype(np.int64),
        "evidence_distance": reads.evidence_distance.astype(np.int64), "margin": np.full(n, np.nan),
        "per_read": np.ones(n, bool), "output": pa.array([output if w else None for w in wrong], pa.string())})
    write_run(path, model, [entry], config=config)
    pq.write_table(table, path / "samples.parquet")
    return path
