"""A selective state-space model in the style of Mamba (Gu and Dao, 2023), in plain PyTorch.

Each layer is a residual block ``x + Mixer(RMSNorm(x))``. The mixer projects the input to two
streams of width ``d_inner = expand x d_model``: ``u`` goes through a short causal depthwise
convolution and SiLU, then a selective scan; ``z`` gates the scan's output through SiLU. The scan
is a linear recurrence per channel d and state n::

    h[t] = exp(dt[t] * A) * h[t-1] + dt[t] * B[t] * u[t]          (A < 0: a stable decay)
    y[t] = C[t] . h[t] + D * u[t]

*Selective* means that the step size ``dt`` (softplus of a low-rank projection of u), ``B`` and
``C`` are computed from the input at every position, so the model decides per token what to
write into its state and what to read out: a write ``w`` can overwrite the state (large dt), an
ignore ``i`` can leave it alone (dt near 0). Initialisation follows Mamba: A = -(1..N) per
channel (S4D-real), dt in [1e-3, 1e-1] log-uniformly through the bias of its projection, D = 1,
and GPT-2's scaled init on the output projection.

The scan (:func:`linear_scan`) runs in chunks: every chunk is scanned at once along its positions,
then the chunks are chained by their carries, so a sequence of T tokens costs about 2 sqrt(T)
Python steps over large tensors instead of T small ones. Training keeps the (B, T, d_inner, N)
decays and states for the backward pass, which is the same scan run backwards in time
(:class:`SelectiveScan`). Inference carries only the last state, so it runs at any length with
memory linear in T: one position at a time when a position's state is large (many sequences),
else streaming the chunked scan over blocks of time.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ffbench.train.config import ModelConfig

# Inference runs the recurrence one position at a time when a position's state (batch x d_inner x
# d_state) has at least this many elements: each step then keeps the processor busy, the state
# stays in cache, and nothing of size T x state is ever stored. Smaller states (a few sequences,
# long T) stream the chunked scan over time blocks of at most SCAN_BLOCK_ELEMENTS elements (4 MB
# in float32, which measured fastest on CPU: larger blocks leave the cache, smaller ones pay
# Python per block). benchmarks/train.py --scan measures both against a plain loop.
RECURRENT_MIN_ELEMENTS = 2**14
SCAN_BLOCK_ELEMENTS = 2**20


def dt_rank(cfg: ModelConfig) -> int:
    return cfg.dt_rank or math.ceil(cfg.d_model / 16)


# ----------------------------------------------------------------------------- the scan
def chunk_length(t: int) -> int:
    """About sqrt(T) positions per chunk (fewest Python steps), preferring a divisor of T."""
    root = max(1, math.isqrt(t))
    for size in range(root, max(1, root // 2) - 1, -1):
        if t % size == 0:
            return size
    return root


@torch.no_grad()
def linear_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, reverse: bool = False,
                chunk: int | None = None) -> torch.Tensor:
    """Every state of h[t] = a[t] h[t-1] + b[t] along dim 1 from h[-1] = ``h0`` (default 0), or with
    ``reverse`` of h[t] = a[t] h[t+1] + b[t] from h[T] = ``h0``. ``a``, ``b``: (batch, T, ...).

    The T positions are cut into chunks of about sqrt(T) (``chunk``). Sweep 1 runs every chunk at
    once from a zero state, keeping only each chunk's final state and the product of its ``a``;
    a pass over the chunks turns those into the state entering each chunk; sweep 2 runs every
    chunk at once again from its entering state, writing all states. About 2 sqrt(T) Python steps
    and five passes over memory; with a single chunk this is the plain sequential scan.
    """
    batch, t = a.shape[:2]
    rest = a.shape[2:]
    size = chunk or chunk_length(t)
    n = -(-t // size)
    if n * size > t:  # padding (a = 1, b = 0) after the end: the forward scan never reaches it,
        pad = (batch, n * size - t, *rest)  # and it leaves the zero start of the reverse scan at zero
        a = torch.cat([a, a.new_ones(pad)], dim=1)
        b = torch.cat([b, b.new_zeros(pad)], dim=1)
    a, b = a.reshape(batch, n, size, *rest), b.reshape(batch, n, size, *rest)
    steps = list(range(size - 1, -1, -1) if reverse else range(size))
    chunks = range(n - 1, -1, -1) if reverse else range(n)
    first = steps[0]
    final, prod = b[:, :, first].clone(), a[:, :, first].clone()
    for i in steps[1:]:  # sweep 1
        final.mul_(a[:, :, i]).add_(b[:, :, i])
        prod.mul_(a[:, :, i])
    entering = torch.empty_like(final)
    state = torch.zeros_like(final[:, 0]) if h0 is None else h0
    for c in chunks:
        entering[:, c] = state
        state = prod[:, c] * state + final[:, c]
    h = torch.empty_like(b)
    torch.addcmul(b[:, :, first], a[:, :, first], entering, out=h[:, :, first])
    for before, i in zip(steps, steps[1:]):  # sweep 2
        torch.addcmul(b[:, :, i], a[:, :, i], h[:, :, before], out=h[:, :, i])
    return h.reshape(batch, n * size, *rest)[:, :t]


def _states(u, dt, A, B, h0=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Decay exp(dt A) and every state h, each (batch, T, d, n)."""
    decay = torch.exp(dt[..., None] * A)
    return decay, linear_scan(decay, (dt * u)[..., None] * B[:, :, None, :], h0)


