"""What the map search of ``ffbench hunt`` shows on the shipped references (issue 24).

Hunts each model (``--models``, default the four shipped references) at ``--length`` with
``--budget`` reads into ``--work/<model>`` (reused when it holds a finished hunt of the same
settings), then prints from its hunt.json: the spend, the cells tried and failing, the minimal
shapes, and the map summed over every axis but one under conditions where the known failures live
(a pure opposite run after a write at the start; reads in between; many decoys), as
``bin:errors/reads``.

    OMP_NUM_THREADS=1 nice python benchmarks/huntmap.py --budget 5000 --length 128 --work hunts/map
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffbench.hunt import driver

MODELS = ("lstm-ref", "ssm-ref", "transformer-ref", "transformer-mix")


def marginal(m: dict, axis: str, cond) -> str:
    names = [a["name"] for a in m["axes"]]
    labels = m["axes"][names.index(axis)]["labels"]
    acc: dict[int, list[int]] = collections.defaultdict(lambda: [0, 0])
    for c in m["cells"]:
        b = dict(zip(names, c["bins"]))
        if cond(b):
            acc[b[axis]][0] += c["reads"]
            acc[b[axis]][1] += c["errors"]
    return " ".join(f"{labels[k]}:{e}/{r}" for k, (r, e) in sorted(acc.items()))


VIEWS = (
    ("opposite ignores since the write, write at slot 0, pure run, no reads between", "opposite_since_write",
     lambda b: b["write_slot"] == 0 and b["reads_between"] == 0 and b["opposite_run"] == b["opposite_since_write"]),
    ("the same, write later, no decoys", "opposite_since_write",
     lambda b: b["write_slot"] > 0 and b["reads_between"] == 0 and b["decoys"] == 0
     and b["opposite_run"] == b["opposite_since_write"]),
    ("strict opposite run, with reads in between", "opposite_run", lambda b: b["reads_between"] > 0),
    ("reads in between, at >= 32 opposite ignores since the write", "reads_between",
     lambda b: b["opposite_since_write"] >= 13),
    ("opposite ignores since the write, >= 8 decoys", "opposite_since_write", lambda b: b["decoys"] >= 6),
    ("decoys, any", "decoys", lambda b: True),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--budget", type=int, default=5000)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="hunts/map")
    args = ap.parse_args()
    for name in args.models:
        out = Path(args.work) / f"map-{name}"  # not ./<name>: an ffbench/ spec would resolve a local folder first
        s, _ = driver.hunt_model(f"ffbench/{name}", args.budget, str(out), length=args.length, seed=args.seed,
                                 echo=lambda m: None)
        m, spent = s["map"], s["spent"]
        print(f"## {name} T={args.length}: {spent['reads']:,} reads ({spent['shrink_reads']:,} shrinking), "
              f"{s['glitches']['distinct']:,} glitches, {m['cells_tried']:,} cells tried, "
              f"{m['cells_failing']:,} failing")
        for sh in s["shapes"]:
            print(f"  shape {sh['shape']}  shrunk {sh['glitches']}, held by {sh.get('containing', 0)} more"
                  f"{'' if sh['minimal'] else ' (not minimal)'}, margin {sh['margin']:.2f}")
        for title, axis, cond in VIEWS:
            print(f"  {title}: {marginal(m, axis, cond)}")
        print(json.dumps({"families": [(f["family"], f["reads"], f["glitches"]) for f in s["families"]]}))


if __name__ == "__main__":
    main()
