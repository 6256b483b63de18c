"""The paper's two baselines, small enough to read in one sitting (in the style of nanoGPT).

``Transformer``: GPT-2 style, pre-LayerNorm blocks, causal self-attention with a choice of position
encoding (learned, sinusoidal, RoPE, ALiBi, none), attention / MLP / embedding dropout, GELU or
gated (GEGLU, SwiGLU) MLP, and a softmax temperature. ``style="llama"`` swaps LayerNorm for RMSNorm
and drops every bias, so that with RoPE and SwiGLU the model is a ``LlamaForCausalLM``. It can
return every head's attention probabilities, which the attention-sharpening losses and the
report's attention maps use.

``LSTM``: embedding, ``nn.LSTM``, linear head (the paper's 1 layer x 128 reaches 0 errors).

Both read token ids from :data:`VOCAB`, the same ids as ffbench's character tokenizer, so a trained
Transformer with learned positions exports to ``GPT2LMHeadModel`` weight for weight, and a
Llama-style one with RoPE to ``LlamaForCausalLM``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ffbench.tokenizer import DEFAULT_CHARS, SPECIALS

VOCAB = list(SPECIALS) + list(dict.fromkeys(DEFAULT_CHARS))  # ids as in ffbench.tokenizer.char_tokenizer()
STOI = {ch: i for i, ch in enumerate(VOCAB)}
POSITIONS = ("learned", "sinusoidal", "rope", "alibi", "none")
ACTIVATIONS = ("gelu", "geglu", "swiglu")
STYLES = ("gpt2", "llama")


@dataclass
class ModelConfig:
    arch: str = "transformer"  # transformer | lstm
    n_layer: int = 6
    d_model: int = 512
    n_head: int = 8
    max_len: int = 1024
    positions: str = "learned"
    activation: str = "gelu"
    attn_dropout: float = 0.0
    mlp_dropout: float = 0.0
    embd_dropout: float = 0.0
    temperature: float = 1.0  # attention softmax temperature
    hidden: int = 128  # LSTM hidden size
    style: str = "gpt2"  # gpt2: LayerNorm and biases | llama: RMSNorm, no biases
    vocab_size: int = len(VOCAB)

    def as_dict(self) -> dict:
        return asdict(self)


def encode(texts: list[str] | str) -> torch.Tensor:
    """Compact flip-flop strings -> (N, T) token ids."""
    if isinstance(texts, str):
        texts = [texts]
    return torch.tensor([[STOI[c] for c in t] for t in texts], dtype=torch.long)


def encode_array(arr) -> torch.Tensor:
    """(N, T) uint8 ASCII array (ffbench.language) -> token ids, without Python loops."""
    import numpy as np

    table = np.zeros(256, dtype=np.int64)
    for ch, i in STOI.items():
        if len(ch) == 1:
            table[ord(ch)] = i
    return torch.from_numpy(table[arr])


# ----------------------------------------------------------------------------- Transformer
def _rope(x: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding on (B, H, T, D) queries or keys (rotate-half convention)."""
    t, d = x.shape[-2], x.shape[-1]
    inv = 1.0 / (10000 ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d))
    ang = torch.outer(torch.arange(t, device=x.device, dtype=torch.float32), inv)
    cos, sin = torch.cat([ang.cos()] * 2, -1).to(x.dtype), torch.cat([ang.sin()] * 2, -1).to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def _alibi_slopes(n_head: int) -> torch.Tensor:
    return torch.tensor([2 ** (-8 * (h + 1) / n_head) for h in range(n_head)])


