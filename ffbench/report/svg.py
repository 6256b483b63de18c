"""Inline SVG charts with no dependency: the report must open offline from file:// anywhere.

One small :class:`Plot` draws every line and scatter chart of the report: linear, log or
categorical axes, series of points with optional confidence whiskers, and *bounds*: a cell with zero
errors has no rate to plot on a log axis, so it is drawn as a hollow downward triangle at its
one-sided 95% upper bound (about 3/N), which is what the data say. :class:`Heatmap` draws the stress
grids (a parameter against T, colour = accuracy).

Every piece of text that enters an SVG here goes through :func:`esc`; that is why the report's
templates may take a drawing's ``svg()`` output as markup (the ``svg`` filter, the one place that
does).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f",
           "#bab0ac")


# One colour per model; a model's renderings and scorings differ by line style.
DASHES = ("", "7 4", "2 3", "9 3 2 3")


def esc(text) -> str:
    return escape(str(text), quote=True)


@dataclass
class Point:
    x: float | str
    y: float
    lo: float | None = None  # whisker (e.g. 95% CI)
    hi: float | None = None
    bound: bool = False  # y is an upper bound (zero errors seen)
    tip: str = ""


@dataclass
class Series:
    name: str
    color: str
    points: list[Point] = field(default_factory=list)
    connect: bool = True
    jitter: float = 0.0  # categorical x: spread points over this fraction of a band
    dash: str = ""  # SVG stroke-dasharray of the connecting line


class Scale:
    def __init__(self, kind: str, domain, lo_px: float, hi_px: float, nines: bool = False):
        self.kind, self.lo_px, self.hi_px, self.nines = kind, lo_px, hi_px, nines
        if kind == "category":
            self.cats = list(domain)
        else:
            a, b = domain
            if kind == "log":
                a, b = math.floor(math.log10(a)), math.ceil(math.log10(b))
                b = max(b, a + 1)
            elif a == b:
                a, b = a - 0.5, b + 0.5
            self.a, self.b = a, b

    def __call__(self, v, offset: float = 0.0) -> float:
        if self.kind == "category":
            band = (self.hi_px - self.lo_px) / max(len(self.cats), 1)
            return self.lo_px + band * (self.cats.index(v) + 0.5 + offset)
        t = math.log10(v) if self.kind == "log" else v
        return self.lo_px + (t - self.a) / (self.b - self.a) * (self.hi_px - self.lo_px)

    def ticks(self) -> list[tuple[float, str]]:
        if self.kind == "category":
            return [(self(c), str(c)) for c in self.cats]
        if self.kind == "log":
            step = max(1, math.ceil((self.b - self.a) / 8))
            label = _nines if self.nines else _decade
            return [(self(10.0 ** k), label(k)) for k in range(int(self.a), int(self.b) + 1, step)]
        span = self.b - self.a
        step = 10 ** math.floor(math.log10(span / 5))
        for m in (1, 2, 5, 10):
            if span / (step * m) <= 6:
                step *= m
                break
        first = math.ceil(self.a / step - 1e-9) * step
        out, v = [], first
        while v <= self.b + 1e-9 * step:
            out.append((self(v), f"{v:.10g}"))
            v += step
        return out


def _decade(k: int) -> str:
    return {0: "1", -1: "0.1", -2: "0.01"}.get(k, f"1e{k}")


def _nines(k: int) -> str:
    """An error-rate decade as the accuracy it means: 1e-3 -> 99.9%."""
    return "0%" if k >= 0 else f"{100 * (1 - 10.0 ** k):.{max(0, -k - 2)}f}%"


class Plot:
    """A chart: ``Plot(x='log'|'linear'|'category', y=...)``, add series, then ``svg()``."""

    W, H = 720, 320
    M = dict(left=64, right=16, top=14, bottom=52)

    def __init__(self, x: str, y: str, x_label: str, y_label: str, categories=None, y_domain=None, x_domain=None,
                 height: int | None = None, nines: bool = False):
        """``nines``: y is an error rate on a log axis drawn as accuracy (up = more accurate)."""
        self.xk, self.yk, self.x_label, self.y_label, self.nines = x, y, x_label, y_label, nines
        self.categories, self.y_domain, self.x_domain = categories, y_domain, x_domain
        self.H = height or self.H
        self.series: list[Series] = []

    def add(self, series: Series) -> None:
        self.series.append(series)

    def _domain(self, kind: str, values: list[float]):
        vals = [v for v in values if v is not None and (kind != "log" or v > 0)]
        if not vals:
            return (1e-6, 1.0) if kind == "log" else (0.0, 1.0)
        return (min(vals), max(vals))

    def svg(self, title: str) -> str:
        pts = [p for s in self.series for p in s.points]
        m = self.M
        x0, x1, y0, y1 = m["left"], self.W - m["right"], self.H - m["bottom"], m["top"]
        if self.xk == "category":
            xs = Scale("category", self.categories or list(dict.fromkeys(p.x for p in pts)), x0, x1)
        else:
            xs = Scale(self.xk, self.x_domain or self._domain(self.xk, [p.x for p in pts]), x0, x1)
        ys_vals = [v for p in pts for v in (p.y, p.lo, p.hi)]
        ys = Scale(self.yk, self.y_domain or self._domain(self.yk, ys_vals), *((y1, y0) if self.nines else (y0, y1)),
                   nines=self.nines)
        out = [f'<svg class="chart" viewBox="0 0 {self.W} {self.H}" role="img" aria-label="{esc(title)}" '
               f'xmlns="http://www.w3.org/2000/svg"><title>{esc(title)}</title>']
        for py, label in ys.ticks():
            out.append(f'<line class="grid" x1="{x0}" x2="{x1}" y1="{py:.1f}" y2="{py:.1f}"/>'
                       f'<text class="tick" x="{x0 - 6}" y="{py + 4:.1f}" text-anchor="end">{esc(label)}</text>')
        rotate = self.xk == "category" and len(xs.ticks()) > 6
        for px, label in xs.ticks():
            out.append(f'<line class="tickmark" x1="{px:.1f}" x2="{px:.1f}" y1="{y0}" y2="{y0 + 4}"/>')
            if rotate:
                out.append(f'<text class="tick" x="{px:.1f}" y="{y0 + 14}" text-anchor="end" '
                           f'transform="rotate(-25 {px:.1f} {y0 + 14})">{esc(label)}</text>')
            else:
                out.append(f'<text class="tick" x="{px:.1f}" y="{y0 + 17}" text-anchor="middle">{esc(label)}</text>')
        out.append(f'<line class="axis" x1="{x0}" x2="{x1}" y1="{y0}" y2="{y0}"/>'
                   f'<line class="axis" x1="{x0}" x2="{x0}" y1="{y0}" y2="{y1}"/>')
        out.append(f'<text class="label" x="{(x0 + x1) / 2:.0f}" y="{self.H - 8}" text-anchor="middle">'
                   f'{esc(self.x_label)}</text>')
        out.append(f'<text class="label" x="14" y="{(y0 + y1) / 2:.0f}" text-anchor="middle" '
                   f'transform="rotate(-90 14 {(y0 + y1) / 2:.0f})">{esc(self.y_label)}</text>')
        for k, s in enumerate(self.series):
            coords = []
            for j, p in enumerate(s.points):
                off = 0.0
                if s.jitter and self.xk == "category":
                    off = ((j * 0.618034) % 1.0 - 0.5) * s.jitter
                px, py = xs(p.x, off) if self.xk == "category" else xs(p.x), ys(p.y)
                coords.append((px, py, p))
            if s.connect and len(coords) > 1:
                d = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in coords)
                dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
                out.append(f'<polyline class="line" points="{d}" stroke="{s.color}"{dash}/>')
            for px, py, p in coords:
                tip = f"<title>{esc(s.name)}: {esc(p.tip)}</title>" if p.tip else ""
                if p.lo is not None and p.hi is not None and not p.bound:
                    lo_px = ys(max(p.lo, _floor(ys)))
                    out.append(f'<line class="whisker" x1="{px:.1f}" x2="{px:.1f}" y1="{lo_px:.1f}" '
                               f'y2="{ys(p.hi):.1f}" stroke="{s.color}"/>')
                if p.bound:  # points towards where the true rate lies: lower rate (or higher accuracy)
                    d = -1 if self.nines else 1
                    out.append(f'<path class="bound" d="M{px - 5:.1f},{py - 4 * d:.1f} L{px + 5:.1f},{py - 4 * d:.1f} '
                               f'L{px:.1f},{py + 5 * d:.1f} Z" stroke="{s.color}">{tip}</path>')
                else:
                    out.append(f'<circle class="pt" cx="{px:.1f}" cy="{py:.1f}" r="4" fill="{s.color}">{tip}</circle>')
        out.append("</svg>")
        return "".join(out)


def _floor(scale: Scale) -> float:
    return 10.0 ** scale.a if scale.kind == "log" else scale.a


# ----------------------------------------------------------------------------- heatmaps
PERFECT = "#1a9850"  # zero errors: its own colour, so one wrong read never looks like a clean cell
_RAMP = ((0.0, (253, 174, 97)), (0.5, (215, 48, 39)), (1.0, (103, 0, 31)))  # error rate -> orange .. deep red
EMPTY = "#eef0f3"


def accuracy_color(errors: int, reads: int) -> str:
    """Green for a cell without errors; otherwise orange (a few wrong) through red (half, i.e. chance
    on a binary read) to deep red (every read wrong, the model follows the distractor)."""
    if errors == 0:
        return PERFECT
    rate = errors / reads
    for (a, ca), (b, cb) in itertools.pairwise(_RAMP):
        if rate <= b:
            t = (rate - a) / (b - a)
            return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(ca, cb))
    return "#" + "".join(f"{c:02x}" for c in _RAMP[-1][1])


def color_key() -> dict[str, str]:
    """The heatmap colours as CSS backgrounds, for the key drawn beside the heatmaps."""
    stops = ", ".join(f"#{''.join(f'{c:02x}' for c in rgb)} {100 * at:g}%" for at, rgb in _RAMP)
    return {"perfect": PERFECT, "ramp": f"linear-gradient(to right, {stops})", "empty": EMPTY}


@dataclass
class HeatCell:
    """One cell of a heatmap: errors in reads (``reads`` 0: nothing measured there) and a tooltip."""

    errors: int
    reads: int
    tip: str = ""

    @property
    def label(self) -> str:
        """Accuracy in whole percent, rounded down: only a cell without errors reads 100."""
        return "" if not self.reads else str(math.floor(100 * (self.reads - self.errors) / self.reads))


class Heatmap:
    """Rows x columns of coloured cells, each labelled with its accuracy, and *marks*: per column, a
    thick line on top of one row (the first value at which the model failed)."""

    CELL_W, CELL_H = 44, 18
    M = dict(left=44, right=4, top=4, bottom=34)

    def __init__(self, rows: list, cols: list, cells: dict, row_label: str, col_label: str,
                 marks: dict | None = None):
        self.rows, self.cols, self.cells = rows, cols, cells  # cells: (row, col) -> HeatCell
        self.row_label, self.col_label, self.marks = row_label, col_label, marks or {}
        widest = max([len(str(r)) for r in rows] + [len(row_label) + 2])  # about 7 px a character
        self.M = {**self.M, "left": max(self.M["left"], 10 + 7 * widest)}

    @property
    def _label_w(self) -> int:
        return 7 * (len(self.col_label) + 2) + 4  # the column axis's label, about 7 px a character

    @property
    def width(self) -> int:  # wide enough for the column label when the grid is narrower than it
        return self.M["left"] + max(self.CELL_W * len(self.cols), self._label_w) + self.M["right"]

    @property
    def height(self) -> int:
        return self.M["top"] + self.CELL_H * len(self.rows) + self.M["bottom"]

    def svg(self, title: str) -> str:
        """Kept small (a report may hold a thousand cells): one grey background stands for every cell
        without reads, and each measured cell is a bare rect (tooltip inside) plus its label."""
        m, w, h = self.M, self.CELL_W, self.CELL_H
        x0, y0 = m["left"], m["top"]
        x1, y1 = x0 + w * len(self.cols), y0 + h * len(self.rows)
        out = [f'<svg class="heat" width="{self.width}" height="{self.height}" viewBox="0 0 {self.width} '
               f'{self.height}" role="img" aria-label="{esc(title)}" xmlns="http://www.w3.org/2000/svg">'
               f"<title>{esc(title)}</title>"
               f'<rect class="none" x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" fill="{EMPTY}">'
               "<title>grey: no reads here (not on the grid at this length, or not run)</title></rect>"]
        rects, labels = [], []
        for i, row in enumerate(self.rows):
            y = y0 + i * h
            labels.append(f'<text class="tick" x="{x0 - 5}" y="{y + h // 2 + 4}" text-anchor="end">{esc(row)}</text>')
            for j, col in enumerate(self.cols):
                cell = self.cells.get((row, col))
                if cell is None or not cell.reads:
                    continue
                x = x0 + j * w
                tip = f"<title>{esc(cell.tip)}</title>" if cell.tip else ""
                fill = accuracy_color(cell.errors, cell.reads)
                rects.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{fill}">{tip}</rect>')
                light = cell.errors and cell.errors / cell.reads <= 0.3  # orange: dark ink reads better
                labels.append(f'<text class="hv{" lt" if light else ""}" x="{x + w // 2}" y="{y + h // 2 + 4}">'
                              f"{esc(cell.label)}</text>")
        out.append(f'<g class="hc">{"".join(rects)}</g>')
        for j, col in enumerate(self.cols):
            x = x0 + j * w
            labels.append(f'<text class="tick" x="{x + w // 2}" y="{y1 + 13}" text-anchor="middle">{esc(col)}</text>')
            if col in self.marks and self.marks[col] in self.rows:
                y = y0 + self.rows.index(self.marks[col]) * h
                out.append(f'<line class="tol" x1="{x + 1}" x2="{x + w - 1}" y1="{y}" y2="{y}"/>')
        out.append("".join(labels))
        out.append(f'<text class="label" x="{x0 - 5}" y="{y1 + 28}" text-anchor="end">{esc(self.row_label)} ↓</text>'
                   + (f'<text class="label" x="{(x0 + x1) // 2}" y="{y1 + 28}" text-anchor="middle">'
                      if x1 - x0 >= self._label_w else  # a narrow grid: the label starts where the row label ends
                      f'<text class="label" x="{x0 + 4}" y="{y1 + 28}" text-anchor="start">')
                   + f"{esc(self.col_label)} →</text></svg>")
        return "".join(out)
