"""``ffbench report``: one self-contained HTML file from run directories, references and sweeps.

The page is assembled from ``reports/report.html`` (template), ``report.css`` and ``report.js``,
inlined, with every chart as inline SVG and every attention map as a data-URI PNG: it opens from
file:// with no network and is small enough to attach to a CI run.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from string import Template

from ffbench import __version__, runs
from ffbench.io import atomic_path
from ffbench.report import data, page
from ffbench.report.svg import PALETTE, esc
from ffbench.resources import resource_dir
from ffbench.sources import SequenceStore


def build_report(inputs: list[str], references: list[str] | None = None, registry_path: str | None = None,
                 with_history: bool = False, failing_per_cell: int = 5, attention_reads: int = 3,
                 title: str = "ffbench report", echo=lambda m: None) -> str:
    """The HTML text of a report of ``inputs`` (run dirs, ffbench/REF, registry:M@R, sweep dirs/tables)."""
    loaded, sweeps = [], []
    for ref in inputs:
        if data.is_sweep(ref):
            sweeps.append(data.load_sweep(ref))
        else:
            loaded.append(runs.load(ref, registry_path))
    mine = {run.model for run in loaded}
    for name in references if references is not None else runs.DEFAULT_REFERENCES:
        shipped = runs.reference_runs(name)
        if shipped[0].model not in mine:
            loaded.extend(shipped)
    models: dict[str, data.Model] = {}
    for run in loaded:
        models.setdefault(run.model, data.Model(run.model, [])).runs.append(run)
    ordered = sorted(models.values(), key=lambda m: m.reference)  # the user's models first
    for k, m in enumerate(ordered):
        m.color = PALETTE[k % len(PALETTE)]
        if m.reference:
            m.name = f"{m.name} (reference)"

    sections = [("glance", "At a glance", page.at_a_glance(ordered)),
                ("summary", "Summary", page.summary_table(ordered)),
                ("sparse-dense", "Sparse against dense (paper Fig. 4)", page.sparse_vs_dense(ordered, sweeps))]
    if sweeps:
        sections.append(("replicates", "Replicates", page.replicates(sweeps, first_color=len(ordered))))
    sections += [("length", "Accuracy against length (paper Fig. 3)", page.accuracy_vs_length(ordered)),
                 ("distance", "Glitch rate against write distance (paper Fig. 12)",
                  page.error_vs_write_distance(ordered))]
    if with_history:
        from ffbench.registry import Registry

        reg = Registry(registry_path)
        entries = {m.model: found for m in ordered if not m.reference and (found := _recorded(reg, m.model))}
        sections.append(("history", "Glitch rate across releases (registry)", page.history(entries)))
    fails, maps = [], []
    store = SequenceStore()
    for m in ordered:
        echo(f"failing reads of {m.name} ...")
        per_run = [(run, data.failing_reads(run, failing_per_cell, store)) for run in m.runs]
        reads = [r for _, found in per_run for r in found]
        fails.append(page.failing_reads_section(m, reads))
        if attention_reads and reads:
            pairs = []
            for run, found in per_run:  # up to attention_reads maps per model, from its runs in order
                pairs += data.attention_maps(run, found, attention_reads - len(pairs)) if len(pairs) < attention_reads \
                    else []
            maps.append(page.attention_section(m, pairs))
    intro = ("<p class=hint>Each sequence in its compact form, whatever the rendering: the last write in blue, the "
             "failing read in red with the model's answer struck through, long stretches without a write elided. "
             "Hover a read for its target and prediction.</p>")
    sections.append(("failures", "Failing reads",
                     intro + "".join(fails) if any(fails) else "<p>No failing read in these runs.</p>"))
    if any(maps):
        sections.append(("attention", "Attention at failing reads (native Transformers)", "".join(maps)))
    sections.append(("provenance", "Provenance", page.provenance(ordered)))

    nav = "".join(f'<a href="#{sid}">{esc(name)}</a>' for sid, name, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{esc(name)}</h2>{html}</section>' for sid, name, html in sections)
    res = resource_dir("reports")
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return Template((res / "report.html").read_text(encoding="utf-8")).substitute(
        title=esc(title), css=(res / "report.css").read_text(encoding="utf-8"),
        js=(res / "report.js").read_text(encoding="utf-8"), nav=nav, body=body,
        models=", ".join(f'<span class="swatch" style="background:{m.color}"></span>{esc(m.name)}' for m in ordered),
        generated=esc(f"ffbench {__version__}, {created}"))


def _recorded(reg, model: str) -> list[dict]:
    """A model's recorded runs; a missing registry means none, a broken one is an error."""
    if not reg.path.exists():
        return []
    return reg.runs(model)


def write_report(out: str, html: str) -> Path:
    path = Path(out)
    if path.is_dir():
        from ffbench.errors import UsageError

        raise UsageError(f"--out {out!r} is a directory; give a file name such as {str(path / 'report.html')!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return path
