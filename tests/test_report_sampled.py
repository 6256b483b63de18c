"""The report shows a sampled run's figures (issue 27): per cell with repeats, K, the answers, the
mean per-read error probability with its cluster-robust interval, the fractions of reads wrong in
any and in all answers, and the majority answer's glitch rate, as results.json holds them; a run
without repeats has no such table."""

from __future__ import annotations

import importlib.util
import re

import pytest

from ffbench import runner, runs
from ffbench.report import build_report
from tests.fault_server import FaultServer
from tests.test_sampling import _cfg, _ref

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openai") is None, reason="openai not installed")


def _cells(html: str, table_id: str) -> list[list[str]]:
    body = html.split(f'id="{table_id}"', 1)[1].split("</tbody>", 1)[0].split("<tbody>", 1)[1]
    return [[re.sub(r"<[^>]+>", "", td).strip() for td in re.findall(r"<td[^>]*>(.*?)</td>", tr)]
            for tr in re.findall(r"<tr>(.*?)</tr>", body)]


def test_a_sampled_run_shows_its_per_read_figures_and_a_plain_run_none(tmp_path):
    with FaultServer(faults=False, sampled=0.3, sample_seed=4) as srv:
        for name, kw in (("sampled", {"repeats": 5}), ("plain", {})):
            out = str(tmp_path / name)
            runner.run(_cfg(srv.url, num=20, lengths=[32, 64], **kw), out, _ref(srv.url, out), progress=False,
                       echo=lambda m: None)
    res = runs.load(str(tmp_path / "sampled"))
    html = build_report([str(tmp_path / "sampled")], references=[])
    rows = _cells(html, "sampled-table")
    assert len(rows) == 2
    for row, cell in zip(rows, res.results):
        s = cell.sampled
        lo, hi = s["ci95"]
        assert row[1:] == [cell.key.describe(), "5", f"{s['answers']:,}", f"{s['error_probability']:.2e}",
                           f"[{lo:.1e}, {hi:.1e}]", f"{s['wrong_any']:.4f}", f"{s['wrong_all']:.4f}",
                           f"{cell.glitch_rate:.2e}"]
        assert 0 < s["wrong_all"] < s["error_probability"] < s["wrong_any"] < 1  # a sampled model's spread
    assert 'id="sampled-table"' not in build_report([str(tmp_path / "plain")], references=[])
