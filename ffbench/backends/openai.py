"""OpenAI-compatible backend: ``openai/<model name>`` against any server speaking the OpenAI API
(``--base-url`` or ``OPENAI_BASE_URL``; key from ``--api-key`` or ``OPENAI_API_KEY``).

Model args: ``api`` = completions (default) or chat; ``echo`` (default true): the server returns
prompt log-probabilities with ``echo`` + ``logprobs`` (vLLM's server does), which enables dense
scoring; ``top_logprobs`` (default 5); ``concurrency`` (ceiling of requests in flight, default 8);
``max_retries`` (default 8); ``retry_base`` (seconds, default 1); ``timeout`` (seconds, default
120); ``max_reply_bytes`` (default 1 MiB: the cap on a reply beyond the room its request asks
for, see :mod:`ffbench.backends.transport`); ``batch`` (default false): send each scoring call's requests as one Batch API job (files
upload, ``batches.create``, poll, download), about half the price for a latency of up to 24
hours; ``poll_interval`` (seconds between batch polls, default 30); ``system_prompt`` (a system
message before every chat prompt).

Retries, the request cache (``cache_path``, one SQLite file), usage counting and adaptive
concurrency are the shared transport's (:mod:`ffbench.backends.transport`); this module only
states how the OpenAI API is called and what a usable response holds. Chat replies keep a
separate reasoning field (``reasoning_content`` or ``reasoning``, as vLLM and others return it)
apart from the reply, and ``finish_reason == "length"`` marks a reply cut by the token budget.
Keys are used for the client only: never cached, logged or written to results.
"""

from __future__ import annotations

from dataclasses import replace

import io
import json
import re

import numpy as np
import openai  # imported with this module, so a missing SDK gets the install hint

from ffbench.backends.base import Backend, Capabilities, Generation, ScoreRequest, SpanScores
from ffbench.backends.tokenized import dense_scores
from ffbench.backends.batch import BatchAPI, Batcher, JobStatus, Result
from ffbench.backends.transport import (MAX_REPLY_BYTES, MAX_RETRY_WAIT, REPLY_BYTES_PER_TOKEN, Failure, Malformed,
                                       Policy, Transport, http_client)
from ffbench.errors import FFBenchError, UsageError
from ffbench.sampling import REPEAT_TAG, Sampling

ENDPOINTS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}


class OpenAIPolicy(Policy):
    provider = "openai"

    def __init__(self, client, sdk):
        self.client, self.sdk = client, sdk

    def send(self, endpoint: str, payload: dict) -> dict:
        create = self.client.completions.create if endpoint == "completions" else self.client.chat.completions.create
        return create(**wire(payload)).model_dump(mode="json")

    def validate(self, endpoint: str, payload: dict, body: dict) -> None:
        try:
            choice = body["choices"][0]
            if endpoint == "chat":
                if not isinstance(choice["message"], dict):
                    raise Malformed("no message")
                return
            if not isinstance(choice["text"], str):
                raise Malformed("no text")
            if payload.get("echo"):
                lp = choice["logprobs"]
                if not lp or not (len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["text_offset"])):
                    raise Malformed("no prompt logprobs")
        except (KeyError, IndexError, TypeError) as exc:
            raise Malformed(f"missing {exc}") from None

    def reply_limit(self, endpoint: str, payload: dict) -> int:
        """An echoed prompt comes back token by token with ``logprobs`` alternatives each: room for a
        token per byte of prompt (a token covers at least one), each with its alternatives and one more."""
        limit = super().reply_limit(endpoint, payload)
        if payload.get("echo"):
            alternatives = int(payload.get("logprobs") or 0) + 2
            limit += REPLY_BYTES_PER_TOKEN * alternatives * len(str(payload.get("prompt", "")).encode())
        return limit

    def usage(self, body: dict) -> tuple[int, int]:
        usage = body.get("usage") or {}
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)

    def cache_usage(self, body: dict) -> dict[str, int]:
        """``prompt_tokens_details.cached_tokens``: the part of ``prompt_tokens`` served from the cache."""
        details = (body.get("usage") or {}).get("prompt_tokens_details") or {}
        return {"cached_tokens": int(details.get("cached_tokens") or 0)}


