"""What R2 depends on: the LSTM replicate tables of several sweeps, side by side per seed.

Each argument is a sweep's ``table.csv`` (``ffbench sweep`` writes one per output directory). Rows
are grouped by the training choices that differ between the tables (steps, lr, batch size, ...);
for every group the script prints, per replicate seed, the errors on each suite, then how many
replicates are clean on every suite and the pooled sparse rate with its exact 95% interval. Only
seeds present in every group are compared, so each replicate is compared with itself.

    python benchmarks/r2.py benchmarks/r2-lstm-sweep-table.csv benchmarks/r2-lstm-steps-table.csv \\
        benchmarks/r2-lstm-lr-table.csv
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffbench.metrics import clopper_pearson

SUITES = ("in_dist", "dense", "sparse")
CHOICES = ("steps", "lr", "batch_size", "warmup", "weight_decay", "train_mix", "mode")


def load(paths: list[str]) -> pd.DataFrame:
    frames = []
    for path in paths:
        df = pd.read_csv(path)
        cfg = df.config.map(json.loads)
        for key in CHOICES:
            df[key] = cfg.map(lambda c, k=key: json.dumps(c.get(k)) if isinstance(c.get(k), list) else c.get(k))
        df["seed"] = df.data_seed.astype(str) + ("" if (df.data_seed == df.init_seed).all() else "/" + df.init_seed.astype(str))
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tables", nargs="+", help="table.csv files of ffbench sweep")
    args = ap.parse_args()
    df = load(args.tables)
    varying = [k for k in CHOICES if df[k].nunique(dropna=False) > 1]
    groups = df.groupby(varying, dropna=False) if varying else [((), df)]
    seeds = sorted(set.intersection(*(set(g.seed) for _, g in groups)), key=lambda s: [int(x) for x in s.split("/")])
    if not seeds:
        raise SystemExit("no replicate seed is present in every group")
    print(f"training choices that differ: {', '.join(varying) or 'none'}; seeds compared: {', '.join(seeds)}\n")
    print("| " + " | ".join(varying) + " | " + " | ".join(f"seed {s}" for s in seeds)
          + " | clean on all suites | sparse errors / reads | sparse rate (95% CI) |")
    print("|" + "---|" * (len(varying) + len(seeds) + 3))
    for key, g in groups:
        g = g.set_index("seed").loc[seeds]
        key = key if isinstance(key, tuple) else (key,)
        cells = []
        for s in seeds:
            row = g.loc[s]
            errs = [int(row[f"{suite}_errors"]) for suite in SUITES if f"{suite}_errors" in row and pd.notna(row[f"{suite}_errors"])]
            cells.append("0" if not any(errs) else "/".join(str(e) for e in errs))
        suites = [x for x in SUITES if f"{x}_errors" in g and g[f"{x}_errors"].notna().all()]
        clean = int((g[[f"{x}_errors" for x in suites]].sum(axis=1) == 0).sum())
        e, n = int(g.sparse_errors.sum()), int(g.sparse_reads.sum())
        low, high = clopper_pearson(e, n)
        print("| " + " | ".join(str(k) for k in key) + " | " + " | ".join(cells)
              + f" | {clean} of {len(seeds)} | {e:,} / {n:,} | {e / n:.1e} [{low:.1e}, {high:.1e}] |")
    print(f"\nA seed's cell: 0 when every suite is clean, else errors per suite ({' / '.join(SUITES)}).")


if __name__ == "__main__":
    main()
