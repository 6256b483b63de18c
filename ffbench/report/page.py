"""The report's sections, laid out as HTML from the records of :mod:`ffbench.report.data`.

Every string that came from a user, a file or a model (model names, paths, configs, generated
text) passes through :func:`esc` before it reaches the page; nothing is loaded from the network.
"""

from __future__ import annotations

import json
import math

import numpy as np

from ffbench import metrics
from ffbench.report.data import FailingRead, Model, Sweep
from ffbench.schema import CellResult
from ffbench.report.png import heatmap_data_uri
from ffbench.report.svg import DASHES, PALETTE, Plot, Point, Series, esc, legend


def _rate_point(x, errors: int, reads: int, tip_prefix: str = "") -> Point:
    tip = f"{tip_prefix}{metrics.describe_rate(errors, reads)}"
    if errors == 0:
        return Point(x, metrics.zero_error_bound(reads), bound=True, tip=tip)
    lo, hi = metrics.clopper_pearson(errors, reads)
    return Point(x, errors / reads, lo, hi, tip=tip)


def _p(cell: CellResult) -> str:
    return "" if cell.p_ignore is None else f"{cell.p_ignore:g}"


def _cell_name(cell: CellResult) -> str:
    return cell.key.describe()


# ----------------------------------------------------------------------------- summary table
def at_a_glance(models: list[Model]) -> str:
    """One line per model: every read counted, and its worst cell (the number a release cares about)."""
    rows = []
    for m in models:
        cells = m.cells
        reads, errors = sum(c.reads for c in cells), sum(c.errors for c in cells)
        worst = max(cells, key=lambda c: (c.glitch_rate, -c.reads))  # all zero: the loosest bound
        rows.append(f'<tr><td><span class="swatch" style="background:{m.color}"></span>{esc(m.name)}</td>'
                    f"<td class=num>{len(cells)}</td><td class=num>{reads:,}</td><td class=num>{errors:,}</td>"
                    f"<td>{esc(_cell_name(worst))}</td>"
                    f"<td>{esc(metrics.describe_rate(worst.errors, worst.reads))}</td></tr>")
    return ("<table class=glance><thead><tr><th>model</th><th>cells</th><th>reads</th><th>errors</th>"
            f"<th>worst cell</th><th>its glitch rate</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def summary_table(models: list[Model]) -> str:
    head = ("model", "suite", "T", "p_ignore", "render", "scoring", "sequences", "reads", "errors", "invalid",
            "accuracy", "glitch rate", "95% CI")
    rows = []
    for m in models:
        for c in m.cells:
            lo, hi = c.ci95
            if c.errors == 0:
                rate, ci = "0", f"&lt; {metrics.zero_error_bound(c.reads):.1e} (one-sided)"
            else:
                rate, ci = f"{c.glitch_rate:.2e}", f"[{lo:.1e}, {hi:.1e}]"
            cls = ' class="zero"' if c.errors == 0 else (' class="bad"' if c.glitch_rate > 1e-2 else "")
            rows.append(
                f'<tr><td><span class="swatch" style="background:{m.color}"></span>{esc(m.name)}</td>'
                f"<td>{esc(c.suite)}</td><td class=num>{c.length}</td><td class=num>{esc(_p(c))}</td>"
                f"<td>{esc(c.render)}</td><td>{esc(c.scoring)}</td>"
                f"<td class=num data-v=\"{c.num_sequences}\">{c.num_sequences:,}</td>"
                f"<td class=num data-v=\"{c.reads}\">{c.reads:,}</td>"
                f"<td class=num data-v=\"{c.errors}\">{c.errors:,}</td>"
                f"<td class=num data-v=\"{c.invalid}\">{c.invalid:,}</td>"
                f"<td class=num data-v=\"{c.accuracy:.12g}\">{c.accuracy:.6f}</td>"
                f"<td class=num data-v=\"{c.glitch_rate:.12g}\"{cls}>{rate}</td><td class=num>{ci}</td></tr>")
    header = "".join(f'<th scope="col">{h}</th>' for h in head)
    return (f'<table class="sortable" id="summary"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}'
            f"</tbody></table><p class=hint>Click a column to sort. Zero-error cells give the exact one-sided "
            f"95% bound (rule of three, about 3/N); other intervals are exact Clopper-Pearson.</p>")


# ----------------------------------------------------------------------------- accuracy vs length
def accuracy_vs_length(models: list[Model]) -> str:
    """Per suite with some model at two or more lengths; accuracy on a log axis of 1 - accuracy
    (ticks 99%, 99.9%, ...), so 99.99% and 99.9999% are told apart."""
    out = []
    for suite in dict.fromkeys(c.suite for m in models for c in m.cells):
        plot = Plot("log", "log", "sequence length T", "read accuracy", nines=True)
        lengths = set()
        for m in models:
            groups: dict[tuple, list] = {}
            for c in m.cells:
                if c.suite == suite:
                    groups.setdefault((c.render, c.scoring), []).append(c)
            for j, ((render, scoring), cells) in enumerate(groups.items()):
                if len(cells) < 2:
                    continue
                cells.sort(key=lambda c: c.length)
                lengths.update(c.length for c in cells)
                name = m.name if len(groups) == 1 else f"{m.name} ({render}, {scoring})"
                plot.add(Series(name, m.color, [
                    _rate_point(c.length, c.errors, c.reads, f"T={c.length}: ") for c in cells],
                    dash=DASHES[j % len(DASHES)]))
        if not plot.series:
            continue
        plot.x_domain = (min(lengths), max(lengths))
        out.append(f"<figure><figcaption>{esc(suite)}</figcaption>{plot.svg(f'accuracy against length, {suite}')}"
                   f"{legend(plot.series, nines=True)}</figure>")
    if not out:
        return ('<p class=hint>Every model here was run at one length per suite; run with '
                '<code>--length 64,128,256,512</code> to draw accuracy against length.</p>')
    return ('<p class=hint>Whiskers: exact 95% intervals. The axis is logarithmic in 1 − accuracy, so each step up '
            'is one more nine.</p><div class="grid2">' + "".join(out) + "</div>")


# ----------------------------------------------------------------------------- write distance
def error_vs_write_distance(models: list[Model]) -> str:
    order = [metrics.bucket_label(lo, hi) for lo, hi in
             zip(metrics.DISTANCE_EDGES, list(metrics.DISTANCE_EDGES[1:]) + [None])]
    out = []
    for suite in dict.fromkeys(c.suite for m in models for c in m.cells):
        plot = Plot("category", "log", "instructions since the last write (write_distance)", "glitch rate")
        seen = set()
        for m in models:
            best: dict[tuple, CellResult] = {}  # one curve per model and way of scoring: its most-read cell
            for c in m.cells:
                if c.suite == suite and c.by_write_distance:
                    k = (c.render, c.scoring)
                    if k not in best or c.reads > best[k].reads:
                        best[k] = c
            cells = list(best.values())
            for j, c in enumerate(cells):
                name = f"{m.name} (T={c.length})" if len(cells) == 1 else \
                    f"{m.name} (T={c.length}, {c.render}, {c.scoring})"
                pts = [_rate_point(b["bucket"], b["errors"], b["reads"], f"distance {b['bucket']}: ")
                       for b in c.by_write_distance]
                seen.update(p.x for p in pts)
                plot.add(Series(name, m.color, pts, dash=DASHES[j % len(DASHES)]))
        if not plot.series:
            continue
        plot.categories = [b for b in order if b in seen]
        out.append(f"<figure><figcaption>{esc(suite)}</figcaption>"
                   f"{plot.svg(f'glitch rate against write distance, {suite}')}{legend(plot.series)}</figure>")
    return '<div class="grid2">' + "".join(out) + "</div>" if out else "<p>No per-distance breakdown in these runs.</p>"


# ----------------------------------------------------------------------------- sparse vs dense
def sparse_vs_dense(models: list[Model], sweeps: list[Sweep]) -> str:
    plot = Plot("log", "log", "glitch rate on sparse (FFL(0.98))", "glitch rate on dense (FFL(0.1))")
    for m in models:
        by_key: dict[tuple, dict] = {}  # (T, render, scoring, variant) -> suite -> cell
        for c in m.cells:
            by_key.setdefault((c.length, c.render, c.scoring, c.variant), {})[c.suite] = c
        pts = []
        for (length, render, scoring, _), d in by_key.items():
            if "sparse" in d and "dense" in d:
                pts.append(_pair_point(d["sparse"].errors, d["sparse"].reads, d["dense"].errors,
                                       d["dense"].reads, f"T={length} {render} {scoring}"))
        if pts:
            plot.add(Series(m.name, m.color, pts, connect=False))
    k = len(models)
    for sweep in sweeps:
        for j, config in enumerate(sweep.configs):
            pts = [_pair_point(*r.counts["sparse"], *r.counts["dense"],
                               f"data seed {r.data_seed}, init seed {r.init_seed}")
                   for r in sweep.replicates if r.config == config and "sparse" in r.counts and "dense" in r.counts]
            if pts:
                plot.add(Series(f"{sweep.name}: {config} ({len(pts)} replicates)", PALETTE[(k + j) % len(PALETTE)],
                                pts, connect=False))
        k += len(sweep.configs)
    if not plot.series:
        return "<p>No model here was evaluated on both the sparse and the dense suite.</p>"
    return (f"<figure>{plot.svg('sparse against dense glitch rate of every model')}{legend(plot.series)}"
            "<figcaption class=hint>Each point is one model (one replicate of a sweep). A point with zero errors on "
            "a suite is hollow and sits at that suite's 95% upper bound.</figcaption></figure>")


def _pair_point(se: int, sn: int, de: int, dn: int, tip: str) -> Point:
    x = se / sn if se else metrics.zero_error_bound(sn)
    y = de / dn if de else metrics.zero_error_bound(dn)
    return Point(x, y, bound=(se == 0 or de == 0),
                 tip=f"{tip}; sparse {metrics.describe_rate(se, sn)}; dense {metrics.describe_rate(de, dn)}")


# ----------------------------------------------------------------------------- replicates
def replicates(sweeps: list[Sweep], first_color: int = 0) -> str:
    """Strip plots; colours continue after the models', as in the sparse-dense scatter."""
    out = []
    k = first_color
    for sweep in sweeps:
        plot = Plot("category", "log", "suite", "glitch rate per replicate", categories=sweep.suites)
        lines = []
        for j, config in enumerate(sweep.configs):
            reps = [r for r in sweep.replicates if r.config == config]
            pts = [_rate_point(s, *r.counts[s], f"{s}, data seed {r.data_seed}, init seed {r.init_seed}: ")
                   for r in reps for s in sweep.suites if s in r.counts]
            plot.add(Series(f"{config} ({len(reps)} replicates)", PALETTE[(k + j) % len(PALETTE)], pts, connect=False,
                            jitter=0.5))
            for s in sweep.suites:
                have = [r for r in reps if s in r.counts]
                zero = sum(1 for r in have if r.counts[s][0] == 0)
                reads = sum(r.counts[s][1] for r in have)
                lines.append(f"<li>{esc(config)}, {esc(s)}: <b>{zero} of {len(have)}</b> replicates with zero errors "
                             f"({reads:,} reads in all)</li>")
        k += len(sweep.configs)
        out.append(f"<figure><figcaption>{esc(sweep.name)} <span class=hint>{esc(sweep.path)}</span></figcaption>"
                   f"{plot.svg(f'replicates of {sweep.name}')}{legend(plot.series)}<ul class=facts>{''.join(lines)}"
                   "</ul></figure>")
    return "".join(out)


# ----------------------------------------------------------------------------- history
def history(entries: dict[str, list[dict]]) -> str:
    out = []
    for model, runs in entries.items():
        labels = [f"{r['revision'] or '#' + str(r['id'])}" for r in runs]
        plot = Plot("category", "log", "revision (in recording order)", "glitch rate", categories=labels)
        series: dict[str, list[Point]] = {}
        for label, r in zip(labels, runs):
            for c in r["results"].results:
                series.setdefault(_cell_name(c), []).append(
                    _rate_point(label, c.errors, c.reads, f"{label} ({r['created']}): "))
        for j, (name, pts) in enumerate(series.items()):
            plot.add(Series(name, PALETTE[j % len(PALETTE)], pts))
        out.append(f"<figure><figcaption>{esc(model)}</figcaption>{plot.svg(f'history of {model}')}"
                   f"{legend(plot.series)}</figure>")
    return "".join(out) or "<p>No recorded runs of these models.</p>"


# ----------------------------------------------------------------------------- failing reads
CONTEXT_EDGE = 10  # instructions shown before the last write and after it / before the read


def read_context(read: FailingRead) -> str:
    """The compact sequence around a failing read: the last write, the gap (elided) and the read."""
    seq = read.sequence
    if not seq:
        return '<span class="hint">sequence not available</span>'
    q = read.position - 1  # index of the 'r'
    write = q - 2 * read.write_distance  # write_distance counts the read itself: w0r0 -> 1
    start = max(0, write - 2 * CONTEXT_EDGE)

    def instr(i: int) -> str:
        op, val = seq[i], seq[i + 1]
        cls = {"w": "w", "r": "r", "i": "i"}.get(op, "i")
        if i == write:
            return f'<span class="tok w last" title="the last write: value {esc(val)}">{esc(op + val)}</span>'
        if i == q:
            said = "?" if read.prediction < 0 else str(read.prediction)
            return (f'<span class="tok r this" title="this read: target {read.target}, predicted '
                    f'{_answer(read.prediction)}">{esc(op)}<s>{said}</s>{esc(val)}</span>')
        return f'<span class="tok {cls}">{esc(op + val)}</span>'

    idx = list(range(start, q + 1, 2))
    if len(idx) > 4 * CONTEXT_EDGE + 4:
        head = [i for i in idx if i <= write + 2 * CONTEXT_EDGE]
        tail = [i for i in idx if i >= q - 2 * CONTEXT_EDGE and i not in head]
        gap = (tail[0] - head[-1]) // 2 - 1
        gap_text = seq[head[-1] + 2:tail[0]]
        reads = gap_text[::2].count("r")
        body = ("".join(instr(i) for i in head) + f'<span class="gap">… {gap} instructions ({reads} '
                f'read{"" if reads == 1 else "s"}, no write) …</span>' + "".join(instr(i) for i in tail))
    else:
        body = "".join(instr(i) for i in idx)
    prefix = '<span class="gap">…</span>' if start > 0 else ""
    return f'<code class="ctx">{prefix}{body}</code>'


def _answer(prediction: int) -> str:
    return "no answer" if prediction < 0 else str(prediction)


def failing_reads_section(model: Model, reads: list[FailingRead]) -> str:
    """A table per model: open for the user's models, folded for the shipped references."""
    if not reads:
        return ""
    rows = []
    for r in reads:
        out = "" if r.output is None else f'<div class="output">model said: <code>{esc(r.output)}</code></div>'
        margin = "" if math.isnan(r.margin) else f"{r.margin:+.3f}"
        rows.append(f"<tr><td class=cell>{esc(_cell_name(r.cell))}</td><td class=num>{r.seq_index}</td>"
                    f"<td class=num>{r.write_distance}</td><td class=num>{r.target} → {_answer(r.prediction)}</td>"
                    f"<td class=num>{margin}</td><td>{read_context(r)}{out}</td></tr>")
    cells = len({_cell_name(r.cell) for r in reads})
    return (f"<details class=fails{'' if model.reference else ' open'}><summary><h3>"
            f"<span class=\"swatch\" style=\"background:{model.color}\"></span>{esc(model.name)}"
            f"<span class=hint> {len(reads)} examples from {cells} cell{'s' if cells > 1 else ''}</span></h3>"
            "</summary><table class=reads><thead><tr><th>cell</th><th>sequence</th><th>write distance</th>"
            "<th>target → predicted</th><th>log-prob margin</th><th>context</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></details>")


def attention_section(model: Model, maps: list[tuple[FailingRead, np.ndarray]]) -> str:
    if not maps:
        return ""
    figs = []
    for read, att in maps:
        layers, heads, span = att.shape
        rows = att.reshape(layers * heads, span)
        q = read.position - 1
        write = q - 2 * read.write_distance
        on_write = att[:, :, write + 1] if write >= 0 else np.zeros((layers, heads))  # the written value's digit
        best = np.unravel_index(int(np.argmax(on_write)), on_write.shape)
        labels = "".join(f"<span>L{layer}.H{h}</span>" for layer in range(layers) for h in range(heads))
        marks = (f'<span class="mark w" style="left:{100 * (write + 1.5) / span:.2f}%" title="last write"></span>'
                 if write >= 0 else "")
        figs.append(
            f"<figure class=att><figcaption>{esc(_cell_name(read.cell))}, sequence {read.seq_index}, read at "
            f"position {read.position}: target {read.target}, predicted {read.prediction}; most attention on the "
            f"last write's value: L{best[0]}.H{best[1]} = {on_write[best]:.3f}</figcaption>"
            f'<div class=attmap><div class=heads>{labels}</div><div class=img>'
            f'<img alt="attention of every head at the failing read" src="{heatmap_data_uri(rows)}" '
            f'style="height:{14 * layers * heads}px">{marks}</div></div>'
            f"<p class=hint>Rows: layer.head; columns: positions 0..{span - 1} (the read's query at the right). "
            "Darker = more attention; the blue tick marks the last write.</p></figure>")
    return (f"<h3><span class=\"swatch\" style=\"background:{model.color}\"></span>{esc(model.name)}</h3>"
            + "".join(figs))


# ----------------------------------------------------------------------------- provenance
def provenance(models: list[Model]) -> str:
    out = []
    for m in models:
        for run in m.runs:
            model_fp = run.fingerprint.get("model") or {}
            facts = [("model", run.model), ("from", run.label + (" (shipped reference)" if run.reference else "")),
                     ("backend", json.dumps(run.backend)), ("ffbench", run.ffbench_version or "?"),
                     ("created", run.created or "?"),
                     ("model fingerprint", f"{model_fp.get('kind', '?')} {model_fp.get('id', 'not recorded')}"),
                     ("data sha256", run.data_sha256 or "?")]
            if "scored_as" in run.extra:
                facts.append(("scored as", run.extra["scored_as"]))
            dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
            out.append(f"<details><summary><span class=\"swatch\" style=\"background:{m.color}\"></span>"
                       f"{esc(m.name)}: {esc(run.label)}</summary><dl>{dl}</dl>"
                       f"<pre>{esc(json.dumps(run.config, indent=2))}</pre></details>")
    return "".join(out)
