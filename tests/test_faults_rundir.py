"""Faults in what a run directory keeps: a truncated or copied shard, a truncated samples.parquet or
results.json. Every kept byte is verified when it is read; a damaged shard is rescored with a line
saying so, and a damaged finished file is one line for report, check and record (issue 23).

Real runs of the shipped transformer-ref checkpoint (no download), interrupted after two shards.
"""

from __future__ import annotations

import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ffbench import runner
from ffbench.backends import load_backend, resolve
from ffbench.errors import FFBenchError, Interrupted
from ffbench.rundir import RunDir
from tests.test_cli import run_main

CFG = {"model": "ffbench/transformer-ref", "suites": ["in_dist", "dense"], "lengths": [64], "num": 40,
       "batch_size": 10}  # 2 cells x 4 shards of 10 sequences


class Interrupting:
    """The real backend, interrupted (Ctrl-C) at its ``after``-th dense call; counts the texts scored."""

    def __init__(self, after: int | None = None):
        self.inner, self.after, self.calls, self.texts = load_backend("ffbench/transformer-ref", {}), after, 0, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def score_dense(self, requests):
        if self.after is not None and self.calls == self.after:
            raise KeyboardInterrupt
        self.calls += 1
        self.texts += len(requests)
        return self.inner.score_dense(requests)


def _run(out, backend=None, lines=None, **kw):
    ref = resolve("ffbench/transformer-ref")
    if backend is not None:
        ref.load = lambda: backend
    echo = (lines.append if lines is not None else (lambda m: None))
    return runner.run(runner.RunConfig(**CFG), str(out), ref, progress=False, echo=echo, **kw)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    out = tmp_path_factory.mktemp("faults") / "full"
    res = _run(out)
    return out, res


def _interrupted(path, after=4):
    with pytest.raises(Interrupted):
        _run(path, Interrupting(after))
    rd = RunDir(path)
    assert rd.shard_count() == after
    return rd


def _same_as(full, res, path):
    assert [c.to_dict() for c in res.results] == [c.to_dict() for c in full[1].results]
    assert pq.read_table(path / "samples.parquet").equals(pq.read_table(full[0] / "samples.parquet"))


