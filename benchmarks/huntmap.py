"""What the map search of ``ffbench hunt`` shows on the shipped references (issue 24).

Hunts each model (``--models``, default the four shipped references) at ``--length`` with
``--budget`` reads into ``--work/<model>`` (reused when it holds a finished hunt of the same
settings), then prints from its hunt.json: the spend, the cells tried and failing, the minimal
shapes, and the map summed over every axis but one under conditions where the known failures live
(a pure opposite run after a write at the start; reads in between; many decoys), as
``bin:errors/reads``.

    OMP_NUM_THREADS=1 nice python benchmarks/huntmap.py --budget 5000 --length 128 --work hunts/map

With ``--table DIR...`` (finished map hunts) it prints one markdown row per hunt instead: cells tried and
failing, minimal shapes, the tolerance lines checked / contradicted / not checkable, and the map's reads
(wrong/all) in the corner of >= 8 decoys and a strict opposite run >= 44, with reads in between, and per
position bin of the read (fraction of the sequence: quarters, then the last instruction).

With ``--corners DIR...`` it prints the map's named corners (``map.corners``, ffbench.hunt.corners): one row
per corner, one column per hunt, ``wrong/reads [95% interval]`` (``-`` where the hunt's length cannot hold it).
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


def _sum(m: dict, cond) -> str:
    names = [a["name"] for a in m["axes"]]
    edges = {a["name"]: a["edges"] for a in m["axes"]}
    r = e = 0
    for c in m["cells"]:
        lo = {n: edges[n][b] for n, b in zip(names, c["bins"])}
        if cond(lo):
            r, e = r + c["reads"], e + c["errors"]
    return f"{e:,}/{r:,}"


def without_envelope(d: Path, s: dict) -> list[tuple]:
    """The hunt's shipped lines re-checked on the same labelled reads with every read of a line's descriptor
    region claimed (the ranges of its own grid reads ignored): (family, fixed, contradicting, claimed)."""
    from ffbench.hunt import lines

    state = json.loads((d / "state.json").read_text())
    store: dict = {}
    for key, e in state["labeled"].items():
        read = json.loads(key)
        read.pop("env", None)
        acc = store.setdefault(json.dumps(read, sort_keys=True), {"reads": 0, "wrong": 0, "examples": []})
        acc["reads"], acc["wrong"] = acc["reads"] + e["reads"], acc["wrong"] + e["wrong"]
        acc["examples"] = (acc["examples"] + e["examples"])[: lines.EXAMPLES]
    cfg = s["config"]
    _, found, _ = lines.load(cfg["model"], cfg["length"], cfg.get("render", "symbolic"), None)
    out = lines.check_lines(found, store, cfg["length"])
    return [(c["family"], c["fixed"], c["contradicting"], c["claimed"]) for c in out["checked"] if c["contradicting"]]


def table(dirs: list[Path]) -> None:
    print("| hunt | reads | cells tried / failing | minimal shapes | lines checked / contradicted / unchecked "
          "| corner >=8 decoys x run >=44 (gap >= 2) | reads in between | position 0-.25 / .25-.5 / .5-.75 / .75-1 / last |")
    print("|---|---|---|---|---|---|---|---|")
    for d in dirs:
        s = json.loads((d / "hunt.json").read_text())
        m, lines = s["map"], s.get("lines", {})
        bad = sum(1 for c in lines.get("checked", []) if c["contradicting"])
        pos = " / ".join(_sum(m, lambda b, lo=lo: b["fraction"] == lo) for lo in m["axes"][
            [a["name"] for a in m["axes"]].index("fraction")]["edges"])
        print(f"| {d.name} | {s['spent']['reads']:,} | {m['cells_tried']:,} / {m['cells_failing']:,} | {len(s['shapes'])} "
              f"| {len(lines.get('checked', []))} / {bad} / {len(lines.get('unchecked', []))} "
              f"| {_sum(m, lambda b: b['decoys'] >= 8 and b['opposite_run'] >= 44)} "
              f"({_sum(m, lambda b: b['decoys'] >= 8 and b['opposite_run'] >= 44 and b['gap_before_write'] >= 2)}) "
              f"| {_sum(m, lambda b: b['reads_between'] >= 1)} | {pos} |")
    for d in dirs:
        s = json.loads((d / "hunt.json").read_text())
        print(f"\n{d.name}: shapes " + ", ".join(f"`{sh['shape']}` ({sh['glitches']} + {sh.get('containing', 0)})"
                                            for sh in s["shapes"][:8]))
        for family, fixed, bad, claimed in without_envelope(d, s):
            print(f"  without the ranges of its grid reads: {family} {fixed} contradicted by {bad} of {claimed}")
        for c in s.get("lines", {}).get("checked", []):
            if c["contradicting"]:
                ex = next((x for x in s["contradictions"] if x["line"] == c["line"]), None)
                print(f"  contradicted ({c['contradicting']} of {c['claimed']} claimed): {c['line'][:150]}"
                      + (f"\n    e.g. {ex['text'][: ex['position'] + 1][-120:]}" if ex else ""))


def corner_table(dirs: list[Path]) -> None:
    hunts = [json.loads((d / "hunt.json").read_text()) for d in dirs]
    print("| corner | " + " | ".join(f"{d.parent.name}/{d.name}" for d in dirs) + " |")
    print("|---|" + "---|" * len(dirs))
    for i, c in enumerate(hunts[0]["map"]["corners"]):
        cols = []
        for s in hunts:
            x = s["map"]["corners"][i]
            cols.append(f"{x['errors']}/{x['reads']} [{x['ci95'][0]:.2f}, {x['ci95'][1]:.2f}]" if x["reachable"]
                        or x["reads"] else "-")
        print(f"| {c['name']} | " + " | ".join(cols) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--budget", type=int, default=5000)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="hunts/map")
    ap.add_argument("--table", nargs="+", type=Path, help="finished map hunts: one markdown row each, no hunting")
    ap.add_argument("--corners", nargs="+", type=Path, help="finished map hunts: their corners side by side")
    args = ap.parse_args()
    if args.corners:
        return corner_table(args.corners)
    if args.table:
        return table(args.table)
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
