"""Hugging Face transformers backend: ``hf/<hub id or local dir>``.

Model args (``--model-arg key=value``): ``device`` (cpu, cuda, cuda:1; default cuda when
available), ``dtype`` (float32, bfloat16, float16; default float32 on CPU, bfloat16 on CUDA),
``revision``, ``trust_remote_code`` (off unless asked for), ``max_batch_tokens`` (padded tokens
per forward pass, default 16384). A hub id that is neither cached nor reachable fails at once
(see :mod:`ffbench.backends.hub`).

Every text is tokenized with BOS exactly once (:func:`~ffbench.backends.tokenized.encode`), and
every prompt is checked against the model's context before it is scored: a prompt that does not
fit is refused in one line, never truncated.
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
from ffbench.errors import FFBenchError, UsageError

DTYPES = ("float32", "bfloat16", "float16")
# Bytes of logits (and their log-softmax) one forward call may hold: a batch whose kept positions
# times the vocabulary would exceed it is split, so a 131K- or 152K-token vocabulary costs memory
# in proportion to the reads scored, never to batch x length x vocabulary.
LOGITS_BUDGET = 1 << 30


class HFBackend(Backend):
    provider = "hf"
    # score_per_read: one forward pass of the prompt gives every single-token answer
    capabilities = Capabilities(dense=True, hub_models=True, tokenizes_prompts=True, answers_in_one_request=True)
    default_max_batch_tokens = 16384

    @classmethod
    def check_plan(cls, model: str, args: dict, renders: list, scorings: list[str]) -> None:
        from ffbench.backends.native import check_device

        require_hub_model(model, check_model_path(model), args.get("revision"))
        check_device(args.get("device"))
        if args.get("dtype") is not None and args["dtype"] not in DTYPES:
            raise UsageError(f"unknown dtype {args['dtype']!r} (use {', '.join(DTYPES)})")

    @classmethod
    def memory_per_sequence(cls, model: str, args: dict, tokens: int) -> int | None:
        """Attention scores and mask (T x T per head) and activations, in float32, plus one
        sequence's share of the logits: a dense pass computes logits only at the positions its reads
        need, and a batch's logits never exceed :data:`LOGITS_BUDGET` (:meth:`_logit_batches`)."""
        try:
            from transformers import AutoConfig

            cfg = AutoConfig.from_pretrained(check_model_path(model), revision=args.get("revision"),
                                             trust_remote_code=bool(args.get("trust_remote_code")))
        except Exception:  # noqa: BLE001 - not resolvable without loading: the loader reports it
            return None
        get = lambda *names: next((int(getattr(cfg, n)) for n in names if getattr(cfg, n, None)), 0)  # noqa: E731
        heads, width = get("num_attention_heads", "n_head"), get("hidden_size", "n_embd")
        layers, vocab = get("num_hidden_layers", "n_layer"), get("vocab_size")
        logits = min(LOGITS_BUDGET, 3 * 4 * vocab * tokens)  # one sequence alone still gets a whole budget
        return 4 * (tokens * tokens * (heads + 1) + tokens * width * (16 + layers)) + logits

    @classmethod
    def memory_per_batch(cls, model: str, args: dict, tokens: int, sequences: int) -> int | None:
        """A batch's activations grow with its sequences; its logits stay within one budget."""
        one = cls.memory_per_sequence(model, args, tokens)
        if one is None:
            return None
        logits = min(LOGITS_BUDGET, one)
        return sequences * (one - logits) + logits

    @classmethod
    def load_tokenizer(cls, model: str, args: dict):
        from transformers import AutoTokenizer

        path = check_model_path(model)
        require_hub_model(model, path, args.get("revision"))
        try:
            return AutoTokenizer.from_pretrained(path, revision=args.get("revision"),
                                                 trust_remote_code=bool(args.get("trust_remote_code")))
        except OSError as exc:
            raise FFBenchError(f"cannot load the tokenizer of model {model!r}: {str(exc).splitlines()[0]}") from None

    @classmethod
    def context_before_load(cls, model: str, args: dict) -> int | None:
        from transformers import AutoConfig

        try:
            cfg = AutoConfig.from_pretrained(check_model_path(model), revision=args.get("revision"),
                                             trust_remote_code=bool(args.get("trust_remote_code")))
        except Exception:  # noqa: BLE001 - not resolvable without loading: unknown
            return None
        return config_context(cfg)

    def fingerprint(self) -> dict:
        from ffbench import identity

        commit = getattr(self.lm.config, "_commit_hash", None)
        if commit:
            return identity.hub_commit(self.model, self.revision, commit)
        return super().fingerprint()

    def __init__(self, model: str, device: str | None = None, dtype: str | None = None, revision: str | None = None,
                 trust_remote_code: bool = False, max_batch_tokens: int = 16384):
        super().__init__(model)
        path = check_model_path(model)
        require_hub_model(model, path, revision)  # before the heavy imports: fail fast and in one line
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # ffbench draws its own progress; keep stderr readable
        hf_logging.set_verbosity_error()

        self.revision = revision
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = dtype or ("bfloat16" if self.device.startswith("cuda") else "float32")
        if not hasattr(torch, dtype) or not isinstance(getattr(torch, dtype), torch.dtype):
            raise FFBenchError(f"unknown dtype {dtype!r} (use float32, bfloat16 or float16)")
        self.dtype = dtype
        self.max_batch_tokens = int(max_batch_tokens)
        kwargs = {"revision": revision, "trust_remote_code": bool(trust_remote_code)}
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
            self.lm = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), **kwargs)
        except OSError as exc:
            raise FFBenchError(f"cannot load model {model!r}: {str(exc).splitlines()[0]}") from None
        if not getattr(self.tokenizer, "is_fast", False):
            raise FFBenchError(f"model {model!r}: ffbench needs a fast tokenizer (character offsets)")
        self.lm.to(self.device).eval()
        self._torch = torch
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else (
            self.tokenizer.eos_token_id or 0)
        # A scoring pass never reuses its key/value cache: not building one saves a copy per layer.
        self._no_cache = {"use_cache": False} if _accepts(self.lm.forward, "use_cache") else {}

    # ------------------------------------------------------------------ helpers
    def describe(self) -> dict:
        return {**super().describe(), "device": self.device, "dtype": self.dtype,
                "class": type(self.lm).__name__, "revision": getattr(self.lm.config, "_commit_hash", None)}

    def context_length(self) -> int | None:
        return config_context(self.lm.config)

    def count_tokens(self, text: str) -> int:
        return len(encode(self.tokenizer, [text])[0][0])

    def chat_tokenizer(self):
        return self.tokenizer

    def _fits(self, lengths, new_tokens: int = 0) -> None:
        if lengths:
            check_fits(f"{self.provider}/{self.model}", max(lengths), self.context_length(), new_tokens)

    def _batches(self, lengths: list[int]):
        """Index batches whose padded size stays within the token budget (longest first)."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        batch: list[int] = []
        for i in order:
            if batch and (len(batch) + 1) * lengths[batch[0]] > self.max_batch_tokens:
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def _logit_batches(self, seqs: list[list[int]], positions: list[np.ndarray]):
        """:meth:`_batches`, each split further until its logits (rows x kept positions x
        vocabulary, in float32, with their log-softmax) fit :data:`LOGITS_BUDGET`."""
        vocab = int(self.lm.config.vocab_size)
        for batch in self._batches([len(s) for s in seqs]):
            todo = [batch]
            while todo:
                part = todo.pop()
                keep = len(np.unique(np.concatenate([np.asarray(positions[i]).reshape(-1) for i in part])))
                rows = sum(len(np.asarray(positions[i]).reshape(-1)) for i in part)
                if len(part) > 1 and 4 * vocab * (len(part) * keep + rows) > LOGITS_BUDGET:
                    todo += [part[len(part) // 2:], part[: len(part) // 2]]
                else:
                    yield part

    def _forward_logprobs(self, seqs: list[list[int]], positions: list[np.ndarray]) -> list:
        """Log-softmax rows at the requested positions of each sequence, left on the model's device
        (one padded pass per batch; every forward pass of this backend goes through here).

        The model computes logits only at the positions some row of the batch needs; the rows each
        sequence needs are then gathered across the whole batch and normalised together: one
        log-softmax over N x vocabulary per batch, not batch x kept positions x vocabulary.
        """
        torch = self._torch
        out: list = [None] * len(seqs)
        for batch in self._logit_batches(seqs, positions):
            width = max(len(seqs[i]) for i in batch)
            ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                ids[row, : len(seqs[i])] = seqs[i]
                mask[row, : len(seqs[i])] = 1
            wanted = [np.asarray(positions[i], dtype=np.int64).reshape(-1) for i in batch]
            keep = np.unique(np.concatenate(wanted))
            rows = np.repeat(np.arange(len(batch)), [len(w) for w in wanted])
            at = np.searchsorted(keep, np.concatenate(wanted))  # each wanted position's column among kept ones
            with torch.inference_mode():
                logits = self.lm(input_ids=torch.from_numpy(ids).to(self.device),
                                 attention_mask=torch.from_numpy(mask).to(self.device),
                                 logits_to_keep=torch.as_tensor(keep, device=self.device), **self._no_cache).logits
                picked = logits[torch.from_numpy(rows).to(self.device), torch.from_numpy(at).to(self.device)]
                logp = torch.log_softmax(picked.float(), dim=-1)
            self.usage.requests += len(batch)
            self.usage.prompt_tokens += sum(len(seqs[i]) for i in batch)
            lo = 0
            for i, w in zip(batch, wanted):
                out[i] = logp[lo : lo + len(w)]
                lo += len(w)
        return out

    def _forward_tables(self, seqs: list[list[int]], positions: list[np.ndarray], tokens: np.ndarray
                        ) -> list[LogprobTable]:
        """Per sequence, the log-probabilities of ``tokens`` and the top token at its requested
        positions: only those columns and the argmax leave the device, once for the whole call."""
        torch = self._torch
        rows = self._forward_logprobs(seqs, positions)
        if not rows:
            return []
        cols = torch.as_tensor(tokens, dtype=torch.long, device=self.device)
        with torch.inference_mode():
            values = torch.cat([r[:, cols] for r in rows]).cpu().numpy()
            top = torch.cat([r.argmax(dim=-1) for r in rows]).cpu().numpy()
        out, lo = [], 0
        for pos in positions:
            hi = lo + len(pos)
            out.append(LogprobTable(pos, tokens, values[lo:hi], np.ones((hi - lo, len(tokens)), dtype=bool), top[lo:hi]))
            lo = hi
        return out

    # ------------------------------------------------------------------ protocol
    def _decode(self, ids: list[int]) -> str:
        """Tokens of a greedy path as the text they add mid-sequence (``▁on`` reads `` on``, never
        ``on``, so an answer is named only by what spells it): :func:`continuation_text` after an
        ordinary token."""
        return continuation_text(self.tokenizer, [anchor_token(self.tokenizer)], ids)

    def _encoder(self, texts: list[str]):
        return encode(self.tokenizer, texts, offsets=True)

    def score_dense(self, requests: list[ScoreRequest]) -> list[SpanScores]:
        encoded = self._encoder([r.text for r in requests])
        self._fits([len(ids) for ids, _ in encoded])
        plan = plan_dense(self._encoder, [r.text for r in requests], encoded, [r.spans for r in requests],
                          [r.choices for r in requests])
        tables = self._forward_tables([ids for ids, _ in encoded], plan.positions(encoded), plan.tokens())
        return plan.score(encoded, tables, [len(r.choices) for r in requests], self._decode)

    def score_per_read(self, prompts: list[str], choices: tuple[str, ...]) -> np.ndarray:
        """Each answer's log-probability after each prompt, the answer tokenized together with the
        prompt (:mod:`ffbench.backends.incontext`): one pass of the context when every answer is a
        single token there, else one pass per answer."""
        reads = [require_split(p, x, choices) for p, x in zip(prompts, per_read_inputs(self._encoder, prompts, choices))]
        tokens = np.unique(np.array([t for x in reads for a in x.answers for t in a], dtype=np.int64))
        out = np.zeros((len(prompts), len(choices)))
        self._fits([len(x.context) + max(len(a) for a in x.answers) for x in reads])
        seqs, positions, owners = [], [], []
        for i, x in enumerate(reads):
            if all(len(a) == 1 for a in x.answers):  # one pass of the context gives every answer
                seqs.append(list(x.context))
                positions.append(np.array([len(x.context) - 1]))
                owners.append((i, -1))
                continue
            for k, a in enumerate(x.answers):
                seqs.append(list(x.context) + list(a))
                positions.append(np.arange(len(x.context) - 1, len(x.context) - 1 + len(a)))
                owners.append((i, k))
        for (i, k), pos, table in zip(owners, positions, self._forward_tables(seqs, positions, tokens)):
            x = reads[i]
            if k < 0:
                out[i] = table.logprobs(np.full(len(x.answers), pos[0]), np.array([a[0] for a in x.answers]))[0]
            else:
                values = table.logprobs(pos, np.array(x.answers[k]))[0].astype(np.float32)
                out[i, k] = float(sum(values))  # summed in float32, token by token
        return out

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[Generation]:
        """Greedy continuations. Prompts are batched only with prompts of the same token length, so
        no padding can shift positions: the result is exactly the unbatched greedy decode."""
        torch = self._torch
        outputs = [Generation("")] * len(prompts)
        stops = self._stop_ids()
        encoded = [ids for ids, _ in encode(self.tokenizer, prompts)]
        self._fits([len(e) for e in encoded], max_new_tokens)
        by_length: dict[int, list[int]] = {}
        for i, e in enumerate(encoded):
            by_length.setdefault(len(e), []).append(i)
        for length, members in by_length.items():
            per_batch = max(1, self.max_batch_tokens // (length + max_new_tokens))
            for start in range(0, len(members), per_batch):
                batch = members[start : start + per_batch]
                ids = torch.tensor([encoded[i] for i in batch], device=self.device)
                with torch.inference_mode():
                    gen = self.lm.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                           max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=self.pad_id)
                self.usage.requests += len(batch)
                self.usage.prompt_tokens += length * len(batch)
                for row, i in enumerate(batch):
                    new = gen[row, length:].tolist()
                    end = next((k for k, t in enumerate(new) if t in stops), None)
                    if end is not None:  # the reply ended there; the rest of the row is padding
                        new = new[: end + 1]
                    self.usage.completion_tokens += len(new)
                    outputs[i] = Generation(continuation_text(self.tokenizer, encoded[i], new),
                                            truncated=end is None and len(new) >= max_new_tokens)
        return outputs

    def _stop_ids(self) -> set[int]:
        """Tokens that end a reply: the generation config's end-of-sequence ids (chat models list
        their end-of-turn token there) and the tokenizer's."""
        ids = getattr(self.lm.generation_config, "eos_token_id", None)
        ids = set(ids if isinstance(ids, (list, tuple)) else [] if ids is None else [ids])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return {int(i) for i in ids}


def config_context(cfg) -> int | None:
    """A transformers config's longest input in tokens (None when it does not say)."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        if getattr(cfg, name, None):
            return int(getattr(cfg, name))
    return None


def _accepts(fn, name: str) -> bool:
    """Whether ``fn`` takes keyword ``name`` (by name or through ``**kwargs``); False when it cannot be told."""
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
