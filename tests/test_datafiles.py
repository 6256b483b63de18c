"""Data files: round trips, the synthseq layout, validation on read, atomic writes."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ffbench import datafiles, generate, language
from ffbench.errors import FFBenchError
from ffbench.language import FFL


@pytest.fixture
def arr():
    return language.sample(FFL.from_p_ignore(0.7, 24), 257, seed=4)


@pytest.mark.parametrize("name", ["d.parquet", "d.jsonl"])
def test_round_trip_keeps_rows_columns_and_hash(tmp_path, arr, name):
    path = tmp_path / name
    chunks = [datafiles.Chunk(arr[:100], {"suite": ["a"] * 100}), datafiles.Chunk(arr[100:], {"suite": ["b"] * 157})]
    rows, sha = datafiles.write_sequences(path, chunks)
    assert rows == 257
    ds = datafiles.read_sequences(path)
    assert np.array_equal(ds.sequences, arr)
    assert ds.columns["suite"] == ["a"] * 100 + ["b"] * 157
    assert ds.sha256 == sha == datafiles.content_sha256(arr)
    assert list(tmp_path.iterdir()) == [path]  # no temporary left behind


def test_hash_is_format_independent_and_content_sensitive(tmp_path, arr):
    _, a = datafiles.write_sequences(tmp_path / "a.parquet", [arr])
    _, b = datafiles.write_sequences(tmp_path / "b.jsonl", [arr])
    assert a == b
    other = arr.copy()
    other[[0, 1]] = other[[1, 0]]
    assert datafiles.content_sha256(other) != a


def test_reads_synthseq_layout_unchanged(tmp_path, arr):
    # The released files: parquet, one string column 'text', written by the datasets library.
    path = tmp_path / "val.parquet"
    pq.write_table(pa.table({"text": pa.array(language.to_strings(arr), pa.string())}), path, row_group_size=50)
    ds = datafiles.read_sequences(path)
    assert np.array_equal(ds.sequences, arr) and ds.columns == {}


def test_jsonl_layout_is_one_object_per_line(tmp_path, arr):
    path = tmp_path / "d.jsonl"
    datafiles.write_sequences(path, [arr[:3]])
    lines = path.read_text().splitlines()
    assert [json.loads(x) for x in lines] == [{"text": s} for s in language.to_strings(arr[:3])]


def test_illegal_row_is_named_with_file_row_position(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "w0i1r0r0"}\n{"text": "w1i0r0r1"}\n')
    with pytest.raises(FFBenchError, match=r"bad.jsonl: row 1, position 5: read 'r0' does not match"):
        datafiles.read_sequences(path)


@pytest.mark.parametrize(
    "content, fragment",
    [
        ('{"text": "w0r0"}\n{"txt": "w0r0"}\n', "line 2: expected an object with a string 'text'"),
        ('{"text": "w0r0"}\nnot json\n', "line 2: not valid JSON"),
        ('{"text": "w0r0"}\n{"text": "w0i0r0"}\n', "row 1: length 6 differs"),
        ('{"text": "w0r0x"}\n', "length must be even"),
        ("", "no rows"),
    ],
)
def test_unreadable_jsonl(tmp_path, content, fragment):
    path = tmp_path / "x.jsonl"
    path.write_text(content)
    with pytest.raises(FFBenchError, match=fragment):
        datafiles.read_sequences(path)


def test_unreadable_parquet_and_missing_column(tmp_path):
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(FFBenchError, match="not a readable parquet file"):
        datafiles.read_sequences(junk)
    nocol = tmp_path / "nocol.parquet"
    pq.write_table(pa.table({"seq": ["w0r0"]}), nocol)
    with pytest.raises(FFBenchError, match="no 'text' column \\(columns: seq\\)"):
        datafiles.read_sequences(nocol)
    with pytest.raises(FFBenchError, match="does not exist"):
        datafiles.read_sequences(tmp_path / "missing.parquet")
    csv = tmp_path / "d.csv"
    csv.write_text("text\nw0r0\n")
    with pytest.raises(FFBenchError, match="unsupported data file extension '.csv'"):
        datafiles.read_sequences(csv)


def test_failed_write_leaves_nothing(tmp_path, arr):
    path = tmp_path / "out.parquet"

    def chunks():
        yield arr
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        datafiles.write_sequences(path, chunks())
    assert list(tmp_path.iterdir()) == []


def test_streaming_generation_matches_in_memory(tmp_path):
    parts = generate.suite_parts("paper", length=32, num=5000)
    rows, sha = generate.generate_file(parts, str(tmp_path / "p.parquet"))
    assert rows == 15000
    ds = datafiles.read_sequences(tmp_path / "p.parquet")
    expected = np.concatenate([language.sample(p.dist, p.num, p.seed) for p in parts])
    assert np.array_equal(ds.sequences, expected) and ds.sha256 == sha
    assert ds.columns["suite"] == ["in_dist"] * 5000 + ["sparse"] * 5000 + ["dense"] * 5000
    # Row groups are written per chunk: memory is bounded by the chunk, not the file.
    assert pq.ParquetFile(tmp_path / "p.parquet").metadata.num_row_groups >= 3
