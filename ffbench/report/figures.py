"""The report's charts as data: which series and points each figure holds (no HTML here).

Each function turns models (and sweeps, registry entries) into :class:`Figure` records; the
templates in ``reports/sections/`` lay them out and draw each chart with the ``svg`` filter. Stress
cells are left out of the per-suite curves: the stress grid mixes deliberately different
sequences, so its one rate means little, and the stress section draws it point by point.
"""

from __future__ import annotations

from dataclasses import dataclass

from ffbench import metrics
from ffbench.report.data import Model, Sweep, is_stress
from ffbench.report.svg import DASHES, PALETTE, Plot, Point, Series
from ffbench.schema import CellResult


@dataclass
class Figure:
    """One chart: ``caption`` above it, ``title`` for screen readers, a legend under it.

    ``facts`` are lines under the legend: (label, replicates with zero errors, reads) of a sweep;
    ``note`` a hint under the chart."""

    plot: Plot
    title: str
    caption: str = ""
    note: str = ""
    source: str = ""  # a path shown beside the caption
    facts: tuple[tuple[str, str, int], ...] = ()

    @property
    def series(self) -> list[Series]:
        return self.plot.series

    @property
    def nines(self) -> bool:
        return self.plot.nines

    @property
    def dashed(self) -> bool:
        """Series differ by line style: the legend shows line keys instead of swatches."""
        return any(s.dash for s in self.plot.series)

    @property
    def has_bounds(self) -> bool:
        return any(p.bound for s in self.plot.series for p in s.points)


def rate_point(x, errors: int, reads: int, tip_prefix: str = "") -> Point:
    tip = f"{tip_prefix}{metrics.describe_rate(errors, reads)}"
    if errors == 0:
        return Point(x, metrics.zero_error_bound(reads), bound=True, tip=tip)
    lo, hi = metrics.clopper_pearson(errors, reads)
    return Point(x, errors / reads, lo, hi, tip=tip)


def _suites(models: list[Model]) -> list[str]:
    return list(dict.fromkeys(c.suite for m in models for c in m.cells if not is_stress(c)))


def accuracy_vs_length(models: list[Model]) -> list[Figure]:
    """Per suite with some model at two or more lengths; accuracy on a log axis of 1 - accuracy
    (ticks 99%, 99.9%, ...), so 99.99% and 99.9999% are told apart."""
    out = []
    for suite in _suites(models):
        plot = Plot("log", "log", "sequence length T", "read accuracy", nines=True)
        lengths = set()
        for m in models:
            groups: dict[tuple, list] = {}
            for c in m.cells:
                if c.suite == suite and not is_stress(c):
                    groups.setdefault((c.render, c.scoring), []).append(c)
            for j, ((render, scoring), cells) in enumerate(groups.items()):
                if len(cells) < 2:
                    continue
                cells.sort(key=lambda c: c.length)
                lengths.update(c.length for c in cells)
                name = m.name if len(groups) == 1 else f"{m.name} ({render}, {scoring})"
                plot.add(Series(name, m.color, [rate_point(c.length, c.errors, c.reads, f"T={c.length}: ")
                                                 for c in cells], dash=DASHES[j % len(DASHES)]))
        if plot.series:
            plot.x_domain = (min(lengths), max(lengths))
            out.append(Figure(plot, f"accuracy against length, {suite}", suite))
    return out


def error_vs_write_distance(models: list[Model]) -> list[Figure]:
    order = [metrics.bucket_label(lo, hi) for lo, hi in
             zip(metrics.DISTANCE_EDGES, list(metrics.DISTANCE_EDGES[1:]) + [None])]
    out = []
    for suite in _suites(models):
        plot = Plot("category", "log", "instructions since the last write (write_distance)", "glitch rate")
        seen = set()
        for m in models:
            best: dict[tuple, CellResult] = {}  # one curve per model and way of scoring: its most-read cell
            for c in m.cells:
                if c.suite == suite and c.by_write_distance and not is_stress(c):
                    k = (c.render, c.scoring)
                    if k not in best or c.reads > best[k].reads:
                        best[k] = c
            cells = list(best.values())
            for j, c in enumerate(cells):
                name = f"{m.name} (T={c.length})" if len(cells) == 1 else \
                    f"{m.name} (T={c.length}, {c.render}, {c.scoring})"
                pts = [rate_point(b["bucket"], b["errors"], b["reads"], f"distance {b['bucket']}: ")
                       for b in c.by_write_distance]
                seen.update(p.x for p in pts)
                plot.add(Series(name, m.color, pts, dash=DASHES[j % len(DASHES)]))
        if plot.series:
            plot.categories = [b for b in order if b in seen]
            out.append(Figure(plot, f"glitch rate against write distance, {suite}", suite))
    return out


def sparse_vs_dense(models: list[Model], sweeps: list[Sweep]) -> Figure | None:
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
        return None
    return Figure(plot, "sparse against dense glitch rate of every model",
                  note="Each point is one model (one replicate of a sweep). A point with zero errors on a suite is "
                       "hollow and sits at that suite's 95% upper bound.")


def _pair_point(se: int, sn: int, de: int, dn: int, tip: str) -> Point:
    x = se / sn if se else metrics.zero_error_bound(sn)
    y = de / dn if de else metrics.zero_error_bound(dn)
    return Point(x, y, bound=(se == 0 or de == 0),
                 tip=f"{tip}; sparse {metrics.describe_rate(se, sn)}; dense {metrics.describe_rate(de, dn)}")


def replicates(sweeps: list[Sweep], first_color: int = 0) -> list[Figure]:
    """Strip plots; colours continue after the models', as in the sparse-dense scatter."""
    out = []
    k = first_color
    for sweep in sweeps:
        plot = Plot("category", "log", "suite", "glitch rate per replicate", categories=sweep.suites)
        facts = []
        for j, config in enumerate(sweep.configs):
            reps = [r for r in sweep.replicates if r.config == config]
            pts = [rate_point(s, *r.counts[s], f"{s}, data seed {r.data_seed}, init seed {r.init_seed}: ")
                   for r in reps for s in sweep.suites if s in r.counts]
            plot.add(Series(f"{config} ({len(reps)} replicates)", PALETTE[(k + j) % len(PALETTE)], pts, connect=False,
                            jitter=0.5))
            for s in sweep.suites:
                have = [r for r in reps if s in r.counts]
                zero = sum(1 for r in have if r.counts[s][0] == 0)
                reads = sum(r.counts[s][1] for r in have)
                facts.append((f"{config}, {s}", f"{zero} of {len(have)}", reads))
        k += len(sweep.configs)
        out.append(Figure(plot, f"replicates of {sweep.name}", sweep.name, source=sweep.path, facts=tuple(facts)))
    return out


def history(entries: dict[str, list[dict]]) -> list[Figure]:
    out = []
    for model, runs in entries.items():
        labels = [f"{r['revision'] or '#' + str(r['id'])}" for r in runs]
        plot = Plot("category", "log", "revision (in recording order)", "glitch rate", categories=labels)
        series: dict[str, list[Point]] = {}
        for label, r in zip(labels, runs):
            for c in r["results"].results:
                series.setdefault(c.key.describe(), []).append(
                    rate_point(label, c.errors, c.reads, f"{label} ({r['created']}): "))
        for j, (name, pts) in enumerate(series.items()):
            plot.add(Series(name, PALETTE[j % len(PALETTE)], pts))
        out.append(Figure(plot, f"history of {model}", model))
    return out
