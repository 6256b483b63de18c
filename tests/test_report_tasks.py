"""The report of runs beyond ffl (``--task``): each task's shipped references beside its runs, and the
table of where each architecture breaks, whose numbers are the runs' own counts."""

from __future__ import annotations

import html as htmllib
import json
import re

import pandas as pd
import pytest

from ffbench import runs, tasks
from ffbench.resources import BASELINES_DIR
from tests.conftest import HAS_TORCH, cli_exit

FFL_REFS = ("ffbench/lstm-ref (reference)", "ffbench/transformer-ref (reference)")


def _section(page: str, sid: str) -> str:
    start = page.index(f'<section id="{sid}">')
    return page[start:page.index("</section>", start)]


def _rows(page: str) -> dict[str, list[str]]:
    """The breaks table's rows: model name -> its cells as text (tags removed)."""
    body = _section(page, "breaks")
    out = {}
    for row in re.findall(r"<tr><td>(.*?)</tr>", body, re.DOTALL):
        cells = [htmllib.unescape(re.sub(r"<[^>]+>", " ", c)).split() for c in re.split(r"</td>", row)]
        name = " ".join(cells[0])
        out[name] = [" ".join(c) for c in cells[1:] if c]
    return out


def _right(cell: str) -> tuple[int, int]:
    correct, reads = re.search(r"([\d,]+) / ([\d,]+) right", cell).groups()
    return int(correct.replace(",", "")), int(reads.replace(",", ""))


def _shipped(name: str) -> dict:
    return json.loads((BASELINES_DIR / name / "run" / "results.json").read_text())


def test_every_task_has_its_references_and_they_are_of_that_task():
    assert set(runs.TASK_REFERENCES) == set(tasks.TASKS)
    assert runs.TASK_REFERENCES["ffl"] == runs.DEFAULT_REFERENCES
    for task, names in runs.TASK_REFERENCES.items():
        for name in names:
            assert name in runs.shipped_references()
            assert {c["variant"] for c in _shipped(name)["results"]} <= ({""} if task == "ffl" else {f"task={task}"})
    assert runs.default_references([]) == list(runs.DEFAULT_REFERENCES)  # references or sweeps only: as before
    assert runs.default_references(["registers", "ffl", "registers"]) == [
        *runs.TASK_REFERENCES["registers"], *runs.DEFAULT_REFERENCES]


@pytest.fixture(scope="module")
def undo_report(tmp_path_factory):
    if not HAS_TORCH:
        pytest.skip("scoring the shipped undo checkpoint needs torch")
    tmp = tmp_path_factory.mktemp("undo")
    run = tmp / "run"
    assert cli_exit(["run", "--model", "ffbench/undo-lstm", "--task", "undo", "--suite", "in_dist,retraction",
                     "--length", "32", "--num", "12", "--no-record", "--no-progress", "--output-dir", run]) == 0
    assert cli_exit(["report", run, "--out", tmp / "report.html", "--attention", "0"]) == 0
    return run, (tmp / "report.html").read_text(encoding="utf-8")


def test_an_undo_run_is_drawn_beside_the_undo_references_only(undo_report):
    _, page = undo_report
    header = page[:page.index("<main>")]
    for name in runs.TASK_REFERENCES["undo"]:
        assert f"ffbench/{name} (reference)" in header
    assert not any(ref in page for ref in FFL_REFS)  # their cells never compare with undo cells
    assert "41.10%" in _section(page, "breaks")


def test_the_breaks_table_counts_are_the_runs_counts(undo_report):
    run, page = undo_report
    rows = _rows(page)
    mine = json.loads((run / "results.json").read_text())["results"]
    # the user's run: T = 32, columns of its own; the references' at T = 128
    by_model = {"ffbench/undo-lstm": mine, **{f"ffbench/{n} (reference)": _shipped(n)["results"]
                                             for n in runs.TASK_REFERENCES["undo"]}}
    head = re.findall(r'<th scope="col"[^>]*>(.*?)</th>', _section(page, "breaks"))
    columns = [h for h in head if h.startswith(("in_dist", "retraction"))]
    assert columns == ["in_dist T=32", "in_dist T=128", "retraction T=32", "retraction T=128"]
    for model, cells in by_model.items():
        shown = rows[model]
        for cell in cells:
            col = columns.index(f"{cell['suite']} T={cell['length']}")
            assert _right(shown[col]) == (cell["reads"] - cell["errors"], cell["reads"]), (model, cell["suite"])
        assert sum(s == "not run" for s in shown[:4]) == 2
    # agreement with the toggle on the retraction chains, counted again from the user's samples
    samples = pd.read_parquet(run / "samples.parquet")
    chains = samples[samples.suite == "retraction"]
    assert (chains.toggle != chains.target).all()  # the toggle is wrong on every chain
    agree = int((chains.prediction == chains.toggle).sum())
    assert re.search(rf"\b{agree} / {len(chains)}$", rows["ffbench/undo-lstm"][4]), rows["ffbench/undo-lstm"][4]
    h = next(c for c in _shipped("undo-ssm")["results"] if c["suite"] == "retraction")["heuristic"]
    assert rows["ffbench/undo-ssm (reference)"][4].endswith(f"{h['errors_there']} / 160")  # binary: errs = agrees


