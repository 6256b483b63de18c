"""Native backend for ffbench's own baselines: ``ffbench/<builtin name | checkpoint dir>``.

Builtin names (``transformer-ref``, ``lstm-ref``, ...) are checkpoints shipped in the package under
``ffbench/baselines/``. The models read one character per token: the compact ``symbolic`` rendering,
or, with the text vocabulary (vocab_size 99, ``haystack-lstm``), any ASCII rendering;
scoring is dense (one forward pass per sequence gives every read) and exact, and only the positions
that predict an answer are turned into log-probabilities. Recurrent models are streamed through
long sequences in chunks with their state carried over, so their memory does not grow with T.
``attention(text, position)`` returns every layer's and head's attention row at a position, for
the report.

Model args: ``device`` (default cuda when available), ``max_batch_tokens`` (default 65536).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ffbench.backends.base import Backend, Capabilities, Generation, ScoreRequest, SpanScores
from ffbench.backends.incontext import plan_dense
from ffbench.backends.tokenized import LogprobTable
from ffbench.errors import FFBenchError, UsageError
from ffbench.resources import BASELINES_DIR

STREAM_CHUNK = 65_536  # tokens per step when streaming a recurrent model through a long sequence


def builtin_names() -> list[str]:
    return sorted(p.name for p in BASELINES_DIR.iterdir() if (p / "model.safetensors").is_file()) \
        if BASELINES_DIR.is_dir() else []


def resolve(model: str) -> Path:
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if (BASELINES_DIR / model).is_dir():
        return BASELINES_DIR / model
    raise UsageError(f"no ffbench checkpoint {model!r}: not a directory and not a builtin "
                     f"(builtins: {', '.join(builtin_names()) or 'none'})")


def training_length(model: str) -> int | None:
    """The sequence length a checkpoint was trained at (read without loading torch)."""
    cfg = resolve(model) / "train_config.json"
    return int(json.loads(cfg.read_text())["length"]) if cfg.is_file() else None


def model_config(model: str) -> dict:
    """The checkpoint's model config (``config.json``'s ``ffbench_model``), read without torch."""
    path = resolve(model) / "config.json"
    try:
        return json.loads(path.read_text())["ffbench_model"]
    except (OSError, ValueError, KeyError):
        raise UsageError(f"{str(resolve(model))!r} is not an ffbench checkpoint (needs config.json with "
                         "'ffbench_model' and model.safetensors; for Hugging Face models use hf/)") from None


def check_device(device: str | None) -> None:
    """UsageError for a CUDA device on a machine (or a torch build) without CUDA."""
    if device and str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"device {device!r} requested but this torch build sees no CUDA device "
                             f"(torch {torch.__version__}); use device=cpu")


class NativeBackend(Backend):
    provider = "ffbench"
    # score_per_read: one pass over the prompt gives every answer
    capabilities = Capabilities(dense=True, answers_in_one_request=True)
    default_max_batch_tokens = 65_536

    # ------------------------------------------------------------------ before loading
    @classmethod
    def check_plan(cls, model: str, args: dict, renders: list, scorings: list[str]) -> None:
        from ffbench.tokenizer import VOCAB, is_text_vocabulary, vocabulary

        size = int(model_config(model).get("vocab_size", len(VOCAB)))
        check_device(args.get("device"))
        from ffbench import language, render, tasks

        for template in renders:
            demo = tasks.get("registers").demo() if template.registers else render.demo_sequence()
            text = render.render(demo, template).text + template.ask
            if is_text_vocabulary(size):  # a text model reads any rendering its characters cover
                missing = sorted(set(text) - set(vocabulary(size)))
                if missing:
                    raise UsageError(f"ffbench/ text models read printable ASCII only; the rendering "
                                     f"{template.name!r} has {missing[0]!r}")
            elif text != language.to_strings(demo[None])[0]:  # the compact string, character for character
                raise UsageError(f"ffbench/ models read the symbolic rendering only (the compact string they were "
                                 f"trained on), not {template.name!r}; a text-vocabulary checkpoint such as "
                                 f"ffbench/haystack-lstm reads natural-language renderings")

    @classmethod
    def fingerprint_before_load(cls, model: str, args: dict, options: dict) -> dict:
        from ffbench import identity

        return identity.directory_fingerprint(resolve(model))

    @classmethod
    def load_tokenizer(cls, model: str, args: dict):
        """One token per character, no BOS: what :meth:`_ids` reads, so the dry run counts exactly (the
        checkpoint's vocabulary: ``u`` and register names where its vocab_size has them)."""
        from ffbench.tokenizer import VOCAB, CharTokenizer

        return CharTokenizer(int(model_config(model).get("vocab_size", len(VOCAB))))

    @classmethod
    def context_before_load(cls, model: str, args: dict) -> int | float | None:
        """:meth:`context_length` from the checkpoint's config; ``math.inf`` (no limit) for a model
        without a position table, which runs at any length."""
        from ffbench.train.config import ModelConfig

        cfg = ModelConfig(**model_config(model))
        if cfg.arch == "transformer" and cfg.positions in ("learned", "sinusoidal"):
            return cfg.max_len
        return math.inf

    @classmethod
    def memory_per_sequence(cls, model: str, args: dict, tokens: int) -> int:
        """The model's own estimate of one forward pass; a recurrent model is streamed through long
        sequences in chunks (:data:`STREAM_CHUNK`), so only a chunk, plus the ids, is alive at once."""
        from ffbench.train.config import ModelConfig
        from ffbench.train.model import estimate_forward_bytes

        cfg = ModelConfig(**model_config(model))
        if cfg.arch == "lstm":
            return int(estimate_forward_bytes(cfg, 1, min(tokens, STREAM_CHUNK))) + 16 * tokens
        return int(estimate_forward_bytes(cfg, 1, tokens))

    # ------------------------------------------------------------------ loaded
    def __init__(self, model: str, device: str | None = None, max_batch_tokens: int = default_max_batch_tokens):
        super().__init__(model)
        import torch

        from ffbench.tokenizer import vocabulary
        from ffbench.train.checkpoint import load_checkpoint

        check_device(device)
        self._torch = torch
        self.path = resolve(model)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.net, self.cfg = load_checkpoint(self.path, self.device)
        self.vocab = vocabulary(self.cfg.vocab_size)  # VOCAB's ids, then u, a..h where the checkpoint has them
        self.stoi = {ch: i for i, ch in enumerate(self.vocab)}
        self._byte_ids = np.full(128, -1, dtype=np.int64)  # ASCII code -> token id (-1: no such token)
        for ch, i in self.stoi.items():
            if len(ch) == 1 and ord(ch) < 128:
                self._byte_ids[ord(ch)] = i
        self.max_batch_tokens = int(max_batch_tokens)

    def describe(self) -> dict:
        return {**super().describe(), "path": str(self.path), "arch": self.cfg.arch, "device": self.device}

    def context_length(self) -> int | None:
        # Only position tables bound the length; ALiBi, RoPE and no-position models run at any T
        # (length generalisation is one of the things worth measuring on them).
        if self.cfg.arch == "transformer" and self.cfg.positions in ("learned", "sinusoidal"):
            return self.cfg.max_len
        return None

    def count_tokens(self, text: str) -> int:
        return len(text)

    def _decode(self, ids: list[int]) -> str:
        """Token ids -> text (special tokens, which are not characters, decode to nothing)."""
        return "".join(self.vocab[t] if len(self.vocab[t]) == 1 else "" for t in ids)

    def _ids(self, text: str) -> list[int]:
        if text.isascii():  # one table lookup for the whole text
            ids = self._byte_ids[np.frombuffer(text.encode("ascii"), dtype=np.uint8)]
            if (ids >= 0).all():
                return ids.tolist()
        try:
            return [self.stoi[c] for c in text]
        except KeyError as exc:
            raise FFBenchError(f"ffbench/ model {self.model!r} has no token for character {exc.args[0]!r} "
                               f"(its vocabulary: {len(self.vocab)} tokens)") from None

    def _tables(self, seqs: list[list[int]], positions: list[np.ndarray], tokens: np.ndarray) -> list[LogprobTable]:
        """Per sequence, the log-probabilities of ``tokens`` and the top token at its requested positions.

        Equal-length sequences are batched up to ``max_batch_tokens``; a recurrent model is streamed
        through each batch in chunks, carrying its state, so only the requested rows are kept.
        """
        torch = self._torch
        out: list[LogprobTable | None] = [None] * len(seqs)
        by_len: dict[int, list[int]] = {}
        for i, s in enumerate(seqs):
            by_len.setdefault(len(s), []).append(i)
        for length, members in by_len.items():
            per = max(1, self.max_batch_tokens // max(1, length))
            for start in range(0, len(members), per):
                group = members[start : start + per]
                idx = torch.tensor(np.array([seqs[i] for i in group], dtype=np.int64).reshape(len(group), length),
                                   device=self.device)
                wanted = [np.asarray(positions[i], dtype=np.int64) for i in group]
                with torch.inference_mode():
                    values, top = self._forward_rows(idx, wanted, tokens)
                self.usage.requests += len(group)
                self.usage.prompt_tokens += length * len(group)
                lo = 0
                for i, w in zip(group, wanted):
                    hi = lo + len(w)
                    out[i] = LogprobTable(w, tokens, values[lo:hi], np.ones((hi - lo, len(tokens)), dtype=bool),
                                          top[lo:hi])
                    lo = hi
        return out  # type: ignore[return-value]

    def _forward_rows(self, idx, positions: list[np.ndarray], tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(values of ``tokens``, top token) at every requested row, the rows of all sequences in
        order. The rows are gathered across the batch first and normalised together: one
        log-softmax for the whole batch, never one per sequence."""
        torch = self._torch
        cols = torch.as_tensor(tokens, dtype=torch.long, device=idx.device)

        def normalised(logits):
            logp = logits.float().log_softmax(-1)
            return logp[:, cols].cpu().numpy(), logp.argmax(-1).cpu().numpy()

        rows = np.repeat(np.arange(len(positions)), [len(p) for p in positions])
        at = np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64)
        if self.cfg.arch != "lstm" or idx.shape[1] <= STREAM_CHUNK:
            logits, _ = self.net(idx)
            return normalised(logits[torch.from_numpy(rows).to(idx.device), torch.from_numpy(at).to(idx.device)])
        kept: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in positions]
        state = None
        for lo in range(0, idx.shape[1], STREAM_CHUNK):
            hidden, state = self.net.lstm(self.net.wte(idx[:, lo : lo + STREAM_CHUNK]), state)
            sel = [pos[(pos >= lo) & (pos < lo + hidden.shape[1])] - lo for pos in positions]
            if not any(len(x) for x in sel):
                continue
            b = np.repeat(np.arange(len(sel)), [len(x) for x in sel])
            values, top = normalised(self.net.head(hidden[torch.from_numpy(b).to(hidden.device),
                                                          torch.from_numpy(np.concatenate(sel)).to(hidden.device)]))
            start = 0
            for k, x in enumerate(sel):
                kept[k].append((values[start : start + len(x)], top[start : start + len(x)]))
                start += len(x)
        values = [v for k in kept for v, _ in k]
        tops = [t for k in kept for _, t in k]
        if not values:
            return np.zeros((0, len(tokens)), np.float32), np.zeros(0, np.int64)
        return np.concatenate(values), np.concatenate(tops)

    def _encoder(self, texts: list[str]) -> list[tuple[list[int], np.ndarray]]:
        """Character ids and offsets: one token per character, so every answer is its own tokens."""
        out = []
        for text in texts:
            ids = self._ids(text)
            out.append((ids, np.stack([np.arange(len(ids)), np.arange(1, len(ids) + 1)], axis=1)))
        return out

    def score_dense(self, requests: list[ScoreRequest]) -> list[SpanScores]:
        encoded = self._encoder([r.text for r in requests])
        plan = plan_dense(self._encoder, [r.text for r in requests], encoded, [r.spans for r in requests],
                          [r.choices for r in requests])
        tables = self._tables([ids for ids, _ in encoded], plan.positions(encoded), plan.tokens())
        return plan.score(encoded, tables, [len(r.choices) for r in requests], self._decode)

    def score_per_read(self, prompts: list[str], choices: tuple[str, ...]) -> np.ndarray:
        """Each answer's log-probability after each prompt. Single-character answers (the compact
        strings) come from one pass of the prompt; longer ones (`` on`` / `` off`` of a text model)
        are split where they differ (:mod:`ffbench.backends.incontext`, as ``hf/`` does) and each
        continuation is teacher-forced, its characters' log-probabilities summed in float32."""
        from ffbench.backends.incontext import per_read_inputs, require_split

        if all(len(c) == 1 for c in choices):
            seqs = [self._ids(p) for p in prompts]
            answers = np.array([self._ids(c)[0] for c in choices], dtype=np.int64)
            tables = self._tables(seqs, [np.array([len(s) - 1]) for s in seqs], np.unique(answers))
            return np.array([table.logprobs(np.full(len(answers), len(s) - 1), answers)[0]
                             for s, table in zip(seqs, tables)], dtype=np.float32).reshape(len(prompts), len(choices))
        reads = [require_split(p, x, choices) for p, x in zip(prompts, per_read_inputs(self._encoder, prompts, choices))]
        tokens = np.unique(np.array([t for x in reads for a in x.answers for t in a], dtype=np.int64))
        seqs, positions, owners = [], [], []
        for i, x in enumerate(reads):
            for k, a in enumerate(x.answers):
                seqs.append(list(x.context) + list(a))
                positions.append(np.arange(len(x.context) - 1, len(x.context) - 1 + len(a)))
                owners.append((i, k))
        out = np.zeros((len(prompts), len(choices)))
        for (i, k), pos, table in zip(owners, positions, self._tables(seqs, positions, tokens)):
            out[i, k] = float(sum(table.logprobs(pos, np.array(reads[i].answers[k]))[0].astype(np.float32)))
        return out

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[Generation]:
        """Greedy characters; these models have no end-of-reply token, so a reply is never 'truncated':
        it is always exactly ``max_new_tokens`` long and parsed as a base model's continuation."""

        texts = []
        none = np.zeros(0, dtype=np.int64)
        for p in prompts:
            seq = self._ids(p)
            new = []
            for _ in range(max_new_tokens):
                at = np.array([len(seq) + len(new) - 1])
                new.append(int(self._tables([seq + new], [at], none)[0].tops(at)[0]))
            texts.append(Generation(self._decode(new)))
        return texts

    def attention(self, text: str, positions: list[int]) -> np.ndarray:
        """Attention probabilities at query ``positions``: (layers, heads, len(positions), T)."""
        torch = self._torch
        if self.cfg.arch != "transformer":
            raise FFBenchError("attention maps exist for transformer checkpoints only")
        idx = torch.tensor([self._ids(text)], device=self.device)
        with torch.inference_mode():
            _, probs = self.net(idx, need_probs=True)
        return np.stack([p[0, :, positions, :].float().cpu().numpy() for p in probs])
