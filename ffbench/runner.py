"""``ffbench run``: the sweep (sources x lengths x renderings x scorings) as resumable shards.

A *source* is a set of sequences: a preset suite (regenerated at each requested length), an
FFL(p_ignore) set, or a data file. A *cell* is a source scored under one rendering and one scoring.
Each cell's sequences are split into fixed shards; each finished shard is written atomically with
one row per read, so an interrupted run resumes exactly where it stopped and never rescores. When
every shard is done, the shards are merged into ``samples.parquet`` and summarised in
``results.json`` (DESIGN.md).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ffbench import __version__, datafiles, generate, language, metrics, render
from ffbench.errors import FFBenchError
from ffbench.rundir import SAMPLE_COLUMNS, RunDir

DEFAULT_NUM = 1000


@dataclass
class RunConfig:
    """Everything needed to rerun; recorded in results.json. Never holds secrets."""

    model: str
    model_args: dict = field(default_factory=dict)
    suites: list[str] = field(default_factory=list)
    data: list[str] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    p_ignore: list[float] = field(default_factory=list)
    num: int | None = None
    seed: int | None = None
    renders: list[str] = field(default_factory=lambda: ["symbolic"])
    scorings: list[str] = field(default_factory=lambda: ["choice"])
    fewshot: bool = False
    per_read: bool = False
    alphabet: int = 2
    batch_size: int | None = None  # sequences per scoring call and per shard (default: ~32k tokens)
    base_url: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Source:
    label: str
    kind: str  # suite | ffl | file
    length: int
    p_ignore: float | None
    num: int
    seed: int | None = None
    path: str | None = None


@dataclass(frozen=True)
class Cell:
    source: Source
    render: str
    scoring: str

    @property
    def key(self) -> str:
        p = "na" if self.source.p_ignore is None else f"{self.source.p_ignore:g}"
        raw = f"{self.source.label}-T{self.source.length}-p{p}-{Path(self.render).stem}-{self.scoring}"
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", raw)


# ----------------------------------------------------------------------------- planning
class SequenceStore:
    """Sequences and reads of every source, produced once and shared by the cells."""

    def __init__(self, alphabet: int):
        self.alphabet = alphabet
        self._files: dict[str, datafiles.Dataset] = {}
        self._cache: dict[Source, tuple[np.ndarray, language.Reads, str]] = {}

    def file(self, path: str) -> datafiles.Dataset:
        if path not in self._files:
            self._files[path] = datafiles.read_sequences(path, alphabet=self.alphabet)
        return self._files[path]

    def get(self, source: Source) -> tuple[np.ndarray, language.Reads, str]:
        if source not in self._cache:
            if source.kind == "file":
                ds = self.file(source.path)
                labels = ds.columns.get("suite")
                arr = ds.sequences if labels is None else ds.sequences[np.array(labels) == source.label]
            else:
                dist = language.FFL.from_p_ignore(source.p_ignore, source.length, self.alphabet)
                arr = language.sample(dist, source.num, source.seed)
            self._cache[source] = (arr, language.extract_reads(arr), datafiles.content_sha256(arr))
        return self._cache[source]


def plan_sources(cfg: RunConfig, store: SequenceStore) -> list[Source]:
    sources: list[Source] = []
    lengths = cfg.lengths or [None]
    suites = cfg.suites or ([] if (cfg.data or cfg.p_ignore) else ["paper"])
    for name in suites:
        for length in lengths:
            for part in generate.suite_parts(name, length, cfg.num, cfg.seed, cfg.alphabet):
                sources.append(Source(part.suite, "suite", part.dist.length, part.dist.p_ignore, part.num, part.seed))
    for p in cfg.p_ignore:
        for length in lengths:
            dist = language.FFL.from_p_ignore(p, length or 512, cfg.alphabet)
            sources.append(Source(f"ffl{p:g}", "ffl", dist.length, p, cfg.num or DEFAULT_NUM,
                                  0 if cfg.seed is None else cfg.seed))
    for path in cfg.data:
        ds = store.file(path)
        labels = ds.columns.get("suite")
        names = [Path(path).stem] if labels is None else list(dict.fromkeys(labels))
        for name in names:
            n = ds.num if labels is None else labels.count(name)
            sources.append(Source(str(name), "file", ds.length, None, n, path=path))
    return sources


def plan(cfg: RunConfig, store: SequenceStore) -> list[Cell]:
    for name in cfg.renders:
        render.load_template(name)  # fail fast on unknown renderings
    from ffbench.scoring import SCORINGS

    for s in cfg.scorings:
        if s not in SCORINGS:
            raise FFBenchError(f"unknown scoring {s!r} (use {' or '.join(SCORINGS)})")
    return [Cell(src, r, s) for src in plan_sources(cfg, store) for r in cfg.renders for s in cfg.scorings]


SHARD_TOKENS = 32_768


def shard_size(length: int, batch_size: int | None) -> int:
    return batch_size or max(1, SHARD_TOKENS // length)


# ----------------------------------------------------------------------------- running
def run(cfg: RunConfig, out_dir: str, make_backend: Callable, progress: bool = True,
        echo: Callable[[str], None] = print) -> dict:
    """Score every cell (resuming finished shards) and write the run directory; return results."""
    rd = RunDir(out_dir)
    if rd.results.exists():
        done = json.loads(rd.results.read_text())
        if done.get("config") == cfg.as_dict():
            echo(f"run already complete in {out_dir}; nothing rescored")
            return done
    store = SequenceStore(cfg.alphabet)
    cells = plan(cfg, store)
    rd.check(cfg.as_dict())
    demo = render.demo_sequence(alphabet=cfg.alphabet) if cfg.fewshot else None
    work = []  # (cell, shard size, starts still to score)
    for cell in cells:
        arr, _, _ = store.get(cell.source)
        size = shard_size(cell.source.length, cfg.batch_size)
        todo = [s for s in range(0, arr.shape[0], size) if not rd.shard_path(cell.key, s).exists()]
        if todo:
            work.append((cell, size, todo))
    backend = make_backend() if work else None
    try:
        # Every cell's context is checked before anything is written: no half-made run on a bad length.
        for cell, _, _ in work:
            _check_context(backend, store.get(cell.source)[0][0], render.load_template(cell.render),
                           cfg.alphabet, demo, cell)
        rd.open(cfg.as_dict())
        for cell, size, todo in work:
            arr, reads, _ = store.get(cell.source)
            template = render.load_template(cell.render)
            done = arr.shape[0] - sum(min(size, arr.shape[0] - s) for s in todo)
            bar = _bar(progress, cell, arr.shape[0], done)
            for start in todo:
                stop = min(start + size, arr.shape[0])
                before = backend.usage.as_dict()
                table = score_shard(backend, cell, arr, reads, start, stop, template, cfg, demo)
                usage = {k: v - before.get(k, 0) for k, v in backend.usage.as_dict().items()
                         if isinstance(v, (int, float))}
                _write_shard(rd.shard_path(cell.key, start), table, usage)
                if bar is not None:
                    bar.update(stop - start)
            if bar is not None:
                bar.close()
    finally:
        if backend is not None:
            backend.close()
    return _finish(rd, cfg, cells, store, backend)


def _bar(progress: bool, cell: Cell, total: int, initial: int):
    if not progress:
        return None
    import sys

    from tqdm import tqdm

    desc = f"{cell.source.label} T={cell.source.length} {Path(cell.render).stem} {cell.scoring}"
    return tqdm(total=total, initial=initial, desc=desc, unit="seq", file=sys.stderr, dynamic_ncols=True)


def _check_context(backend, seq, template, alphabet, demo, cell: Cell) -> None:
    limit = backend.context_length()
    if not limit:
        return
    text = render.render(seq, template, alphabet, demo).text + template.ask
    tokens = backend.count_tokens(text)
    if tokens is not None and tokens > limit:
        raise FFBenchError(
            f"model context is {limit} tokens but {cell.source.label} at T={cell.source.length} rendered "
            f"'{Path(cell.render).stem}' needs {tokens}: use a shorter --length or another rendering")


def score_shard(backend, cell: Cell, arr, reads: language.Reads, start: int, stop: int, template, cfg, demo):
    """Score sequences [start, stop) of a cell; return the shard's rows as an Arrow table."""
    import pyarrow as pa

    from ffbench import scoring

    rendered = [render.render(arr[i], template, cfg.alphabet, demo) for i in range(start, stop)]
    outcome = scoring.score(backend, rendered, template, cell.scoring, per_read=cfg.per_read)
    lo, hi = np.searchsorted(reads.seq_index, [start, stop])
    n = hi - lo
    target = reads.target[lo:hi]
    src = cell.source
    columns = {
        "suite": pa.array([src.label] * n, pa.string()),
        "length": pa.array(np.full(n, src.length, np.int32)),
        "p_ignore": pa.array(np.full(n, np.nan if src.p_ignore is None else src.p_ignore)),
        "render": pa.array([Path(cell.render).stem] * n, pa.string()),
        "scoring": pa.array([cell.scoring] * n, pa.string()),
        "seq_index": pa.array(reads.seq_index[lo:hi]),
        "read_index": pa.array(reads.read_index[lo:hi]),
        "position": pa.array(reads.position[lo:hi]),
        "target": pa.array(target),
        "prediction": pa.array(outcome.prediction),
        "correct": pa.array(outcome.prediction == target),
        "invalid": pa.array(outcome.invalid),
        "write_distance": pa.array(reads.write_distance[lo:hi].astype(np.int64)),
        "evidence_distance": pa.array(reads.evidence_distance[lo:hi].astype(np.int64)),
        "margin": pa.array(outcome.margin),
        "per_read": pa.array(outcome.per_read),
        "output": pa.array(outcome.output, pa.string()),
    }
    assert tuple(columns) == SAMPLE_COLUMNS
    return pa.table(columns)


