"""What a run costs: token prices (``--price-in`` / ``--price-out``, USD per million tokens), the
cost of tokens already used, and an estimate of what a shard will send before it is sent.

The prices are defined here once, for every command that needs them: the run's ``--max-cost``
budget, the ``cost`` figure of results.json and the dry run's estimate. A price that is not
given counts as zero (a local model priced by its input tokens only, say).

Estimates follow the requests :func:`ffbench.scoring.score` sends for a shard before any
fallback: one request per sequence when the backend scores densely (the whole text; API backends
ask for one generated token with it), otherwise, per read, one pass over its prompt for a local
engine or one request per answer for an API server (choice), or one generation with its budget
(greedy). Local engines asked for answers of several tokens pass over each prompt once per answer,
which the estimate does not count. Prompt tokens are counted with the model's own
tokenizer when the backend has one (``Backend.count_tokens``); API backends cannot count, so their
prompts are estimated at one token per character, exact for character-level tokenizers and an
overestimate for BPE vocabularies on ffbench's ASCII renderings (chat formatting a server adds is
not included). Reads the dense pass cannot decide are re-asked one by one and are not in the
estimate; what they really cost is counted from the backend's usage afterwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ffbench.errors import UsageError

PER = 1_000_000  # prices are per million tokens


def _check_price(value: float | None, flag: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise UsageError(f"{flag} must be a non-negative number of USD per million tokens, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Prices:
    """USD per million prompt (``price_in``) and completion (``price_out``) tokens; None = not given."""

    price_in: float | None = None
    price_out: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "price_in", _check_price(self.price_in, "--price-in"))
        object.__setattr__(self, "price_out", _check_price(self.price_out, "--price-out"))

    @property
    def given(self) -> bool:
        return self.price_in is not None or self.price_out is not None

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        """USD for these tokens (a price not given counts as zero)."""
        return ((self.price_in or 0.0) * prompt_tokens + (self.price_out or 0.0) * completion_tokens) / PER

    def of_usage(self, usage: dict) -> float:
        """USD of a backend's usage counters (``Usage.as_dict()`` or their sum over shards)."""
        return self.cost(usage.get("prompt_tokens", 0) or 0, usage.get("completion_tokens", 0) or 0)

    def as_dict(self) -> dict:
        return {"price_in": self.price_in, "price_out": self.price_out}


@dataclass(frozen=True)
class TokenEstimate:
    """What a unit of work will send: requests, prompt tokens, and the most completion tokens it may get."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0  # the generation budget: an upper bound
    counted: bool = True  # prompt tokens counted with the model's tokenizer (False: one per character)

    def __add__(self, other: TokenEstimate) -> TokenEstimate:
        return TokenEstimate(self.requests + other.requests, self.prompt_tokens + other.prompt_tokens,
                             self.completion_tokens + other.completion_tokens, self.counted and other.counted)

    def cost(self, prices: Prices) -> float:
        return prices.cost(self.prompt_tokens, self.completion_tokens)

    def describe(self) -> str:
        how = "" if self.counted else " (estimated at one per character)"
        return (f"{self.requests:,} request{'' if self.requests == 1 else 's'}, {self.prompt_tokens:,} prompt tokens"
                f"{how}, up to {self.completion_tokens:,} completion tokens")


def estimate_requests(backend, rendered: list, template, scoring: str, per_read: bool = False,
                      max_new_tokens: int | None = None) -> TokenEstimate:
    """Tokens the scorer will send for these rendered sequences (see the module docstring)."""
    counter = _counter(backend)
    counted = counter is not None
    count = counter or len
    if backend.supports_dense and not per_read:
        # local engines run one forward pass and generate nothing; API echo requests ask for one token
        return TokenEstimate(len(rendered), sum(count(r.text) for r in rendered), 0 if counted else len(rendered),
                             counted)
    prompts = [r.prompt(k) for r in rendered for k in range(len(r.targets))]
    choices = rendered[0].choices if rendered else ()
    if scoring == "choice":
        # local engines read every single-token answer from one pass over the prompt; API servers
        # are asked once per answer, with the answer appended (and may generate one token)
        texts = prompts if counted else [p + c for p in prompts for c in choices]
        return TokenEstimate(len(texts), sum(count(t) for t in texts), 0 if counted else len(texts), counted)
    chatty = bool(template.ask) or backend.is_chat
    asked = [p + template.ask for p in prompts] if chatty else prompts
    budget = (max_new_tokens or 32) if chatty else max((len(c) for c in choices), default=1)
    return TokenEstimate(len(asked), sum(count(t) for t in asked), budget * len(asked), counted)


def _counter(backend):
    """The backend's token counter, or None when it cannot count (API models)."""
    try:
        if backend.count_tokens("w0r0") is None:
            return None
    except (NotImplementedError, AttributeError):
        return None
    return backend.count_tokens
