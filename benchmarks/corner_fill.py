"""What the map's corners cost plain coverage (issue 24): the map search's candidates alone, no model.

Fills a map with ``atlas.candidate`` in rounds of ~512 reads (as a hunt's rounds) up to ``--reads`` at
``--length``, every read counted right, and prints the corner aims and reads, the pair aims and the
reachable pair cells under their quota and empty. ``--quota 0`` switches the corners off.

    nice python benchmarks/corner_fill.py --length 128 --reads 20000 [--quota 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffbench import language
from ffbench.hunt import atlas, corners, descriptors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--reads", type=int, default=20000)
    ap.add_argument("--quota", type=int, default=corners.CORNER_QUOTA)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    corners.CORNER_QUOTA = args.quota
    rng, cells, aims, done = np.random.default_rng(args.seed), {}, {}, 0
    while done < args.reads:
        amap, seqs, planned = atlas.Atlas(cells, aims), [], 0
        while planned < 512:
            seqs.append(atlas.candidate(amap, args.length, rng)[0])
            planned += int(np.count_nonzero(seqs[-1][0::2] == language.R))
        arr = np.stack(seqs)
        d = descriptors.describe(arr)
        keys = descriptors.cell_keys(d)
        for k in range(arr.shape[0]):
            mine = d["seq_index"] == k
            amap.add(arr[k], keys[mine], d["slot"][mine], np.zeros(mine.sum(), bool), np.ones(mine.sum()), "cover")
        done += d["slot"].size
    for name, (reads, _) in corners.counts(cells).items():
        print(f"corner {name}: {aims.get(f'corner:{name}', 0)} aims, {reads} reads")
    counts, reach = atlas.Atlas(cells).pair_counts(), atlas.reachable_pairs(args.length)
    print(f"pair aims {sum(v for k, v in aims.items() if not k.startswith('corner:'))}; reachable pair cells "
          f"{len(reach)}, under {atlas.PAIR_QUOTA} reads {sum(counts.get(c, 0) < atlas.PAIR_QUOTA for c in reach)}, "
          f"empty {sum(not counts.get(c) for c in reach)}")


if __name__ == "__main__":
    main()
