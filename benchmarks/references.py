"""Maintainers: score the shipped reference checkpoints and store their runs in the package.

For every builtin (``ffbench/baselines/<name>/``) this runs, with ``ffbench.evaluate`` (exactly what
``ffbench run`` runs), and stores with ``ffbench.runs.ship_reference`` (results whole, failing reads
only, the weights' fingerprint checked):

- ``run/``: the full paper suites (in_dist, sparse, dense) at the model's training length;
- ``lengths/``: in_dist at T = 32, 64, 128, 256, 512 (accuracy against length);
- ``stress/``: the stress grid at T = 32, 64, 128, 256, 512 (the stress profile and heatmaps).

The UNDO references (``undo-*``, trained by benchmarks/undo_train.py --export) have one kind, ``run/``:
``--task undo`` in_dist and the retraction chains at their training length (toggle column included).
The registers references (``registers-*``, benchmarks/registers_train.py --export, k = 2): ``run/`` is
``--task registers`` in_dist and the stale reads at their training length (one-variable column).
The haystack reference (``haystack-lstm``, benchmarks/haystack_train.py --export, a text vocabulary):
``run/`` is ``--task haystack`` (final and every read) at 1K, 2K, 4K, 8K and 16K characters
(``--context-tokens``: its tokens are characters), the curves by length and by write distance.

    python benchmarks/references.py                    # every builtin, every kind
    python benchmarks/references.py --name ssm-ref --kind run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ffbench  # noqa: E402
from ffbench.backends.native import builtin_names  # noqa: E402
from ffbench.runs import ship_reference  # noqa: E402

LENGTHS = [32, 64, 128, 256, 512]
HAYSTACK_BUDGETS = [1000, 2000, 4000, 8000, 16000]


def kinds(name: str) -> dict[str, dict]:
    from ffbench.backends.native import training_length

    if name.startswith("undo-"):
        return {"run": {"task": "undo", "suite": "in_dist,retraction", "lengths": [training_length(name)]}}
    if name.startswith("haystack-"):
        return {"run": {"task": "haystack", "suite": "paper", "context_tokens": HAYSTACK_BUDGETS}}
    if name.startswith("registers-"):
        return {"run": {"task": "registers", "suite": "in_dist,stale", "lengths": [training_length(name)]}}
    return {"run": {"suite": "paper", "lengths": [training_length(name)]},
            "lengths": {"suite": "in_dist", "lengths": LENGTHS},
            "stress": {"suite": "stress", "lengths": LENGTHS}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", action="append", help="builtin(s) to score (default: all)")
    ap.add_argument("--kind", action="append", choices=["run", "lengths", "stress"], help="default: all")
    ap.add_argument("--work", default="runs/references", help="where the full run directories are kept")
    args = ap.parse_args()
    for name in args.name or builtin_names():
        for kind, options in kinds(name).items():
            if args.kind and kind not in args.kind:
                continue
            t0 = time.perf_counter()
            out = Path(args.work) / f"{name}-{kind}"
            res = ffbench.evaluate(f"ffbench/{name}", output_dir=str(out), progress=True, **options)
            shipped = ship_reference(str(out), name, kind=kind)
            cells = ", ".join(f"{c.suite} T={c.length}: {c.errors}/{c.reads}" for c in res.results)
            print(f"{name} {kind} ({time.perf_counter() - t0:.0f} s) -> {shipped}: {cells}", flush=True)


if __name__ == "__main__":
    main()
