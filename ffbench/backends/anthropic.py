"""Anthropic backend: ``anthropic/<model>`` through the official ``anthropic`` SDK (Messages API).

Claude models are chat models without log-probabilities, so they are scored by their own reply
(``--scoring greedy`` with a chat rendering such as ``chat``): each read is one Messages request
whose user turn is the rendered prompt, and the reply is parsed for the answer.

Key from ``--api-key`` or ``ANTHROPIC_API_KEY`` (the SDK's own lookup when none is given); it is
handed to the client only: never cached, logged or written. ``--base-url`` or
``ANTHROPIC_BASE_URL`` points the client at a compatible endpoint.

Model args: ``concurrency`` (ceiling of requests in flight, default 8), ``max_retries`` (8),
``retry_base`` (seconds, 1), ``max_retry_wait`` (seconds, 60: the longest wait a Retry-After gets),
``timeout`` (seconds, 120), ``max_reply_bytes`` (1 MiB: the cap on a reply beyond its token budget's room), ``thinking`` (off by default; ``N``
turns on extended thinking with a budget of N tokens, ``adaptive`` lets the model decide, with
``thinking_tokens`` (default 8192) added to the reply budget), ``system_prompt``, ``temperature``
(not sent unless given: the API version the SDK speaks rejects sampling parameters, so replies use
the model's default decoding), ``batch`` (send each scoring call as one Message Batch: about half
the price, results within 24 hours) and ``poll_interval`` (seconds between batch polls, 30).

A reply's thinking blocks go to ``Generation.reasoning``, never into the parsed text, and
``stop_reason`` ``max_tokens`` (or ``model_context_window_exceeded``) marks a reply cut by the
budget. Retries (429, 529 overload, 5xx, timeouts, malformed replies), the response cache,
usage and adaptive concurrency are the shared transport's (:mod:`ffbench.backends.transport`).
"""

from __future__ import annotations

from dataclasses import replace

import json
import os

import anthropic  # imported with this module, so a missing SDK gets the install hint

from ffbench.backends.base import Backend, Capabilities, Generation
from ffbench.backends.batch import BatchAPI, Batcher, JobStatus, Result
from ffbench.backends.transport import (
    MAX_REPLY_BYTES,
    MAX_RETRY_WAIT,
    Failure,
    Malformed,
    Policy,
    Transport,
    http_client,
)
from ffbench.errors import FFBenchError, UsageError
from ffbench.sampling import REPEAT_TAG, Sampling

SENT_AS_EXTRA = ("temperature", "top_p")  # sampling parameters go in the body as given
CUT = ("max_tokens", "model_context_window_exceeded")  # stop reasons of a reply cut short
RETRY_ERROR_TYPES = ("rate_limit_error", "overloaded_error", "api_error", "timeout_error")


class AnthropicPolicy(Policy):
    provider = "anthropic"

    def __init__(self, client, sdk):
        self.client, self.sdk = client, sdk

    def send(self, endpoint: str, payload: dict) -> dict:
        params = {k: v for k, v in payload.items() if k not in SENT_AS_EXTRA and k != REPEAT_TAG}
        extra = {k: payload[k] for k in SENT_AS_EXTRA if k in payload} or None
        return self.client.messages.create(**params, extra_body=extra).model_dump(mode="json")

    def validate(self, endpoint: str, payload: dict, body: dict) -> None:
        content = body.get("content")
        if not isinstance(content, list) or not all(isinstance(b, dict) and "type" in b for b in content):
            raise Malformed("no content blocks")
        if any(b["type"] == "text" and not isinstance(b.get("text"), str) for b in content):
            raise Malformed("a text block without text")
        if not isinstance(body.get("stop_reason"), str):
            raise Malformed("no stop_reason")
        if not isinstance((body.get("usage") or {}).get("input_tokens"), int):
            raise Malformed("no usage")

    def usage(self, body: dict) -> tuple[int, int]:
        u = body.get("usage") or {}
        prompt = sum(int(u.get(k) or 0) for k in ("input_tokens", "cache_creation_input_tokens",
                                                  "cache_read_input_tokens"))
        return prompt, int(u.get("output_tokens") or 0)

    def cache_usage(self, body: dict) -> dict[str, int]:
        u = body.get("usage") or {}
        return {"cached_tokens": int(u.get("cache_read_input_tokens") or 0),
                "cache_write_tokens": int(u.get("cache_creation_input_tokens") or 0)}


