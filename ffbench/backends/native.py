"""Native backend for ffbench's own baselines: ``ffbench/<builtin name | checkpoint dir>``.

Builtin names (``transformer-ref``, ``lstm-ref``) are checkpoints shipped in the package under
``ffbench/baselines/``. The models read the compact ``symbolic`` rendering one character per token;
scoring is dense (one forward pass per sequence gives every read) and exact. ``attention(text,
position)`` returns every layer's and head's attention row at a position, for the report.

Model args: ``device`` (default cuda when available), ``max_batch_tokens`` (default 65536).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ffbench.backends.base import Backend, ScoreRequest, SpanScores, align_spans
from ffbench.backends.tokenized import dense_scores
from ffbench.errors import FFBenchError

from ffbench.resources import BASELINES_DIR


def builtin_names() -> list[str]:
    return sorted(p.name for p in BASELINES_DIR.iterdir() if (p / "model.safetensors").is_file()) \
        if BASELINES_DIR.is_dir() else []


def resolve(model: str) -> Path:
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if (BASELINES_DIR / model).is_dir():
        return BASELINES_DIR / model
    raise FFBenchError(f"no ffbench checkpoint {model!r}: not a directory and not a builtin "
                       f"(builtins: {', '.join(builtin_names()) or 'none'})")


def training_length(model: str) -> int | None:
    """The sequence length a checkpoint was trained at (read without loading torch)."""
    import json

    cfg = resolve(model) / "train_config.json"
    return int(json.loads(cfg.read_text())["length"]) if cfg.is_file() else None


class NativeBackend(Backend):
    provider = "ffbench"
    supports_dense = True

    def __init__(self, model: str, device: str | None = None, max_batch_tokens: int = 65536):
        super().__init__(model)
        import torch

        from ffbench.train.model import STOI
        from ffbench.train.checkpoint import load_checkpoint

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

    def _ids(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as exc:
            raise FFBenchError(f"ffbench/ models read the symbolic rendering only; got character {exc.args[0]!r}") from None

    def _logprobs(self, seqs: list[list[int]]) -> list[np.ndarray]:
        """Full log-softmax rows for each sequence (batches of equal-length sequences)."""
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
                    logits, _ = self.net(idx)
                    lp = logits.float().log_softmax(-1).cpu().numpy()
                self.usage.requests += len(group)
                self.usage.prompt_tokens += length * len(group)
                for row, i in enumerate(group):
                    out[i] = lp[row]
        return out  # type: ignore[return-value]

    def score_dense(self, requests: list[ScoreRequest]) -> list[SpanScores]:
        ids = [self._ids(r.text) for r in requests]
        rows = self._logprobs(ids)
        results = []
        for r, seq, lp in zip(requests, ids, rows):
            offsets = np.stack([np.arange(len(seq)), np.arange(1, len(seq) + 1)], axis=1)
            aligned = align_spans(offsets, r.spans)
            choice_ids = tuple(tuple(self._ids(c)) for c in r.choices)
            top = lp.argmax(-1)
            results.append(dense_scores(seq, aligned, choice_ids,
                                        logprob_at=lambda p, t, lp=lp: (float(lp[p, t]), True),
                                        top_at=lambda p, top=top: int(top[p])))
        return results

    def score_per_read(self, prompts: list[str], choices: tuple[str, ...]) -> np.ndarray:
        rows = self._logprobs([self._ids(p) for p in prompts])
        cids = [self._ids(c) for c in choices]
        if any(len(c) != 1 for c in cids):
            raise FFBenchError("ffbench/ models score single-character answers (symbolic rendering)")
        return np.array([[lp[-1, c[0]] for c in cids] for lp in rows])

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        from ffbench.train.model import VOCAB

        texts = []
        for p in prompts:
            seq = self._ids(p)
            new = []
            for _ in range(max_new_tokens):
                nxt = int(self._logprobs([seq + new])[0][-1].argmax())
                new.append(nxt)
            texts.append("".join(VOCAB[t] if len(VOCAB[t]) == 1 else "" for t in new))
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
