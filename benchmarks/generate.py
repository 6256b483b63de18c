"""Generation speed: ffbench's vectorised sampler vs a plain-Python per-token sampler, end to end.

Both write the same suite to parquet (column ``text``) in the same process; the baseline samples
each instruction and bit with ``random.random()`` in a Python loop, the way a straightforward
implementation would, then writes through pyarrow as well.

    python benchmarks/generate.py --suite paper
    python benchmarks/generate.py --suite paper --baseline-fraction 0.1   # quicker, same ratio

The ratio is computed on tokens per second, so a baseline run on a fraction of the suite is still
a like-for-like comparison (per-token cost does not depend on how many sequences are drawn).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time

from ffbench import generate as gen


def python_sampler(length: int, p_write: float, p_read: float, num: int, seed: int) -> list[str]:
    """Per-token reference sampler: first w, last r, i.i.d. middle, reads copy the last write."""
    rng = random.Random(seed)
    out = []
    for _ in range(num):
        memory = "0" if rng.random() < 0.5 else "1"
        chars = ["w", memory]
        for _ in range(length // 2 - 2):
            u = rng.random()
            if u < p_write:
                memory = "0" if rng.random() < 0.5 else "1"
                chars += ["w", memory]
            elif u < p_write + p_read:
                chars += ["r", memory]
            else:
                chars += ["i", "0" if rng.random() < 0.5 else "1"]
        chars += ["r", memory]
        out.append("".join(chars))
    return out


def run_baseline(parts, fraction: float, path: str) -> tuple[float, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    texts, suites = [], []
    for part in parts:
        n = max(1, int(part.num * fraction))
        texts += python_sampler(part.dist.length, part.dist.p_write, part.dist.p_read, n, part.seed)
        suites += [part.suite] * n
    pq.write_table(pa.table({"text": texts, "suite": suites}), path)
    seconds = time.perf_counter() - t0
    return seconds, sum(len(t) for t in texts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="paper")
    ap.add_argument("--baseline-fraction", type=float, default=1.0,
                    help="fraction of each part the plain-Python baseline samples (default: all of it)")
    ap.add_argument("--repeats", type=int, default=3, help="ffbench runs; the best is reported")
    args = ap.parse_args()

    parts = gen.suite_parts(args.suite)
    tokens = sum(p.num * p.dist.length for p in parts)
    with tempfile.TemporaryDirectory() as tmp:
        ours = []
        for k in range(args.repeats):
            t0 = time.perf_counter()
            rows, _ = gen.generate_file(parts, os.path.join(tmp, f"ffbench{k}.parquet"))
            ours.append(time.perf_counter() - t0)
        best = min(ours)
        base_seconds, base_tokens = run_baseline(parts, args.baseline_fraction, os.path.join(tmp, "baseline.parquet"))

    ours_tps, base_tps = tokens / best, base_tokens / base_seconds
    print(f"suite {args.suite}: {rows:,} sequences, {tokens:,} tokens")
    print(f"ffbench       : {best:7.3f} s end to end (best of {args.repeats}: "
          f"{', '.join(f'{s:.3f}' for s in ours)}), {ours_tps / 1e6:8.2f} M tokens/s")
    print(f"plain Python  : {base_seconds:7.3f} s for {base_tokens:,} tokens "
          f"({args.baseline_fraction:g} of the suite), {base_tps / 1e6:8.2f} M tokens/s")
    print(f"ratio         : {ours_tps / base_tps:7.1f}x tokens/s (ffbench / plain Python)")


if __name__ == "__main__":
    main()
