"""K LSTM replicates trained at once (batched weights, one bmm per time step) against K sequential
``nn.LSTM`` runs: the issue's goal is 3x for K = 8. Prints both step times, the ratio, and the
arithmetic rate each achieves, which is what decides the outcome on a CPU.

    python benchmarks/replicates.py --k 8

The batched model is a plain time-step loop over (K, B, H) states with ``torch.baddbmm``; its
inputs' projections for all steps are one matmul and are unbound once (slicing them per step
makes autograd materialise a full-size gradient per step, 40x slower). AdamW is elementwise, so
one optimiser over (K, ...) parameters is K independent optimisers.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

V = 18


class BatchedLSTM(nn.Module):
    def __init__(self, k: int, hidden: int):
        super().__init__()
        self.k, self.h = k, hidden
        self.emb = nn.Parameter(torch.randn(k, V, hidden) * 0.1)
        self.w_ih = nn.Parameter(torch.randn(k, hidden, 4 * hidden) * 0.05)
        self.w_hh = nn.Parameter(torch.randn(k, hidden, 4 * hidden) * 0.05)
        self.bias = nn.Parameter(torch.zeros(k, 1, 1, 4 * hidden))
        self.head = nn.Parameter(torch.randn(k, hidden, V) * 0.05)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:  # idx (K, B, T)
        x = torch.stack([self.emb[j][idx[j]] for j in range(self.k)])
        xp = torch.matmul(x, self.w_ih.unsqueeze(1)) + self.bias
        h = x.new_zeros(self.k, idx.shape[1], self.h)
        c = torch.zeros_like(h)
        outs = []
        for xt in xp.unbind(2):
            i, f, g, o = torch.baddbmm(xt, h, self.w_hh).chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(h)
        return torch.matmul(torch.stack(outs, 2), self.head.unsqueeze(1))


class OneLSTM(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.emb, self.lstm, self.head = nn.Embedding(V, hidden), nn.LSTM(hidden, hidden, batch_first=True), \
            nn.Linear(hidden, V)

    def forward(self, idx):
        return self.head(self.lstm(self.emb(idx))[0])


def step_time(model: nn.Module, idx: torch.Tensor, steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    for s in range(steps + 1):
        if s == 1:
            t0 = time.perf_counter()
        loss = F.cross_entropy(model(idx).reshape(-1, V), idx.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    torch.manual_seed(0)
    one = step_time(OneLSTM(a.hidden), torch.randint(0, V, (a.batch, a.length)), a.steps)
    many = step_time(BatchedLSTM(a.k, a.hidden), torch.randint(0, V, (a.k, a.batch, a.length)), a.steps)
    # forward + backward ~ 3x the forward's 2 matmuls (input and recurrent) of 2*B*H*4H flops per token
    flops = 3 * 2 * 2 * a.batch * a.length * a.hidden * 4 * a.hidden
    print(f"LSTM 1 x {a.hidden}, batch {a.batch}, T={a.length}, K={a.k}, {torch.get_num_threads()} threads")
    print(f"K sequential nn.LSTM steps : {a.k * one:6.2f} s  ({flops / one / 1e9:5.1f} GFLOP/s per run)")
    print(f"one batched step of K      : {many:6.2f} s  ({a.k * flops / many / 1e9:5.1f} GFLOP/s)")
    print(f"ratio (goal >= 3x)         : {a.k * one / many:.2f}x")


if __name__ == "__main__":
    main()
