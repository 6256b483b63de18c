"""The hunt section's map: heatmaps of error rate over pairs of read descriptors, and the minimal
failing shapes, from a map search's ``hunt.json`` (``map`` and ``shapes``).

Each heatmap sums the map's cells over every other axis (reads and confirmed wrong reads per pair
of bins); only bins that hold reads are drawn, in grid order. Every string comes from hunt.json
and is escaped by :mod:`ffbench.report.svg` and the autoescaping templates.
"""

from __future__ import annotations

from dataclasses import dataclass

from ffbench.report.svg import HeatCell, Heatmap

# (rows, columns): the pairs where the failures seen so far separate (opposite runs against reads in
# between, decoys and position; decoys against the ignores between them and the write; distance against
# write density)
PAIRS = (("opposite_since_write", "reads_between"), ("opposite_run", "reads_between"),
         ("opposite_since_write", "decoys"), ("opposite_since_write", "write_slot"),
         ("opposite_since_write", "fraction"), ("decoys", "gap_before_write"),
         ("write_distance", "write_density"))
# a task hunt's pairs (ffbench.hunt.task_undo / task_registers axes): retraction chains against whether the
# toggle is wrong and how deep the stack is; a register's staleness against writes to the others and K
TASK_PAIRS = {"undo": (("chain", "toggle_wrong"), ("retracted", "depth"), ("chain", "write_distance"),
                       ("retracted", "copy_wrong"), ("depth", "fraction")),
              "registers": (("staleness", "other_writes"), ("other_writes", "one_variable_wrong"),
                            ("staleness", "registers"), ("registers_since", "one_variable_wrong"),
                            ("own_opposite", "reads_between"))}
NAMES = {"opposite_since_write": "opposite ignores since the write", "opposite_run": "strict opposite run",
         "decoys": "decoy writes", "reads_between": "reads in between", "write_distance": "write distance", "write_slot": "instructions before the write",
         "fraction": "position (fraction of T)", "write_density": "write density",
         "gap_before_write": "ignores right before the write",
         "retracted": "writes undone since the answer's write", "chain": "undos since the last write",
         "depth": "stack depth", "toggle_wrong": "toggle heuristic wrong", "copy_wrong": "last write wrong",
         "staleness": "instructions since the register's write", "other_writes": "writes to other registers since",
         "registers_since": "other registers written since", "own_opposite": "its own opposite ignores",
         "one_variable_wrong": "one-variable heuristic wrong", "registers": "registers (K)"}


@dataclass
class MapPanel:
    title: str
    heatmap: Heatmap


@dataclass
class ShapeRow:
    shape: str
    glitches: int
    containing: int
    length: int
    minimal: bool
    margin: str
    text: str


@dataclass
class MapView:
    facts: list[tuple[str, str]]
    panels: list[MapPanel]
    shapes: list[ShapeRow]
    descriptors: str = ""  # the map's axes, in words (the flip-flop language's or a task's)


def _panel(amap: dict, rows_axis: str, cols_axis: str) -> MapPanel | None:
    axes = {a["name"]: a for a in amap.get("axes", [])}
    if rows_axis not in axes or cols_axis not in axes:
        return None
    names = list(axes)
    i, j = names.index(rows_axis), names.index(cols_axis)
    sums: dict[tuple[int, int], list[int]] = {}
    for c in amap.get("cells", []):
        acc = sums.setdefault((int(c["bins"][i]), int(c["bins"][j])), [0, 0])
        acc[0] += int(c["reads"])
        acc[1] += int(c["errors"])
    if not sums:
        return None
    row_labels, col_labels = axes[rows_axis]["labels"], axes[cols_axis]["labels"]
    rows = sorted({r for r, _ in sums})
    cols = sorted({c for _, c in sums})
    cells = {}
    for (r, c), (reads, errors) in sums.items():
        tip = (f"{NAMES[rows_axis]} {row_labels[r]}, {NAMES[cols_axis]} {col_labels[c]}: {errors:,} of "
               f"{reads:,} reads wrong")
        cells[(str(row_labels[r]), str(col_labels[c]))] = HeatCell(errors, reads, tip)
    heat = Heatmap([str(row_labels[r]) for r in rows], [str(col_labels[c]) for c in cols], cells,
                   NAMES[rows_axis], NAMES[cols_axis])
    return MapPanel(f"{NAMES[rows_axis]} × {NAMES[cols_axis]}", heat)


def map_view(summary: dict) -> MapView | None:
    amap = summary.get("map")
    if not amap:
        return None
    shapes = summary.get("shapes") or []
    spent = summary.get("spent") or {}
    facts = [("cells", (f"{int(amap.get('cells_tried', 0)):,} tried, {int(amap.get('cells_failing', 0)):,} with a "
                        "confirmed wrong read")),
             ("shrinking", (f"{int(spent.get('shrink_reads', 0)):,} reads; {len(shapes):,} distinct minimal "
                            f"shape{'' if len(shapes) == 1 else 's'}"))]
    task = (summary.get("config") or {}).get("task")
    pairs = TASK_PAIRS.get(task, PAIRS)  # no task recorded: the flip-flop language's
    panels = [p for p in (_panel(amap, r, c) for r, c in pairs) if p is not None]
    rows = [ShapeRow(str(s["shape"]), int(s["glitches"]), int(s.get("containing", 0)), int(s["length"]),
                     bool(s["minimal"]),
                     f"{float(s['margin']):.3g}" if s.get("margin") is not None else "", str(s["text"]))
            for s in shapes]
    described = ", ".join(NAMES.get(a["name"], a["name"]) for a in amap.get("axes", []))
    return MapView(facts, panels, rows, described)
