"""What a run costs: token prices (``--price-in`` / ``--price-out`` / ``--price-cached-in``, USD per
million tokens), the cost of tokens already used, and an estimate of what a shard will send before
it is sent.

Prompt caching: of a request's prompt tokens, those a provider's cache served (``cached_tokens`` in
the usage: OpenAI's ``prompt_tokens_details.cached_tokens``, Anthropic's
``cache_read_input_tokens``) cost ``--price-cached-in`` (default: ``--price-in``, as if uncached);
those written to Anthropic's cache (``cache_write_tokens``, its ``cache_creation_input_tokens``)
cost ``CACHE_WRITE`` x ``--price-in`` (the 5-minute cache's write price); the rest ``--price-in``.

The prices are defined here once, for every command that needs them: the run's ``--max-cost``
budget, the ``cost`` figure of results.json and the dry run's estimate. A price that is not
given counts as zero (a local model priced by its input tokens only, say).

Estimates of what a unit of work will send (:class:`TokenEstimate`) are counted by
:class:`ffbench.preflight.Estimator`, the dry run's own counting, so ``--dry-run`` and ``--max-cost``
can never disagree about a shard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ffbench.errors import UsageError

PER = 1_000_000  # prices are per million tokens
CACHE_WRITE = 1.25  # Anthropic bills a 5-minute cache write at 1.25 x the input price


def _check_price(value: float | None, flag: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise UsageError(f"{flag} must be a non-negative number of USD per million tokens, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Prices:
    """USD per million prompt (``price_in``), completion (``price_out``) and cached prompt
    (``price_cached_in``, default ``price_in``) tokens; None = not given."""

    price_in: float | None = None
    price_out: float | None = None
    price_cached_in: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "price_in", _check_price(self.price_in, "--price-in"))
        object.__setattr__(self, "price_out", _check_price(self.price_out, "--price-out"))
        object.__setattr__(self, "price_cached_in", _check_price(self.price_cached_in, "--price-cached-in"))

    @property
    def given(self) -> bool:
        return self.price_in is not None or self.price_out is not None or self.price_cached_in is not None

    def cost(self, prompt_tokens: float, completion_tokens: float, cached_tokens: float = 0,
             cache_write_tokens: float = 0) -> float:
        """USD for these tokens (a price not given counts as zero); ``prompt_tokens`` include the
        cached and cache-written ones (module docstring)."""
        price_in = self.price_in or 0.0
        cached = price_in if self.price_cached_in is None else self.price_cached_in
        full = prompt_tokens - cached_tokens - cache_write_tokens
        return (price_in * full + cached * cached_tokens + CACHE_WRITE * price_in * cache_write_tokens
                + (self.price_out or 0.0) * completion_tokens) / PER

    def of_usage(self, usage: dict) -> float:
        """USD of a backend's usage counters (``Usage.as_dict()`` or their sum over shards)."""
        return self.cost(usage.get("prompt_tokens", 0) or 0, usage.get("completion_tokens", 0) or 0,
                         usage.get("cached_tokens", 0) or 0, usage.get("cache_write_tokens", 0) or 0)

    def as_dict(self) -> dict:
        """The prices (``price_cached_in`` only when given, so runs priced without it compare equal)."""
        out = {"price_in": self.price_in, "price_out": self.price_out}
        if self.price_cached_in is not None:
            out["price_cached_in"] = self.price_cached_in
        return out


@dataclass(frozen=True)
class TokenEstimate:
    """What a unit of work will send: requests, prompt tokens (of which ``cached_tokens`` a provider's
    prompt cache is expected to serve), and the most completion tokens it may get."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0  # the generation budget: an upper bound
    counted: bool = True  # prompt tokens counted with the model's tokenizer (False: one per character)
    cached_tokens: int = 0

    def __add__(self, other: TokenEstimate) -> TokenEstimate:
        return TokenEstimate(self.requests + other.requests, self.prompt_tokens + other.prompt_tokens,
                             self.completion_tokens + other.completion_tokens, self.counted and other.counted,
                             self.cached_tokens + other.cached_tokens)

    def cost(self, prices: Prices) -> float:
        return prices.cost(self.prompt_tokens, self.completion_tokens, self.cached_tokens)

    def describe(self) -> str:
        how = "" if self.counted else " (estimated at one per character)"
        cached = f" ({self.cached_tokens:,} of them cached)" if self.cached_tokens else ""
        return (f"{self.requests:,} request{'' if self.requests == 1 else 's'}, {self.prompt_tokens:,} prompt tokens"
                f"{cached}{how}, up to {self.completion_tokens:,} completion tokens")
