"""``ffbench report``: one self-contained HTML file from run directories, references, sweeps and hunts.

The page is rendered by Jinja2 (autoescaping on) from the templates in ``reports/``: the page
``report.html``, one template per section under ``sections/`` and shared pieces in
``macros.html``, with ``report.css`` and ``report.js`` inlined. What the sections show is prepared
here in Python (:mod:`.data` reads runs, sweeps, hunt directories and failing reads; :mod:`.figures` builds
the charts; :mod:`.views` words the tables; :mod:`.stressmaps` regroups stress cells into heatmaps;
:mod:`.hunts` words what ``ffbench hunt`` found);
templates only lay it out. Every chart is inline SVG and every attention map a data-URI PNG: the
file opens from file:// with no network and is small enough to attach to a CI run.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ffbench import __version__, runs, tasks
from ffbench.io import atomic_path
from ffbench.report import breaks, data, figures, hunts, stressmaps, views
from ffbench.report.svg import PALETTE, color_key
from ffbench.report.templates import render_page
from ffbench.sources import SequenceStore


@dataclass
class Section:
    """One section of the page: its anchor (and template ``sections/<id>.html``), title and data."""

    id: str
    title: str
    data: Any


def check_task(task: str, has_inputs: bool, no_refs: bool, has_refs: bool) -> None:
    """Refuse, before any work, a ``--task`` that names no task or would draw nothing (UsageError)."""
    from ffbench.errors import UsageError

    name = tasks.get(task).name  # an unknown name: one line, exit 2
    if no_refs or has_refs:
        raise UsageError(f"--task {name} picks the shipped references: drop {'--no-refs' if no_refs else '--ref'}")
    if not has_inputs and not runs.TASK_REFERENCES[name]:
        raise UsageError(f"--task {name} has no shipped references (it needs a model with a natural-language "
                         f"tokenizer): give run directories of your own {name} runs")


def build_report(inputs: list[str], references: list[str] | None = None, registry_path: str | None = None,
                 with_history: bool = False, failing_per_cell: int = 5, attention_reads: int = 3,
                 title: str = "ffbench report", echo=lambda m: None, task: str | None = None) -> str:
    """The HTML text of a report of ``inputs`` (run dirs, ffbench/REF, registry:M@R, sweep dirs/tables,
    hunt dirs). ``failing_per_cell`` also bounds the glitches shown per hunt family.

    ``references`` None: the shipped references of ``task`` when given, else those of the tasks the
    inputs are of (an undo run beside the undo references, an ffl run beside the ffl ones; see
    ``runs.TASK_REFERENCES``)."""
    loaded, sweeps, hunted = [], [], []
    for ref in inputs:
        if data.is_sweep(ref):
            sweeps.append(data.load_sweep(ref))
        elif data.is_hunt(ref):
            hunted.append(data.load_hunt(ref))
        else:
            loaded.append(runs.load(ref, registry_path))
    if references is None:
        shown = [data.task_of(c) for run in loaded for c in run.results] + [data.hunt_task(h) for h in hunted]
        references = list(runs.TASK_REFERENCES[tasks.get(task).name]) if task else runs.default_references(shown)
    given = {(run.model, run.reference) for run in loaded}
    for name in references:
        shipped = runs.reference_runs(name)
        if (shipped[0].model, True) not in given:  # a user's own run of a builtin keeps its reference beside it
            loaded.extend(shipped)
    models: dict[tuple[str, bool], data.Model] = {}
    for run in loaded:  # one model per (name, shipped or not): a run never merges into the reference
        models.setdefault((run.model, run.reference), data.Model(run.model, [])).runs.append(run)
    ordered = sorted(models.values(), key=lambda m: m.reference)  # the user's models first
    for k, m in enumerate(ordered):
        m.color = PALETTE[k % len(PALETTE)]
        if m.reference:
            m.name = f"{m.name} (reference)"

    store = SequenceStore()
    sections = _run_sections(ordered, sweeps, store, registry_path, with_history, failing_per_cell,
                             attention_reads, echo) if ordered or sweeps else []
    if hunted:
        shown = [hunts.hunt_view(h, ordered, failing_per_cell) for h in hunted]
        at = next((k for k, sec in enumerate(sections) if sec.id in ("history", "failures")), len(sections))
        sections.insert(at, Section("hunt", "Hunt", {"hunts": shown}))  # after the run charts, before the reads

    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return render_page(title=title, generated=f"ffbench {__version__}, {created}", models=ordered, sections=sections)


def _run_sections(ordered: list[data.Model], sweeps: list[data.Sweep], store: SequenceStore, registry_path,
                  with_history: bool, failing_per_cell: int, attention_reads: int, echo) -> list[Section]:
    """The sections drawn from runs and sweeps, in page order."""
    has_stress = any(data.is_stress(c) for m in ordered for c in m.cells)
    sections = [Section("glance", "At a glance", views.at_a_glance(ordered)),
                Section("summary", "Summary", {"rows": views.summary_rows(ordered),
                                               "truncated": views.shows_truncated(ordered),
                                               "tasks": views.shows_tasks(ordered),
                                               "sampled": views.sampled_rows(ordered),
                                               "cut": views.truncations(ordered)}),
                Section("sparse-dense", "Sparse against dense (paper Fig. 4)",
                        figures.sparse_vs_dense(ordered, sweeps))]
    broken = breaks.tables(ordered)  # runs of tasks beyond ffl: where each model breaks, by task
    if broken:
        sections.insert(1, Section("breaks", "Where each architecture breaks", broken))
    if sweeps:
        sections.append(Section("replicates", "Replicates", figures.replicates(sweeps, first_color=len(ordered))))
    sections += [Section("length", "Accuracy against length (paper Fig. 3)", figures.accuracy_vs_length(ordered)),
                 Section("distance", "Glitch rate against write distance (paper Fig. 12)",
                         figures.error_vs_write_distance(ordered))]
    if has_stress:
        echo("stress heatmaps ...")
        sections.append(Section("stress", "Stress profiles", {
            "families": stressmaps.families(ordered, failing_per_cell, store), "key": color_key(),
            "mine": any(data.is_stress(c) for m in ordered if not m.reference for c in m.cells)}))
    if with_history:
        from ffbench.registry import Registry

        reg = Registry(registry_path)
        entries = {m.model: found for m in ordered if not m.reference and (found := _recorded(reg, m.model))}
        sections.append(Section("history", "Glitch rate across releases (registry)", figures.history(entries)))
    fails, maps = [], []
    for m in ordered:
        echo(f"failing reads of {m.name} ...")
        per_run = [(run, data.failing_reads(run, failing_per_cell, store)) for run in m.runs]
        reads = [r for _, found in per_run for r in found if not data.is_stress(r.cell)]  # stress: with its maps
        if reads:
            fails.append(views.FailingSection(m, views.read_rows(reads)))
        if attention_reads:
            pairs = []
            for run, found in per_run:  # up to attention_reads maps per model, from its runs in order
                if len(pairs) < attention_reads and found:
                    pairs += data.attention_maps(run, found, attention_reads - len(pairs))
            if pairs:
                maps.append((m, views.attention_figures(pairs)))
    sections.append(Section("failures", "Failing reads", {"sections": fails, "stress": has_stress}))
    if maps:
        sections.append(Section("attention", "Attention at failing reads (native Transformers)", maps))
    sections.append(Section("provenance", "Provenance", views.provenance(ordered)))
    return sections


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