class OpenAIBatches(BatchAPI):
    """The OpenAI Batch API: a JSONL file of requests, a batch job, output and error files."""

    provider = "openai"
    findable = True  # jobs carry the request-set tag in their metadata
    TAG = "ffbench_request_set"
    ENDED = ("completed", "expired", "cancelled", "failed")
    RETRY_CODES = ("batch_expired", "batch_cancelled")

    def __init__(self, client, policy: OpenAIPolicy):
        self.client, self.policy = client, policy

    def create(self, endpoint: str, items: list[tuple[str, dict]], tag: str) -> str:
        url = ENDPOINTS[endpoint]
        lines = "".join(json.dumps({"custom_id": cid, "method": "POST", "url": url, "body": wire(payload)}) + "\n"
                        for cid, payload in items)
        upload = self.client.files.create(file=("ffbench-batch.jsonl", io.BytesIO(lines.encode()),
                                                "application/jsonl"), purpose="batch")
        job = self.client.batches.create(input_file_id=upload.id, endpoint=url, completion_window="24h",
                                         metadata={self.TAG: tag})
        return job.id

    def find(self, tag: str) -> str | None:
        """The newest 100 jobs are searched: a job created by an attempt moments ago is among them."""
        for job in self.client.batches.list(limit=100).data:
            if (job.metadata or {}).get(self.TAG) == tag and job.status not in ("failed", "cancelled", "cancelling"):
                return job.id
        return None

    def status(self, job_id: str) -> JobStatus:
        job = self.client.batches.retrieve(job_id)
        fatal = None
        if job.status == "cancelled":
            fatal = "was cancelled"
        elif job.status == "failed":
            errors = [e.message for e in ((job.errors.data if job.errors else None) or []) if e.message]
            fatal = "failed" + (f" ({errors[0]})" if errors else "")
        return JobStatus(job.status in self.ENDED, job.status, fatal)

    def results(self, job_id: str) -> list[Result]:
        job = self.client.batches.retrieve(job_id)
        out = []
        for file_id in (job.output_file_id, job.error_file_id):
            if not file_id:
                continue
            for line in self.client.files.content(file_id).text.splitlines():
                if line.strip():
                    out.append(self._result(json.loads(line)))
        return out

    def _result(self, line: dict) -> Result:
        cid = line["custom_id"]
        response, error = line.get("response") or {}, line.get("error")
        status = response.get("status_code")
        if status == 200 and isinstance(response.get("body"), dict):
            return Result(cid, body=response["body"])
        if status is not None and status != 200:
            message = ((response.get("body") or {}).get("error") or {}).get("message") or ""
            retry = status in self.policy.retry_statuses or status >= 500
            return Result(cid, failure=Failure(f"HTTP {status}: {message}"[:200], retry=retry))
        code = (error or {}).get("code") or "no response"
        return Result(cid, failure=Failure(code, retry=code in self.RETRY_CODES or code == "no response"))


