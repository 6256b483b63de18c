"""Native backend for ffbench's own baselines: ``ffbench/<builtin name | checkpoint dir>``.

Builtin names (``transformer-ref``, ``lstm-ref``, ...) are checkpoints shipped in the package under
``ffbench/baselines/``. The models read the compact ``symbolic`` rendering one character per token;
scoring is dense (one forward pass per sequence gives every read) and exact, and only the positions
that predict an answer are turned into log-probabilities. Recurrent models are streamed through
long sequences in chunks with their state carried over, so their memory does not grow with T.
``attention(text, position)`` returns every layer's and head's attention row at a position, for
the report.

Model args: ``device`` (default cuda when available), ``max_batch_tokens`` (default 65536).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ffbench.backends.base import Backend, Generation, ScoreRequest, SpanScores, align_spans
from ffbench.backends.tokenized import dense_scores, needed_positions
from ffbench.errors import FFBenchError, UsageError
from ffbench.resources import BASELINES_DIR
from ffbench.tokenizer import DEFAULT_CHARS

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
    supports_dense = True
    default_max_batch_tokens = 65_536

    # ------------------------------------------------------------------ before loading
    @classmethod
    def check_plan(cls, model: str, args: dict, renders: list, scorings: list[str]) -> None:
        model_config(model)
        check_device(args.get("device"))
        allowed = set(DEFAULT_CHARS)
        for template in renders:
            from ffbench import render

            sample = render.render(render.demo_sequence(), template).text + template.ask
            bad = sorted(set(sample) - allowed)
            if bad:
                raise UsageError(f"ffbench/ models read the symbolic rendering only: rendering {template.name!r} "
                                 f"uses characters they have no token for ({''.join(bad)[:20]!r})")

    @classmethod
    def fingerprint_before_load(cls, model: str, args: dict, options: dict) -> dict:
        from ffbench import identity

        return identity.directory_fingerprint(resolve(model))

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

        from ffbench.train.model import STOI
        from ffbench.train.checkpoint import load_checkpoint

        check_device(device)
        self._torch = torch
        self.path = resolve(model)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.net, self.cfg = load_checkpoint(self.path, self.device)
        self.stoi = STOI
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
        from ffbench.train.model import VOCAB

        return "".join(VOCAB[t] if len(VOCAB[t]) == 1 else "" for t in ids)

    def _ids(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as exc:
            raise FFBenchError(f"ffbench/ models read the symbolic rendering only; got character {exc.args[0]!r}") from None

    def _logprobs_at(self, seqs: list[list[int]], positions: list[np.ndarray]) -> list[np.ndarray]:
        """Log-softmax rows (len(positions[i]), V) at the requested positions of each sequence.

        Equal-length sequences are batched up to ``max_batch_tokens``; a recurrent model is streamed
        through each batch in chunks, carrying its state, so only the requested rows are kept.
        """
        torch = self._torch
        out: list[np.ndarray | None] = [None] * len(seqs)
        by_len: dict[int, list[int]] = {}
        for i, s in enumerate(seqs):
            by_len.setdefault(len(s), []).append(i)
        for length, members in by_len.items():
            per = max(1, self.max_batch_tokens // max(1, length))
            for start in range(0, len(members), per):
                group = members[start : start + per]
                idx = torch.tensor([seqs[i] for i in group], device=self.device)
                with torch.inference_mode():
                    rows = self._forward_rows(idx, [positions[i] for i in group])
                self.usage.requests += len(group)
                self.usage.prompt_tokens += length * len(group)
                for i, r in zip(group, rows):
                    out[i] = r
        return out  # type: ignore[return-value]

    def _forward_rows(self, idx, positions: list[np.ndarray]) -> list[np.ndarray]:
        torch = self._torch
        if self.cfg.arch != "lstm" or idx.shape[1] <= STREAM_CHUNK:
            logits, _ = self.net(idx)
            return [logits[b, torch.as_tensor(pos, dtype=torch.long, device=logits.device)].float().log_softmax(-1)
                    .cpu().numpy() for b, pos in enumerate(positions)]
        wanted = [torch.as_tensor(pos, dtype=torch.long) for pos in positions]
        kept: list[list] = [[] for _ in positions]
        state = None
        for lo in range(0, idx.shape[1], STREAM_CHUNK):
            hidden, state = self.net.lstm(self.net.wte(idx[:, lo : lo + STREAM_CHUNK]), state)
            for b, pos in enumerate(wanted):
                sel = pos[(pos >= lo) & (pos < lo + hidden.shape[1])] - lo
                if sel.numel():
                    kept[b].append(self.net.head(hidden[b, sel.to(hidden.device)]).float().log_softmax(-1).cpu())
        return [torch.cat(k).numpy() if k else np.zeros((0, self.cfg.vocab_size), np.float32) for k in kept]

    def score_dense(self, requests: list[ScoreRequest]) -> list[SpanScores]:
        ids = [self._ids(r.text) for r in requests]
        aligned, positions = [], []
        for r, seq in zip(requests, ids):
            offsets = np.stack([np.arange(len(seq)), np.arange(1, len(seq) + 1)], axis=1)
            aligned.append(align_spans(offsets, r.spans))
            positions.append(needed_positions(aligned[-1], len(seq)))
        rows = self._logprobs_at(ids, positions)
        results = []
        for r, seq, al, pos, lp in zip(requests, ids, aligned, positions, rows):
            where = {int(p): k for k, p in enumerate(pos.tolist())}
            choice_ids = tuple(tuple(self._ids(c)) for c in r.choices)
            top = lp.argmax(-1) if len(pos) else np.zeros(0, dtype=np.int64)
            results.append(dense_scores(seq, al, choice_ids,
                                        logprob_at=lambda p, t, lp=lp, where=where: (float(lp[where[p], t]), True),
                                        top_at=lambda p, top=top, where=where: int(top[where[p]]),
                                        decode=self._decode))
        return results

    def score_per_read(self, prompts: list[str], choices: tuple[str, ...]) -> np.ndarray:
        seqs = [self._ids(p) for p in prompts]
        rows = self._logprobs_at(seqs, [np.array([len(s) - 1]) for s in seqs])
        cids = [self._ids(c) for c in choices]
        if any(len(c) != 1 for c in cids):
            raise FFBenchError("ffbench/ models score single-character answers (symbolic rendering)")
        return np.array([[lp[-1, c[0]] for c in cids] for lp in rows])

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[Generation]:
        """Greedy characters; these models have no end-of-reply token, so a reply is never 'truncated':
        it is always exactly ``max_new_tokens`` long and parsed as a base model's continuation."""

        texts = []
        for p in prompts:
            seq = self._ids(p)
            new = []
            for _ in range(max_new_tokens):
                nxt = int(self._logprobs_at([seq + new], [np.array([len(seq) + len(new) - 1])])[0][-1].argmax())
                new.append(nxt)
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