def _write_shard(path: Path, table, usage: dict) -> None:
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(table.schema.metadata or {})
    meta[b"ffbench_usage"] = json.dumps(usage).encode()
    with datafiles.atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(meta), tmp)


def _finish(rd: RunDir, cfg: RunConfig, cells: list[Cell], store: SequenceStore, backend) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables, usage, results, hashes = [], {}, [], {}
    for cell in cells:
        arr, reads, sha = store.get(cell.source)
        hashes[f"{cell.source.label}/T{cell.source.length}"] = sha
        size = shard_size(cell.source.length, cfg.batch_size)
        parts = []
        for start in range(0, arr.shape[0], size):
            t = pq.read_table(rd.shard_path(cell.key, start))
            for k, v in json.loads((t.schema.metadata or {}).get(b"ffbench_usage", b"{}")).items():
                usage[k] = usage.get(k, 0) + v
            if "output" not in t.column_names:  # a shard written before ffbench recorded generations
                t = t.append_column("output", pa.nulls(t.num_rows, pa.string()))
            parts.append(t.replace_schema_metadata(None))
        table = pa.concat_tables(parts)
        tables.append(table)
        results.append(_cell_result(cell, arr.shape[0], table, sha))
    combined = hashlib.sha256("".join(f"{k}:{v}\n" for k, v in sorted(hashes.items())).encode()).hexdigest()
    payload = {
        "model": cfg.model,
        "backend": backend.describe() if backend is not None else {"provider": cfg.model.split("/")[0]},
        "ffbench_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": cfg.as_dict(),
        "data_sha256": combined,
        "usage": usage,
        "results": results,
    }
    rd.finish(payload, pa.concat_tables(tables))
    return payload


def _cell_result(cell: Cell, num_sequences: int, table, sha: str) -> dict:
    correct = table.column("correct").to_numpy()
    invalid = table.column("invalid").to_numpy()
    per_read = table.column("per_read").to_numpy()
    slot = (table.column("position").to_numpy() - 1) // 2
    entry = {
        "suite": cell.source.label,
        "source": cell.source.kind if cell.source.path is None else cell.source.path,
        "length": cell.source.length,
        "p_ignore": cell.source.p_ignore,
        "render": Path(cell.render).stem,
        "scoring": cell.scoring,
        "num_sequences": num_sequences,
        **metrics.summarize(correct, invalid),
        "reads_scored_per_read": int(per_read.sum()),
        "data_sha256": sha,
        "by_write_distance": metrics.breakdown(table.column("write_distance").to_numpy(), correct),
        "by_read_position": metrics.breakdown(slot, correct, edges=(0,) + metrics.DISTANCE_EDGES),
    }
    return entry


def default_output_dir(cfg: RunConfig) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", cfg.model.replace("/", "_")).strip("_")[-60:]
    return str(Path("runs") / f"{slug}-{cfg.digest()[:10]}")
