"""``ffbench hunt`` against i.i.d. sampling, side by side in one process, on the shipped checkpoints.

Three parts (``--part``, default all):

* ``search``: hunt ``ffbench/transformer-mix`` at T = 128 with ``--budget`` reads, then score i.i.d.
  sparse FFL(0.98) sequences with as many reads; print the glitches each found per scored read,
  the ratio, the reads the hunt needed for its first 20 distinct glitches, and the shipped sparse
  run's rate (1 error in 162,146 reads) as the precise i.i.d. yield.
* ``estimate``: ``--estimate`` sparse, dense and in_dist on ``ffbench/transformer-ref`` at T = 128,
  each beside an i.i.d. run of as many reads (and, for in_dist, ``--iid-reads`` more reads as the
  reference rate); print both intervals, whether the importance-sampling interval covers the
  i.i.d. estimate, and the reads i.i.d. sampling needs for an interval as narrow.
* ``lstm``: hunt ``ffbench/lstm-ref`` at T = 512 and print what it finds.

    OMP_NUM_THREADS=1 python benchmarks/hunt.py --part search --budget 20000
    OMP_NUM_THREADS=1 python benchmarks/hunt.py --part estimate --budget 30000 --iid-reads 300000
    OMP_NUM_THREADS=1 python benchmarks/hunt.py --part lstm --budget 5000

Every hunt is the code path of ``ffbench hunt`` (``ffbench.hunt.hunt_model``) into a fresh
directory under ``--work`` (default a temporary one), scored with one torch thread.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffbench import backends, language, render, scoring
from ffbench.hunt import driver
from ffbench.metrics import clopper_pearson, describe_rate


def iid_errors(backend, dist: language.FFL, reads_wanted: int, seed: int) -> tuple[int, int, float]:
    """(wrong reads, reads, seconds) of i.i.d. sequences from ``dist`` scored like ``ffbench run``."""
    template = render.load_template("symbolic")
    t0 = time.perf_counter()
    wrong = reads = 0
    chunk = 0
    per_seq = dist.expected_reads()
    while reads < reads_wanted:
        num = max(1, min(2048, math.ceil((reads_wanted - reads) / per_seq)))
        arr = language.sample(dist, num, seed * 1_000_003 + chunk)
        chunk += 1
        r = language.extract_reads(arr)
        counts = np.cumsum(r.counts_per_sequence(num))
        keep = int(np.searchsorted(counts, reads_wanted - reads, side="right")) or 1
        arr = arr[:keep]
        r = language.extract_reads(arr)
        out = scoring.score(backend, [render.render(a, template) for a in arr], template, "choice")
        wrong += int(np.count_nonzero(out.prediction != r.target))
        reads += len(r)
    return wrong, reads, time.perf_counter() - t0


def hunt(model: str, budget: int, out: Path, length: int | None = None, estimate: str | None = None,
         seed: int = 0) -> tuple[dict, float]:
    t0 = time.perf_counter()
    summary, _ = driver.hunt_model(model, budget, str(out), length=length, estimate=estimate, seed=seed,
                                   echo=lambda m: None)
    return summary, time.perf_counter() - t0


def part_search(args, work: Path) -> None:
    print(f"\n## search: ffbench/transformer-mix at T = 128, budget {args.budget:,} reads (seed {args.seed})\n")
    s, seconds = hunt("ffbench/transformer-mix", args.budget, work / "mix", seed=args.seed)
    g, spent = s["glitches"], s["spent"]
    scored = spent["reads"] + spent["rescored_reads"]
    glitches = json.loads((work / "mix" / "state.json").read_text())["glitches"]
    found_at = sorted(x["found_after_reads"] for x in glitches)
    twenty = found_at[19] if len(found_at) >= 20 else None
    print(f"hunt: {g['distinct']:,} distinct glitching sequences ({g['failing_reads']:,} wrong reads) in "
          f"{spent['reads']:,} search reads + {spent['rescored_reads']:,} re-scored, {seconds:.0f} s")
    print(f"      {g['distinct'] / scored:.4g} glitches per scored read (re-scoring counted); "
          f"the 20th distinct glitch was found within the first {twenty:,} search reads" if twenty else
          "      fewer than 20 glitches")
    print(f"      by origin {g['by_origin']}; families: " + "; ".join(
        f"{f['family']} {f['glitches']}/{f['reads']}" for f in s["families"]))
    backend = backends.load_backend("ffbench/transformer-mix")
    wrong, reads, iid_seconds = iid_errors(backend, language.SUITES["sparse"].distribution(128), scored, args.seed + 1)
    print(f"i.i.d. sparse, as many reads: {describe_rate(wrong, reads)} ({iid_seconds:.0f} s)")
    hunt_rate = g["distinct"] / scored
    if wrong:
        print(f"ratio (hunt glitches per read / i.i.d. errors per read, same process): {hunt_rate / (wrong / reads):,.0f}x")
    else:
        print(f"ratio against this i.i.d. run: at least {hunt_rate / clopper_pearson(0, reads)[1]:,.0f}x "
              "(0 errors: its 95% upper bound)")
    for row in s["iid"].get("suites", []):
        if row["suite"] == "sparse":
            print(f"ratio against the shipped sparse run ({row['errors']} error in {row['reads']:,} reads, "
                  f"rate {row['rate']:.2g}): {row['yield_ratio']:,.0f}x")


def part_estimate(args, work: Path) -> None:
    backend = backends.load_backend("ffbench/transformer-ref")
    shipped = {c.suite: c for c in __import__("ffbench").load("ffbench/transformer-ref").results}
    for name in args.targets:
        print(f"\n## estimate {name}: ffbench/transformer-ref at T = 128, budget {args.budget:,} reads (seed {args.seed})\n")
        s, seconds = hunt("ffbench/transformer-ref", args.budget, work / f"ref-{name}", estimate=name,
                          seed=args.seed)
        est = s["estimate"]
        r = est["result"]
        if r is None:
            print(f"no estimate: {est.get('reason')}")
            continue
        width = r["ci95"][1] - r["ci95"][0]
        print(f"importance sampling: rate {r['rate']:.3g}, 95% CI [{r['ci95'][0]:.3g}, {r['ci95'][1]:.3g}] "
              f"(t interval [{r['ci95_normal'][0]:.3g}, {r['ci95_normal'][1]:.3g}]); {r['samples']:,} final reads, "
              f"{r['hits']:,} wrong, effective {r['effective_hits']:.1f}; {est['adapt_reads']:,} reads adapting; "
              f"{seconds:.0f} s")
        spent = s["spent"]["reads"]
        wrong, reads, iid_seconds = iid_errors(backend, language.SUITES[name].distribution(128) if name in
                                               language.SUITES else est_target(name), spent, args.seed + 2)
        low, high = clopper_pearson(wrong, reads)
        print(f"i.i.d., as many reads: {describe_rate(wrong, reads)}; width {high - low:.3g} ({iid_seconds:.0f} s)")
        reference = None
        if name in shipped and shipped[name].errors >= 20:
            c = shipped[name]
            reference = (c.errors, c.reads)
            print(f"shipped i.i.d. run: {describe_rate(c.errors, c.reads)}")
        elif args.iid_reads:
            w2, n2, sec2 = iid_errors(backend, language.SUITES[name].distribution(128), args.iid_reads, args.seed + 3)
            reference = (w2, n2)
            print(f"i.i.d. reference, {n2:,} reads: {describe_rate(w2, n2)} ({sec2:.0f} s)")
        if reference:
            rate = reference[0] / reference[1]
            print(f"IS interval covers the i.i.d. estimate {rate:.3g}: {r['ci95'][0] <= rate <= r['ci95'][1]}")
        cmp = est["iid_same_reads"]
        tok = est.get("iid_same_tokens") or {}
        print(f"i.i.d. reads for an interval as narrow ({width:.3g}): {cmp['reads_for_same_width']:,.0f} = "
              f"{cmp['read_ratio']:.3g}x the {cmp['reads']:,} reads spent (adapting included; final reads only: "
              f"{est['iid_same_reads_final_only']['read_ratio']:.3g}x); in tokens {tok.get('token_ratio', float('nan')):.3g}x")


def est_target(name: str) -> language.FFL:
    from ffbench.hunt import estimator

    return estimator.parse_target(name, 128).dist


def part_lstm(args, work: Path) -> None:
    print(f"\n## lstm: ffbench/lstm-ref at T = 512, budget {args.lstm_budget:,} reads (seed {args.seed})\n")
    s, seconds = hunt("ffbench/lstm-ref", args.lstm_budget, work / "lstm", seed=args.seed)
    g, spent = s["glitches"], s["spent"]
    print(f"hunt: {g['distinct']:,} distinct glitching sequences ({g['failing_reads']:,} wrong reads) in "
          f"{spent['reads']:,} search reads + {spent['rescored_reads']:,} re-scored, {seconds:.0f} s")
    for f in s["families"]:
        print(f"  {f['family']}: {f['glitches']} glitches in {f['reads']:,} reads; best point {f['best_point']}")
    if g["shortest"]:
        print(f"  shortest failing prefix: {g['shortest']['position'] + 1} characters, {g['shortest']['arm']}")
    glitches = json.loads((work / "lstm" / "state.json").read_text())["glitches"]
    wd = [d for x in glitches for d in x["write_distance"]]
    if wd:
        print(f"  write distance of the failing reads: min {min(wd)}, median {int(np.median(wd))}, max {max(wd)}")
    for row in s["iid"].get("suites", []):
        print(f"  i.i.d. {row['suite']}: {row.get('note') or describe_rate(row['errors'], row['reads'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("search", "estimate", "lstm", "all"), default="all")
    ap.add_argument("--budget", type=int, default=20_000, help="reads per hunt (search and each estimate)")
    ap.add_argument("--lstm-budget", type=int, default=5_000)
    ap.add_argument("--targets", nargs="+", default=["sparse", "dense", "in_dist"])
    ap.add_argument("--iid-reads", type=int, default=0, help="reads of the i.i.d. in_dist reference rate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", help="where the hunt directories go (default: a temporary directory)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    work = Path(args.work or tempfile.mkdtemp(prefix="ffbench-hunt-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.part in ("search", "all"):
        part_search(args, work)
    if args.part in ("estimate", "all"):
        part_estimate(args, work)
    if args.part in ("lstm", "all"):
        part_lstm(args, work)


if __name__ == "__main__":
    main()
