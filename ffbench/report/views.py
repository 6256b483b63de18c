"""The report's tables and read excerpts as plain records, ready for the templates.

Numbers are worded here (exact intervals, one-sided bounds, thousands separators), so the
templates in ``reports/`` only lay them out; every string reaches the page through the template
engine's autoescaping.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ffbench import metrics, tasks
from ffbench.report.data import FailingRead, Model, is_stress, task_of
from ffbench.report.png import heatmap_data_uri
from ffbench.schema import CellResult


# ----------------------------------------------------------------------------- summary tables
@dataclass
class GlanceRow:
    model: Model
    cells: int  # cells, reads and errors outside the stress grid (all of them when a model has only stress cells)
    reads: int
    errors: int
    worst: str  # the worst of those cells, named
    worst_rate: str
    stress: str  # the stress grid's errors and points without an error, or "" without stress cells


def at_a_glance(models: list[Model]) -> list[GlanceRow]:
    """One line per model: its reads and errors, its worst cell (the number a release cares about)
    and, apart, how it did on the stress grid: the grid is built to break models, so its cells would
    be every model's worst and hide the i.i.d. suites. The counts and the worst cell are of the same
    cells, so a model's errors are always the errors its worst cell is the worst of."""
    rows = []
    for m in models:
        cells = m.cells
        plain = [c for c in cells if not is_stress(c)] or cells
        worst = max(plain, key=lambda c: (c.glitch_rate, -c.reads))  # all zero: the loosest bound
        grid = [c for c in cells if is_stress(c)]
        points = [p for c in grid for p in c.by_point]
        clean = sum(1 for p in points if int(p["errors"]) == 0)
        errors = sum(c.errors for c in grid)
        stress = (f"{errors:,} error{'' if errors == 1 else 's'} in {sum(c.reads for c in grid):,} reads; "
                  f"{clean} of {len(points)} points without an error") if grid else ""
        rows.append(GlanceRow(m, len(plain), sum(c.reads for c in plain), sum(c.errors for c in plain),
                              worst.key.describe(), metrics.describe_rate(worst.errors, worst.reads), stress))
    return rows


@dataclass
class SummaryRow:
    model: Model
    cell: CellResult
    p_ignore: str
    rate: str
    ci: str
    rate_class: str  # "zero", "bad" (above 1%) or ""

    @property
    def task(self) -> str:
        """The cell's task (``--task``, docs/tasks.md) when it is not the flip-flop language."""
        return next((p[len("task="):] for p in self.cell.variant.split("+") if p.startswith("task=")), "")

    @property
    def heuristic(self) -> str:
        """``--task undo``/``registers``: the reference heuristic and how often the model gives its answer
        where it is wrong (1.0: the model behaves as the heuristic there)."""
        h = self.cell.breakdowns.get("heuristic")
        if not h or not h.get("reads_where_wrong"):
            return ""
        return f"{h['name']}: {h['agrees_there']:.0%} of {h['reads_where_wrong']:,}"  # the hint below says of what

    def sort_value(self, name: str) -> str:
        """The number a column sorts by (``data-v``), unrounded."""
        return f"{getattr(self.cell, name):.12g}"


def summary_rows(models: list[Model]) -> list[SummaryRow]:
    rows = []
    for m in models:
        for c in m.cells:
            lo, hi = c.ci95
            if c.errors == 0:
                rate, ci = "0", f"< {metrics.zero_error_bound(c.reads):.1e} (one-sided)"
            else:
                rate, ci = f"{c.glitch_rate:.2e}", f"[{lo:.1e}, {hi:.1e}]"
            cls = "zero" if c.errors == 0 else ("bad" if c.glitch_rate > 1e-2 else "")
            rows.append(SummaryRow(m, c, "" if c.p_ignore is None else f"{c.p_ignore:g}", rate, ci, cls))
    return rows


def shows_tasks(models: list[Model]) -> bool:
    """The summary has task and heuristic columns when a cell is of a task other than ffl."""
    return any("task=" in c.variant for m in models for c in m.cells)


