"""Huge replies are capped (issue 23): a server answering 10 MB per request fails those requests
after the retries, with the cap in the line, reading only up to the cap and caching nothing, whether
it declares its length or streams without one; a rerun against the fixed server works. Replies the
request asks to be long (an echoed prompt's log-probabilities, a token budget) get room for it."""

from __future__ import annotations

import importlib.util
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ffbench.backends.transport import MAX_REPLY_BYTES, REPLY_BYTES_PER_TOKEN
from ffbench.errors import FFBenchError
from tests.fault_server import FaultServer
from tests.test_faults_cache import _cached, _go
from tests.test_openai_faults import _backend

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openai") is None, reason="openai not installed")

HUGE = 10 * 1000 * 1000


def ten_megabytes(body: dict) -> dict:
    return {**body, "padding": "x" * HUGE}


def test_a_server_answering_10_mb_per_request_fails_them_in_a_line_and_caches_nothing(tmp_path):
    out = tmp_path / "r"
    with FaultServer(faults=False, mutate=ten_megabytes) as srv:
        with pytest.raises(FFBenchError) as err:
            _go(srv.url, out)
        assert not out.exists() and _cached(out) == 0  # nothing was kept
        srv.mutate = None  # the server is fixed: the same run works
        res = _go(srv.url, out)
    assert str(err.value).startswith("openai request failed after 3 tries, last: malformed response (reply over ")
    assert str(err.value).endswith(" bytes (model arg max_reply_bytes))")
    assert all(c.reads > 0 for c in res.results) and _cached(out) == 16


class Streaming(BaseHTTPRequestHandler):
    """Answers every POST with an endless body without Content-Length (read until the connection
    closes) and counts the bytes it managed to send."""

    protocol_version = "HTTP/1.0"
    sent = 0

    def log_message(self, *args):
        pass

    def do_GET(self):  # the model listing
        data = json.dumps({"object": "list", "data": [{"id": "oracle", "object": "model", "owned_by": "t"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        chunk = b'{"choices": [{"text": "' + b"x" * 65536
        try:
            for _ in range(HUGE // len(chunk)):
                self.wfile.write(chunk)
                type(self).sent += len(chunk)
        except OSError:  # the client hung up
            pass


def test_a_reply_without_a_length_is_read_only_up_to_the_cap():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Streaming)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        backend = _backend(f"http://127.0.0.1:{httpd.server_address[1]}/v1", echo=False, max_retries=0,
                           max_reply_bytes=100_000)
        with pytest.raises(FFBenchError, match=r"failed after 1 tries, last: malformed response \(reply over "
                                               rf"{100_000 + REPLY_BYTES_PER_TOKEN * 2} bytes"):
            backend.generate(["w0r"], 2)
    finally:
        httpd.shutdown()
    # it stopped reading at the cap: what the server got out is the cap plus the socket buffers, far from 10 MB
    assert Streaming.sent < HUGE / 2


def test_long_replies_a_request_asks_for_get_room():
    with FaultServer(faults=False, mutate=lambda body: {**body, "padding": "x" * 5000}) as srv:
        backend = _backend(srv.url, max_reply_bytes=1000, max_retries=0)
        prompt = "w0r0i1w1r1" * 400  # its echo with 5 alternatives per token is ~400 KB, far over 1000 bytes
        echo = backend._echo_payload(prompt)
        limit = backend.transport.policy.reply_limit("completions", echo)
        assert limit == 1000 + REPLY_BYTES_PER_TOKEN * ((5 + 2) * len(prompt) + 1)
        [body] = backend.transport.map("completions", [echo])  # answered, no fault
        assert 100_000 < len(json.dumps(body)) < limit
        with pytest.raises(FFBenchError, match=r"reply over 1640 bytes"):  # a generation gets its budget's room only
            backend.generate(["w0r"], 10)
    assert MAX_REPLY_BYTES == 1 << 20


@pytest.mark.skipif(importlib.util.find_spec("anthropic") is None, reason="anthropic not installed")
def test_the_anthropic_sdk_wrapping_the_cap_still_reads_as_the_cap():
    from tests.anthropic_server import AnthropicServer
    from tests.test_anthropic import _backend as anthropic_backend

    class Huge(AnthropicServer):
        def reply(self, req: dict) -> dict:
            return {**super().reply(req), "padding": "x" * HUGE}

    with Huge(faults=False) as srv:
        backend = anthropic_backend(srv.url, max_retries=1)
        with pytest.raises(FFBenchError, match=r"^anthropic request failed after 2 tries, last: malformed response "
                                               rf"\(reply over {MAX_REPLY_BYTES + REPLY_BYTES_PER_TOKEN * 4} bytes"):
            backend.generate(["w0r"], 4)