class OpenAIBackend(Backend):
    provider = "openai"
    # automatic prompt caching of long shared prefixes: reads go in prefix order
    capabilities = Capabilities(sampling=True, prefix_cache=True)
    connection_env = {"base_url": "OPENAI_BASE_URL", "api_key": "OPENAI_API_KEY"}

    @classmethod
    def check_plan(cls, model: str, args: dict, renders: list, scorings: list[str]) -> None:
        api = args.get("api", "completions")
        if api not in ("completions", "chat"):
            raise UsageError(f"model arg api must be completions or chat, got {api!r}")
        if "choice" in scorings and (api == "chat" or args.get("echo", True) is False):
            why = "api=chat" if api == "chat" else "echo=false"
            raise UsageError(f"openai/{model} with {why} gives no log-probabilities of answers: use --scoring greedy")

    @classmethod
    def serving(cls, model: str, args: dict) -> Capabilities:
        api = args.get("api", "completions")
        return replace(cls.capabilities, dense=bool(args.get("echo", True)) and api != "chat", chat=api == "chat")

    @staticmethod
    def check_sampling(model: str, args: dict, sampling: Sampling, reasoning_budget: int | None) -> None:
        reasoning_rules(model, args, sampling, reasoning_budget)

    def fingerprint(self) -> dict:
        from ffbench import identity

        return identity.api_fingerprint(self.base_url, self.model, self._served)

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 cache_path: str | None = None, notify=None,
                 api: str = "completions", echo: bool = True, top_logprobs: int = 5,
                 concurrency: int = 8, max_retries: int = 8, retry_base: float = 1.0, timeout: float = 120.0,
                 max_retry_wait: float = MAX_RETRY_WAIT, max_reply_bytes: int = MAX_REPLY_BYTES,
                 context_length: int | None = None, batch: bool = False, poll_interval: float = 30.0,
                 system_prompt: str | None = None):
        super().__init__(model)
        if api not in ENDPOINTS:
            raise UsageError(f"model arg api must be completions or chat, got {api!r}")
        self.base_url = base_url
        self.api = api
        self.capabilities = self.serving(model, {"api": api, "echo": echo})
        self.echo = bool(echo)
        self.top_logprobs = int(top_logprobs)
        self.batch = bool(batch)
        self.system_prompt = system_prompt
        self._context = context_length
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "EMPTY", max_retries=0, timeout=timeout,
                                    http_client=http_client(openai))
        self._served: dict = {}
        policy = OpenAIPolicy(self.client, openai)
        policy.max_reply_bytes = int(max_reply_bytes)
        self.transport = Transport(policy, cache_path, namespace=json.dumps(["openai", base_url]),
                                   concurrency=concurrency, max_retries=max_retries, retry_base=retry_base,
                                   max_wait=max_retry_wait, notify=notify)
        if self.batch:
            self.transport.batcher = Batcher(OpenAIBatches(self.client, policy), poll_interval, int(max_retries) + 1)
            self.capabilities = replace(self.capabilities, prefix_cache=False)  # one job per scoring call: waves would each be a job of up to 24 hours
        self.usage = self.transport.usage
        self._check_reachable()

    def describe(self) -> dict:
        return {**super().describe(), "base_url": self.base_url, "api": self.api, "echo": self.echo,
                "batch": self.batch}

    def context_length(self) -> int | None:
        return self._context

    def close(self) -> None:
        self.transport.close()

    def _check_reachable(self) -> None:
        """One cheap call up front, so a wrong URL fails in a line before any work starts."""
        try:
            models = self.transport.call(lambda: self.client.models.list(), tries=2)
        except FFBenchError as exc:
            raise FFBenchError(f"cannot reach an OpenAI-compatible server at {self.base_url or 'api.openai.com'}: "
                               f"{exc}") from None
        ids = [m.id for m in getattr(models, "data", [])]
        for m in getattr(models, "data", []):
            if m.id == self.model:
                self._served = {k: v for k, v in m.model_dump().items() if isinstance(v, (str, int, float))}
                if getattr(m, "max_model_len", None) and self._context is None:
                    self._context = int(m.max_model_len)  # vLLM reports its context length
        if ids and self.model not in ids:
            raise FFBenchError(f"server at {self.base_url} does not serve model {self.model!r} (it serves: {', '.join(ids[:5])})")

    # ------------------------------------------------------------------ protocol
    def _echo_payload(self, text: str) -> dict:
        return {"model": self.model, "prompt": text, "max_tokens": 1, "temperature": 0.0, "echo": True,
                "logprobs": self.top_logprobs}

    def score_dense(self, requests: list[ScoreRequest]) -> list[SpanScores]:
        def parse(i: int, b: dict) -> SpanScores:  # run on every answer before it is kept (never cache what fails)
            r = requests[i]
            return dense_from_echo(b["choices"][0]["logprobs"], r.text, r.spans, r.choices, self.top_logprobs)

        return self.transport.map("completions", [self._echo_payload(r.text) for r in requests], parse)

    def score_per_read(self, prompts: list[str], choices: tuple[str, ...]) -> np.ndarray:
        if not self.echo:
            raise FFBenchError("this server gives no prompt log-probabilities (echo=false): use --scoring greedy")
        payloads = [self._echo_payload(p + c) for p in prompts for c in choices]
        bodies = self.transport.map("completions", payloads)
        out = np.zeros((len(prompts), len(choices)))
        m = len(choices)
        for i, prompt in enumerate(prompts):
            echoes = [bodies[i * m + k]["choices"][0]["logprobs"] for k in range(m)]
            out[i] = answers_from_echoes(echoes, prompt, choices)
        return out

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[Generation]:
        if self.capabilities.chat:
            system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
            payloads = [self._sampled({"model": self.model, "messages": [*system, {"role": "user", "content": p}]},
                                      max_new_tokens, i) for i, p in enumerate(prompts)]
            return [chat_generation(b) for b in self.transport.map("chat", payloads)]
        payloads = [self._sampled({"model": self.model, "prompt": p}, max_new_tokens, i) for i, p in enumerate(prompts)]
        return [Generation(b["choices"][0]["text"] or "", truncated=b["choices"][0].get("finish_reason") == "length")
                for b in self.transport.map("completions", payloads)]

    def _sampled(self, payload: dict, max_new_tokens: int, index: int = 0) -> dict:
        """A generation request with the run's sampling (:mod:`ffbench.sampling`): one greedy answer
        per read sends temperature 0 as always; a reasoning model (:func:`reasoning_model`) gets only
        what it takes (``max_completion_tokens``, no temperature or top_p). A sampled request
        carries its repeat and read identity in a tag only the cache key sees (stripped before
        sending)."""
        sampling = self.sampling or Sampling()
        if reasoning_model(self.model):
            payload["max_completion_tokens"] = max_new_tokens
        else:
            payload["max_tokens"] = max_new_tokens
            temperature = sampling.temperature_to_send()
            if temperature is not None:
                payload["temperature"] = temperature
            if sampling.top_p is not None:
                payload["top_p"] = float(sampling.top_p)
        if sampling.seed is not None:
            payload["seed"] = int(sampling.seed) + (self.repeat or 0)
        if self.repeat is not None:
            payload[REPEAT_TAG] = [self.repeat, self.read_ids[index] if self.read_ids else None]
        return payload


