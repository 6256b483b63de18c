"""The HTML report: well-formed, self-contained, escaped, and clean in a real browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import HAS_TORCH, needs_torch
from tests.rundirs import cell, write_failing_run, write_run

EVIL = '<img src=x onerror="alert(1)">'


class Collect(HTMLParser):
    """Checks nesting and gathers every tag with its attributes."""

    VOID = {"meta", "img", "br", "hr", "input", "link", "source", "wbr"}
    SVG_LEAVES = {"line", "circle", "path", "polyline", "rect"}

    def __init__(self):
        super().__init__()
        self.stack, self.tags, self.problems = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
            return
        self.stack.pop()


def _report(inputs, out: Path, *extra) -> str:
    res = subprocess.run([sys.executable, "-m", "ffbench", "report", *map(str, inputs), "--out", str(out), *extra],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return out.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def evil_report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    run = write_failing_run(tmp / "run", f"hf/{EVIL}", output=f"the light is {EVIL}")
    other = write_run(tmp / "other", "hf/org/model", [cell("sparse", 0, 100_000), cell("dense", 12, 30_000),
                                                      cell("in_dist", 3, 7_000, length=256)])
    html = _report([run, other], tmp / "report.html", "--no-refs")
    return html, tmp / "report.html"


def test_report_is_well_formed_html(evil_report):
    html, _ = evil_report
    parser = Collect()
    parser.feed(html)
    parser.close()
    assert parser.problems == [] and parser.stack == []
    assert html.startswith("<!DOCTYPE html>")
    ids = [a["id"] for _, a in parser.tags if "id" in a]
    for section in ("glance", "summary", "sparse-dense", "length", "distance", "failures", "provenance"):
        assert section in ids


def test_no_remote_resource(evil_report):
    html, _ = evil_report
    parser = Collect()
    parser.feed(html)
    for tag, attrs in parser.tags:
        for name in ("src", "href"):
            if name in attrs:
                assert attrs[name].startswith(("#", "data:")), (tag, name, attrs[name])
        assert tag not in ("link", "iframe", "object", "embed")
    assert not re.search(r"url\(|@import|https?://(?!www\.w3\.org/2000/svg)", html)


def test_model_name_and_output_are_escaped(evil_report):
    html, _ = evil_report
    assert EVIL not in html
    assert "onerror" not in re.sub(r"&[a-z]+;|&#\d+;", "", "".join(re.findall(r"<[^>]*>", html)))
    shown = r"&lt;img src=x onerror=(&quot;|&#34;)alert\(1\)(&quot;|&#34;)&gt;"  # as text (either entity)
    assert re.search("hf/" + shown, html)  # the name
    assert re.search("the light is " + shown, html)  # the model's output
    parser = Collect()
    parser.feed(html)
    assert not any(name.startswith("on") for _, attrs in parser.tags for name in attrs)
    assert not any(tag == "img" for tag, _ in parser.tags)  # no native model here: any <img> is the injection


def test_report_content(evil_report):
    html, _ = evil_report
    # every crafted cell is in the summary, with the zero-error bound worded as a bound
    summary = html[html.index('id="summary"'):html.index('id="sparse-dense"')]
    assert summary.count('<tr><td><span class="swatch"') == 4
    glance = html[html.index('id="glance"'):html.index('id="summary"')]
    # hf/org/model's worst cell: in_dist 3 / 7,000 = 4.3e-4 is above dense 12 / 30,000 = 4.0e-4
    assert "in_dist T=256 p=0.8 symbolic choice</td><td>3 errors in 7,000 reads" in glance
    assert "&lt; 3.0e-05 (one-sided)" in html  # 0 errors in 100,000 reads
    # the failing reads show their regenerated context with the read and the last write marked
    assert html.count('class="tok r this"') == 5 and html.count('class="tok w last"') == 5


def test_references_are_included_by_default(tmp_path):
    run = write_run(tmp_path / "run", "hf/org/model", [cell("in_dist", 2, 7_000)])
    html = _report([run], tmp_path / "r.html", "--attention", "0")
    assert "ffbench/lstm-ref (reference)" in html and "ffbench/transformer-ref (reference)" in html
    assert html.index("hf/org/model") < html.index("ffbench/lstm-ref (reference)")  # the user's model first


def test_sweep_table_draws_replicates(tmp_path):
    table = Path(__file__).resolve().parent.parent / "benchmarks" / "r2-lstm-sweep-table.csv"
    html = _report([table], tmp_path / "r.html", "--no-refs")
    assert "Replicates" in html
    assert html.count("<b>20 of 20</b> replicates with zero errors") == 2  # in_dist and dense
    assert "sparse: <b>14 of 20</b> replicates with zero errors (7,091,400 reads in all)" in html


def test_bad_input_is_one_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "ffbench", "report", str(tmp_path / "nope"), "--out",
                          str(tmp_path / "r.html")], capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "no run" in res.stderr
    assert not (tmp_path / "r.html").exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _chromium(page: Path, shot: Path) -> str:
    res = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          "--enable-logging=stderr", "--v=0", f"--screenshot={shot}", "--window-size=1400,3000",
                          page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    return res.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install chromium)")
def test_real_browser_renders_without_console_errors(evil_report, tmp_path):
    _, page = evil_report
    log = _chromium(page, tmp_path / "report.png")
    console = [line for line in log.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    png = (tmp_path / "report.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000  # a real page was painted, not a blank
    # the checker itself catches a page error
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>undefinedFunction();</script></body></html>")
    assert any("undefinedFunction" in line for line in _chromium(bad, tmp_path / "bad.png").splitlines())


@needs_torch
def test_attention_maps_of_native_failures(tmp_path):
    import base64
    import struct

    html = _report([], tmp_path / "r.html", "--ref", "transformer-ref", "--attention", "2")
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(uris) == 2
    for uri in uris:
        png = base64.b64decode(uri)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        width, height = struct.unpack(">II", png[16:24])
        assert height == 2 * 4  # transformer-ref: 2 layers x 4 heads, one row each
        assert 2 <= width <= 128  # keys up to the read's query position
    assert html.count("most attention on the last write") == 2


def test_history_across_revisions(tmp_path):
    reg = tmp_path / "reg.sqlite"
    runs = []
    for k, errors in enumerate((3, 40)):
        runs.append(write_run(tmp_path / f"v{k}", "hf/org/model", [cell("sparse", errors, 100_000)],
                              created=f"2026-0{k + 1}-01T00:00:00+00:00"))
        subprocess.run([sys.executable, "-m", "ffbench", "record", str(runs[-1]), "--revision", f"v{k}", "--registry",
                        str(reg)], check=True, capture_output=True)
    html = _report([runs[-1]], tmp_path / "r.html", "--no-refs", "--history", "--registry", str(reg))
    section = html[html.index('id="history"'):html.index('id="failures"')]
    assert ">v0</text>" in section and ">v1</text>" in section  # revisions on the x axis
    assert "v0 (2026-01-01T00:00:00+00:00): 3 errors in 100,000 reads" in section
    assert "v1 (2026-02-01T00:00:00+00:00): 40 errors in 100,000 reads" in section


# ----------------------------------------------------------------------------- templates
REPO = Path(__file__).resolve().parent.parent


def test_escaping_is_structural_one_place_makes_markup():
    """Templates never switch escaping off; the only markup made in Python is the svg filter's."""
    templates = [p for p in (REPO / "reports").rglob("*.html") if p.name != "baselines.html"]
    assert {p.relative_to(REPO / "reports").as_posix() for p in templates} >= {"report.html", "macros.html",
                                                                               "sections/stress.html"}
    for path in templates:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\|\s*safe\b|autoescape\s+false|Markup", text), path
    sources = {p.name: p.read_text(encoding="utf-8") for p in (REPO / "ffbench" / "report").glob("*.py")}
    makers = {name: len(re.findall(r"Markup\(", text)) for name, text in sources.items()}
    assert {k: v for k, v in makers.items() if v} == {"templates.py": 1}
    from ffbench.report.templates import environment

    assert environment().autoescape is True


