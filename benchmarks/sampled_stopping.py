"""Requests saved by per-read sequential stopping with repeats (``--repeats K`` with ``--certify``
or ``--stop-at-first-error``, issue 27 item 3), against the fake server's sampled model.

Each row is a real ``ffbench run`` over HTTP against ``tests/fault_server.py`` (``sampled=Q``: every
read has its own known error probability between 0 and Q; garbled prompts are always wrong): the
answers asked per read under each rule, against K without one. ``--certify 0.999`` switches the
per-read rule on; its cell-level stop would end the cell after its first shard, so each run is one
shard (``--batch-size`` = ``--num``) and every read is asked.

    python benchmarks/sampled_stopping.py --num 100 --length 32
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from ffbench import runner  # noqa: E402
from ffbench.backends import resolve  # noqa: E402
from ffbench.control import RunControl  # noqa: E402
from ffbench.rundir import RunDir  # noqa: E402
from tests.fault_server import MODEL, FaultServer  # noqa: E402

ARGS = {"retry_base": 0.01, "timeout": 5, "concurrency": 8, "echo": False}


def asked(q: float, k: int, control: RunControl, num: int, length: int) -> tuple[float, int, float]:
    """(answers asked per read, requests served, fraction of reads wrong in any answer)."""
    import pyarrow.parquet as pq

    with FaultServer(faults=False, sampled=q, sample_seed=1) as srv, tempfile.TemporaryDirectory() as out:
        cfg = runner.RunConfig(model=f"openai/{MODEL}", model_args=ARGS, suites=["in_dist"], lengths=[length], num=num,
                               renders=["symbolic"], scorings=["greedy"], batch_size=num, base_url=srv.url,
                               repeats=k)
        ref = resolve(f"openai/{MODEL}", ARGS, base_url=srv.url, api_key="sk-test",
                      cache_path=str(RunDir(out).request_cache))
        runner.run(cfg, out, ref, progress=False, echo=lambda m: None, control=control)
        rows = pq.read_table(f"{out}/samples.parquet").to_pandas()
        return float(rows["repeats"].mean()), sum(srv.served.values()), float((rows["wrong_repeats"] > 0).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--num", type=int, default=100)
    ap.add_argument("--length", type=int, default=32)
    a = ap.parse_args()
    print("| Q | K | rule | answers per read | requests | reads wrong in any |")
    print("|---|---|---|---|---|---|")
    for q in (0.05, 0.3):
        for k in (5, 9):
            for name, control in (("none (all K)", RunControl()), ("--certify (settled)", RunControl(certify=0.999)),
                                  ("--stop-at-first-error", RunControl(stop_at_first_error=True))):
                per_read, requests, any_wrong = asked(q, k, control, a.num, a.length)
                print(f"| {q} | {k} | {name} | {per_read:.2f} | {requests:,} | {any_wrong:.3f} |", flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
