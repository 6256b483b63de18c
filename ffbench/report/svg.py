"""Inline SVG charts with no dependency: the report must open offline from file:// anywhere.

One small :class:`Plot` draws every figure of the report: linear, log or categorical axes, series
of points with optional confidence whiskers, and *bounds*: a cell with zero errors has no rate to
plot on a log axis, so it is drawn as a hollow downward triangle at its one-sided 95% upper bound
(about 3/N), which is what the data say. Every piece of text goes through :func:`esc`.
"""

from __future__ import annotations

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


def legend(series: list[Series], nines: bool = False) -> str:
    def key(s: Series) -> str:
        if not any(t.dash for t in series):
            return f'<span class="swatch" style="background:{s.color}"></span>'
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        return (f'<svg class="key" width="26" height="10" viewBox="0 0 26 10"><line x1="1" x2="25" y1="5" y2="5" '
                f'stroke="{s.color}" stroke-width="2"{dash}/></svg>')

    items = "".join(f"<li>{key(s)}{esc(s.name)}</li>" for s in series)
    shape = "M1,10 L11,10 L6,1 Z" if nines else "M1,2 L11,2 L6,11 Z"
    where = "accuracy drawn at its 95% lower bound" if nines else "drawn at the 95% upper bound"
    note = (f'<li class="note"><svg width="12" height="12" viewBox="0 0 12 12"><path class="bound" d="{shape}" '
            f'stroke="#555"/></svg> zero errors: {where} (about 3/N)</li>'
            if any(p.bound for s in series for p in s.points) else "")
    return f'<ul class="legend">{items}{note}</ul>'
