"""The reference models, small enough to read in one sitting (in the style of nanoGPT).

``Transformer``: GPT-2 style, pre-LayerNorm blocks, causal self-attention with a choice of position
encoding (learned, sinusoidal, RoPE, ALiBi, none), attention / MLP / embedding dropout, GELU or
gated (GEGLU, SwiGLU) MLP, and a softmax temperature. ``style="llama"`` swaps LayerNorm for RMSNorm
and drops every bias, so that with RoPE and SwiGLU the model is a ``LlamaForCausalLM``. It can
return every head's attention probabilities, which the attention-sharpening losses and the
report's attention maps use.

``LSTM``: embedding, ``nn.LSTM``, linear head (the paper's 1 layer x 128 reaches 0 errors).

``SSM`` (in :mod:`ffbench.train.ssm`): a selective state-space model in the style of Mamba.

All read token ids from :data:`VOCAB`, the same ids as ffbench's character tokenizer, so a trained
Transformer with learned positions exports to ``GPT2LMHeadModel`` weight for weight, and a
Llama-style one with RoPE to ``LlamaForCausalLM``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ffbench.train.config import ACTIVATIONS, ARCHS, POSITIONS, STOI, STYLES, VOCAB, ModelConfig  # noqa: F401

# ALiBi's bias is built for a block of query rows at a time, at most this many elements
# (heads x rows x keys, 64 MB in float32), so memory grows linearly in T instead of T^2.
ALIBI_BIAS_ELEMENTS = 2**24


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


def causal_bias(start: int, stop: int, slopes: torch.Tensor | None, device, dtype) -> torch.Tensor:
    """Additive attention bias of query rows ``start..stop-1`` over keys ``0..stop-1``: -inf above
    the diagonal and, with ALiBi ``slopes`` (one per head), slope x (key - query) on and below it.
    Shape (heads or 1, stop - start, stop)."""
    query = torch.arange(start, stop, device=device)[:, None]
    dist = torch.arange(stop, device=device)[None, :] - query
    bias = torch.zeros(dist.shape, device=device, dtype=dtype).masked_fill_(dist > 0, float("-inf"))
    if slopes is None:
        return bias[None]
    return bias[None] + slopes[:, None, None].to(dtype) * dist.clamp(max=0)


def alibi_query_rows(n_head: int, length: int) -> int:
    """Query rows per ALiBi block: the whole sequence when its bias fits the element budget."""
    return max(1, min(length, ALIBI_BIAS_ELEMENTS // (n_head * length)))


def _alibi_attention(q, k, v, slopes: torch.Tensor, scale: float, dropout: float) -> torch.Tensor:
    """Causal attention with ALiBi, one block of query rows at a time: each block sees only the
    keys up to its last row, and its bias is (heads, rows, keys), never (heads, T, T)."""
    t = q.shape[2]
    rows = alibi_query_rows(q.shape[1], t)
    out = []
    for start in range(0, t, rows):
        stop = min(t, start + rows)
        # A 4-D mask keeps CPU's fused kernel; a 3-D one falls back to materialised scores.
        bias = causal_bias(start, stop, slopes, q.device, q.dtype)[None]
        out.append(F.scaled_dot_product_attention(q[:, :, start:stop], k[:, :, :stop], v[:, :, :stop],
                                                  attn_mask=bias, scale=scale, dropout_p=dropout))
    return out[0] if len(out) == 1 else torch.cat(out, dim=2)


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
        dropout = self.cfg.attn_dropout if self.training else 0.0
        slopes = self.slopes if self.cfg.positions == "alibi" else None
        probs = None
        if need_probs:  # the sharpening losses and attention maps need every probability: materialise
            att = (q @ k.transpose(-2, -1)) * scale + causal_bias(0, t, slopes, x.device, q.dtype)
            probs = att.softmax(dim=-1)
            y = self.drop(probs) @ v
        elif slopes is None:  # no bias: the fused causal kernel, no mask in memory
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, dropout_p=dropout)
        else:
            y = _alibi_attention(q, k, v, slopes, scale, dropout)
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


def _gpt2_init(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Embedding):
        nn.init.normal_(m.weight, std=0.02)


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
        self.apply(_gpt2_init)
        # GPT-2's scaled residual init: each block adds two projections to the residual stream,
        # so their weights start at 0.02 / sqrt(2 n_layer) to keep its variance independent of depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer))

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
    if cfg.arch == "ssm":
        from ffbench.train.ssm import SSM

        return SSM(cfg)
    raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {cfg.arch!r}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- memory
def estimate_forward_bytes(cfg: ModelConfig, batch: int, length: int) -> int:
    """Peak bytes one inference (no-grad, float32) forward pass of ``batch`` sequences of
    ``length`` tokens allocates, logits included, on top of the resident weights.

    Counted from what is alive at each model's widest point (measured against the CPU allocator
    in the tests, within a factor of 1.5): a Transformer block's MLP (residual, norm, the 4C or
    gated 8C up-projection and its activation) or, for ALiBi, the bias of one block of query
    rows and the temporaries that build it; the LSTM's gate pre-activations for every step plus
    the flattened weights it copies; a selective SSM block's activations plus its scan's
    workspace: the state and its decay when it runs position by position, or per streamed time
    block the decays, inputs and states (three (batch, block, d_inner, d_state) tensors).
    """
    tokens = batch * length
    if cfg.arch == "transformer":
        c = cfg.d_model
        widest = max((20 if cfg.activation in ("geglu", "swiglu") else 12) * c, 3 * c + 2 * cfg.vocab_size)
        if cfg.positions != "alibi":
            return 4 * tokens * widest
        rows = alibi_query_rows(cfg.n_head, length)
        bias = rows * length * (8 * cfg.n_head + 20)  # float bias per head, its int64 distances
        return max(4 * tokens * widest, 4 * tokens * 5 * c + bias)
    if cfg.arch == "lstm":
        h = cfg.hidden
        weights = cfg.n_layer * (8 * h * h + 8 * h)
        return 4 * (tokens * (17 * h // 2 + cfg.vocab_size) + weights)  # 7 h to 10 h, by batch size
    if cfg.arch == "ssm":
        from ffbench.train.ssm import scan_block

        d, n = cfg.expand * cfg.d_model, cfg.d_state
        block = scan_block(batch, length, d, n)  # 1: one state updated in place, plus dt x u
        workspace = 2 * batch * d * n + tokens * d if block == 1 else 3 * batch * block * d * n
        return 4 * (tokens * (2 * cfg.d_model + 8 * d + cfg.vocab_size) + workspace)
    raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {cfg.arch!r}")
