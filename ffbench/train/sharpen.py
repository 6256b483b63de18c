"""Attention-sharpening regularisers (paper section on mitigations, R6/R7).

Each loss is averaged over every layer, head, batch row and query position of the attention
probabilities alpha (rows sum to 1): ``entropy`` H(alpha) = -sum alpha log alpha, ``l2`` = -||alpha||_2,
``linf`` = -||alpha||_inf. Minimising any of them makes attention peakier.

The coefficient follows a schedule that starts at ``start``: ``constant``; ``linear`` (ramps from 0
at ``start`` to the full coefficient at the last step); ``oscillate`` (a raised cosine with period
``period`` steps, between 0 and the full coefficient).
"""

from __future__ import annotations

import math

import torch

KINDS = ("none", "entropy", "l2", "linf")
SCHEDULES = ("constant", "linear", "oscillate")


def sharpening_loss(probs: list[torch.Tensor], kind: str) -> torch.Tensor:
    """Mean over layers, heads, rows and positions; ``probs`` holds (B, H, T, T) per layer."""
    if kind not in KINDS or kind == "none":
        raise ValueError(f"sharpening loss must be one of {', '.join(KINDS[1:])}, got {kind!r}")
    per_layer = []
    for alpha in probs:
        if kind == "entropy":
            # alpha log alpha with a floor inside the log: entr()'s gradient is infinite at the
            # masked (exactly zero) entries, which would turn every gradient into NaN.
            per_layer.append(-(alpha * alpha.clamp_min(1e-30).log()).sum(-1).mean())
        elif kind == "l2":
            per_layer.append(-alpha.norm(dim=-1).mean())
        else:
            per_layer.append(-alpha.amax(dim=-1).mean())
    return torch.stack(per_layer).mean()


def coefficient(step: int, total: int, coef: float, schedule: str, start: int, period: int = 1000) -> float:
    if schedule not in SCHEDULES:
        raise ValueError(f"sharpening schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if step < start or coef == 0:
        return 0.0
    if schedule == "constant":
        return coef
    if schedule == "linear":
        return coef * min(1.0, (step - start + 1) / max(1, total - start))
    return coef * 0.5 * (1 - math.cos(2 * math.pi * (step - start) / period))