@dataclass
class SampledRow:
    """A cell whose reads were asked K times (``--repeats``): its figures per read (ffbench.sampling)."""

    model: Model
    cell: CellResult
    repeats: int
    answers: int
    probability: str  # mean per-read error probability
    ci: str  # its cluster-robust 95% interval (or the exact one-sided bound when no answer is wrong)
    wrong_any: str
    wrong_all: str
    majority: str  # the majority answer's error rate (the glitch rate of the summary above)
    sequential: bool  # some reads kept fewer than K answers (--certify / --stop-at-first-error)


def sampled_rows(models: list[Model]) -> list[SampledRow]:
    """The sampled figures of every cell that has them (none for runs without ``--repeats``)."""
    rows = []
    for m in models:
        for c in m.cells:
            s = c.sampled
            if not s:
                continue
            lo, hi = s["ci95"]
            if s["wrong_answers"] == 0:
                probability, ci = "0", f"< {hi:.1e} (one-sided)"
            else:
                probability, ci = f"{s['error_probability']:.2e}", f"[{lo:.1e}, {hi:.1e}]"
            rows.append(SampledRow(m, c, int(s["repeats"]), int(s["answers"]), probability, ci,
                                   f"{s['wrong_any']:.4f}", f"{s['wrong_all']:.4f}", f"{s['majority_error_rate']:.2e}",
                                   bool(s.get("sequential"))))
    return rows


def shows_truncated(models: list[Model]) -> bool:
    """The summary has a truncated column when any reply was generated (only a generation can be cut)."""
    return any(c.scoring == "greedy" or c.truncated for m in models for c in m.cells)


@dataclass
class Truncation:
    """A model whose replies were cut by the token budget before they named an answer."""

    model: Model
    truncated: int
    replies: int  # reads scored by generation
    cells: list[str]


def truncations(models: list[Model]) -> list[Truncation]:
    out = []
    for m in models:
        cut = [c for c in m.cells if c.truncated]
        if cut:
            out.append(Truncation(m, sum(c.truncated for c in cut),
                                  sum(c.reads for c in m.cells if c.scoring == "greedy" or c.truncated),
                                  [c.key.describe() for c in cut]))
    return out


# ----------------------------------------------------------------------------- failing reads
CONTEXT_EDGE = 10  # instructions shown before the last write and after it / before the read


@dataclass
class Token:
    """One piece of a read's context: an instruction (``kind`` tok, write or read) or an elided gap."""

    kind: str
    text: str = ""
    cls: str = ""  # tok: the instruction's letter class (w, r, i)
    title: str = ""
    said: str = ""  # read: the model's answer, struck through before the true digit


class ReadInSequence(Protocol):
    """What drawing a read in its sequence needs: a run's failing read or a hunt's glitch."""

    sequence: str | None
    position: int  # index of the answer digit in the compact string
    target: int
    prediction: int
    write_distance: int


def context_tokens(read: ReadInSequence, unit: int = 2) -> list[Token]:
    """The compact sequence around a failing read: the last write, the gap (elided) and the read.

    ``unit``: characters per instruction (2; 3 for ``--task registers``: operation, register, bit);
    the last character of an instruction is its data. An elided gap says how many reads (and, where
    the task has any there, writes: an undone write, another register's) it holds and how many of its
    instructions carry a value other than the last write's (the distractors of a stress sequence)."""
    seq = read.sequence
    if not seq:
        return []
    u = unit
    q = read.position - (u - 1)  # index of the 'r'
    write = q - u * read.write_distance  # write_distance counts the read itself: w0r0 -> 1
    start = max(0, write - u * CONTEXT_EDGE)

    def instr(i: int) -> Token:
        op, text, val = seq[i], seq[i:i + u], seq[i + u - 1]
        if i == write:
            return Token("write", text, "w", f"the last write: value {val}")
        if i == q:
            said = "?" if read.prediction < 0 else str(read.prediction)
            return Token("read", text, "r", f"this read: target {read.target}, predicted {answer(read.prediction)}",
                         said)
        return Token("tok", text, {"w": "w", "r": "r", "i": "i"}.get(op, "i"))

    idx = list(range(start, q + 1, u))
    out = [Token("gap", "…")] if start > 0 else []
    if len(idx) > 4 * CONTEXT_EDGE + 4:
        head = [i for i in idx if i <= write + u * CONTEXT_EDGE]
        tail = [i for i in idx if i >= q - u * CONTEXT_EDGE and i not in head]
        gap = (tail[0] - head[-1]) // u - 1
        gap_text = seq[head[-1] + u:tail[0]]
        reads, writes = gap_text[::u].count("r"), gap_text[::u].count("w")
        written = "no write" if not writes else f"{writes} write{'' if writes == 1 else 's'}"
        words = f"… {gap} instructions ({reads} read{'' if reads == 1 else 's'}, {written}"
        if write >= 0:
            value = seq[write + u - 1]
            other = sum(1 for v in gap_text[u - 1::u] if v != value)
            words += f", {other} carrying {_other_value(value)}"
        out += [instr(i) for i in head] + [Token("gap", words + ") …")] + [instr(i) for i in tail]
    else:
        out += [instr(i) for i in idx]
    return out