def reasoning_model(model: str) -> bool:
    """OpenAI's reasoning models (o1, o3, o4 and gpt-5 families): they refuse a temperature or
    top_p other than the default and take ``max_completion_tokens`` instead of ``max_tokens``."""
    name = model.rsplit("/", 1)[-1].lower()
    return bool(re.match(r"^(o1|o3|o4)(-|$)|^gpt-5", name)) and not name.startswith("gpt-5-chat")


def reasoning_rules(model: str, args: dict, sampling: Sampling, reasoning_budget: int | None) -> None:
    """One clear line, before any request, when the run asks a reasoning model for what it cannot
    do: another temperature, a top_p, the completions API, or replies without room to reason (its
    hidden reasoning counts against ``max_completion_tokens``: every reply would be cut)."""
    if not reasoning_model(model):
        return
    if sampling.temperature is not None and sampling.temperature != 1:
        raise UsageError(f"openai/{model} is a reasoning model and accepts only its default temperature (1): drop "
                         f"--temperature {sampling.temperature:g}")
    if sampling.top_p is not None and sampling.top_p != 1:
        raise UsageError(f"openai/{model} is a reasoning model and does not accept top_p: drop --top-p")
    if args.get("api", "completions") != "chat":
        raise UsageError(f"openai/{model} is a reasoning model served by the chat API: pass --model-arg api=chat")
    if not reasoning_budget:
        raise UsageError(f"openai/{model} reasons within its reply budget before it answers: pass --reasoning-budget "
                         "N (e.g. 4096), or every reply is cut before the answer")


def wire(payload: dict) -> dict:
    """The payload as sent: without the repeat tag that keeps repeats apart in the cache."""
    return {k: v for k, v in payload.items() if k != REPEAT_TAG} if REPEAT_TAG in payload else payload


def chat_generation(body: dict) -> Generation:
    """A chat completion's reply, with the separate reasoning field some servers add
    (``reasoning_content``: vLLM and DeepSeek; ``reasoning``: newer vLLM) kept apart."""
    choice = body["choices"][0]
    message = choice["message"]
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    return Generation(message.get("content") or "", truncated=choice.get("finish_reason") == "length",
                      reasoning=reasoning or None)


def echo_offsets(lp: dict, text: str) -> np.ndarray:
    """The echoed tokens' character offsets into ``text``, the prompt that was sent, read from the
    token strings themselves and never from the server's ``text_offset`` alone.

    Servers differ in what they count: vLLM echoes ``<s>`` in front of the text and counts its
    characters; llama.cpp counts the SentencePiece dummy-prefix space, so every offset after the
    first is one too high. The token strings laid end to end must spell the text, after at most a
    few leading characters the text lacks (such extras get negative offsets); where they do not,
    no read can be placed on its tokens and the request is refused in one line naming the fault.
    """
    tokens = [t if isinstance(t, str) else "" for t in lp.get("tokens") or []]
    joined = "".join(tokens)
    lead = next((k for k in range(0, min(16, len(joined)) + 1) if joined.startswith(text, k)), None)
    if lead is None:
        # vLLM decodes each echoed token alone, so a SentencePiece piece loses the space it carries
        # (``▁0`` -> ``0``, ``▁`` -> ``''``) and its offsets add up those shortened strings: place
        # the tokens on the text letting each swallow the spaces the decoder dropped before it.
        for skip in range(0, min(4, len(tokens)) + 1):
            placed = _place_dropping_spaces(tokens[skip:], text)
            if placed is not None:
                return np.concatenate([np.arange(-skip, 0, dtype=np.int64), placed])
        given = np.asarray(lp.get("text_offset") or [], dtype=np.int64)
        if given.size == len(tokens) and all(text[o:o + len(t)] == t for o, t in zip(given.tolist(), tokens)
                                             if 0 <= o < len(text)) and _covers(given, tokens, len(text)):
            return given  # the strings do not join up (e.g. byte pieces) but each sits where the server says
        first = next((k for k, (x, y) in enumerate(zip(joined, text)) if x != y), min(len(joined), len(text)))
        raise FFBenchError(f"the server's echoed tokens do not spell the prompt that was sent (they differ at "
                           f"character {first}: {joined[max(0, first - 10):first + 10]!r} vs "
                           f"{text[max(0, first - 10):first + 10]!r}); ffbench cannot tell which tokens hold the answers")
    lengths = np.array([len(t) for t in tokens], dtype=np.int64)
    return np.cumsum(lengths) - lengths - lead