def test_the_by_parameter_tables_are_the_runs_counts_per_depth(undo_report):
    """Under the breaks table, each structured column by its parameter (undo: the chain's depth k): per
    model wrong / reads as results.json's ``by_parameter`` holds them."""
    run, page = undo_report
    body = _section(page, "breaks")
    title = "retraction T=32: wrong / reads by k"
    assert title in body
    table = body[body.index(title):]
    table = table[:table.index("</table>")]
    head = re.findall(r'<th scope="col">(.*?)</th>', table)[1:]
    (cell,) = [c for c in json.loads((run / "results.json").read_text())["results"] if c["suite"] == "retraction"]
    assert head == [f"k={r['k']}" for r in cell["by_parameter"]]
    row = re.search(r"<tr class=param><td>.*?ffbench/undo-lstm</td>(.*?)</tr>", table, re.DOTALL).group(1)
    shown = [htmllib.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in row.split("</td>") if c.strip()]
    assert shown == [f"{r['errors']} / {r['reads']}" for r in cell["by_parameter"]]


def test_report_task_registers_needs_no_input_and_no_network(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "registers.html"
    assert cli_exit(["report", "--task", "registers", "--out", out, "--attention", "0"]) == 0
    page = out.read_text(encoding="utf-8")
    rows = _rows(page)
    assert [r for r in rows if "reference" in r] == [f"ffbench/{n} (reference)" for n in runs.TASK_REFERENCES["registers"]]
    assert not any(ref in page for ref in FFL_REFS) and "undo-lstm" not in page
    for name in runs.TASK_REFERENCES["registers"]:
        cells = _shipped(name)["results"]
        shown = rows[f"ffbench/{name} (reference)"]
        assert [_right(s) for s in shown[:2]] == [(c["reads"] - c["errors"], c["reads"]) for c in cells]
        stale = next(c for c in cells if c["suite"] == "stale")["heuristic"]
        agree = round(stale["agrees_there"] * stale["reads_where_wrong"])
        assert shown[2].endswith(f"{agree} / {stale['reads_where_wrong']}")
    assert "K=2 T=192" in _section(page, "breaks")


def test_report_task_ffl_is_the_default_page(tmp_path):
    def body(args):
        out = tmp_path / f"{len(args)}.html"
        assert cli_exit(["report", *args, "--out", out, "--attention", "0", "--failing", "0"]) == 0
        return re.sub(r"ffbench [^,<]+, \d{4}-\d\d-\d\d \d\d:\d\d UTC", "", out.read_text(encoding="utf-8"))

    plain, ffl = body([]), body(["--task", "ffl"])
    assert plain == ffl and all(ref in plain for ref in FFL_REFS) and 'id="breaks"' not in plain


@pytest.mark.parametrize("args, fragment", [
    (["--task", "nope"], "unknown task 'nope'"),
    (["--task", "undo", "--no-refs"], "drop --no-refs"),
    (["--task", "undo", "--ref", "lstm-ref"], "drop --ref"),
])
def test_a_bad_task_is_one_line_before_any_work(args, fragment, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert cli_exit(["report", *args, "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ffbench: error: ") and "\n" not in err and fragment in err, err
    assert not out.exists()


def test_failing_reads_of_registers_are_drawn_by_instruction(tmp_path):
    """A registers instruction is three characters: the drawn read names its register, its highlighted
    last write is to that register and carries the read's true bit (the read's own data)."""
    out = tmp_path / "registers.html"
    assert cli_exit(["report", "--task", "registers", "--out", out, "--attention", "0", "--failing", "3"]) == 0
    reads = re.findall(r'<code class="ctx">(.*?)</code>', _section(out.read_text(encoding="utf-8"), "failures"), re.DOTALL)
    assert len(reads) == 3 * 2 * 3  # 3 per cell, 2 cells per reference, 3 references
    for ctx in reads:
        (write,) = re.findall(r'class="tok w last"[^>]*>(w[a-h][01])<', ctx)
        ((reg, said, bit),) = re.findall(r'class="tok r this"[^>]*>r([a-h])<s>([01?])</s>([01])<', ctx)
        assert write == f"w{reg}{bit}" and said != bit, ctx
        assert all(len(tok) == 3 for tok in re.findall(r'class="tok [wri]"[^>]*>([^<]*)<', ctx))
