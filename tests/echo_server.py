"""An OpenAI-compatible completions server over a real tokenizer and a real (tiny) transformers
model, echoing prompt log-probabilities the way real servers do, quirks included.

``quirk`` picks whose echo it reproduces:

* ``exact``: token strings as the text spells them, offsets right, top log-probabilities keyed by
  each token's own text (distinct tokens that spell alike keep the higher value);
* ``llamacpp``: what llama.cpp's server (llama-cpp-python ``llama_cpp.server``) returns for a
  SentencePiece model: the first piece carries the dummy-prefix space and ``text_offset`` counts it,
  so every offset after the first token is one too high; ``top_logprobs`` is keyed by detokenized
  string and, where two tokens spell alike (the byte token ``<0x30>`` and the digit ``0``), keeps the
  *lower* log-probability;
* ``vllm``: vLLM's echo (``serving.py``'s ``_create_completion_logprobs``): every token, ``<s>``
  first, decoded alone, so a SentencePiece piece loses its leading space (``▁0`` -> ``0``, ``▁`` ->
  ``''``), and ``text_offset`` adds up those strings; top log-probabilities keyed the same way.

Only the echo path is served (``echo: true`` with ``logprobs``, ``max_tokens`` 0 or 1) and
``/v1/models``; requests are counted for the tests.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "tiny"


class EchoServer:
    def __init__(self, model_dir, quirk: str = "exact"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.lm = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.quirk = quirk
        self.requests = 0
        self._torch = torch
        self._lock = threading.Lock()
        self._piece_cache: dict[int, str] = {}

    def _llama_piece(self, token: int) -> str:
        """llama.cpp's ``token_to_piece``: ``▁`` is a space (never stripped), a byte token its byte."""
        if token not in self._piece_cache:
            raw = self.tok.convert_ids_to_tokens(token)
            if raw.startswith("<0x") and raw.endswith(">") and len(raw) == 6:
                piece = bytes([int(raw[3:5], 16)]).decode("latin-1")
            else:
                piece = raw.replace("▁", " ")
            self._piece_cache[token] = piece
        return self._piece_cache[token]

    def _decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _in_context(self, ids: list[int], j: int, token: int) -> str:
        """What ``token`` would add to the text at position ``j`` (decoded after the tokens before it)."""
        window = ids[max(0, j - 3):j]
        return self._decode(window + [token])[len(self._decode(window)):]

    def echo(self, prompt: str, k: int, max_tokens: int) -> dict:
        torch = self._torch
        ids = self.tok(prompt)["input_ids"]
        with self._lock, torch.no_grad():
            logp = torch.log_softmax(self.lm(torch.tensor([ids])).logits[0].float(), dim=-1)
        if max_tokens:
            ids = ids + [int(logp[-1].argmax())]
        llama = self.quirk == "llamacpp"
        values: list = [None] + [float(logp[j - 1, ids[j]]) for j in range(1, len(ids))]
        tops: list = [None]
        for j in range(1, len(ids)):
            best = torch.topk(logp[j - 1], k)
            top: dict[str, float] = {}
            for v, t in zip(best.values.tolist(), best.indices.tolist()):
                key = (self._llama_piece(t) if llama else self.tok.decode([t]) if self.quirk == "vllm"
                       else self._in_context(ids, j, t))
                # llama.cpp keeps the lower of two tokens that spell alike; the others the higher
                top[key] = (min if llama else max)(top[key], v) if key in top else v
            tops.append(top)
        if llama:
            pieces = [self._llama_piece(t) for t in ids]
        elif self.quirk == "vllm":  # each token decoded alone: a SentencePiece piece loses its space
            pieces = [self.tok.decode([t]) for t in ids]
        else:
            pieces = [self._in_context(ids, j, t) for j, t in enumerate(ids)]
        has_bos = bool(ids) and ids[0] == self.tok.bos_token_id
        if self.quirk == "vllm" and has_bos:
            pieces[0] = self.tok.bos_token  # echoed, and its characters counted in the offsets
        elif has_bos:  # llama.cpp and exact: BOS is not echoed
            pieces, values, tops = pieces[1:], [None] + values[2:], [None] + tops[2:]
        offsets, at = [], 0
        for p in pieces:
            offsets.append(at)
            at += len(p)
        return {"tokens": pieces, "token_logprobs": values, "top_logprobs": tops, "text_offset": offsets}

    # ------------------------------------------------------------------ HTTP
    def __enter__(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, body: dict, status: int = 200):
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                self._send({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "test"}]})

            def do_POST(self):
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests += 1
                lp = server.echo(req["prompt"], int(req.get("logprobs") or 1), int(req.get("max_tokens") or 0))
                text = lp["tokens"][-1] if req.get("max_tokens") else ""
                self._send({"id": "c", "object": "text_completion", "created": 0, "model": MODEL,
                            "choices": [{"index": 0, "text": "".join(lp["tokens"]) if req.get("echo") else text,
                                         "logprobs": lp, "finish_reason": "length"}],
                            "usage": {"prompt_tokens": len(lp["tokens"]), "completion_tokens": 1,
                                      "total_tokens": len(lp["tokens"]) + 1}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
