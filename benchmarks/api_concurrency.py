"""Adaptive concurrency (AIMD) against a fixed number of requests in flight, side by side.

The same local server (``tests/fault_server.py``: it answers 429 whenever more than ``--capacity``
requests are in flight, each held ``--latency`` seconds) receives the same distinct requests from
the OpenAI backend twice in one process: once with the transport's adaptive limit, once with the
limit pinned at the ceiling (the baseline: a 429 never lowers it). Both honour the server's
retry-after and may retry up to ``--max-retries`` times. Prints wall time, HTTP requests sent and
429s for each, and their ratios.

    python benchmarks/api_concurrency.py --capacity 4 --ceiling 16 --requests 160
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from ffbench.backends import load_backend
from ffbench.backends.transport import AdaptiveLimit
from tests.fault_server import MODEL, FaultServer


class FixedLimit(AdaptiveLimit):
    """The baseline: throttled responses never lower the level."""

    def release(self, epoch: int, outcome: str) -> None:
        super().release(epoch, "other" if outcome == "overload" else outcome)


def one_run(adaptive: bool, args) -> dict:
    prompts = [f"w{i % 2}" + "i1" * (i // 2) + "w0" * (i % 3) + "r" for i in range(args.requests)]
    with FaultServer(faults=False, capacity=args.capacity, latency=args.latency, retry_after_ms=args.retry_after_ms) as srv:
        backend = load_backend(f"openai/{MODEL}", {"echo": False, "concurrency": args.ceiling, "retry_base": 0.02,
                                                  "max_retries": args.max_retries}, base_url=srv.url, api_key="k")
        if not adaptive:
            backend.transport.limit = FixedLimit(args.ceiling)
        start = time.perf_counter()
        backend.generate(prompts, 3)
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "http": srv.requests, "429s": srv.throttled,
                "mean_in_flight": sum(srv.in_flight_samples) / len(srv.in_flight_samples)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--capacity", type=int, default=4)
    p.add_argument("--ceiling", type=int, default=16)
    p.add_argument("--requests", type=int, default=160)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--retry-after-ms", type=int, default=20)
    p.add_argument("--max-retries", type=int, default=100)
    args = p.parse_args()
    fixed = one_run(False, args)
    aimd = one_run(True, args)
    for name, r in (("fixed", fixed), ("adaptive", aimd)):
        print(f"{name:>8}: {r['seconds']:.2f} s, {r['http']} HTTP requests, {r['429s']} 429s, "
              f"{r['mean_in_flight']:.2f} in flight at the server on average")
    print(f"adaptive / fixed: time {aimd['seconds'] / fixed['seconds']:.2f}, "
          f"HTTP requests {aimd['http'] / fixed['http']:.2f}, 429s {aimd['429s'] / max(1, fixed['429s']):.3f}")


if __name__ == "__main__":
    main()
