"""The HTML report: well-formed, self-contained, escaped, and clean in a real browser."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import needs_torch
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
    assert "hf/&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html  # the name, shown as text
    assert "the light is &lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html  # the model's output
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
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and "no run" in res.stderr
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
