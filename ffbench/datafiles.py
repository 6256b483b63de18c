"""Flip-flop data files: parquet or JSONL with a ``text`` column (the ``synthseq/flipflop`` layout).

Writing streams chunks (bounded memory for a 1.6M-row train set) into a temporary file that
replaces the target only when complete, so an interrupted or failed write leaves nothing behind.
Reading validates every row and computes a format-independent content hash: the SHA-256 of the
sequences each followed by a newline, so the same data in parquet or JSONL hashes the same.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ffbench import language
from ffbench.errors import FFBenchError, UsageError
from ffbench.io import atomic_path

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def file_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"unsupported data file extension {suffix or '(none)'!r} in {str(path)!r}: use .parquet or .jsonl")
    return FORMATS[suffix]


@dataclass
class Chunk:
    """A block of sequences plus optional extra columns of the same length (e.g. ``suite``): Python lists,
    or pyarrow arrays where the type must hold even when a chunk's values are all null."""

    sequences: np.ndarray
    columns: dict[str, list] = field(default_factory=dict)


@dataclass
class Dataset:
    sequences: np.ndarray  # (N, T) uint8 ASCII
    columns: dict[str, list]
    sha256: str
    path: str = ""

    @property
    def num(self) -> int:
        return int(self.sequences.shape[0])

    @property
    def length(self) -> int:
        return int(self.sequences.shape[1])


class ContentHash:
    """Incremental SHA-256 of sequences, each followed by ``\\n``."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def update(self, arr: np.ndarray) -> None:
        if arr.size == 0:
            return
        lines = np.empty((arr.shape[0], arr.shape[1] + 1), dtype=np.uint8)
        lines[:, :-1] = arr
        lines[:, -1] = ord("\n")
        self._h.update(lines.tobytes())

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def content_sha256(arr: np.ndarray) -> str:
    h = ContentHash()
    h.update(arr)
    return h.hexdigest()


# ----------------------------------------------------------------------------- writing
def _arrow_text(arr: np.ndarray):
    """Zero-copy Arrow string column from an (N, T) uint8 array of equal-length rows."""
    import pyarrow as pa

    n, width = arr.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int64)
    data = np.ascontiguousarray(arr)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def write_sequences(path: str | os.PathLike, chunks: Iterable[Chunk | np.ndarray]) -> tuple[int, str]:
    """Write chunks atomically; return (rows written, content sha256)."""
    fmt = file_format(path)
    digest, rows = ContentHash(), 0
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            rows = _write_parquet(tmp, chunks, digest)
        else:
            rows = _write_jsonl(tmp, chunks, digest)
    return rows, digest.hexdigest()


def _as_chunk(c: Chunk | np.ndarray) -> Chunk:
    return c if isinstance(c, Chunk) else Chunk(c)


def _write_parquet(tmp: Path, chunks: Iterable[Chunk | np.ndarray], digest: ContentHash) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer, rows = None, 0
    try:
        for chunk in map(_as_chunk, chunks):
            arrays = {"text": _arrow_text(chunk.sequences).cast(pa.string())}
            arrays.update({k: v if isinstance(v, pa.Array) else pa.array(v) for k, v in chunk.columns.items()})
            table = pa.table(arrays)
            if writer is None:
                # No dictionary encoding: every row is distinct, so it only costs time.
                writer = pq.ParquetWriter(tmp, table.schema, compression="snappy", use_dictionary=False)
            writer.write_table(table)
            digest.update(chunk.sequences)
            rows += chunk.sequences.shape[0]
        if writer is None:
            raise FFBenchError("nothing to write: no sequences")
    finally:
        if writer is not None:
            writer.close()
    return rows


def _write_jsonl(tmp: Path, chunks: Iterable[Chunk | np.ndarray], digest: ContentHash) -> int:
    rows = 0
    with open(tmp, "w", encoding="ascii", newline="\n") as fh:
        for chunk in map(_as_chunk, chunks):
            texts = language.to_strings(chunk.sequences)
            columns = {k: v.to_pylist() if hasattr(v, "to_pylist") else v for k, v in chunk.columns.items()}
            names = list(columns)
            for k, text in enumerate(texts):
                record = {"text": text}
                record.update({name: _plain(columns[name][k]) for name in names})
                fh.write(json.dumps(record, separators=(",", ":")))
                fh.write("\n")
            digest.update(chunk.sequences)
            rows += len(texts)
    if rows == 0:
        raise FFBenchError("nothing to write: no sequences")
    return rows


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


# ----------------------------------------------------------------------------- reading
def read_sequences(path: str | os.PathLike, alphabet: int = language.MAX_ALPHABET, validate: bool = True,
                   task: str | None = None) -> Dataset:
    """Load and (by default) validate every row against ``task``'s language (:mod:`ffbench.tasks`;
    default ffl); errors name the file, row, position and rule."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"data file {str(p)!r} does not exist")
    fmt = file_format(p)
    texts, columns = _read_parquet(p) if fmt == "parquet" else _read_jsonl(p)
    if len(texts) == 0:
        raise UsageError(f"{p}: no rows")
    try:
        arr = texts if isinstance(texts, np.ndarray) else language.to_array(texts)
        if validate:
            from ffbench import tasks

            tasks.get(task).validate(arr, alphabet)
    except FFBenchError as exc:
        raise UsageError(f"{p}: {exc}") from None
    check_stress_columns(p, columns)
    return Dataset(arr, columns, content_sha256(arr), str(p))


