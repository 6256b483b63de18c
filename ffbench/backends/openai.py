"""OpenAI-compatible backend: ``openai/<model name>`` against any server speaking the OpenAI API
(``--base-url`` or ``OPENAI_BASE_URL``; key from ``--api-key`` or ``OPENAI_API_KEY``).

Model args: ``api`` = completions (default) or chat; ``echo`` (default true): the server returns
prompt log-probabilities with ``echo`` + ``logprobs`` (vLLM's server does), which enables dense
scoring; ``top_logprobs`` (default 5); ``concurrency`` (default 8 requests in flight);
``max_retries`` (default 8); ``retry_base`` (seconds, default 1); ``timeout`` (seconds, default 120).

Robustness: retries on 429, 5xx, timeouts, dropped connections and malformed responses, with
exponential backoff and full jitter, honouring ``Retry-After``. Every successful response is
stored in a per-request cache (SQLite) in the run directory, so a rerun or resume never re-sends
a request. Keys are used for the client only: never cached, logged or written to results.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ffbench.backends.base import NO_CHOICE, UNKNOWN, Backend, Generation, ScoreRequest, SpanScores, choice_from_continuation
from ffbench.errors import FFBenchError, UsageError

CACHE_FILE = "requests.sqlite"


class RequestCache:
    """Responses by request hash; safe for the backend's worker threads and for a killed process
    (SQLite commits each response)."""

    def __init__(self, directory: str | None):
        self._lock = threading.Lock()
        self._db = None
        self._directory = Path(directory) if directory else None

    def _conn(self):
        if self._db is None and self._directory is not None:
            self._directory.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self._directory / CACHE_FILE, check_same_thread=False, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, body TEXT NOT NULL)")
            self._db.commit()
        return self._db

    def get(self, key: str):
        with self._lock:
            db = self._conn()
            row = db.execute("SELECT body FROM responses WHERE key = ?", (key,)).fetchone() if db else None
        return json.loads(row[0]) if row else None

    def put(self, key: str, body: dict) -> None:
        with self._lock:
            db = self._conn()
            if db is not None:
                db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?)", (key, json.dumps(body)))
                db.commit()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class OpenAIBackend(Backend):
    provider = "openai"

    @classmethod
    def check_plan(cls, model: str, args: dict, renders: list, scorings: list[str]) -> None:
        api = args.get("api", "completions")
        if api not in ("completions", "chat"):
            raise UsageError(f"model arg api must be completions or chat, got {api!r}")
        if "choice" in scorings and (api == "chat" or args.get("echo", True) is False):
            why = "api=chat" if api == "chat" else "echo=false"
            raise UsageError(f"openai/{model} with {why} gives no log-probabilities of answers: use --scoring greedy")

    def fingerprint(self) -> dict:
        from ffbench import identity

        return identity.api_fingerprint(self.base_url, self.model, self._served)

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 cache_dir: str | None = None, api: str = "completions", echo: bool = True, top_logprobs: int = 5,
                 concurrency: int = 8, max_retries: int = 8, retry_base: float = 1.0, timeout: float = 120.0,
                 context_length: int | None = None):
        super().__init__(model)
        import openai

        if api not in ("completions", "chat"):
            raise FFBenchError(f"model arg api must be completions or chat, got {api!r}")
        self._openai = openai
        self.base_url = base_url
        self.api = api
        self.is_chat = api == "chat"
        self.supports_dense = bool(echo) and not self.is_chat
        self.echo = bool(echo)
        self.top_logprobs = int(top_logprobs)
        self.concurrency = max(1, int(concurrency))
        self.max_retries = int(max_retries)
        self.retry_base = float(retry_base)
        self._context = context_length
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "EMPTY", max_retries=0, timeout=timeout)
        self.cache = RequestCache(cache_dir)
        self._usage_lock = threading.Lock()
        self._served: dict = {}
        self._check_reachable()

    def describe(self) -> dict:
        return {**super().describe(), "base_url": self.base_url, "api": self.api, "echo": self.echo}

    def context_length(self) -> int | None:
        return self._context

    def close(self) -> None:
        self.cache.close()

    # ------------------------------------------------------------------ transport
    def _check_reachable(self) -> None:
        """One cheap call up front, so a wrong URL fails in a line before any work starts."""
        try:
            models = self._with_retries(lambda: self.client.models.list(), tries=2)
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

    def _sleep_for(self, attempt: int, exc) -> float:
        headers = getattr(getattr(exc, "response", None), "headers", None) or {}
        for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
            value = headers.get(name)
            if value is not None:
                try:
                    return min(float(value) * scale, 300.0)
                except ValueError:
                    pass
        return random.uniform(0, min(60.0, self.retry_base * 2 ** attempt))  # full jitter

    def _with_retries(self, call, tries: int | None = None):
        o = self._openai
        tries = self.max_retries + 1 if tries is None else tries
        last, err = "no attempt", None
        for attempt in range(tries):
            try:
                return call()
            except o.APIStatusError as exc:
                status = exc.status_code
                if status not in (408, 409, 429) and status < 500:
                    raise FFBenchError(f"server refused the request: HTTP {status}: {_short(exc)}") from None
                last, err = f"HTTP {status}", exc
            except o.APITimeoutError as exc:
                last, err = "timeout", exc
            except o.APIConnectionError as exc:
                last, err = f"connection error ({_short(exc)})", exc
            except (o.APIResponseValidationError, ValueError, KeyError, TypeError, IndexError) as exc:
                last, err = f"malformed response ({type(exc).__name__})", exc
            if attempt + 1 < tries:
                time.sleep(self._sleep_for(attempt, err))
        raise FFBenchError(f"request failed after {tries} tries, last: {last}")

    def _request(self, kind: str, payload: dict) -> dict:
        key = hashlib.sha256(json.dumps([self.base_url, kind, payload], sort_keys=True).encode()).hexdigest()
        cached = self.cache.get(key)
        if cached is not None:
            with self._usage_lock:
                self.usage.cached_requests += 1
            return cached
        create = self.client.completions.create if kind == "completions" else self.client.chat.completions.create

        def call():
            body = create(**payload).model_dump()
            _validate(kind, body, payload)
            return body

        body = self._with_retries(call)
        self.cache.put(key, body)
        usage = body.get("usage") or {}
        with self._usage_lock:
            self.usage.requests += 1
            self.usage.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.usage.completion_tokens += int(usage.get("completion_tokens") or 0)
        return body

    def _map(self, kind: str, payloads: list[dict]) -> list[dict]:
        if len(payloads) <= 1 or self.concurrency == 1:
            return [self._request(kind, p) for p in payloads]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda p: self._request(kind, p), payloads))

    # ------------------------------------------------------------------ protocol
    def _echo_payload(self, text: str) -> dict:
        return {"model": self.model, "prompt": text, "max_tokens": 1, "temperature": 0.0, "echo": True,
                "logprobs": self.top_logprobs}

    def score_dense(self, requests: list[ScoreRequest]) -> list[SpanScores]:
        bodies = self._map("completions", [self._echo_payload(r.text) for r in requests])
        return [dense_from_echo(b["choices"][0]["logprobs"], r.text, r.spans, r.choices, self.top_logprobs)
                for b, r in zip(bodies, requests)]

    def score_per_read(self, prompts: list[str], choices: tuple[str, ...]) -> np.ndarray:
        if not self.echo:
            raise FFBenchError("this server gives no prompt log-probabilities (echo=false): use --scoring greedy")
        payloads = [self._echo_payload(p + c) for p in prompts for c in choices]
        bodies = self._map("completions", payloads)
        out = np.zeros((len(prompts), len(choices)))
        for j, body in enumerate(bodies):
            i, k = divmod(j, len(choices))
            lp = body["choices"][0]["logprobs"]
            start = len(prompts[i])
            total = 0.0
            for off, tok, value in zip(lp["text_offset"], lp["tokens"], lp["token_logprobs"]):
                if start <= off < start + len(choices[k]):
                    total += value
                elif off < start < off + len(tok):
                    raise FFBenchError("the server's tokenizer merges the answer with the text before it; "
                                       "use a rendering whose answers start a token (e.g. symbolic_spaced)")
            out[i, k] = total
        return out

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[Generation]:
        if self.is_chat:
            payloads = [{"model": self.model, "messages": [{"role": "user", "content": p}], "temperature": 0.0,
                         "max_tokens": max_new_tokens} for p in prompts]
            out = []
            for b in self._map("chat", payloads):
                choice = b["choices"][0]
                message = choice["message"]
                reasoning = message.get("reasoning_content") or message.get("reasoning")
                out.append(Generation(message.get("content") or "", truncated=choice.get("finish_reason") == "length",
                                      reasoning=reasoning or None))
            return out
        payloads = [{"model": self.model, "prompt": p, "max_tokens": max_new_tokens, "temperature": 0.0}
                    for p in prompts]
        return [Generation(b["choices"][0]["text"] or "", truncated=b["choices"][0].get("finish_reason") == "length")
                for b in self._map("completions", payloads)]


def _short(exc) -> str:
    return str(getattr(exc, "message", None) or exc).splitlines()[0][:200]


def _validate(kind: str, body: dict, payload: dict) -> None:
    """Raise (as malformed, so it is retried) when a response lacks what ffbench reads."""
    choice = body["choices"][0]
    if kind == "chat":
        if not isinstance(choice["message"], dict):
            raise TypeError("no message")
        return
    if not isinstance(choice["text"], str):
        raise TypeError("no text")
    if payload.get("echo"):
        lp = choice["logprobs"]
        if not lp or len(lp["tokens"]) != len(lp["token_logprobs"]) or len(lp["tokens"]) != len(lp["text_offset"]):
            raise KeyError("logprobs")


def dense_from_echo(lp: dict, text: str, spans: np.ndarray, choices: tuple[str, ...], k: int) -> SpanScores:
    """Span scores from an echoed prompt's token strings, log-probabilities and top-k alternatives.

    The server's tokenizer is unknown here, so tokens are strings: a span must start and end on
    token boundaries, the alternative choice must be the target's leading tokens plus one token
    string found in the top-k at that position (else only an upper bound is known, if the top-k
    is full), and the greedy path follows the top-1 strings.
    """
    offsets = np.asarray(lp["text_offset"], dtype=np.int64)
    tokens, values, tops = lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]
    n_prompt = int(np.searchsorted(offsets, len(text), side="left"))
    n, m = len(spans), len(choices)
    logprobs = np.full((n, m), np.nan)
    bound = np.zeros((n, m), dtype=bool)
    greedy = np.full(n, UNKNOWN, dtype=np.int64)
    for r, (start, end) in enumerate(spans.tolist()):
        a = int(np.searchsorted(offsets[:n_prompt], start, side="left"))
        b = int(np.searchsorted(offsets[:n_prompt], end, side="left"))
        if a == 0 or a >= n_prompt or offsets[a] != start or (b < n_prompt and offsets[b] != end):
            continue
        span_tokens = tokens[a:b]
        target_text = "".join(span_tokens)
        if target_text not in choices or any(values[j] is None for j in range(a, b)):
            continue
        t = choices.index(target_text)
        prefix = np.concatenate(([0.0], np.cumsum([values[j] for j in range(a, b)])))
        logprobs[r, t] = prefix[-1]
        for kk, alt in enumerate(choices):
            if kk == t:
                continue
            d, covered = 0, ""
            while d < len(span_tokens) and alt.startswith(covered + span_tokens[d]) and len(covered + span_tokens[d]) < len(alt):
                covered += span_tokens[d]
                d += 1
            rest, top = alt[len(covered):], tops[a + d] if a + d < len(tops) else None
            if not top:
                continue
            if rest in top:
                logprobs[r, kk] = prefix[d] + top[rest]
            elif len(top) >= k:
                logprobs[r, kk], bound[r, kk] = prefix[d] + min(top.values()), True
        greedy[r] = _greedy_from_tops(span_tokens, tops, a, choices)
    return SpanScores(logprobs, greedy, bound)


def _greedy_from_tops(span_tokens: list[str], tops: list, a: int, choices: tuple[str, ...]) -> int:
    produced = ""
    for d, tok in enumerate(span_tokens):
        top = tops[a + d] if a + d < len(tops) else None
        if not top:
            return UNKNOWN
        best = max(top, key=top.get)
        if best != tok:
            produced += best
            hit = choice_from_continuation(produced, choices)
            if hit != NO_CHOICE:
                return hit
            return UNKNOWN if any(c.startswith(produced) for c in choices) else NO_CHOICE
        produced += tok
    return choices.index(produced)