class AnthropicBatches(BatchAPI):
    """Message Batches: one create call with every request, poll, then stream the results."""

    provider = "anthropic"
    findable = False  # a batch carries no tag to find it by

    def __init__(self, client):
        self.client = client

    def create(self, endpoint: str, items: list[tuple[str, dict]], tag: str) -> str:
        requests = [{"custom_id": cid, "params": {k: v for k, v in payload.items() if k != REPEAT_TAG}}
                    for cid, payload in items]
        return self.client.messages.batches.create(requests=requests).id

    def status(self, job_id: str) -> JobStatus:
        job = self.client.messages.batches.retrieve(job_id)
        fatal = "was cancelled" if job.cancel_initiated_at is not None else None
        return JobStatus(job.processing_status == "ended", job.processing_status, fatal)

    def results(self, job_id: str) -> list[Result]:
        out = []
        for item in self.client.messages.batches.results(job_id):
            line = item.model_dump(mode="json")
            result = line.get("result") or {}
            kind = result.get("type")
            if kind == "succeeded" and isinstance(result.get("message"), dict):
                out.append(Result(line["custom_id"], body=result["message"]))
            elif kind == "errored":
                error = ((result.get("error") or {}).get("error") or {})
                etype = error.get("type") or "error"
                out.append(Result(line["custom_id"], failure=Failure(f"{etype}: {error.get('message') or ''}"[:200],
                                                                     retry=etype in RETRY_ERROR_TYPES)))
            else:  # expired, canceled
                out.append(Result(line["custom_id"], failure=Failure(str(kind), retry=True)))
        return out


class AnthropicBackend(Backend):
    provider = "anthropic"
    capabilities = Capabilities(chat=True, sampling=True, prefix_cache=True)
    connection_env = {"base_url": "ANTHROPIC_BASE_URL", "api_key": "ANTHROPIC_API_KEY"}

    @classmethod
    def check_plan(cls, model: str, args: dict, renders: list, scorings: list[str]) -> None:
        if "choice" in scorings:
            raise UsageError(f"anthropic/{model} gives no log-probabilities of answers: use --scoring greedy")

    def fingerprint(self) -> dict:
        from ffbench import identity

        return identity.api_fingerprint(self.base_url, self.model, {"id": self.served_model})

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 cache_path: str | None = None, notify=None, concurrency: int = 8, max_retries: int = 8,
                 retry_base: float = 1.0, timeout: float = 120.0, max_retry_wait: float = MAX_RETRY_WAIT,
                 max_reply_bytes: int = MAX_REPLY_BYTES,
                 thinking=None, thinking_tokens: int = 8192,
                 system_prompt: str | None = None, temperature: float | None = None, batch: bool = False,
                 poll_interval: float = 30.0, context_length: int | None = None):
        super().__init__(model)
        self.thinking = _thinking(thinking, thinking_tokens)
        self.system_prompt = system_prompt
        self.temperature = temperature
        self.batch = bool(batch)
        self._context = context_length
        # A server of one's own may need no key; the SDK refuses to send without one (a TypeError at
        # request time), and a missing key for Anthropic's own API is refused before any request.
        key = api_key or os.environ.get("ANTHROPIC_API_KEY") or "EMPTY"
        self.client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=timeout,
                                          http_client=http_client(anthropic))
        self.base_url = str(self.client.base_url).rstrip("/")
        policy = AnthropicPolicy(self.client, anthropic)
        policy.max_reply_bytes = int(max_reply_bytes)
        self.transport = Transport(policy, cache_path, namespace=json.dumps(["anthropic", self.base_url]),
                                   concurrency=concurrency, max_retries=max_retries, retry_base=retry_base,
                                   max_wait=max_retry_wait, notify=notify)
        if self.batch:
            self.transport.batcher = Batcher(AnthropicBatches(self.client), poll_interval, int(max_retries) + 1)
            self.capabilities = replace(self.capabilities, prefix_cache=False)  # one job per scoring call: waves would each be a job of up to 24 hours
        self.usage = self.transport.usage
        self.served_model = None
        self._check_model()

    def describe(self) -> dict:
        return {**super().describe(), "base_url": self.base_url, "served_model": self.served_model,
                "thinking": self.thinking[0] if self.thinking else None, "batch": self.batch}

    def context_length(self) -> int | None:
        return self._context

    def close(self) -> None:
        self.transport.close()

    def _check_model(self) -> None:
        """Ask for the model once up front, so a wrong name, key or URL fails in one line before any
        work starts; the answer also gives the model's id and context length."""
        try:
            info = self.transport.call(lambda: self.client.models.retrieve(self.model), tries=2)
        except FFBenchError as exc:
            if "HTTP 404" in str(exc):
                raise FFBenchError(f"{self.base_url} does not know model {self.model!r}") from None
            raise FFBenchError(f"cannot use the Anthropic API at {self.base_url}: {exc}") from None
        self.served_model = info.id
        if self._context is None and getattr(info, "max_input_tokens", None):
            self._context = int(info.max_input_tokens)

    def _payload(self, prompt: str, max_new_tokens: int, breaks: list[int] | None = None,
                 read_id: str | None = None) -> dict:
        """A Messages request. Sampling (:mod:`ffbench.sampling`): ``--temperature``/``--top-p`` are
        sent as given (else the ``temperature`` model arg, else nothing: the model's default);
        with thinking on only temperature 1 is allowed (:meth:`check_sampling` refuses others)."""
        payload = {"model": self.model, "max_tokens": max_new_tokens,
                   "messages": [{"role": "user", "content": prompt if not breaks else cached_blocks(prompt, breaks)}]}
        if self.thinking is not None:
            config, budget = self.thinking
            payload["thinking"] = config
            payload["max_tokens"] = max_new_tokens + budget
        if self.system_prompt:
            payload["system"] = self.system_prompt
        sampling = self.sampling or Sampling()
        temperature = sampling.temperature if sampling.temperature is not None else self.temperature
        if temperature is not None:
            payload["temperature"] = float(temperature)
        if sampling.top_p is not None:
            payload["top_p"] = float(sampling.top_p)
        if self.repeat is not None:  # a sampled read: its repeat and identity, in the cache key only
            payload[REPEAT_TAG] = [self.repeat, read_id]
        return payload

    @staticmethod
    def check_sampling(model: str, args: dict, sampling: Sampling, reasoning_budget: int | None) -> None:
        """One clear line, before any request, for sampling the Messages API refuses: a seed (it
        takes none), a temperature above 1, temperature and top_p together, and with thinking on
        a temperature other than 1, a top_p below 0.95 or a budget below 1024 tokens."""
        if sampling.seed is not None:
            raise UsageError(f"anthropic/{model}: the Messages API takes no seed: drop --sampling-seed")
        temperature = sampling.temperature if sampling.temperature is not None else args.get("temperature")
        if temperature is not None and float(temperature) > 1:
            raise UsageError(f"anthropic/{model} takes a temperature between 0 and 1, got {float(temperature):g}")
        if temperature is not None and sampling.top_p is not None:
            raise UsageError(f"anthropic/{model} takes --temperature or --top-p, not both")
        thinking = _thinking(args.get("thinking"), 0)
        if thinking is None:
            return
        if thinking[0].get("type") == "enabled" and thinking[1] < 1024:
            raise UsageError(f"anthropic/{model}: a thinking budget is at least 1024 tokens, got thinking={thinking[1]}")
        if temperature is not None and float(temperature) != 1:
            raise UsageError(f"anthropic/{model} with thinking on samples at temperature 1 only: drop --temperature "
                             f"{float(temperature):g} (or turn thinking off)")
        if sampling.top_p is not None and sampling.top_p < 0.95:
            raise UsageError(f"anthropic/{model} with thinking on takes --top-p between 0.95 and 1, "
                             f"got {sampling.top_p:g}")

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[Generation]:
        breaks = self.prefix_breaks or [None] * len(prompts)
        ids = self.read_ids or [None] * len(prompts)
        bodies = self.transport.map("messages", [self._payload(p, max_new_tokens, b, i)
                                                 for p, b, i in zip(prompts, breaks, ids)])
        return [message_generation(b) for b in bodies]


