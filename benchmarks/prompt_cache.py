"""Paying for a prefix once (issue 27): prompt tokens billed at the full input price when every read
of a T=512 sequence is its own chat question, with ffbench's prefix-ordered requests (a sequence's
reads in waves, Anthropic ``cache_control`` on the shared prefix) against today's requests (all of a
shard's reads sent at once, a plain-string user turn).

The fake servers bill like the providers, one token per character: ``tests/anthropic_server.py``
(``prompt_cache=True``: breakpoints, 20-block lookback, writes at 1.25x counted as full price here)
and ``tests/fault_server.py`` (``prompt_cache=True``: OpenAI's automatic caching of prefixes of
1024 + 128k tokens, cached once the request's prefill (``--latency`` seconds) is done). Both
cache nothing shorter than 1024 tokens, as the providers do.

    python benchmarks/prompt_cache.py --num 4
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from ffbench import runner  # noqa: E402
from ffbench.backends import resolve  # noqa: E402
from ffbench.backends.anthropic import AnthropicBackend  # noqa: E402
from ffbench.backends.openai import OpenAIBackend  # noqa: E402
from tests import anthropic_server, fault_server  # noqa: E402

ARGS = {"retry_base": 0.01, "timeout": 10, "concurrency": 8}


def measure(provider: str, rendering: str, suite: str, length: int, num: int, ordered: bool, latency: float):
    """(prompt tokens, tokens billed at full price, cached tokens) of one run."""
    cls = AnthropicBackend if provider == "anthropic" else OpenAIBackend
    cls.caches_prefixes = ordered  # False: today's requests
    if provider == "anthropic":
        server = anthropic_server.AnthropicServer(faults=False, prompt_cache=True)
        model, key, args = anthropic_server.MODEL, anthropic_server.KEY, dict(ARGS)
    else:
        server = fault_server.FaultServer(faults=False, prompt_cache=True, latency=latency)
        model, key, args = fault_server.MODEL, "x", {**ARGS, "api": "chat"}
    with server as srv, tempfile.TemporaryDirectory() as tmp:
        cfg = runner.RunConfig(model=f"{provider}/{model}", model_args=args, suites=[suite], lengths=[length], num=num,
                               renders=[rendering], scorings=["greedy"], base_url=srv.url)
        ref = resolve(f"{provider}/{model}", dict(args), base_url=srv.url, api_key=key, cache_path=None)
        usage = runner.run(cfg, os.path.join(tmp, "run"), ref, progress=False, echo=lambda m: None).usage
    full = usage["prompt_tokens"] - usage.get("cached_tokens", 0)  # cache writes count as full price
    return usage["prompt_tokens"], full, usage.get("cached_tokens", 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--num", type=int, default=4, help="sequences per cell")
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--suites", default="in_dist,dense")
    ap.add_argument("--renders", default="chat,lightswitch_chat")
    ap.add_argument("--latency", type=float, default=0.01, help="OpenAI fake: seconds of prefill before a prefix is cached")
    a = ap.parse_args()
    print(f"T={a.length}, {a.num} sequences per cell, every read its own chat question; tokens = characters")
    print(f"{'provider':9} {'suite':7} {'rendering':16} {'prompt tokens':>13} {'full price today':>16} "
          f"{'full price now':>14} {'fall':>6}")
    for provider in ("anthropic", "openai"):
        for suite in a.suites.split(","):
            for rendering in a.renders.split(","):
                total, today, _ = measure(provider, rendering, suite, a.length, a.num, False, a.latency)
                total2, now, _ = measure(provider, rendering, suite, a.length, a.num, True, a.latency)
                assert total == total2
                print(f"{provider:9} {suite:7} {rendering:16} {total:13,} {today:16,} {now:14,} {today / now:5.1f}x")


if __name__ == "__main__":
    main()
