"""Where transformer-mix's held-out "ten decoys, then a run of 45-52" failure comes from (issue 24).

Scores one read per sequence on the native model (strict choice) for constructions at T = 128, each
row 40 sequences per run length (decisive bits alternating), the read at the last instruction unless
a tail is asked for:

* ``block@0``: ``m`` writes of the opposite bit opening the sequence, ``gap`` ignores, the decisive
  write, ``run`` opposite ignores, the read; the rest of the sequence random ignores and a final read
  (so short constructions read early);
* ``at end``: the same construction ending at the last instruction, the filler (random ignores) put
  between the decoys and the decisive write: the gap is 62 - m - run, as in the held-out family;
* ``lead``: a write of the decisive bit and ``lead - 1`` random ignores before the decoy block.

    OMP_NUM_THREADS=1 nice python benchmarks/decoy_gap.py [--model transformer-mix] [--num 40]

With ``--hunt DIR`` (a finished map hunt) it prints instead what the hunt found of this failure: the
glitches with a failing read after >= 6 decoys in a block and 2-6 ignores, and the map's reads with
>= 6 decoys per ``gap_before_write`` bin (and in the held-out corner, >= 8 decoys and >= 44 opposite
ignores), as ``bin:errors/reads``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffbench import language, rules

T = 128
RUNS = (8, 16, 24, 32, 40, 44, 45, 46, 48, 50, 52)


def construct(rng, m: int, gap: int | None, run: int, b: int, lead: int = 0, filler: str = "random") -> tuple[str, int] | None:
    """(text, answer position) of one sequence; ``gap`` None: the filler fills the gap, read last."""
    n = T // 2

    def fill() -> int:
        return int(rng.integers(2)) if filler == "random" else (b if filler == "same" else 1 - b)

    if gap is None:
        gap = n - 2 - m - run - lead
        if gap < 0:
            return None
    s = (f"w{b}" + "".join(f"i{fill()}" for _ in range(lead - 1))) if lead else ""
    s += f"w{1 - b}" * m + "".join(f"i{fill()}" for _ in range(gap)) + f"w{b}" + f"i{1 - b}" * run + f"r{b}"
    pos, rest = len(s) - 1, n - len(s) // 2
    if rest < 0:
        return None
    if rest:
        s += "".join(f"i{int(rng.integers(2))}" for _ in range(rest - 1)) + f"r{b}"
    return s, pos


def wrong(net, texts: list[str], positions: list[int]) -> int:
    from ffbench.train.model import encode_array
    from ffbench.train.trainer import read_logprobs

    arr = language.to_array(texts)
    reads = language.extract_reads(arr)
    ok = rules.choice_correct(read_logprobs(net, encode_array(arr), batch_size=256), reads.target)
    asked = set(enumerate(positions))
    chosen = np.array([(s, p) in asked for s, p in zip(reads.seq_index, reads.position)])
    return int((~ok[chosen]).sum())


def row(net, rng, name: str, num: int, **kw) -> None:
    out = []
    for run in RUNS:
        made = [construct(rng, run=run, b=k % 2, **kw) for k in range(num)]
        made = [x for x in made if x]
        if made:
            out.append(f"{run}:{wrong(net, [t for t, _ in made], [p for _, p in made])}/{len(made)}")
    print(f"{name:32s} " + " ".join(out), flush=True)


def block_gap(text: str, position: int) -> tuple[int, int]:
    """(decoys in a block, ignores after them) right before the decisive write of the read at ``position``."""
    ops, vals = text[0::2], text[1::2]
    w = ops.rfind("w", 0, (position - 1) // 2)
    j = w - 1
    while j >= 0 and ops[j] == "i":
        j -= 1
    gap, m = w - 1 - j, 0
    while j >= 0 and ops[j] == "w" and vals[j] != vals[w]:
        m, j = m + 1, j - 1
    return m, gap


def from_hunt(path: Path) -> None:
    import json

    import pyarrow.parquet as pq

    glitches = pq.read_table(path / "glitches.parquet").to_pylist()
    hits = {g["text"] for g in glitches for m, gap in (block_gap(g["text"], p) for p in g["failing_positions"])
            if m >= 6 and 2 <= gap <= 6}
    print(f"{len(glitches)} glitches; {len(hits)} with a failing read after >= 6 decoys in a block, then 2-6 ignores")
    m = json.loads((path / "hunt.json").read_text())["map"]
    names = [a["name"] for a in m["axes"]]

    def edge(c, axis):
        return m["axes"][names.index(axis)]["edges"][c["bins"][names.index(axis)]]

    for title, keep in (("decoys >= 6", lambda c: edge(c, "decoys") >= 6),
                        ("decoys >= 8, opposite ignores >= 44", lambda c: edge(c, "decoys") >= 8
                         and edge(c, "opposite_since_write") >= 44)):
        acc: dict[int, list[int]] = {}
        for c in (c for c in m["cells"] if keep(c)):
            a = acc.setdefault(c["bins"][names.index("gap_before_write")], [0, 0])
            a[0], a[1] = a[0] + c["errors"], a[1] + c["reads"]
        labels = m["axes"][names.index("gap_before_write")]["labels"]
        print(f"{title}, by ignores right before the write: "
              + " ".join(f"{labels[k]}:{e}/{r}" for k, (e, r) in sorted(acc.items())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="transformer-mix")
    ap.add_argument("--num", type=int, default=40)
    ap.add_argument("--hunt", type=Path, help="a finished map hunt's directory: report what it found instead")
    args = ap.parse_args()
    if args.hunt:
        return from_hunt(args.hunt)
    from ffbench.backends.native import resolve
    from ffbench.train.checkpoint import load_checkpoint

    net, _ = load_checkpoint(resolve(args.model), "cpu")
    rng = np.random.default_rng(0)
    print(f"{args.model} at T = {T}: wrong / scored per run length")
    for filler in ("random", "same", "opp"):
        row(net, rng, f"at end, m=10, filler={filler}", args.num, m=10, gap=None, filler=filler)
    for gap in (0, 1, 2, 3, 4, 6, 8, 12):
        row(net, rng, f"block@0, m=10, gap={gap}", args.num, m=10, gap=gap)
    for m in (2, 4, 6, 8):
        row(net, rng, f"block@0, m={m}, gap=4", args.num, m=m, gap=4)
    for lead in (1, 4, 16):
        row(net, rng, f"lead={lead}, m=10, gap=4", args.num, m=10, gap=4, lead=lead)


if __name__ == "__main__":
    main()
