"""A local HTTP server speaking the OpenAI wire format, with scripted faults.

The "model" behind it is a flip-flop oracle over the compact symbolic rendering: it answers every
read with the last written bit (so a correct client sees no errors), except for prompts chosen by
``garbage(prompt)``, which get an unparseable answer. Faults are injected on the *first* attempt of
every few distinct requests: 429 with Retry-After, 500, a stall past the client's timeout, and a
malformed JSON body. Counters let tests check retries, waiting and the absence of duplicates.

Options for the other behaviours tested against it:

* ``capacity=N``: answer 429 whenever more than N requests are in flight (each held ``latency``
  seconds), as a server with a concurrency limit does;
* ``variants=True``: chat replies chosen by ``reply_kind`` carry a separate reasoning field
  (``reasoning_content`` or ``reasoning``) or are cut at the token budget (``finish_reason:
  length``);
* ``mutate``: a function applied to every successful answer body (a server answering in a shape
  ffbench cannot read, e.g. echo logprobs without ``top_logprobs``); set it to None to fix the server;
* the Batch API (``/files``, ``/batches``, ``/files/{id}/content``), answering each request line
  as the online endpoints do; ``batch_faults`` scripts what happens to successive jobs (a job that
  expires half done, results missing from the files, per-request errors, a refused request, and
  a create that did create the job but answered 500 (``create-500``) or never answered
  (``create-stall``); comma-separated to combine), and ``hold=True`` keeps jobs in progress until
  ``release()``;
* ``sampled=Q``: a sampled model. Each read has its own known error probability
  ``error_probability(prompt)`` (between 0 and Q, from the prompt's hash); a request without a
  temperature, or with one above 0, answers wrong with that probability (a seeded random draw),
  while temperature 0 answers the read's mode (wrong only where the probability is above 1/2).
  ``sampling_seen`` counts the (temperature, top_p, seed, budget field) of every such request;
* ``prompt_cache=True``: OpenAI's automatic prompt caching, one token per character: a prompt's
  longest prefix of a multiple of 128 tokens (at least 1024) that an earlier *answered* request
  began with is billed as ``usage.prompt_tokens_details.cached_tokens``; the prefixes are cached
  ``latency`` seconds after the request arrives (its prefill), so requests sent at once share nothing.

Only for tests of robustness; the happy path is tested against a real vLLM server.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import math
import random
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "oracle"


def oracle_bit(prompt: str) -> str:
    """The bit of the most recent write in a compact flip-flop prefix."""
    k = prompt.rfind("w")
    return prompt[k + 1] if k >= 0 and k + 1 < len(prompt) else "0"


def _hash(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16)


def garbage(prompt: str) -> bool:
    return _hash(prompt) % 9 == 0


def reply_kind(content: str) -> str:
    """What a chat reply to ``content`` looks like: garbage (names no bit), think (a separate
    reasoning part naming the wrong bit first, then the right answer), cut (stopped at the token
    budget before the answer) or plain."""
    if garbage(content):
        return "garbage"
    return {1: "think", 2: "cut"}.get(_hash(content) % 7, "plain")


def chat_sequence(content: str) -> str:
    """The compact sequence inside the chat rendering of a prompt."""
    return "".join(ch for ch in content.split("Sequence:")[-1].split("\n\n")[0] if ch in "wri01")


def parse_multipart(content_type: str, raw: bytes) -> dict[str, bytes]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in message.iter_parts()}


class JSONHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send_json(self, status: int, body, headers: dict | None = None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))


class LocalServer:
    """A threaded HTTP server on a free local port, run as a context manager; subclasses give the
    handler (``_handler()``), the URL path prefix and their own counters. ``released`` holds batch
    jobs pending until :meth:`release` (for kill-while-pending tests)."""

    URL_PREFIX = ""

    def _start_server(self, hold: bool) -> None:
        self.served: Counter = Counter()  # request body hash -> successful replies
        self.released = threading.Event()
        if not hold:
            self.released.set()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{self.URL_PREFIX}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def release(self) -> None:
        self.released.set()

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.served.values() if n > 1)


class FaultServer(LocalServer):
    URL_PREFIX = "/v1"

    def __init__(self, faults: bool = True, stall: float = 1.5, retry_after_ms: int = 150,
                 capacity: int | None = None, latency: float = 0.0, variants: bool = False,
                 batch_faults: list | None = None, hold: bool = False, batch_polls: int = 2,
                 sampled: float | None = None, sample_seed: int = 0, model: str = MODEL, reasoning: bool = False,
                 prompt_cache: bool = False, mutate=None):
        self.faults, self.stall, self.retry_after_ms = faults, stall, retry_after_ms
        self.sampled, self.model = sampled, model  # ``model``: the name it serves (e.g. a reasoning model's)
        self.reasoning = reasoning  # refuse what OpenAI's reasoning models refuse (reasoning_refusal)
        self.prompt_cache = prompt_cache
        self.cached_prefixes: set[str] = set()  # hashes of cached prompt prefixes (prompt_cache)
        self.billed_tokens: Counter = Counter()  # "prompt", "cached": prompt tokens billed (prompt_cache)
        self.refused = 0
        self.rng = random.Random(sample_seed)
        self.sampling_seen: Counter = Counter()
        self.capacity, self.latency, self.variants = capacity, latency, variants
        self.lock = threading.Lock()
        self.requests = 0  # every HTTP request to a completion endpoint
        self.seen: set[str] = set()
        self.injected: dict[str, int] = {"429": 0, "500": 0, "stall": 0, "malformed": 0}
        self.after_429: list[float] = []  # seconds between a 429 and the retry of the same body
        self._last_429: dict[str, float] = {}
        self.in_flight = 0
        self.max_in_flight = 0  # most requests answered concurrently (capacity mode)
        self.throttled = 0  # 429s sent because more than ``capacity`` requests were in flight
        self.in_flight_samples: list[int] = []  # in-flight count at the start of every accepted request
        # Batch API state
        self.batch_faults = list(batch_faults or [])
        self.batch_polls = batch_polls
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.batch_creations: list[tuple[str, frozenset]] = []  # (job id, custom ids) per job created
        self.billed: Counter = Counter()  # custom id -> results returned as answered (what a provider bills)
        self.uploads = 0
        self.polls: Counter = Counter()
        self.system_prompts: Counter = Counter()  # system message -> chat requests carrying it
        self.count_lock = threading.Lock()
        self.mutate = mutate  # body -> body applied to every successful answer; None (a fixed server)
        self._start_server(hold)

    # ------------------------------------------------------------------ behaviour
    def _fault_for(self, key: str) -> str | None:
        with self.lock:
            self.requests += 1
            if key in self._last_429:
                self.after_429.append(time.monotonic() - self._last_429.pop(key))
            if not self.faults or key in self.seen:
                return None
            self.seen.add(key)
            n = len(self.seen)
            fault = {1: "429", 2: "500", 3: "stall", 4: "malformed"}.get(n % 6)
            if fault:
                self.injected[fault] += 1
                if fault == "429":
                    self._last_429[key] = time.monotonic()
            return fault

    def _served(self, key: str) -> None:
        with self.lock:
            self.served[key] = self.served.get(key, 0) + 1

    def answer(self, path: str, req: dict) -> dict:
        return self._chat(req) if path.endswith("/chat/completions") else self._completion(req)

    def _handler(self):
        server = self

        class Handler(JSONHandler):
            def do_GET(self):
                path = self.path.split("?")[0].rstrip("/")
                if path.endswith("/models"):
                    payload = {"object": "list", "data": [{"id": server.model, "object": "model", "owned_by": "test",
                                                           "max_model_len": 4096}]}
                    self.send_json(200, payload)
                elif "/batches" in path or "/files/" in path:
                    server._batch_get(self, path)
                else:
                    self.send_json(404, {"error": {"message": "not found"}})

            def do_POST(self):
                raw = self.read_body()
                path = self.path.rstrip("/")
                if path.endswith(("/files", "/batches")):
                    server._batch_post(self, path, raw)
                    return
                key = hashlib.sha256(self.path.encode() + raw).hexdigest()
                req = json.loads(raw)
                if req.get("model") != server.model:
                    self.send_json(404, {"error": {"message": f"model {req.get('model')} not found"}})
                    return
                refusal = server.reasoning_refusal(req) if server.reasoning else None
                if refusal:
                    with server.lock:
                        server.refused += 1
                    self.send_json(400, {"error": {"message": refusal, "type": "invalid_request_error"}})
                    return
                if server.capacity is not None:
                    server._capacity_limited(self, key, req)
                    return
                fault = server._fault_for(key)
                if fault == "429":
                    self.send_json(429, {"error": {"message": "slow down"}},
                                   {"Retry-After": "1", "retry-after-ms": str(server.retry_after_ms)})
                    return
                if fault == "500":
                    self.send_json(500, {"error": {"message": "boom"}})
                    return
                if fault == "stall":
                    time.sleep(server.stall)
                    return
                if fault == "malformed":
                    self.send_json(200, b'{"id": "x", "choices": [ {"text": ')
                    return
                body = server.answer(self.path, req)
                if server.mutate is not None:
                    body = server.mutate(body)
                server._served(key)
                self.send_json(200, body)

        return Handler

    def _capacity_limited(self, handler, key: str, req: dict) -> None:
        with self.lock:
            self.requests += 1
            self.in_flight += 1
            over = self.in_flight > self.capacity
            if over:
                self.in_flight -= 1
                self.throttled += 1
            else:
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                self.in_flight_samples.append(self.in_flight)
        if over:
            handler.send_json(429, {"error": {"message": "too many requests in flight"}},
                              {"retry-after-ms": str(self.retry_after_ms)})
            return
        time.sleep(self.latency)
        body = self.answer(handler.path, req)
        with self.lock:
            self.in_flight -= 1  # before the reply leaves, so the client's next request never counts twice
        self._served(key)
        handler.send_json(200, body)

    def _usage(self, prompt_tokens: int, completion_tokens: int, text: str | None = None) -> dict:
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        if self.prompt_cache and text is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": self._cache(text)}
        return usage

    CACHE_MIN, CACHE_STEP = 1024, 128

    def _cache(self, text: str) -> int:
        """Tokens of ``text`` served from the prompt cache; its own prefixes are cached once answered
        (the caller sends the reply after this returns, so a request sent at the same time misses)."""
        steps = range(self.CACHE_MIN, len(text) + 1, self.CACHE_STEP)
        keys = [hashlib.sha256(text[:n].encode()).hexdigest() for n in steps]
        with self.count_lock:
            hit = max((n for n, k in zip(steps, keys) if k in self.cached_prefixes), default=0)
            self.billed_tokens["prompt"] += len(text)
            self.billed_tokens["cached"] += hit
        time.sleep(self.latency)  # the prefill: a request arriving meanwhile finds nothing cached
        with self.count_lock:
            self.cached_prefixes.update(keys)
        return hit

    def _completion(self, req: dict) -> dict:
        prompt = req["prompt"]
        if req.get("echo"):
            return {"id": "cmpl", "object": "text_completion", "created": 0, "model": MODEL,
                    "choices": [{"index": 0, "text": prompt, "finish_reason": "length",
                                 "logprobs": self._echo_logprobs(prompt)}],
                    "usage": self._usage(len(prompt), 0)}
        text = "banana" if garbage(prompt) else self._bit(oracle_bit(prompt), prompt, req) + "i0"
        return {"id": "cmpl", "object": "text_completion", "created": 0, "model": MODEL,
                "choices": [{"index": 0, "text": text, "finish_reason": "length", "logprobs": None}],
                "usage": self._usage(len(prompt), 3, prompt)}

    def _chat(self, req: dict) -> dict:
        with self.count_lock:  # not self.lock: batch jobs are answered with it held
            for m in req["messages"][:-1]:
                self.system_prompts[m["content"]] += m["role"] == "system"
        content = req["messages"][-1]["content"]
        bit = self._bit(oracle_bit(chat_sequence(content)), content, req)
        kind = reply_kind(content) if self.variants else ("garbage" if garbage(content) else "plain")
        message = {"role": "assistant", "content": "I do not know" if kind == "garbage" else f"The answer is {bit}."}
        finish = "stop"
        if kind == "think":
            field = "reasoning_content" if _hash(content) % 2 else "reasoning"
            message[field] = f"Is it {1 - int(bit)}? No: the last write was {bit}."
        elif kind == "cut":
            message["content"], finish = "The answer", "length"
        return {"id": "chat", "object": "chat.completion", "created": 0, "model": MODEL,
                "choices": [{"index": 0, "finish_reason": finish, "message": message}],
                "usage": self._usage(len(content), 5, content)}

    @staticmethod
    def reasoning_refusal(req: dict) -> str | None:
        """What OpenAI's reasoning models answer with a 400: a temperature other than 1, any top_p,
        ``max_tokens`` (they take ``max_completion_tokens``), the completions endpoint."""
        if "messages" not in req:
            return "This model is only supported in v1/chat/completions"
        if req.get("temperature", 1) != 1:
            return "Unsupported value: 'temperature' does not support 0.0 with this model. Only the default (1) value is supported."
        if "top_p" in req:
            return "Unsupported parameter: 'top_p' is not supported with this model."
        if "max_tokens" in req:
            return "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."
        return None

    def error_probability(self, prompt: str) -> float:
        """The known probability that a sampled answer to this read is wrong (0 unless ``sampled``)."""
        return 0.0 if self.sampled is None else self.sampled * (_hash("p" + prompt) % 1000) / 999

    def _bit(self, right: str, prompt: str, req: dict) -> str:
        """The answer of the sampled model (module docstring): ``right`` or, with the read's
        probability, the other bit; always ``right`` unless ``sampled``."""
        if self.sampled is None:
            return right
        budget = "max_completion_tokens" if "max_completion_tokens" in req else "max_tokens"
        temperature = req.get("temperature")
        with self.count_lock:
            self.sampling_seen[(temperature, req.get("top_p"), req.get("seed"), budget)] += 1
            p = self.error_probability(prompt)
            wrong = p > 0.5 if temperature == 0 else self.rng.random() < p
        return "10"[int(right)] if wrong else right

    @staticmethod
    def _echo_logprobs(prompt: str) -> dict:
        """Character tokens; after 'r' the oracle puts 0.9 on the last written bit, else uniform."""
        tokens, values, tops = [], [], []
        memory = "0"
        for k, ch in enumerate(prompt):
            if k == 0:
                dist = None
            elif prompt[k - 1] == "r":
                dist = {memory: math.log(0.9), "10"[int(memory)]: math.log(0.1)}
            else:
                dist = {"0": math.log(0.5), "1": math.log(0.5)} if prompt[k - 1] in "wi" else \
                       {"w": math.log(0.4), "r": math.log(0.3), "i": math.log(0.3)}
            tokens.append(ch)
            values.append(None if dist is None else dist.get(ch, math.log(1e-6)))
            tops.append(dist)
            if k > 0 and prompt[k - 1] == "w":
                memory = ch
        return {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops,
                "text_offset": list(range(len(prompt)))}

    # ------------------------------------------------------------------ Batch API
    def _batch_post(self, handler, path: str, raw: bytes) -> None:
        if path.endswith("/files"):
            parts = parse_multipart(handler.headers["Content-Type"], raw)
            with self.lock:
                self.uploads += 1
                file_id = f"file-{len(self.files) + 1}"
                self.files[file_id] = parts["file"]
            handler.send_json(200, {"id": file_id, "object": "file", "bytes": len(parts["file"]), "created_at": 0,
                                    "filename": "batch.jsonl", "purpose": parts["purpose"].decode(),
                                    "status": "processed"})
            return
        req = json.loads(raw)
        lines = [json.loads(x) for x in self.files[req["input_file_id"]].decode().splitlines() if x.strip()]
        with self.lock:
            job_id = f"batch_{len(self.batches) + 1}"
            fault = self.batch_faults.pop(0) if self.batch_faults else None
            self.batches[job_id] = {"id": job_id, "object": "batch", "endpoint": req["endpoint"],
                                    "input_file_id": req["input_file_id"], "completion_window": "24h",
                                    "status": "in_progress", "created_at": int(time.time()),
                                    "metadata": req.get("metadata"), "output_file_id": None, "error_file_id": None,
                                    "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                                    "_lines": lines, "_fault": fault}
            self.batch_creations.append((job_id, frozenset(x["custom_id"] for x in lines)))
            public = self._public(self.batches[job_id])
        if "create-500" in (fault or "").split(","):  # the job exists, but the client is told creating failed
            handler.send_json(500, {"error": {"message": "internal error after creating the batch"}})
            return
        if "create-stall" in (fault or "").split(","):  # the job exists, but the reply never comes
            time.sleep(self.stall)
            return
        handler.send_json(200, public)

    def _batch_get(self, handler, path: str) -> None:
        parts = path.split("/")
        if path.endswith("/batches"):
            with self.lock:
                data = [self._public(b) for b in reversed(self.batches.values())]
            handler.send_json(200, {"object": "list", "data": data, "has_more": False})
        elif "/files/" in path and path.endswith("/content"):
            data = self.files[parts[-2]]
            handler.send_response(200)
            handler.send_header("Content-Type", "application/octet-stream")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        else:
            job = self.batches.get(parts[-1])
            if job is None:
                handler.send_json(404, {"error": {"message": "no such batch"}})
                return
            with self.lock:
                self.polls[job["id"]] += 1
                ready = self.released.is_set() and self.polls[job["id"]] >= self.batch_polls
                if ready and job["status"] == "in_progress":
                    self._finish(job)
                public = self._public(job)
            handler.send_json(200, public)

    @staticmethod
    def _public(job: dict) -> dict:
        return {k: v for k, v in job.items() if not k.startswith("_")}

    def _finish(self, job: dict) -> None:
        """Answer a job's request lines as its scripted fault says (called with the lock held)."""
        lines, faults = job["_lines"], set((job["_fault"] or "").split(","))
        out, err = [], []
        status = "completed"
        for n, line in enumerate(lines):
            cid = line["custom_id"]
            if "expire" in faults and n >= len(lines) // 2:
                status = "expired"
                err.append({"id": f"req_{n}", "custom_id": cid, "response": None,
                            "error": {"code": "batch_expired", "message": "This request could not be executed "
                                      "before the completion window expired."}})
            elif "partial" in faults and n % 3 == 0:
                continue  # neither answered nor reported
            elif "errors" in faults and n % 4 == 1:
                err.append({"id": f"req_{n}", "custom_id": cid, "error": None,
                            "response": {"status_code": 500, "body": {"error": {"message": "server error"}}}})
            elif "refuse" in faults and n == 0:
                err.append({"id": f"req_{n}", "custom_id": cid, "error": None,
                            "response": {"status_code": 400, "body": {"error": {"message": "prompt too long"}}}})
            else:
                body = self.answer(line["url"], line["body"])
                out.append({"id": f"req_{n}", "custom_id": cid, "error": None,
                            "response": {"status_code": 200, "request_id": f"r{n}", "body": body}})
                self.billed[cid] += 1
        for name, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                file_id = f"file-{len(self.files) + 1}"
                self.files[file_id] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                job[name] = file_id
        job["status"] = status
        job["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err)}
