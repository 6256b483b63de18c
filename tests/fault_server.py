"""A local HTTP server speaking the OpenAI wire format, with scripted faults.

The "model" behind it is a flip-flop oracle over the compact symbolic rendering: it answers every
read with the last written bit (so a correct client sees no errors), except for prompts chosen by
``garbage(prompt)``, which get an unparseable answer. Faults are injected on the *first* attempt of
every few distinct requests: 429 with Retry-After, 500, a stall past the client's timeout, and a
malformed JSON body. Counters let tests check retries, waiting and the absence of duplicates.
Only for tests of robustness; the happy path is tested against a real ``vllm serve``.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "oracle"


def oracle_bit(prompt: str) -> str:
    """The bit of the most recent write in a compact flip-flop prefix."""
    k = prompt.rfind("w")
    return prompt[k + 1] if k >= 0 and k + 1 < len(prompt) else "0"


def garbage(prompt: str) -> bool:
    return int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % 9 == 0


class FaultServer:
    def __init__(self, faults: bool = True, stall: float = 1.5, retry_after_ms: int = 150):
        self.faults, self.stall, self.retry_after_ms = faults, stall, retry_after_ms
        self.lock = threading.Lock()
        self.requests = 0  # every HTTP request to a completion endpoint
        self.served: dict[str, int] = {}  # body hash -> successful responses
        self.seen: set[str] = set()
        self.injected: dict[str, int] = {"429": 0, "500": 0, "stall": 0, "malformed": 0}
        self.after_429: list[float] = []  # seconds between a 429 and the retry of the same body
        self._last_429: dict[str, float] = {}
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.served.values() if n > 1)

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

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: bytes, headers: dict | None = None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    payload = {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "test",
                                                           "max_model_len": 4096}]}
                    self._send(200, json.dumps(payload).encode())
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                key = hashlib.sha256(self.path.encode() + raw).hexdigest()
                req = json.loads(raw)
                if req.get("model") != MODEL:
                    self._send(404, json.dumps({"error": {"message": f"model {req.get('model')} not found"}}).encode())
                    return
                fault = server._fault_for(key)
                if fault == "429":
                    self._send(429, b'{"error": {"message": "slow down"}}',
                               {"Retry-After": "1", "retry-after-ms": str(server.retry_after_ms)})
                    return
                if fault == "500":
                    self._send(500, b'{"error": {"message": "boom"}}')
                    return
                if fault == "stall":
                    time.sleep(server.stall)
                    return
                if fault == "malformed":
                    self._send(200, b'{"id": "x", "choices": [ {"text": ')
                    return
                if self.path.endswith("/chat/completions"):
                    body = server._chat(req)
                else:
                    body = server._completion(req)
                server._served(key)
                self._send(200, json.dumps(body).encode())

        return Handler

    def _usage(self, prompt_tokens: int, completion_tokens: int) -> dict:
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens}

    def _completion(self, req: dict) -> dict:
        prompt = req["prompt"]
        if req.get("echo"):
            return {"id": "cmpl", "object": "text_completion", "created": 0, "model": MODEL,
                    "choices": [{"index": 0, "text": prompt, "finish_reason": "length",
                                 "logprobs": self._echo_logprobs(prompt)}],
                    "usage": self._usage(len(prompt), 0)}
        text = "banana" if garbage(prompt) else oracle_bit(prompt) + "i0"
        return {"id": "cmpl", "object": "text_completion", "created": 0, "model": MODEL,
                "choices": [{"index": 0, "text": text, "finish_reason": "length", "logprobs": None}],
                "usage": self._usage(len(prompt), 3)}

    def _chat(self, req: dict) -> dict:
        content = req["messages"][-1]["content"]
        seq = "".join(ch for ch in content.split("Sequence:")[-1].split("\n\n")[0] if ch in "wri01")
        answer = "I do not know" if garbage(content) else f"The answer is {oracle_bit(seq)}."
        return {"id": "chat", "object": "chat.completion", "created": 0, "model": MODEL,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": answer}}],
                "usage": self._usage(len(content), 5)}

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