def _other_value(value: str) -> str:
    return {"0": "1", "1": "0"}.get(value, f"a value other than {value}")


def answer(prediction: int) -> str:
    return "no answer" if prediction < 0 else str(prediction)


@dataclass
class ReadRow:
    read: FailingRead
    cell: str
    verdict: str  # "target → predicted"
    margin: str
    context: list[Token]

    @property
    def point(self) -> str:
        """The stress point's parameters without the family name (the section names the family)."""
        p = self.read.point or ""
        return p[p.index("(") + 1:-1].replace(",", ", ") if "(" in p else p


def read_rows(reads: list[FailingRead]) -> list[ReadRow]:
    return [ReadRow(r, r.cell.key.describe(), f"{r.target} → {answer(r.prediction)}",
                    "" if math.isnan(r.margin) else f"{r.margin:+.3f}",
                    context_tokens(r, tasks.get(task_of(r.cell)).unit)) for r in reads]


@dataclass
class FailingSection:
    """A model's failing reads: open for the user's models, folded for the shipped references."""

    model: Model
    rows: list[ReadRow]

    @property
    def cells(self) -> int:
        return len({r.cell for r in self.rows})


# ----------------------------------------------------------------------------- attention
@dataclass
class AttentionFigure:
    caption: str
    heads: list[str]  # row labels, layer.head
    uri: str  # the map as a data: URI PNG
    height: int  # px
    span: int
    write_left: float | None  # % from the left of the last write's value, None when outside the map


def attention_figures(maps: list[tuple[FailingRead, np.ndarray]]) -> list[AttentionFigure]:
    out = []
    for read, att in maps:
        layers, heads, span = att.shape
        unit = tasks.get(task_of(read.cell)).unit  # characters per instruction, its data last
        value = read.position - unit * read.write_distance  # the last write's value (its instruction's data)
        known = value - (unit - 1) >= 0
        on_write = att[:, :, value] if known else np.zeros((layers, heads))
        best = np.unravel_index(int(np.argmax(on_write)), on_write.shape)
        out.append(AttentionFigure(
            f"{read.cell.key.describe()}, sequence {read.seq_index}, read at position {read.position}: target "
            f"{read.target}, predicted {read.prediction}; most attention on the last write's value: "
            f"L{best[0]}.H{best[1]} = {on_write[best]:.3f}",
            [f"L{layer}.H{h}" for layer in range(layers) for h in range(heads)],
            heatmap_data_uri(att.reshape(layers * heads, span)), 14 * layers * heads, span,
            round(100 * (value + 0.5) / span, 2) if known else None))
    return out


# ----------------------------------------------------------------------------- provenance
@dataclass
class Provenance:
    model: Model
    label: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    config: str = ""


def provenance(models: list[Model]) -> list[Provenance]:
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
                facts.append(("scored as", str(run.extra["scored_as"])))
            out.append(Provenance(m, run.label, facts, json.dumps(run.config, indent=2)))
    return out
