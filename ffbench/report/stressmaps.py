"""The stress section's data: per family, heatmaps of accuracy (axis parameter x T), tolerances
and the first failing read of each, for the user's models beside the shipped references.

A stress cell of a run (``--suite stress`` at one length) holds, per point of the grid, reads and
errors (``CellResult.by_point``) and, per family with its other parameters fixed, a tolerance
(``CellResult.tolerances``: how far along the axis the model stayed right). Here they are regrouped
the way a needle-in-a-haystack chart reads: one *row* per family and fixed parameters (e.g.
``distractor_run`` with density 1.0, decisive write at the start), and in it one panel per model,
the axis values down (harder further down) and the lengths across.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ffbench import stress
from ffbench.report.data import FailingRead, Model, first_failures, is_stress
from ffbench.report.svg import HeatCell, Heatmap
from ffbench.report.views import ReadRow, read_rows
from ffbench.sources import SequenceStore


@dataclass
class Tolerance:
    length: int
    line: str  # the tolerance sentence, without the family label and the T the row already shows
    first_failure: object


@dataclass
class Panel:
    """One model's heatmap of one row."""

    model: Model
    heatmap: Heatmap
    tolerances: list[Tolerance]


@dataclass
class Row:
    """A family with its other parameters fixed (and one way of scoring), across models."""

    label: str  # e.g. "density=1.0, write_at=start", or "" for a family with one parameter
    panels: list[Panel] = field(default_factory=list)


@dataclass
class Examples:
    """A model's first failing reads of one family (one per row and length where it failed)."""

    model: Model
    rows: list[ReadRow]


@dataclass
class FamilyView:
    name: str
    description: str
    axis: str
    harder: str
    rows: list[Row] = field(default_factory=list)
    examples: list[Examples] = field(default_factory=list)


def _scoring_label(cell) -> str:
    return f"{cell.render}, {cell.scoring}" + (f", {cell.variant}" if cell.variant else "")


def families(models: list[Model], examples_per_row: int = 5, store: SequenceStore | None = None) -> list[FamilyView]:
    """Every stress family measured by some model, in the grid's family order.

    ``examples_per_row``: per model and row, up to this many failing reads (the first failure at
    each length, shortest first); 0 for none.
    """
    store = store or SequenceStore()
    # (family, fixed, scoring) -> model name -> length -> {"points": {axis value: entry}, "tolerance": dict}
    grids: dict[tuple, dict[str, dict[int, dict]]] = {}
    owners: dict[tuple[str, int, str], tuple] = {}  # (model, length, scoring) -> (run, cell)
    scorings: set[str] = set()
    for m in models:
        for run, cell in m.cells_with_runs():
            if not is_stress(cell):
                continue
            how = _scoring_label(cell)
            scorings.add(how)
            owners[(m.name, cell.length, how)] = (run, cell)
            for entry in cell.by_point:
                family, params = stress.parse_point(entry["point"])
                axis = stress.FAMILIES[family].axis
                fixed = tuple((k, v) for k, v in params.items() if k != axis)
                at = grids.setdefault((family, fixed, how), {}).setdefault(m.name, {}).setdefault(
                    cell.length, {"points": {}, "tolerance": None})
                at["points"][params[axis]] = entry
            for tol in cell.tolerances:
                fixed = tuple(tol["fixed"].items())
                at = grids.get((tol["family"], fixed, how), {}).get(m.name, {}).get(cell.length)
                if at is not None:
                    at["tolerance"] = tol
    views = []
    for name, family in stress.FAMILIES.items():
        keys = [k for k in grids if k[0] == name]
        if not keys:
            continue
        view = FamilyView(name, family.description, family.axis, family.harder)
        found: dict[str, list[FailingRead]] = {}
        for key in keys:
            _, fixed, how = key
            label = ", ".join(f"{k}={v}" for k, v in fixed)
            if len(scorings) > 1:
                label = f"{label} [{how}]" if label else f"[{how}]"
            by_model = grids[key]
            lengths = sorted({t for per in by_model.values() for t in per})
            values = sorted({v for per in by_model.values() for at in per.values() for v in at["points"]},
                            reverse=family.harder == "smaller")
            row = Row(label)
            for m in models:
                if m.name not in by_model:
                    continue
                per = by_model[m.name]
                row.panels.append(_panel(m, per, lengths, values, family))
                if examples_per_row:
                    picks = []
                    for length in sorted(per):
                        tol = per[length]["tolerance"]
                        if tol and tol["first_failure"] is not None:
                            params = stress.Params([*fixed, (family.axis, tol["first_failure"])])
                            order = stress.Params((p, params[p]) for p in family.parameters)
                            picks.append((length, stress.Point(name, order, 0).id))
                    for length, point_id in picks[:examples_per_row]:
                        run, cell = owners[(m.name, length, how)]
                        found.setdefault(m.name, []).extend(first_failures(run, cell, [point_id], store))
            view.rows.append(row)
        view.examples = [Examples(m, read_rows(found[m.name])) for m in models if found.get(m.name)]
        views.append(view)
    return views


def _panel(model: Model, per: dict[int, dict], lengths: list[int], values: list, family) -> Panel:
    cells, marks, tolerances = {}, {}, []
    for length in lengths:
        at = per.get(length)
        if at is None:
            continue  # not run at this length: the heatmap's grey background
        for value, entry in at["points"].items():
            errors, reads = int(entry["errors"]), int(entry["reads"])
            cells[(value, length)] = HeatCell(errors, reads, f"{family.axis}={value}, T={length}: {errors}/{reads} wrong")
        tol = at["tolerance"]
        if tol:
            if tol["first_failure"] is not None:
                marks[length] = tol["first_failure"]
            line = tol["line"]
            text = (line.split(": ", 1)[1] if ": " in line else line).removeprefix(f"at T = {length}, ")
            tolerances.append(Tolerance(length, text, tol["first_failure"]))
    heatmap = Heatmap(values, lengths, cells, family.axis, "T", marks)
    return Panel(model, heatmap, tolerances)