def _place_dropping_spaces(tokens: list[str], text: str) -> np.ndarray | None:
    """Offsets of ``tokens`` laid on ``text`` in order, each allowed to cover spaces before its own
    string (which the server's decoder dropped); None when they do not spell the text so."""
    out, pos, n = [], 0, len(text)
    for t in tokens:
        if pos >= n:  # tokens after the prompt (the one generated)
            out.append(pos)
            pos += max(len(t), 1)
            continue
        if t and text.startswith(t, pos):  # the token's own string stands here
            out.append(pos)
            pos += len(t)
            continue
        q = pos
        while q < n and text[q] == " ":
            q += 1
            if t and text.startswith(t, q):
                break
        if q == pos or not text.startswith(t, q):  # no space dropped here, or still not the text
            return None
        out.append(pos)
        pos = q + len(t)
    return np.array(out, dtype=np.int64) if pos >= n else None


def _covers(offsets: np.ndarray, tokens: list[str], n: int) -> bool:
    """Whether tokens at ``offsets`` cover characters 0..n without gaps or overlaps."""
    at = 0
    for o, t in zip(offsets.tolist(), tokens):
        if o >= n:
            break
        if o < 0:
            continue
        if o != at:
            return False
        at = o + len(t)
    return at >= n


def answers_from_echoes(echoes: list[dict], prompt: str, choices: tuple[str, ...]) -> np.ndarray:
    """Each answer's log-probability after ``prompt`` from the echo of prompt + answer, under the
    one rule for scored text (:mod:`ffbench.backends.incontext`): the continuation starts at the
    first token that reaches past the prompt, moved back to where the echoes stop agreeing, and
    must spell the text from there to the answer's end."""
    start = len(prompt)
    parsed = []
    for lp, c in zip(echoes, choices):
        offsets = echo_offsets(lp, prompt + c)
        tokens, values = lp["tokens"], lp["token_logprobs"]
        n = int(np.searchsorted(offsets, len(prompt) + len(c), side="left"))
        head = next((j for j in range(n) if offsets[j] + len(tokens[j]) > start), n)
        parsed.append((offsets[:n], tokens[:n], values[:n], head))
    split = min(int(offsets[head]) if head < len(offsets) else start for offsets, _, _, head in parsed)
    contexts = {tuple(t for o, t in zip(offsets.tolist(), tokens) if o < split) for offsets, tokens, _, _ in parsed}
    out = np.zeros(len(choices))
    for k, ((offsets, tokens, values, _), c) in enumerate(zip(parsed, choices)):
        keep = offsets >= split
        # What the tokens from the split spell; a server that drops a piece's leading space
        # (echo_offsets) still has to spell every other character.
        spelled = "".join(t for t, ok in zip(tokens, keep) if ok).replace(" ", "")
        missing = any(v is None for v, ok in zip(values, keep) if ok)
        starts = bool(keep.any()) and int(offsets[np.argmax(keep)]) == split
        if len(contexts) != 1 or spelled != (prompt + c)[split:].replace(" ", "") or missing or not starts:
            raise FFBenchError(f"cannot score the answer {c!r} after {prompt[-30:]!r} on this server: its echoed "
                               f"tokens from character {split} are {[t for t, ok in zip(tokens, keep) if ok]}, which "
                               f"do not spell {(prompt + c)[split:]!r} after the same context for every answer")
        out[k] = float(sum(v for v, ok in zip(values, keep) if ok))
    return out