def check_stress_columns(p: Path, columns: dict[str, list]) -> None:
    """The columns named like the stress grid's (``family``, ``point``, its parameters) travel with
    every read into samples and results, so they must hold what the grid writes there: the first
    value of another type is named with its row."""
    from ffbench import stress

    for name in stress.COLUMNS:
        kind = str if name in ("family", "point") else stress.parameter_type(name)
        accepted = (int, float) if kind is float else (kind,)
        for row, value in enumerate(columns.get(name, ())):
            if value is not None and (isinstance(value, bool) or not isinstance(value, accepted)):
                raise UsageError(f"{p}: row {row}: column {name!r} holds {value!r}, but ffbench reads {name!r} as "
                                 f"the stress grid's {name} ({'text' if kind is str else kind.__name__}); rename "
                                 "the column to keep it as your own")


def _read_parquet(p: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(p)
    except (pa.ArrowException, OSError) as exc:
        raise UsageError(f"{p}: not a readable parquet file ({str(exc).splitlines()[0]})") from None
    if "text" not in table.column_names:
        raise UsageError(f"{p}: no 'text' column (columns: {', '.join(table.column_names) or 'none'})")
    text = table.column("text")
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        raise UsageError(f"{p}: column 'text' has type {text.type}, expected strings")
    if text.null_count:
        row = int(np.flatnonzero(text.is_null().to_numpy(zero_copy_only=False))[0])
        raise UsageError(f"{p}: row {row}: 'text' is null")
    columns = {name: table.column(name).to_pylist() for name in table.column_names if name != "text"}
    return _fixed_width(text.cast(pa.large_string()).combine_chunks()), columns


def _fixed_width(text) -> np.ndarray | list[str]:
    """Zero-copy (N, T) view of an Arrow large_string array when every row has the same length."""
    n = len(text)
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int64)[text.offset : text.offset + n + 1]
    widths = np.diff(offsets)
    if n and np.all(widths == widths[0]):
        data = np.frombuffer(text.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
        if np.all(data < 128):
            return data.reshape(n, int(widths[0]))
    return text.to_pylist()  # unequal lengths or non-ASCII: let to_array name the bad row


def _read_jsonl(p: Path):
    texts: list[str] = []
    columns: dict[str, list] = {}
    with open(p, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{p}: line {lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise UsageError(f"{p}: line {lineno}: expected an object with a string 'text'")
            row = len(texts)
            texts.append(record.pop("text"))
            for name, value in record.items():
                columns.setdefault(name, [None] * row).append(value)
            for values in columns.values():
                if len(values) < row + 1:
                    values.append(None)
    return texts, columns