@pytest.mark.parametrize("damage", ["truncate", "copy", "other_cell", "empty"])
def test_a_damaged_shard_of_an_interrupted_run_is_rescored_with_a_line(tmp_path, full, damage):
    rd = _interrupted(tmp_path / "r")
    files = rd.shard_files()  # cell A shards 0, 10, 20, 30 (the first cell's four)
    (cid, start, victim) = files[1]
    if damage == "truncate":
        os.truncate(victim, victim.stat().st_size // 2)
    elif damage == "copy":  # valid parquet, rows of another shard of the same cell
        shutil.copyfile(files[0][2], victim)
    elif damage == "other_cell":
        other = tmp_path / "o"
        _interrupted(other, after=6)
        shutil.copyfile(RunDir(other).shard_files()[5][2], victim)  # second cell's shard 10: same range
    else:
        victim.write_bytes(b"")
    lines = []
    again = Interrupting()
    res = _run(tmp_path / "r", again, lines)
    assert [m for m in lines if "damaged" in m] == [m for m in lines if f"{cid}/{start:09d}.parquet" in m]
    assert len([m for m in lines if "damaged" in m]) == 1 and "scoring it again" in lines[0]
    assert again.texts == 40 + 10  # the four shards never scored plus the damaged one
    _same_as(full, res, tmp_path / "r")


def test_shard_problem_names_what_is_wrong(tmp_path):
    rd = _interrupted(tmp_path / "r", after=2)
    (c0, s0, p0), (c1, s1, p1) = rd.shard_files()
    reads = pq.read_metadata(p0).num_rows
    assert rd.shard_problem(c0, s0) is None and rd.shard_problem(c0, s0, 10, reads) is None
    assert rd.shard_problem(c0, s0, 10, reads + 1) == f"holds {reads} reads, should hold {reads + 1}"
    shutil.copyfile(p0, p1)
    assert rd.shard_problem(c1, s1) == f"holds the shard of {c0}/0"
    os.truncate(p0, 100)
    assert rd.shard_problem(c0, s0).startswith("unreadable (")


def test_rescore_rescores_a_complete_run_and_an_unchanged_unfinished_one(tmp_path, full):
    path = tmp_path / "r"
    _run(path)
    lines, again = [], Interrupting()
    res = _run(path, again, lines, rescore=True)
    assert again.texts == 80 and any("--rescore: discarding" in m for m in lines)
    _same_as(full, res, path)
    _interrupted(tmp_path / "u")
    again = Interrupting()
    _run(tmp_path / "u", again, rescore=True)
    assert again.texts == 80


@pytest.mark.parametrize("name", ["samples.parquet", "results.json"])
def test_a_truncated_finished_file_is_one_line_for_report_check_record_and_a_rerun_rescores(
        tmp_path, full, capsys, name):
    path = tmp_path / "r"
    shutil.copytree(full[0], path)
    target = path / name
    os.truncate(target, target.stat().st_size // 2)
    for argv in (["report", str(path), "--no-refs", "--out", str(tmp_path / "r.html")],
                 ["check", "-c", str(path), "--max-glitch-rate", "0.5"],
                 ["record", str(path), "--registry", str(tmp_path / "reg.sqlite")]):
        code, _, err = run_main(capsys, *argv)
        assert code == (3 if argv[0] == "check" else 1), argv  # check: "could not judge", never "regression"
        assert "Traceback" not in err and err.strip().count("\n") == 0, err
        assert err.startswith("ffbench: error: ") and name in err
    with pytest.raises(FFBenchError, match=f"{name} is damaged"):
        RunDir(path).load()
    lines, again = [], Interrupting()
    res = _run(path, again, lines)
    assert again.texts == 80 and any(f"{name} is damaged" in m for m in lines)
    _same_as(full, res, path)


def test_samples_with_rows_missing_but_a_valid_footer_are_caught(tmp_path, full):
    path = tmp_path / "r"
    shutil.copytree(full[0], path)
    table = pq.read_table(path / "samples.parquet")
    pq.write_table(table.slice(0, table.num_rows - 3), path / "samples.parquet")
    assert RunDir(path).finished_problem() == (f"samples.parquet holds {table.num_rows - 3} reads, results.json "
                                               f"counts {table.num_rows}")


def test_doctor_names_each_problem_in_one_line_and_repair_makes_the_rerun_whole(tmp_path, full, capsys):
    import sqlite3

    from ffbench.backends.transport import Store

    rd = _interrupted(tmp_path / "r", after=4)
    files = rd.shard_files()
    os.truncate(files[1][2], 200)
    shutil.copyfile(files[0][2], files[2][2])
    (files[3][2].parent / ".000000040.parquet.partial-99").write_bytes(b"half")
    Store(rd.request_cache).put_many({"good": {"choices": []}, "bad": {"x": 1}})
    with sqlite3.connect(rd.request_cache) as db:
        db.execute("UPDATE responses SET body = '{\"choi' WHERE key = 'bad'")
    code, out, err = run_main(capsys, "doctor", rd.path)
    lines = out.strip().splitlines()
    assert code == 1 and err == ""
    assert len(lines) == 5 and lines[1].startswith(f"{files[1][2]}: unreadable (")
    assert [lines[0], lines[2], lines[3]] == [
        f"{files[3][2].parent / '.000000040.parquet.partial-99'}: a partial file left by a killed process",
        f"{files[2][2]}: holds the shard of {files[0][0]}/0",
        f"{rd.request_cache}: 1 cached responses are not JSON objects"]
    assert lines[-1].startswith(f"{rd.path}: 4 problems; 'ffbench doctor {rd.path} --repair' removes")
    code, out, _ = run_main(capsys, "doctor", rd.path, "--repair")
    assert code == 0 and out.count("; removed: ") == 4
    code, out, _ = run_main(capsys, "doctor", rd.path)
    assert code == 0 and out.strip() == f"{rd.path}: run directory ok"
    again = Interrupting()
    res = _run(rd.path, again)
    assert again.texts == 40 + 20  # the four shards never scored, and the two removed
    _same_as(full, res, rd.path)
    # a finished run with a truncated samples.parquet: named, and removed with results.json
    os.truncate(rd.samples, 300)
    code, out, _ = run_main(capsys, "doctor", rd.path)
    assert code == 1 and out.splitlines()[0].startswith(f"{rd.results}: samples.parquet is damaged (")
    run_main(capsys, "doctor", rd.path, "--repair")
    assert not rd.results.exists() and not rd.samples.exists()
    again = Interrupting()
    _same_as(full, _run(rd.path, again), rd.path)
    assert again.texts == 80


def test_doctor_refuses_a_directory_that_is_not_ours(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = run_main(capsys, "doctor", tmp_path)
    assert code == 2 and "is neither a run directory" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_doctor_checks_a_hunt_directory(tmp_path, capsys):
    hunt = tmp_path / "h"
    (hunt / "rounds").mkdir(parents=True)
    (hunt / "state.json").write_text('{"config": {}, "rounds": 2}')
    (hunt / "hunt.json").write_text('{"distinct": 1')  # truncated
    pq.write_table(pa.table({"text": ["w0r0"]}), hunt / "glitches.parquet")
    pq.write_table(pa.table({"text": ["w1r1"]}), hunt / "rounds" / "000003.parquet")
    os.truncate(hunt / "rounds" / "000003.parquet", 40)
    code, out, _ = run_main(capsys, "doctor", hunt)
    lines = out.splitlines()
    assert code == 1 and len(lines) == 3 and lines[0].startswith(f"{hunt / 'hunt.json'}: damaged (")
    assert lines[1].startswith(f"{hunt / 'rounds' / '000003.parquet'}: damaged (")
    code, out, _ = run_main(capsys, "doctor", hunt, "--repair")
    kept = sorted(p.name for p in hunt.rglob("*") if p.is_file() and p.name != ".lock")
    assert code == 0 and kept == ["glitches.parquet", "state.json"]
    (hunt / "state.json").write_text('{"config": ')
    run_main(capsys, "doctor", hunt, "--repair")
    assert [p.name for p in hunt.iterdir() if p.name != ".lock"] == []  # a damaged state: the hunt starts over