def sinusoidal(max_len: int, d: int) -> torch.Tensor:
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(max_len, d)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    return pe


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        bias = cfg.style != "llama"
        self.c_attn = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=bias)
        self.c_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=bias)
        self.drop = nn.Dropout(cfg.attn_dropout)
        if cfg.positions == "alibi":
            self.register_buffer("slopes", _alibi_slopes(cfg.n_head), persistent=False)

    def forward(self, x: torch.Tensor, need_probs: bool = False):
        b, t, c = x.shape
        h = self.cfg.n_head
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, h, c // h).transpose(1, 2) for z in (q, k, v))
        if self.cfg.positions == "rope":
            q, k = _rope(q), _rope(k)
        scale = 1.0 / (math.sqrt(c // h) * self.cfg.temperature)
        bias = torch.zeros(t, t, device=x.device, dtype=q.dtype)
        bias.masked_fill_(torch.ones(t, t, device=x.device, dtype=torch.bool).triu(1), float("-inf"))
        if self.cfg.positions == "alibi":
            dist = torch.arange(t, device=x.device)[None, :] - torch.arange(t, device=x.device)[:, None]
            bias = bias + self.slopes[:, None, None].to(q.dtype) * dist.clamp(max=0)
        probs = None
        if need_probs:
            att = (q @ k.transpose(-2, -1)) * scale + bias
            probs = att.softmax(dim=-1)
            y = self.drop(probs) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale,
                                               dropout_p=self.cfg.attn_dropout if self.training else 0.0)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c)), probs


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        gated = cfg.activation in ("geglu", "swiglu")
        bias = cfg.style != "llama"
        self.c_fc = nn.Linear(cfg.d_model, (8 if gated else 4) * cfg.d_model, bias=bias)  # gated: [up, gate]
        self.c_proj = nn.Linear(4 * cfg.d_model, cfg.d_model, bias=bias)
        self.gated = gated
        self.act = F.silu if cfg.activation == "swiglu" else F.gelu
        self.drop = nn.Dropout(cfg.mlp_dropout)

    def forward(self, x):
        h = self.c_fc(x)
        if self.gated:
            a, g = h.chunk(2, dim=-1)
            h = a * self.act(g)
        else:
            h = F.gelu(h, approximate="tanh")  # GPT-2's gelu_new, so HF export is exact
        return self.drop(self.c_proj(h))


def _norm(cfg: ModelConfig) -> nn.Module:
    return nn.RMSNorm(cfg.d_model, eps=1e-5) if cfg.style == "llama" else nn.LayerNorm(cfg.d_model)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln_1, self.attn = _norm(cfg), Attention(cfg)
        self.ln_2, self.mlp = _norm(cfg), MLP(cfg)

    def forward(self, x, need_probs=False):
        a, probs = self.attn(self.ln_1(x), need_probs)
        x = x + a
        return x + self.mlp(self.ln_2(x)), probs


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {', '.join(POSITIONS)}, got {cfg.positions!r}")
        if cfg.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {cfg.activation!r}")
        if cfg.style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}, got {cfg.style!r}")
        if cfg.d_model % cfg.n_head:
            raise ValueError(f"d_model {cfg.d_model} is not divisible by n_head {cfg.n_head}")
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        if cfg.positions == "learned":
            self.wpe = nn.Embedding(cfg.max_len, cfg.d_model)
        elif cfg.positions == "sinusoidal":
            self.register_buffer("pe", sinusoidal(cfg.max_len, cfg.d_model), persistent=False)
        self.drop = nn.Dropout(cfg.embd_dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = _norm(cfg)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as in GPT-2
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, idx: torch.Tensor, need_probs: bool = False):
        """Logits (B, T, V) and, if asked, a list of per-layer attention probabilities (B, H, T, T)."""
        t = idx.shape[1]
        if t > self.cfg.max_len and self.cfg.positions in ("learned", "sinusoidal"):  # only these have a table
            raise ValueError(f"sequence of {t} tokens exceeds the model's max_len {self.cfg.max_len}")
        x = self.wte(idx)
        if self.cfg.positions == "learned":
            x = x + self.wpe(torch.arange(t, device=idx.device))
        elif self.cfg.positions == "sinusoidal":
            x = x + self.pe[:t].to(x.dtype)
        x = self.drop(x)
        probs = []
        for block in self.blocks:
            x, p = block(x, need_probs)
            probs.append(p)
        return self.lm_head(self.ln_f(x)), (probs if need_probs else None)


# ----------------------------------------------------------------------------- LSTM
class LSTM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.hidden)
        self.lstm = nn.LSTM(cfg.hidden, cfg.hidden, num_layers=cfg.n_layer, batch_first=True)
        self.head = nn.Linear(cfg.hidden, cfg.vocab_size)

    def forward(self, idx: torch.Tensor, need_probs: bool = False):
        out, _ = self.lstm(self.wte(idx))
        return self.head(out), None


def build(cfg: ModelConfig) -> nn.Module:
    if cfg.arch == "transformer":
        return Transformer(cfg)
    if cfg.arch == "lstm":
        return LSTM(cfg)
    raise ValueError(f"arch must be transformer or lstm, got {cfg.arch!r}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
