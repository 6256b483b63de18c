"""A local HTTP server speaking Anthropic's Messages and Message Batches API, with scripted faults.

The official ``anthropic`` SDK talks to it over real HTTP. The model behind it is the flip-flop
oracle of the chat rendering (``tests.fault_server``): it answers "The answer is <bit>." except
where ``reply_kind`` says the reply names no bit (garbage), thinks first (a thinking block naming
the wrong bit, sent only when the request turns thinking on), or is cut at the budget
(``stop_reason: max_tokens``).

Like the real API at the version the SDK sends, it refuses sampling parameters (temperature,
top_p, top_k) with a 400, and requests without the expected key with a 401. With
``accepts_sampling=True`` it takes them under the Messages API's rules instead (temperature in
[0, 1]; not temperature and top_p together; with thinking on, no temperature but 1 and top_p in
[0.95, 1]; a thinking budget of at least 1024 below ``max_tokens``) and counts what it got in
``sampling_seen``. With ``prompt_cache=True`` it bills like the API's prompt cache, one token per
character: a user turn given as text blocks with ``cache_control`` on one of them writes the
prefix up to that block (``cache_creation_input_tokens``; at least 1024 tokens, else nothing is
cached) and reads the longest prefix ending at a block boundary within 20 blocks before it that an
earlier request wrote (``cache_read_input_tokens``); ``input_tokens`` counts the rest. A plain
string turn is never cached.

Faults on the first attempt of every few distinct Messages requests: 429 (rate limited, with
``retry-after``), 529 (overloaded, with ``retry-after``) and a malformed JSON body. Message
Batches: ``batch_faults`` scripts successive jobs (``expire``: the second half expires;
``partial``: every third result is missing; ``errors``: every fourth request fails with a
retryable api_error; ``refuse``: the first request fails with invalid_request_error;
``create-stall``: the job is created but the reply never comes), and ``hold=True`` keeps jobs in
progress until ``release()``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

from tests.fault_server import JSONHandler, LocalServer, chat_sequence, oracle_bit, reply_kind

MODEL = "claude-oracle"
KEY = "sk-ant-test-secret"
SAMPLING = ("temperature", "top_p", "top_k")


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(etype: str, message: str) -> dict:
    return {"type": "error", "error": {"type": etype, "message": message}, "request_id": "req_test"}


class AnthropicServer(LocalServer):
    def __init__(self, faults: bool = True, retry_after_ms: int = 100, batch_faults: list | None = None,
                 hold: bool = False, batch_polls: int = 2, stall: float = 1.5, accepts_sampling: bool = False,
                 prompt_cache: bool = False):
        self.faults, self.retry_after_ms, self.stall = faults, retry_after_ms, stall
        self.accepts_sampling = accepts_sampling
        self.prompt_cache = prompt_cache
        self.cache: set = set()  # written prefixes, as the tuple of their blocks' texts
        self.billed_tokens: Counter = Counter()  # input, cache_read, cache_write tokens billed
        self.sampling_seen: Counter = Counter()  # (temperature, top_p, thinking type) of accepted requests
        self.lock = threading.Lock()
        self.requests = 0  # every POST /v1/messages
        self.seen: set[str] = set()
        self.injected: Counter = Counter()  # fault -> times injected
        self.after_fault: list[float] = []  # seconds between a 429/529 and the retry of the same body
        self._faulted: dict[str, float] = {}
        self.kinds: Counter = Counter()  # reply kind -> successful replies
        self.kinds_lock = threading.Lock()
        self.system_prompts: Counter = Counter()  # system prompt -> replies to requests carrying it
        self.batch_faults = list(batch_faults or [])
        self.batch_polls = batch_polls
        self.batches: dict[str, dict] = {}
        self.batch_creations: list[tuple[str, frozenset]] = []
        self.billed: Counter = Counter()  # custom id -> succeeded results returned
        self.polls: Counter = Counter()
        self._start_server(hold)

    # ------------------------------------------------------------------ behaviour
    def _fault_for(self, key: str) -> str | None:
        with self.lock:
            if key in self._faulted:
                self.after_fault.append(time.monotonic() - self._faulted.pop(key))
            if not self.faults or key in self.seen:
                return None
            self.seen.add(key)
            fault = {1: "429", 2: "529", 3: "malformed"}.get(len(self.seen) % 5)
            if fault:
                self.injected[fault] += 1
                if fault in ("429", "529"):
                    self._faulted[key] = time.monotonic()
            return fault

    def reply(self, req: dict) -> dict:
        turn = req["messages"][-1]["content"]
        content = turn if isinstance(turn, str) else "".join(b["text"] for b in turn)
        bit = oracle_bit(chat_sequence(content))
        kind = reply_kind(content)
        thinking_on = (req.get("thinking") or {}).get("type") in ("enabled", "adaptive")
        if kind == "think" and not thinking_on:
            kind = "plain"
        blocks, stop = [], "end_turn"
        if kind == "think":
            blocks.append({"type": "thinking", "thinking": f"Is it {1 - int(bit)}? No: the last write was {bit}.",
                           "signature": "sig"})
        if kind == "garbage":
            blocks.append({"type": "text", "text": "I do not know"})
        elif kind == "cut":
            blocks.append({"type": "text", "text": "The answer"})
            stop = "max_tokens"
        else:
            blocks.append({"type": "text", "text": f"The answer is {bit}."})
        with self.kinds_lock:
            self.kinds[kind] += 1
            if req.get("system"):
                self.system_prompts[req["system"]] += 1
        return {"id": "msg_test", "type": "message", "role": "assistant", "model": MODEL, "content": blocks,
                "stop_reason": stop, "stop_sequence": None,
                "usage": {**self._billed(turn), "output_tokens": 5}}

    CACHE_MIN, LOOKBACK = 1024, 20

    def _billed(self, turn) -> dict:
        """The prompt's usage under the prompt cache (module docstring); all input without it."""
        if not self.prompt_cache or isinstance(turn, str):
            n = len(turn) if isinstance(turn, str) else sum(len(b["text"]) for b in turn)
            return {"input_tokens": n}
        texts = [b["text"] for b in turn]
        ends = [sum(len(t) for t in texts[:k + 1]) for k in range(len(texts))]
        marks = [k for k, b in enumerate(turn) if b.get("cache_control")]
        read = write = 0
        with self.kinds_lock:
            if marks and ends[marks[-1]] >= self.CACHE_MIN:
                last = marks[-1]
                hits = [k for k in range(max(0, last - self.LOOKBACK), last + 1) if tuple(texts[:k + 1]) in self.cache]
                read = ends[hits[-1]] if hits else 0
                write = ends[last] - read
                self.cache.add(tuple(texts[:last + 1]))
            usage = {"input_tokens": ends[-1] - read - write, "cache_read_input_tokens": read,
                     "cache_creation_input_tokens": write}
            for name, value in (("input", usage["input_tokens"]), ("cache_read", read), ("cache_write", write)):
                self.billed_tokens[name] += value
        return usage

    def _handler(self):
        server = self

        class Handler(JSONHandler):
            def _authorised(self) -> bool:
                given = self.headers.get("x-api-key") or (self.headers.get("authorization") or "").removeprefix(
                    "Bearer ")
                if given != KEY:
                    self.send_json(401, _error("authentication_error", "invalid x-api-key"))
                    return False
                return True

            def do_GET(self):
                if not self._authorised():
                    return
                path = self.path.split("?")[0].rstrip("/")
                if path.startswith("/v1/models/"):
                    name = path.rsplit("/", 1)[-1]
                    if name != MODEL:
                        self.send_json(404, _error("not_found_error", f"model: {name}"))
                        return
                    self.send_json(200, {"type": "model", "id": MODEL, "display_name": "Oracle",
                                         "created_at": "2026-01-01T00:00:00Z", "lifecycle": "active",
                                         "max_input_tokens": 200000, "max_tokens": 64000})
                elif path.startswith("/v1/messages/batches/"):
                    server._batch_get(self, path)
                else:
                    self.send_json(404, _error("not_found_error", path))

            def do_POST(self):
                raw = self.read_body()
                if not self._authorised():
                    return
                path = self.path.split("?")[0].rstrip("/")
                req = json.loads(raw)
                if path == "/v1/messages/batches":
                    server._batch_create(self, req)
                    return
                if path != "/v1/messages":
                    self.send_json(404, _error("not_found_error", path))
                    return
                with server.lock:
                    server.requests += 1
                refused = server.sampling_refusal(req) if server.accepts_sampling else server.refusal(req)
                if refused:
                    self.send_json(400, _error("invalid_request_error", refused))
                    return
                key = hashlib.sha256(raw).hexdigest()
                fault = server._fault_for(key)
                if fault == "429":
                    self.send_json(429, _error("rate_limit_error", "rate limited"),
                                   {"retry-after": "1", "retry-after-ms": str(server.retry_after_ms)})
                    return
                if fault == "529":
                    self.send_json(529, _error("overloaded_error", "Overloaded"),
                                   {"retry-after": "1", "retry-after-ms": str(server.retry_after_ms)})
                    return
                if fault == "malformed":
                    self.send_json(200, b'{"id": "msg_x", "type": "message", "content": [{"type": ')
                    return
                body = server.reply(req)
                with server.lock:
                    server.served[key] += 1
                self.send_json(200, body)

        return Handler

    @staticmethod
    def refusal(params: dict) -> str | None:
        if params.get("model") != MODEL:
            return f"model: {params.get('model')}"
        for name in SAMPLING:
            if name in params:
                return f"{name}: Extra inputs are not permitted"
        if not isinstance(params.get("max_tokens"), int):
            return "max_tokens: Field required"
        return None

    def sampling_refusal(self, params: dict) -> str | None:
        """The Messages API's sampling rules (module docstring); None when the request is accepted."""
        if params.get("model") != MODEL:
            return f"model: {params.get('model')}"
        t, top_p, thinking = params.get("temperature"), params.get("top_p"), params.get("thinking") or {}
        if t is not None and not 0 <= t <= 1:
            return "temperature: Input should be less than or equal to 1"
        if t is not None and top_p is not None:
            return "`temperature` and `top_p` cannot both be specified for this model. Please use only one."
        if thinking.get("type") == "enabled":
            if t is not None and t != 1:
                return "`temperature` may only be set to 1 when thinking is enabled."
            if top_p is not None and not 0.95 <= top_p <= 1:
                return "`top_p` must be between 0.95 and 1 when thinking is enabled."
            if not 1024 <= thinking.get("budget_tokens", 0) < params.get("max_tokens", 0):
                return "thinking.budget_tokens: must be at least 1024 and less than max_tokens"
        with self.kinds_lock:
            self.sampling_seen[(t, top_p, thinking.get("type"))] += 1
        return None

    # ------------------------------------------------------------------ Message Batches
    def _batch_json(self, job: dict) -> dict:
        return {k: v for k, v in job.items() if not k.startswith("_")}

    def _batch_create(self, handler, req: dict) -> None:
        requests = req["requests"]
        now = datetime.now(timezone.utc)
        with self.lock:
            job_id = f"msgbatch_{len(self.batches) + 1:04d}"
            self.batches[job_id] = {
                "id": job_id, "type": "message_batch", "processing_status": "in_progress",
                "request_counts": {"processing": len(requests), "succeeded": 0, "errored": 0, "canceled": 0,
                                   "expired": 0},
                "created_at": _iso(now), "expires_at": _iso(now + timedelta(hours=24)), "ended_at": None,
                "archived_at": None, "cancel_initiated_at": None, "results_url": None,
                "_requests": requests, "_fault": self.batch_faults.pop(0) if self.batch_faults else None}
            self.batch_creations.append((job_id, frozenset(r["custom_id"] for r in requests)))
            body = self._batch_json(self.batches[job_id])
        if self.batches[job_id]["_fault"] == "create-stall":  # created, but the client times out waiting
            time.sleep(self.stall)
            return
        handler.send_json(200, body)

    def _batch_get(self, handler, path: str) -> None:
        parts = path.split("/")
        results = parts[-1] == "results"
        job = self.batches.get(parts[-2] if results else parts[-1])
        if job is None:
            handler.send_json(404, _error("not_found_error", "batch"))
            return
        if results:
            data = "".join(json.dumps(r) + "\n" for r in job["_results"]).encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/binary")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return
        with self.lock:
            self.polls[job["id"]] += 1
            if (job["processing_status"] == "in_progress" and self.released.is_set()
                    and self.polls[job["id"]] >= self.batch_polls):
                self._finish(job, f"{self.url}/v1/messages/batches/{job['id']}/results")
            body = self._batch_json(job)
        handler.send_json(200, body)

    def _finish(self, job: dict, results_url: str) -> None:
        """Answer a job's requests as its scripted fault says (called with the lock held)."""
        fault, requests = job["_fault"], job["_requests"]
        counts = Counter()
        rows = []
        for n, r in enumerate(requests):
            cid = r["custom_id"]
            if fault == "expire" and n >= len(requests) // 2:
                result = {"type": "expired"}
            elif fault == "partial" and n % 3 == 0:
                continue
            elif fault == "errors" and n % 4 == 1:
                result = {"type": "errored", "error": _error("api_error", "Internal server error")}
            elif fault == "refuse" and n == 0:
                result = {"type": "errored", "error": _error("invalid_request_error", "prompt is too long")}
            elif self.refusal(r["params"]):
                result = {"type": "errored", "error": _error("invalid_request_error", self.refusal(r["params"]))}
            else:
                result = {"type": "succeeded", "message": self.reply(r["params"])}
                self.billed[cid] += 1
            counts[result["type"]] += 1
            rows.append({"custom_id": cid, "result": result})
        job["_results"] = rows
        job["processing_status"] = "ended"
        job["ended_at"] = _iso(datetime.now(timezone.utc))
        job["results_url"] = results_url
        job["request_counts"] = {"processing": 0, **{k: counts[k] for k in ("succeeded", "errored", "canceled",
                                                                           "expired")}}
