"""Stress profiles of ffbench's own checkpoints: where each one breaks on the stress families.

Every read of ``ffbench.stress.sample_suite(T)`` is scored by choice (strict: a tie is wrong) from
one forward pass per sequence, the same computation as ``ffbench run --model ffbench/NAME``; the
script prints reads and errors per point with exact 95% intervals, then one tolerance line per
family and fixed parameters.

    python benchmarks/stress.py                                   # the shipped references
    python benchmarks/stress.py --model lstm-ref@512 --model runs/my-lstm@512,1024
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffbench import language, stress
from ffbench.backends.native import resolve
from ffbench.metrics import clopper_pearson

DEFAULT = ("lstm-ref@512", "transformer-ref@128", "transformer-mix@128")


def verdicts(net, arr: np.ndarray) -> np.ndarray:
    """Per read (row-major, as ``language.extract_reads``): right by strict choice."""
    from ffbench import rules
    from ffbench.train.model import encode_array
    from ffbench.train.trainer import read_logprobs

    return rules.choice_correct(read_logprobs(net, encode_array(arr), batch_size=64),
                                language.extract_reads(arr).target)


def profile(name: str, length: int) -> None:
    from ffbench.train.checkpoint import load_checkpoint

    net, _ = load_checkpoint(resolve(name), "cpu")
    arr, cols = stress.sample_suite(length)
    t0 = time.perf_counter()
    correct = verdicts(net, arr)
    seconds = time.perf_counter() - t0
    reads = language.extract_reads(arr)
    points = np.asarray(cols["point"], dtype=object)[reads.seq_index]
    outcomes = stress.count_outcomes(points, correct, reads.position, length)
    print(f"\n## {name} at T = {length}: {len(reads):,} reads, {int((~correct).sum()):,} wrong "
          f"({arr.shape[0]:,} sequences, scored in {seconds:.1f} s)\n")
    for tol in stress.profile(outcomes):
        cells = []
        for o in tol.outcomes:
            low, high = clopper_pearson(o.errors, o.reads)
            mark = f"{o.errors}/{o.reads}" + (f" [{low:.2f},{high:.2f}]" if o.errors else "")
            cells.append(f"{o.params[tol.axis]}: {mark}")
        print(f"- {tol.line}")
        print(f"    {tol.axis} -> errors/reads: " + "; ".join(cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", help="NAME@T1,T2 (builtin name or checkpoint dir); repeatable")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    for spec in args.model or DEFAULT:
        name, _, lengths = spec.partition("@")
        for length in (int(x) for x in (lengths or "512").split(",")):
            profile(name, length)


if __name__ == "__main__":
    main()
