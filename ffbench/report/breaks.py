"""The section "Where each architecture breaks": per task beyond ``ffl``, the models side by side.

One table per task (``--task``, docs/tasks.md): a row per model (the user's and the task's shipped
references), a column per suite (with T, and K for registers), each cell the accuracy with its exact
95% interval and its counts, all read from the runs' results.json (``reads``, ``errors``, ``ci95``);
then the reference heuristic (undo: the toggle; registers: one variable): its own accuracy on the same
sequences as a first row, and per model how often the model gives the heuristic's answer where the
heuristic is wrong (the runner's ``heuristic`` breakdown: ``reads_where_wrong``, ``agrees_there``). A
model that learned the heuristic instead of the task agrees there on every read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ffbench import metrics, tasks
from ffbench.report.data import Model, task_of
from ffbench.schema import CellResult, parameter_axes

# What each heuristic is, for the column's header (keyed by the samples column tasks.py names).
HEURISTIC_WORDS = {
    "toggle": ("toggle heuristic", "keeps one bit and flips it at every undo (Zhou's failure mode)"),
    "one_variable": ("one-variable heuristic", "answers the most recent write to any register"),
}
# Published numbers a task's table is read against, stated as text (never drawn as a model's row).
ANCHORS = {
    "undo": ("Anchor: Zhou (arXiv 2604.05923) reports two-layer Mamba-2 right on 41.10% of adversarial retraction "
             "reads, below chance (50%), having learned the toggle rather than the stack."),
}
_K_SUFFIX = re.compile(r"_k\d+$")


@dataclass
class Column:
    label: str
    title: str  # the suite's description (docs/tasks.md), shown on hover
    key: tuple  # (suite order, K, T, render, scoring, variant) of the cells it holds


@dataclass
class Entry:
    """One model's cell of one column: accuracy, exact interval and counts as results.json has them."""

    accuracy: str
    ci: str
    correct: int
    reads: int
    errors: int
    bad: bool  # accuracy below the heuristic's on the same column (or below half on a structured suite)


@dataclass
class Agreement:
    """How often a model gives the heuristic's answer on the reads of one cell where the heuristic is wrong."""

    where: str  # the column's label
    agree: int
    reads: int
    rate: str
    ci: str


@dataclass
class Row:
    model: Model
    entries: list[Entry | None]
    agreements: list[Agreement]


@dataclass
class ParamTable:
    """A structured suite (retraction, stale) by its parameters: per model, wrong / reads at each depth or
    distance (results.json ``by_parameter``), so the table says where each architecture breaks."""

    title: str
    columns: list[str]  # one per parameter value (``k=2``; ``placement=writes, distance=8``)
    rows: list[tuple[Model, str, list[tuple[str, bool] | None]]]  # model, its other parameters, (text, more
    # than half wrong) per column


@dataclass
class TaskTable:
    task: str
    description: str
    columns: list[Column]
    heuristic_name: str
    heuristic_what: str
    heuristic_row: list[str]  # the heuristic's own accuracy per column ("" where unknown; "a / b" where models
    # read different sequences, in row order)
    structured: str  # the task's structured suites (retraction, stale), whose reads the agreement counts
    rows: list[Row]
    anchor: str
    by_parameter: list[ParamTable] = field(default_factory=list)

    @property
    def heuristic_mixed(self) -> bool:
        """Some column's models read different sequences, so it shows the heuristic once per set."""
        return any(" / " in h for h in self.heuristic_row)


def tables(models: list[Model]) -> list[TaskTable]:
    """One table per task other than ffl that a model's cells are of, in the order of ``tasks.TASKS``."""
    present = {task_of(c) for m in models for c in m.cells} - {tasks.DEFAULT}
    return [_table(tasks.get(name), models) for name in tasks.TASKS if name in present]


def _column_key(task: tasks.Task, cell: CellResult) -> tuple:
    suite = _K_SUFFIX.sub("", cell.suite)
    order = [*task.suites, *task.structured]
    k = (cell.source.registers or 0) if cell.source else 0
    return (order.index(suite) if suite in order else len(order), suite, k, cell.length, cell.render, cell.scoring, cell.variant)


def _structured(task: tasks.Task, cell: CellResult) -> bool:
    return _K_SUFFIX.sub("", cell.suite) in task.structured