def dense_from_echo(lp: dict, text: str, spans: np.ndarray, choices: tuple[str, ...], k: int) -> SpanScores:
    """Span scores from an echoed prompt's token strings, log-probabilities and top-k alternatives,
    through the same exactness rules as every other dense pass (:func:`tokenized.dense_scores`).

    The server's tokenizer is unknown here, so its token strings are numbered as they come: a span
    must start and end on token boundaries, and per span the answers are tokenized as the server
    tokenized the target, an alternative being the target's leading tokens plus one token string,
    which the pass knows exactly when it is in the top-k at that position (an upper bound, the k-th
    value, when the top-k is full and it is not).
    """
    offsets = echo_offsets(lp, text)
    tokens, values, tops = lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]
    n_prompt = int(np.searchsorted(offsets, len(text), side="left"))
    vocab: dict[str, int] = {}
    strings: list[str] = []

    def intern(piece: str) -> int:
        if piece not in vocab:
            vocab[piece] = len(strings)
            strings.append(piece)
        return vocab[piece]

    ids = [intern(t) for t in tokens[:n_prompt]]

    def logprob_at(p: int, tok: int) -> tuple[float, bool]:
        j = p + 1  # position p predicts token p + 1
        if j >= n_prompt:
            return np.nan, False
        if ids[j] == tok and values[j] is not None:
            return float(values[j]), True
        top = tops[j] or {}
        if not _names_tokens(top, k):
            return np.nan, False
        if strings[tok] in top:
            return float(top[strings[tok]]), True
        return (float(min(top.values())), False) if top and len(top) >= k else (np.nan, False)

    def top_at(p: int) -> int:
        top = tops[p + 1] if p + 1 < n_prompt else None
        return intern(max(top, key=top.get)) if top and _names_tokens(top, k) else -1

    def decode(toks: list[int]) -> str:
        return "".join(strings[t] for t in toks)

    rows = []
    for start, end in spans.tolist():
        a = int(np.searchsorted(offsets[:n_prompt], start, side="left"))
        b = int(np.searchsorted(offsets[:n_prompt], end, side="left"))
        target = "".join(tokens[a:b])
        if a == 0 or a >= n_prompt or offsets[a] != start or (b < n_prompt and offsets[b] != end) \
                or target not in choices:
            aligned, choice_ids = np.array([[-1, -1]]), tuple((-1 - j,) for j in range(len(choices)))
        else:
            aligned, choice_ids = np.array([[a, b]]), _span_choices(ids[a:b], tokens[a:b], choices, intern)
        rows.append(dense_scores(ids, aligned, choice_ids, logprob_at, top_at, decode))
    if not rows:
        return SpanScores(np.zeros((0, len(choices))), np.zeros(0, dtype=np.int64))
    return SpanScores(np.concatenate([r.logprobs for r in rows]), np.concatenate([r.greedy for r in rows]),
                      np.concatenate([r.bound for r in rows]), [t for r in rows for t in r.text])


def _names_tokens(top: dict, k: int) -> bool:
    """Whether a top log-probability dict (keyed by token *strings*) names its tokens unambiguously.

    A server that keys by detokenized string merges tokens that spell alike (llama.cpp: the byte
    token ``<0x30>`` and the digit ``0``) and keeps one of their values, so it returns fewer keys
    than asked. Fewer keys are trusted only when they are the whole distribution (a vocabulary
    smaller than k: the probabilities sum to one); otherwise the position is left to the per-read
    path, which reads each answer's own token log-probability.
    """
    if len(top) >= k:
        return True
    return abs(float(np.sum(np.exp(np.fromiter(top.values(), dtype=np.float64)))) - 1.0) < 1e-4


def _span_choices(target_ids: list[int], target_tokens: list[str], choices: tuple[str, ...], intern):
    """Each answer as token ids in this span's tokenization: the target as the server tokenized it;
    another answer as the target's leading tokens it shares plus the rest as one token string."""
    target = "".join(target_tokens)
    out = []
    for j, alt in enumerate(choices):
        if alt == target:
            out.append(tuple(target_ids))
            continue
        d, covered = 0, ""
        while d < len(target_tokens) and alt.startswith(covered + target_tokens[d]) \
                and len(covered + target_tokens[d]) < len(alt):
            covered += target_tokens[d]
            d += 1
        out.append(tuple(target_ids[:d]) + (intern(alt[len(covered):]),))
    return tuple(out)