class SelectiveScan(torch.autograd.Function):
    """y[t] = C[t] . h[t] with h[t] = exp(dt[t] A) h[t-1] + dt[t] B[t] u[t], and its gradient.

    Backward keeps only the decay and the states. The gradient reaching h[t] from every later
    state obeys the same recurrence backwards in time: G[t] = C[t] dy[t] + exp(dt[t+1] A) G[t+1].
    From G: dL/dB[t] = sum_d G[t] dt[t] u[t]; dL/du[t] = dt[t] sum_n G[t] B[t]; and with
    X[t] = G[t] h[t-1] exp(dt[t] A) (the gradient of the exponent dt[t] A), dL/dA = sum_t X[t] dt[t]
    and dL/ddt[t] = sum_n X[t] A + u[t] sum_n G[t] B[t].
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # the scan runs in float32
    def forward(ctx, u, dt, A, B, C):
        decay, h = _states(u, dt, A, B)
        ctx.save_for_backward(u, dt, A, B, C, decay, h)
        return (h @ C[..., None]).squeeze(-1)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, dy):
        u, dt, A, B, C, decay, h = ctx.saved_tensors
        decay_next = torch.zeros_like(decay)
        decay_next[:, :-1] = decay[:, 1:]
        G = linear_scan(decay_next, dy[..., None] * C[:, :, None, :], reverse=True)
        dC = (h.transpose(-1, -2) @ dy[..., None]).squeeze(-1)
        dB = (G.transpose(-1, -2) @ (dt * u)[..., None]).squeeze(-1)
        GB = (G @ B[..., None]).squeeze(-1)
        X = G  # reused in place: X[t] = G[t] h[t-1] decay[t], and h[-1] = 0
        X[:, 1:].mul_(h[:, :-1]).mul_(decay[:, 1:])
        X[:, 0] = 0
        dA = torch.einsum("btdn,btd->dn", X, dt)
        return GB * dt, (X * A).sum(-1) + GB * u, dA, dB, dC


def scan_block(batch: int, length: int, d_inner: int, d_state: int) -> int:
    """Time positions per step of the inference scan: 1 (recurrent) or a streamed block."""
    if batch * d_inner * d_state >= RECURRENT_MIN_ELEMENTS:
        return 1
    return max(1, min(length, SCAN_BLOCK_ELEMENTS // (batch * d_inner * d_state)))


def selective_scan(u, dt, A, B, C, D) -> torch.Tensor:
    """y[t] = C[t] . h[t] + D u[t] with h[t] = exp(dt[t] A) h[t-1] + dt[t] B[t] u[t].

    u, dt: (batch, T, d); A: (d, n); B, C: (batch, T, n); D: (d,). Returns (batch, T, d).
    Without gradients the scan runs position by position or streams over blocks of time
    (:func:`scan_block`), carrying the last state only, so memory is linear in T.
    """
    if torch.is_grad_enabled() and any(x.requires_grad for x in (u, dt, A, B, C)):
        return SelectiveScan.apply(u, dt, A, B, C) + u * D
    batch, t, d = u.shape
    block = scan_block(batch, t, d, A.shape[1])
    if block == 1:
        return _recurrent(u, dt, A, B, C) + u * D
    y, state = torch.empty_like(u), None
    for s in range(0, t, block):
        y[:, s : s + block], state = _output_and_last_state(u[:, s : s + block], dt[:, s : s + block], A,
                                                            B[:, s : s + block], C[:, s : s + block], state)
    return y + u * D


def _recurrent(u, dt, A, B, C) -> torch.Tensor:
    """The recurrence one position at a time, updating a single state in place."""
    batch, t, d = u.shape
    h = u.new_zeros(batch, d, A.shape[1])
    decay = torch.empty_like(h)
    dtu = dt * u
    y = u.new_empty(batch, t, d)
    for i in range(t):
        torch.mul(dt[:, i, :, None], A, out=decay).exp_()
        h.mul_(decay).addcmul_(dtu[:, i, :, None], B[:, i, None, :])
        y[:, i] = (h @ C[:, i, :, None]).squeeze(-1)
    return y


def _output_and_last_state(u, dt, A, B, C, h0):
    """One block of the streaming scan; its (batch, block, d, n) tensors die when it returns."""
    _, h = _states(u, dt, A, B, h0)
    return (h @ C[..., None]).squeeze(-1), h[:, -1].clone()


# ----------------------------------------------------------------------------- the model
class Mixer(nn.Module):
    """The selective SSM block: in-projection, causal conv, selective scan, SiLU gate, out-projection."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d_inner, n, r = cfg.expand * cfg.d_model, cfg.d_state, dt_rank(cfg)
        self.d_inner, self.d_state, self.rank = d_inner, n, r
        self.in_proj = nn.Linear(cfg.d_model, 2 * d_inner, bias=False)
        self.conv = nn.Conv1d(d_inner, d_inner, cfg.d_conv, groups=d_inner, padding=cfg.d_conv - 1)
        self.x_proj = nn.Linear(d_inner, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, d_inner, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, cfg.d_model, bias=False)
        for p in (self.A_log, self.D):
            p._no_weight_decay = True  # noqa: SLF001 - read by the trainer's optimiser groups
        with torch.no_grad():  # dt = softplus(bias) log-uniform in [1e-3, 1e-1]
            nn.init.uniform_(self.dt_proj.weight, -r**-0.5, r**-0.5)
            dt = torch.exp(torch.rand(d_inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        u, z = self.in_proj(x).chunk(2, dim=-1)
        u = F.silu(self.conv(u.transpose(1, 2))[..., :t].transpose(1, 2))  # causal: outputs before any padding
        dt, B, C = self.x_proj(u).split([self.rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt))
        y = selective_scan(u, dt, -torch.exp(self.A_log), B, C, self.D)
        return self.out_proj(y * F.silu(z))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm, self.mixer = nn.RMSNorm(cfg.d_model, eps=1e-5), Mixer(cfg)

    def forward(self, x):
        return x + self.mixer(self.norm(x))


class SSM(nn.Module):
    """Embedding, ``n_layer`` selective SSM blocks, RMSNorm, tied head. Runs at any length."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        for name in ("n_layer", "d_model", "d_state", "d_conv", "expand"):
            if getattr(cfg, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(cfg, name)}")
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.drop = nn.Dropout(cfg.embd_dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm_f = nn.RMSNorm(cfg.d_model, eps=1e-5)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        nn.init.normal_(self.wte.weight, std=0.02)
        for block in self.blocks:  # one residual projection per block
            nn.init.normal_(block.mixer.out_proj.weight, std=0.02 / math.sqrt(cfg.n_layer))

    def forward(self, idx: torch.Tensor, need_probs: bool = False):
        x = self.drop(self.wte(idx))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.norm_f(x)), None