def _table(task: tasks.Task, models: list[Model]) -> TaskTable:
    mine = [(m, [c for c in m.cells if task_of(c) == task.name]) for m in models]
    mine = [(m, cells) for m, cells in mine if cells]
    keys = sorted({_column_key(task, c) for _, cells in mine for c in cells})
    about = {**{n: t.description for n, t in task.suites.items()}, **task.structured}
    columns = [Column(_label(task, k, keys), about.get(k[1], ""), k) for k in keys]
    name, what = HEURISTIC_WORDS.get(task.heuristic[0] if task.heuristic else "", ("", ""))
    heuristic_seen: list[dict[str, str]] = [{} for _ in keys]  # per column: data sha256 -> the heuristic's accuracy
    rows = []
    for m, cells in mine:
        by_key = {}
        for c in cells:
            by_key.setdefault(_column_key(task, c), c)  # a model's first cell of a column (Model.cells order)
        entries, agreements = [], []
        for i, k in enumerate(keys):
            c = by_key.get(k)
            if c is None:
                entries.append(None)
                continue
            h = c.breakdowns.get("heuristic") or {}
            if h.get("accuracy") is not None:
                heuristic_seen[i].setdefault(c.data_sha256, f"{100 * h['accuracy']:.1f}%")
            entries.append(_entry(c, h, _structured(task, c)))
            if _structured(task, c) and h.get("reads_where_wrong") and h.get("agrees_there") is not None:
                n = int(h["reads_where_wrong"])
                agree = round(h["agrees_there"] * n)  # a mean of n booleans times n: the exact count
                lo, hi = metrics.clopper_pearson(agree, n)
                agreements.append(Agreement(columns[i].label, agree, n, f"{100 * agree / n:.1f}%",
                                            f"[{100 * lo:.1f}, {100 * hi:.1f}]"))
        rows.append(Row(m, entries, agreements))
    # one number where every model read the same sequences; else one per set of sequences, in row order
    heuristic_row = [" / ".join(seen.values()) for seen in heuristic_seen]
    by_parameter = [t for i, k in enumerate(keys) if k[1] in task.structured
                    for t in [_param_table(columns[i].label, k, mine, task)] if t is not None]
    return TaskTable(task.name, task.description, columns, name, what, heuristic_row,
                     " and ".join(task.structured) or "structured", rows, ANCHORS.get(task.name, ""), by_parameter)


def _param_table(label: str, key: tuple, mine: list, task: tasks.Task) -> ParamTable | None:
    """The models' ``by_parameter`` counts of one structured column, as results.json holds them: a column
    per value of the numeric parameter (the depth k, the distance), a row per model and value of the
    others (stale: the placement). A run made before the breakdown existed has none: its row says so."""
    rows: dict[tuple, dict] = {}
    order, varied_name = [], ""
    for m, cells in mine:
        c = next((c for c in cells if _column_key(task, c) == key), None)
        if c is None:
            continue
        found = c.breakdowns.get("by_parameter") or []
        if not found:
            rows.setdefault((id(m), ""), {"model": m, "fixed": "", "cells": {}})
        for row in found:
            varied_name, others = parameter_axes(row)
            fixed = ", ".join(f"{p}={row[p]}" for p in others)
            value = str(row[varied_name])
            if value not in order:
                order.append(value)
            entry = rows.setdefault((id(m), fixed), {"model": m, "fixed": fixed, "cells": {}})
            entry["cells"][value] = (f"{int(row['errors']):,} / {int(row['reads']):,}",
                                     2 * int(row["errors"]) > int(row["reads"]))
    if not order:
        return None
    return ParamTable(f"{label}: wrong / reads by {varied_name}", [f"{varied_name}={v}" for v in order],
                      [(r["model"], r["fixed"], [r["cells"].get(v) for v in order]) for r in rows.values()])


def _entry(c: CellResult, h: dict, structured: bool) -> Entry:
    lo, hi = c.ci95  # the glitch rate's exact interval, as the run wrote it; accuracy's is its mirror
    correct = c.reads - c.errors
    below = h.get("accuracy") is not None and c.accuracy < h["accuracy"]
    return Entry(f"{100 * c.accuracy:.1f}%", f"[{100 * (1 - hi):.1f}, {100 * (1 - lo):.1f}]", correct, c.reads,
                 c.errors, below or (structured and c.accuracy < 0.5))


def _label(task: tasks.Task, key: tuple, keys: list[tuple]) -> str:
    """A column's name: the suite and T, K for the tasks that name registers, and the rendering,
    scoring and variant only where the table's columns differ in them."""
    _, suite, k, length, render, scoring, variant = key
    words = [suite]
    if task.default_registers is not None and k:
        words.append(f"K={k}")
    words.append(f"T={length}")
    if len({kk[4] for kk in keys}) > 1:
        words.append(render)
    if len({kk[5] for kk in keys}) > 1:
        words.append(scoring)
    extra = "+".join(p for p in variant.split("+") if p and not p.startswith("task="))
    if extra:
        words.append(f"[{extra}]")
    return " ".join(words)