def test_stylesheet_and_script_are_inlined_verbatim(evil_report):
    html, _ = evil_report
    for name in ("report.css", "report.js"):
        text = (REPO / "reports" / name).read_text(encoding="utf-8")
        assert not re.search(r"\{[{%#]", text), f"{name} holds template syntax"
        assert text.strip() in html


def test_heatmap_colours():
    from ffbench.report.svg import PERFECT, accuracy_color

    assert accuracy_color(0, 32) == PERFECT and accuracy_color(0, 1) == PERFECT
    assert accuracy_color(1, 10_000) != PERFECT  # one wrong read never looks clean
    darkness = [sum(int(accuracy_color(e, 32)[i:i + 2], 16) for i in (1, 3, 5)) for e in range(1, 33)]
    assert darkness == sorted(darkness, reverse=True) and darkness[0] > darkness[-1]  # more errors, darker
    assert accuracy_color(16, 32) == "#d73027" and accuracy_color(32, 32) == "#67001f"


# ----------------------------------------------------------------------------- stress heatmaps
def write_stress_run(path: Path, model: str, lengths: tuple[int, ...], breaks_at: int, num: int = 2) -> Path:
    """A run of the stress grid by a synthetic model whose break point is known: right on every read
    except the final read of distractor runs with k >= breaks_at, which it always gets wrong."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ffbench import language, runner, stress
    from ffbench.datafiles import content_sha256
    from ffbench.schema import CellResult
    from ffbench.sources import stress_source

    cells, tables = [], []
    for length in lengths:
        arr, columns = stress.sample_suite(length, stress.STRESS_SEED, num)
        reads = language.extract_reads(arr)
        n = len(reads)
        per_read = {name: [columns[name][i] for i in reads.seq_index] for name in stress.COLUMNS}
        final = np.r_[reads.seq_index[1:] != reads.seq_index[:-1], True]
        k = np.array([-1 if v is None else v for v in per_read["k"]])
        wrong = final & (np.array(per_read["family"]) == "distractor_run") & (k >= breaks_at)
        entry = dict(cell("stress", int(wrong.sum()), n, length=length), num_sequences=arr.shape[0],
                     source=stress_source(length, num).as_dict(), data_sha256=content_sha256(arr))
        table = pa.table({
            "cell": [CellResult.from_dict(entry).id] * n, "suite": ["stress"] * n,
            "length": np.full(n, length, np.int32), "p_ignore": np.full(n, np.nan), "render": ["symbolic"] * n,
            "scoring": ["choice"] * n, "seq_index": reads.seq_index, "read_index": reads.read_index,
            "position": reads.position, "target": reads.target,
            "prediction": np.where(wrong, 1 - reads.target, reads.target), "correct": ~wrong,
            "invalid": np.zeros(n, bool), "truncated": np.zeros(n, bool),
            "write_distance": reads.write_distance.astype(np.int64),
            "evidence_distance": reads.evidence_distance.astype(np.int64), "margin": np.where(wrong, -2.5, 2.5),
            "per_read": np.zeros(n, bool), "output": pa.array([None] * n, pa.string()),
            **stress.arrow_columns(per_read)})
        by_point, tolerances = runner.stress_breakdown(table)
        cells.append({**entry, "by_point": by_point, "tolerances": tolerances})
        tables.append(table)
    write_run(path, model, cells)
    pq.write_table(pa.concat_tables(tables), path / "samples.parquet")
    return path


STRESSED = "hf/org/<b>stressed</b>"


@pytest.fixture(scope="module")
def stress_report(tmp_path_factory):
    """The user's stress run (T = 32, 64; breaks at k = 8) beside a shipped reference whose stress run
    (T = 32, 64, 128; breaks at k = 16) sits where the shipped runs live, ``baselines/lstm-ref/stress``."""
    from ffbench import runs
    from ffbench.report import build_report
    from ffbench.resources import BASELINES_DIR

    tmp = tmp_path_factory.mktemp("stress")
    user = write_stress_run(tmp / "user", STRESSED, (32, 64), breaks_at=8)
    baselines = tmp / "baselines"
    (baselines / "lstm-ref").mkdir(parents=True)
    (baselines / "lstm-ref" / "run").symlink_to(BASELINES_DIR / "lstm-ref" / "run")
    write_stress_run(baselines / "lstm-ref" / "stress", "ffbench/lstm-ref", (32, 64, 128), breaks_at=16)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runs, "BASELINES_DIR", baselines)
        html = build_report([str(user)], ["lstm-ref"], attention_reads=0)
    (tmp / "report.html").write_text(html, encoding="utf-8")
    return html, tmp


def _section(html: str, sid: str) -> str:
    start = html.index(f'<section id="{sid}">')
    return html[start:html.index("</section>", start)]


def test_stress_heatmaps_per_family_with_the_reference_beside(stress_report):
    from ffbench import stress

    html, _ = stress_report
    parser = Collect()
    parser.feed(html)
    assert parser.problems == [] and parser.stack == []
    section = _section(html, "stress")
    assert [m for m in re.findall(r"<h3>(\w+) ", section)] == list(stress.FAMILIES)
    rows = {name: len({tuple(v for k, v in p.items() if k != f.axis) for p in f.points(64)})
            for name, f in stress.FAMILIES.items()}  # one row per setting of the other parameters
    assert rows == {"distractor_run": 4, "decoy_writes": 2, "write_distance": 1, "dense_interference": 1,
                    "run_blocks": 1, "reads_in_run": 1, "decoy_run": 2}
    assert section.count('<svg class="heat"') == 2 * sum(rows.values())  # the user's panel and the reference's
    measured = sum(len(stress.grid(t)) for t in (32, 64)) + sum(len(stress.grid(t)) for t in (32, 64, 128))
    assert len(re.findall(r'<rect x="\d+" y="\d+" width="44" height="18" fill=', section)) == measured
    # a dark line on the first failure of each distractor row at each length where it fails: the user at
    # T = 32 and 64, the reference at 64 and 128 (k = 16 is beyond the grid at T = 32, whose largest k is 14)
    assert max(p.params["k"] for p in stress.grid(32) if p.family == "distractor_run") == 14
    assert section.count('<line class="tol"') == 4 * 2 + 4 * 2
    assert section.count(">0</text>") == sum(  # the all-wrong cells, labelled 0 %
        1 for t, b in [(32, 8), (64, 8), (32, 16), (64, 16), (128, 16)] for p in stress.grid(t)
        if p.family == "distractor_run" and p.params["k"] >= b)
    assert "<title>k=8, T=32: 2/2 wrong</title>" in section and "<title>k=4, T=32: 0/2 wrong</title>" in section
    # the model's name is text everywhere: in the panel captions and inside the SVG's own title
    assert "<b>stressed</b>" not in html and section.count("&lt;b&gt;stressed&lt;/b&gt;") >= 2 * 12


def test_stress_tolerance_lines_come_from_the_results(stress_report):
    html, tmp = stress_report
    section = _section(html, "stress")
    results = json.loads((tmp / "user" / "results.json").read_text())["results"]
    lines = 0
    for c in results:
        for t in c["tolerances"]:
            shown = t["line"].split(": ", 1)[1].removeprefix(f"at T = {c['length']}, ")  # the row shows T
            assert f"T={c['length']}: {escape(shown, quote=False)}</li>" in section
            lines += 1
    assert lines == 2 * 12
    assert ("T=32: reads at position 31 (late): right on every read up to k = 4 (0 errors in 2 reads, rate &lt; 7.8e-01 at 95%), first failure "
            "at k = 8 (2 of 2 wrong, 95% CI [0.16, 1]); errors at all 2 larger values") in section
    refs = section[section.index("tolerances of the references"):]
    assert "ffbench/lstm-ref (reference), T=128: reads at position 127 (late): right on every read up to k = 12" in refs


def test_stress_failing_reads_are_the_first_failures(stress_report):
    html, _ = stress_report
    section = _section(html, "stress")
    # one per distractor row and length where it failed: the user 4 x 2 (T = 32, 64), the reference 4 x 2 (64, 128)
    assert section.count('class="tok r this"') == 4 * 2 + 4 * 2
    points = re.findall(r"<td class=cell>(density=[^<]+)</td>", section)
    assert len(points) == 16 and all(p.endswith(("k=8", "k=16")) for p in points)
    assert "<td class=cell>density=1.0, write_at=start, k=8</td>" in section
    # at T = 128 the reference's run is elided, and the gap says how many of its ignores carry the other bit
    assert re.search(r"… \d+ instructions \(0 reads, no write, \d+ carrying [01]\) …", section)
    failures = _section(html, "failures")
    assert "No failing read in these runs outside the stress grid" in failures
    # at a glance, the stress grid is counted apart: its cells would be every model's worst
    from ffbench import stress

    glance = _section(html, "glance")
    broken = sum(1 for t in (32, 64) for p in stress.grid(t) if p.family == "distractor_run" and p.params["k"] >= 8)
    total = sum(len(stress.grid(t)) for t in (32, 64))
    assert f"; {total - broken} of {total} points without an error</td>" in glance
    assert "<th>stress grid</th>" in glance
    reference = glance[glance.index("ffbench/lstm-ref (reference)"):]
    assert "stress T=" not in reference and "in_dist T=" in reference  # the worst i.i.d. cell, not a stress one
    assert 'class="tok r this"' not in failures


# ----------------------------------------------------------------------------- truncated replies
def test_truncated_replies_have_a_column_a_note_and_a_tag(tmp_path):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    run = write_failing_run(tmp_path / "run", "hf/org/chat", output="Let me think step by step about the")
    table = pq.read_table(run / "samples.parquet")
    failing = np.flatnonzero(~table.column("correct").to_numpy())
    cut = np.zeros(table.num_rows, bool)
    cut[failing[:3]] = True  # three of the eight failing replies hit the token budget
    table = table.set_column(table.column_names.index("invalid"), "invalid", pc.or_(table.column("invalid"), cut))
    pq.write_table(table.append_column("truncated", pa_array(cut)), run / "samples.parquet")
    results = json.loads((run / "results.json").read_text())
    results["results"][0].update(truncated=3, invalid=3)
    (run / "results.json").write_text(json.dumps(results))
    reads = results["results"][0]["reads"]

    html = _report([run], tmp_path / "r.html", "--no-refs")
    summary = _section(html, "summary")
    assert '<th scope="col">truncated</th>' in summary
    assert '<td class="num bad" data-v="3">3</td>' in summary
    assert (f"<b>hf/org/chat</b>: 3 of {reads} replies were cut by the token budget before they named an answer "
            "(in_dist T=64 p=0.8 symbolic greedy)") in summary
    failures = _section(html, "failures")
    assert failures.count("model said: <code>Let me think step by step about the</code>") == 5  # 5 per cell
    assert failures.count("cut by the token budget before an answer") == 3
    # choice-scored runs have no replies to cut: no column
    plain = write_run(tmp_path / "plain", "hf/org/base", [cell("sparse", 1, 1000)])
    assert '<th scope="col">truncated</th>' not in _section(_report([plain], tmp_path / "p.html", "--no-refs"),
                                                            "summary")


def pa_array(values):
    import pyarrow as pa

    return pa.array(values)


# ----------------------------------------------------------------------------- hunts
def _hunt_cli(*args) -> None:
    res = subprocess.run([sys.executable, "-m", "ffbench", "hunt", *map(str, args), "--no-progress"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.fixture(scope="module")
def hunt_report(tmp_path_factory):
    """Two real hunts of transformer-ref at T = 64: a bandit search (its family yields) compared with the shipped in_dist run at
    that length, and an importance-sampling estimate under FFL(0.1); and the report of both."""
    from ffbench.resources import BASELINES_DIR

    if not HAS_TORCH:
        pytest.skip("torch and transformers not installed")
    tmp = tmp_path_factory.mktemp("hunts")
    _hunt_cli("--model", "ffbench/transformer-ref", "--budget", 500, "--length", 64, "--search", "bandit", "--iid",
              BASELINES_DIR / "transformer-ref" / "lengths", "--out", tmp / "search")
    _hunt_cli("--model", "ffbench/transformer-ref", "--budget", 1000, "--length", 64, "--estimate", "FFL(0.1)",
              "--out", tmp / "estimate")
    html = _report([tmp / "search", tmp / "estimate"], tmp / "report.html", "--no-refs", "--failing", "3")
    return html, tmp


def _glitches(path: Path):
    import pandas as pd

    return pd.read_parquet(path / "glitches.parquet")


def _hunt_blocks(html: str) -> list[str]:
    section = _section(html, "hunt")
    starts = [m.start() for m in re.finditer(r'<div class=hunt>', section)]
    return [section[a:b] for a, b in zip(starts, starts[1:] + [len(section)])]


GLITCH_ROW = re.compile(r"<tr><td class=num>(\d+)</td>(?:<td class=cell>([^<]*)</td>)?<td class=point>([^<]*)"
                        r"<div class=origin>([^<]*)</div></td><td class=num>(\d+)</td><td class=num>(\d+) of (\d+)"
                        r"</td><td class=num>(\d+)</td><td class=num>([01]) → ([01])</td><td class=num>([^<]*)</td>")


def test_hunt_section_counts_come_from_the_hunt_files(hunt_report):
    html, tmp = hunt_report
    parser = Collect()
    parser.feed(html)
    assert parser.problems == [] and parser.stack == []
    assert [a["id"] for t, a in parser.tags if t == "section"] == ["hunt"]  # --no-refs, no runs: only the hunts
    assert all(a[k].startswith(("#", "data:")) for _, a in parser.tags for k in ("src", "href") if k in a)
    search, estimate = _hunt_blocks(html)
    s = json.loads((tmp / "search" / "hunt.json").read_text())
    spent, g = s["spent"], s["glitches"]
    scored = spent["reads"] + spent["rescored_reads"]
    assert (f"<dd>{scored:,} scored: {spent['reads']:,} searching + {spent['rescored_reads']:,} re-scoring glitches "
            f"to confirm them ({spent['rounds']} rounds)</dd>") in search
    assert f"<dd>{g['distinct']:,} distinct glitching sequences, {g['failing_reads']:,} wrong reads</dd>" in search
    assert g["distinct"] == len(_glitches(tmp / "search")) > 0
    # one yield row per family, with hunt.json's counts and exact interval
    table = search[search.index("<table class=yields>"):]
    table = table[:table.index("</table>")]
    assert table.count("<tr><td>") == len(s["families"]) > 1
    for f in s["families"]:
        lo, hi = f["ci95"]
        rate, ci = ((f"{f['glitches'] / f['reads']:.3g}", f"[{lo:.2g}, {hi:.2g}]") if f["glitches"] else
                    ("0", f"&lt; {1 - 0.05 ** (1 / f['reads']):.1e} (one-sided)"))
        assert (f"<tr><td>{f['family']}</td><td class=num>{f['points']:,}</td><td class=num>{f['sequences']:,}</td>"
                f"<td class=num>{f['reads']:,}</td><td class=num>{f['wrong_reads']:,}</td>"
                f"<td class=num>{f['glitches']:,}</td><td class=num>{rate}</td><td class=num>{ci}</td>") in table
    # beside the shipped in_dist run at T = 64 (no error in it: the hunt's yield is a lower bound)
    (row,) = s["iid"]["suites"]
    assert row["suite"] == "in_dist" and row["errors"] == 0
    assert (f"<tr><td>in_dist</td><td class=num>0 errors in {row['reads']:,} reads</td><td class=num>0</td>"
            f"<td class=num>&lt; {1 - 0.05 ** (1 / row['reads']):.1e} (one-sided)</td>") in search
    assert f"≥ {row['yield_ratio_at_least']:.3g}×" in search
    # the chart: one point per family and one for the suite
    assert search.count('<svg class="chart"') == 1
    chart = search[search.index('<svg class="chart"'):]
    chart = chart[:chart.index("</svg>")]
    zero = sum(1 for f in s["families"] if not f["glitches"]) + 1
    assert (chart.count('<circle class="pt"'), chart.count('<path class="bound"')) == (len(s["families"]) + 1 - zero,
                                                                                      zero)


def test_hunt_glitches_are_drawn_like_failing_reads(hunt_report):
    html, tmp = hunt_report
    search, _ = _hunt_blocks(html)
    s = json.loads((tmp / "search" / "hunt.json").read_text())
    glitches = _glitches(tmp / "search")
    shortest = s["glitches"]["shortest"]
    short_row = int(np.flatnonzero(glitches.text == shortest["text"])[0])
    # the shortest glitch, then up to 3 more per family (the shortest is not repeated)
    per_family = glitches.groupby("family").size().to_dict()
    shown = {f: min(3, n - (f == shortest["family"])) for f, n in per_family.items()}
    assert search.count('class="tok r this"') == 1 + sum(shown.values())
    assert search.count('class="tok w last"') == 1 + sum(shown.values())
    rows = GLITCH_ROW.findall(search)
    assert len(rows) == 1 + sum(shown.values())
    assert rows[0][0] == str(short_row) and rows[0][1] == shortest["family"]
    assert f"<code class=ctx>{shortest['prefix']}</code>" in search
    assert f"its failing prefix ({len(shortest['prefix'])} characters)" in search
    # every row agrees with glitches.parquet: its earliest failing read, write distance, margins; the
    # target is the value the last write holds, and the shown answer is the other one
    for row, _, point, origin, length, failing, reads, distance, target, predicted, margin in rows:
        g = glitches.iloc[int(row)]
        j = int(np.argmin(g.failing_positions))
        pos = int(g.failing_positions[j])
        assert int(length) == len(g.text) == 64 and origin.startswith(g.origin)
        assert (int(failing), int(reads)) == (len(g.failing_positions), g.reads)
        assert int(distance) == g.failing_write_distance[j]
        assert target == g.text[pos] == g.text[:pos][::-1][g.text[:pos][::-1].index("w") - 1] and predicted != target
        assert margin == f"{g.margins[j]:+.3f} ({g.rescored_margins[j]:+.3f})"
        assert point == g.arm[g.arm.index("(") + 1:-1].replace(",", ", ")
    families = re.findall(r'<details class=fails open><summary><h4>(\w+)<span class=hint> (\d+) of its (\d+) glitch',
                          search)
    assert {f: (int(k), int(n)) for f, k, n in families} == {f: (shown[f], per_family[f]) for f in per_family}


def test_hunt_estimate_beside_the_iid_interval_of_as_many_reads(hunt_report):
    from ffbench.report.hunts import expected_interval

    html, tmp = hunt_report
    _, block = _hunt_blocks(html)
    s = json.loads((tmp / "estimate" / "hunt.json").read_text())
    est, res = s["estimate"], s["estimate"]["result"]
    same = est["iid_same_reads"]
    assert same["reads"] == s["spent"]["reads"] == 1000
    lo, hi = res["ci95"]
    assert (f"<tr><td>importance sampling</td><td class=num>{res['samples']:,} (+ {est['adapt_reads']:,} adapting)"
            f"</td><td class=num>{res['rate']:.3g}</td><td class=num>[{lo:.3g}, {hi:.3g}]</td>") in block
    # the i.i.d. interval of the same reads is the one hunt.json measured its width on
    ilo, ihi = expected_interval(res["rate"], same["reads"])
    assert ihi - ilo == pytest.approx(same["ci95_width"], rel=1e-9)
    assert ilo < res["rate"] < ihi
    assert (f"<tr><td>i.i.d., the same reads</td><td class=num>1,000</td><td class=num></td>"
            f"<td class=num>[{ilo:.3g}, {ihi:.3g}]</td>") in block
    assert f"<td class=num>{same['reads_for_same_width']:,.0f}</td>" in block
    assert f"{same['read_ratio']:.3g}× the reads spent here" in block
    stages = len(est["stages"])
    assert stages >= 1 and f"adapting the proposal: {stages} stage{'s' if stages > 1 else ''}</summary>" in block
    assert block.count('<svg class="chart"') == 1 and "Yield per family" not in block
    # its failing samples are glitches too: the shortest and up to 3 more, all of the proposal's family
    glitches = _glitches(tmp / "estimate")
    assert set(glitches.family) == {"is_proposal"}
    assert block.count('class="tok r this"') == 1 + min(3, len(glitches) - 1)


def test_a_hunt_without_glitches_and_beside_runs(hunt_report, tmp_path):
    from ffbench.hunt import HuntConfig, hunt
    from tests.test_hunt import WriteDistanceModel, synthetic_ref

    _, tmp = hunt_report
    cfg = HuntConfig(model="ffbench/transformer-ref", budget=200, length=32)
    hunt(cfg, str(tmp_path / "none"), synthetic_ref(WriteDistanceModel(k=100)), echo=lambda m: None)
    assert not (tmp_path / "none" / "glitches.parquet").exists()
    html = _report([tmp_path / "none", tmp / "search"], tmp_path / "r.html", "--attention", "0")
    ids = re.findall(r'<section id="([a-z-]+)"', html)
    assert ids.index("distance") < ids.index("hunt") < ids.index("failures")  # after the charts, before the reads
    none, search = _hunt_blocks(html)
    assert "<p>No glitch found.</p>" in none and 'class="tok' not in none
    assert "0 distinct glitching sequences, 0 wrong reads" in none
    assert "No i.i.d. comparison: ffbench/transformer-ref has no i.i.d. suite cell at T=32" in none
    # the hunted model is a reference drawn beside: its heading carries the reference's colour
    swatch = re.search(r'<span class="swatch" style="background:(#[0-9a-f]{6})"></span>ffbench/transformer-ref '
                       r'\(reference\)', html).group(1)
    assert f'<h3><span class="swatch" style="background:{swatch}"></span>ffbench/transformer-ref: search' in search


def test_hunt_strings_are_escaped(hunt_report, tmp_path):
    import pandas as pd

    _, tmp = hunt_report
    evil = tmp_path / "evil"
    shutil.copytree(tmp / "search", evil)
    summary = json.loads((evil / "hunt.json").read_text())
    summary["model"] = f"hf/{EVIL}"
    summary["families"][0]["family"] = EVIL
    summary["iid"]["suites"][0]["suite"] = EVIL
    (evil / "hunt.json").write_text(json.dumps(summary))
    glitches = pd.read_parquet(evil / "glitches.parquet")
    glitches["arm"] = f"planted(x={EVIL})"
    glitches["family"] = EVIL
    glitches.to_parquet(evil / "glitches.parquet")
    html = _report([evil], tmp_path / "r.html", "--no-refs")
    assert EVIL not in html
    parser = Collect()
    parser.feed(html)
    assert parser.problems == [] and parser.stack == []
    assert not any(name.startswith("on") for _, attrs in parser.tags for name in attrs)
    assert not any(tag == "img" for tag, _ in parser.tags)
    shown = r"&lt;img src=x onerror=(&quot;|&#34;)alert\(1\)(&quot;|&#34;)&gt;"  # as text (either entity)
    assert len(re.findall(shown, html)) >= 8  # model, family row and label, suite and label, glitch rows


def test_a_broken_hunt_summary_is_one_line(tmp_path):
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "hunt.json").write_text('{"model": "x"}')
    res = subprocess.run([sys.executable, "-m", "ffbench", "report", str(tmp_path / "h"), "--out",
                          str(tmp_path / "r.html")], capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "is not an ffbench hunt summary (no config, spent, glitches, families)" in res.stderr
    assert not (tmp_path / "r.html").exists()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install chromium)")
@pytest.mark.parametrize("report", ["stress_report", "hunt_report"])
def test_section_reports_render_in_a_real_browser(report, request, tmp_path):
    _, tmp = request.getfixturevalue(report)
    log = _chromium(tmp / "report.html", tmp_path / "shot.png")
    assert [line for line in log.splitlines() if ":CONSOLE" in line] == []
    assert len((tmp_path / "shot.png").read_bytes()) > 20_000


def test_a_sweep_of_one_config_names_its_budget_and_suites_keep_the_summary_order(tmp_path):
    import csv

    from ffbench.report.data import load_sweep

    cfg = {"model": {"arch": "lstm", "hidden": 128}, "steps": 500, "lr": 0.001, "data_seed": 0, "init_seed": 0}
    path = tmp_path / "table.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["run_id", "config", "arch", "data_seed", "init_seed", "sparse_reads", "sparse_errors",
                    "in_dist_reads", "in_dist_errors", "dense_reads", "dense_errors"])
        for seed in (0, 1):
            w.writerow([f"r{seed}", json.dumps({**cfg, "data_seed": seed, "init_seed": seed}), "lstm", seed, seed,
                        10, seed, 20, 0, 30, 0])
    sweep = load_sweep(str(path))
    assert [r.config for r in sweep.replicates] == ["lstm steps=500 lr=0.001"] * 2
    assert sweep.suites == ["in_dist", "sparse", "dense"]
    assert sweep.replicates[1].counts["sparse"] == (1, 10)
