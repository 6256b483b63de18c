"""What ``ffbench hunt --task undo|registers`` finds on the shipped task references (issue 28).

Hunts each shipped UNDO and registers reference at its training length with ``--budget`` reads into
``--work/<model>`` (a finished hunt of the same settings there is reused: nothing is rescored), then
prints from its hunt.json the spend, the yields per kind of candidate, the cells tried and failing,
the map summed over every axis but two (UNDO: the undo chain since the last write x whether the
toggle heuristic is wrong; registers: writes to other registers since the read register's write x
whether one variable is wrong), each as errors/reads with its exact 95% interval, and the first
minimal shapes.

    OMP_NUM_THREADS=1 nice python benchmarks/hunt_tasks.py --budget 5000 --work hunts/tasks
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffbench.hunt import driver
from ffbench.metrics import clopper_pearson

MODELS = {"undo": ("undo-transformer", "undo-lstm", "undo-ssm"),
          "registers": ("registers-transformer", "registers-lstm", "registers-ssm")}
AXES = {"undo": ("chain", "toggle_wrong"), "registers": ("other_writes", "one_variable_wrong")}
LABELS = ("0", "1", "2", ">=3")  # the first bins of the count axes (SMALL_EDGES: 0, 1, 2, 3, ...), the rest summed


def table(summary: dict, task: str) -> list[str]:
    m, g, spent = summary["map"], summary["glitches"], summary["spent"]
    names = [a["name"] for a in m["axes"]]
    head = (f"## {summary['model']} --task {task} T={summary['config']['length']}: {spent['reads']:,} reads "
            f"(+{spent['rescored_reads']:,} re-scored), {g['distinct']} glitches ({g['failing_reads']} wrong reads), "
            f"{m['cells_tried']:,} cells, {m['cells_failing']} failing, {len(summary['shapes'])} shapes "
            f"({spent['shrink_reads']} reads shrinking)")
    out = [head, "   yields: " + ", ".join(f"{r['family']} {r['glitches']}/{r['reads']}" for r in summary["families"])]
    a, b = AXES[task]
    ia, ib = names.index(a), names.index(b)
    acc: dict[tuple, list[int]] = {}
    for c in m["cells"]:
        row = acc.setdefault((min(c["bins"][ia], 3), c["bins"][ib]), [0, 0])
        row[0] += c["reads"]
        row[1] += c["errors"]
    for (ka, kb), (n, e) in sorted(acc.items()):
        lo, hi = clopper_pearson(e, n)
        out.append(f"   {a}={LABELS[ka]:>3} {b}={kb}: {e}/{n} wrong = {e / n:.1%} [{lo:.1%}, {hi:.1%}]")
    for sh in summary["shapes"][:4]:
        out.append(f"   shape {sh['shape']}  ({sh['glitches']} shrunk, {sh.get('containing', 0)} holding it"
                   f"{'' if sh['minimal'] else ', not minimal'})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=5000)
    ap.add_argument("--work", default="hunts/tasks")
    ap.add_argument("--tasks", default="undo,registers")
    args = ap.parse_args()
    for task in args.tasks.split(","):
        for name in MODELS[task]:
            summary, _ = driver.hunt_model(f"ffbench/{name}", args.budget, f"{args.work}/{name}", task=task,
                                           echo=lambda m: print(m, file=sys.stderr))
            print("\n".join(table(summary, task)))


if __name__ == "__main__":
    main()