def cached_blocks(prompt: str, breaks: list[int]) -> list[dict]:
    """The user turn as text blocks split where the prompts of the sequence's earlier reads end, with a
    cache breakpoint (``cache_control``) after this read's own prefix. Every request of a sequence
    splits the shared text at the same offsets, so the prefix the previous request cached is a
    block boundary here and the API reads it from the cache (it looks back up to 20 blocks from a
    breakpoint); only the text since then is billed at the full input price, the prefix at the
    cached rate, and this prefix is written for the next read."""
    edges = [0] + [b for b in breaks if 0 < b <= len(prompt)]
    blocks = [{"type": "text", "text": prompt[a:b]} for a, b in zip(edges, edges[1:]) if b > a]
    if blocks:
        blocks[-1]["cache_control"] = {"type": "ephemeral"}
    if len(prompt) > edges[-1]:
        blocks.append({"type": "text", "text": prompt[edges[-1]:]})
    return blocks


def message_generation(body: dict) -> Generation:
    """A Messages reply: its text blocks joined, thinking blocks kept apart as reasoning."""
    text = "".join(b.get("text") or "" for b in body["content"] if b["type"] == "text")
    thoughts = [b.get("thinking") or "" for b in body["content"] if b["type"] == "thinking"]
    thoughts += ["[redacted thinking]" for b in body["content"] if b["type"] == "redacted_thinking"]
    return Generation(text, truncated=body.get("stop_reason") in CUT, reasoning="\n".join(thoughts) or None)


def _thinking(value, extra_tokens: int):
    """(thinking config, tokens added to the reply budget) from the ``thinking`` model arg."""
    if value in (None, False, 0, "off", "none"):
        return None
    if value == "adaptive":
        return {"type": "adaptive"}, int(extra_tokens)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return {"type": "enabled", "budget_tokens": value}, value
    raise UsageError(f"model arg thinking must be off, adaptive or a token budget, got {value!r}")
