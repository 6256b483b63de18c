"""What the scoring engine's workers do with a hunt's candidates (:mod:`ffbench.engine`).

The hunt is the adaptive strategy on the engine that ``ffbench run`` uses: each round its driver
chooses candidate sequences and sends them as units of work; a worker (in this process, or a Ray
actor holding its own copy of the model) renders them, scores them by choice and counts their
tokens, and returns plain arrays, so the driver never needs a loaded model and stays the only
writer of the hunt directory. A unit is ``(index, kind, rows)``: ``kind`` "all" scores every read of
``rows`` (equal-length sequences), "last" only the last read of each (confirmation of a shrunk
glitch, importance samples: the prefix is context). The index puts a round's units back in order.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from ffbench import render

KINDS = ("all", "last")


def split(lengths: list[int], parts: int) -> list[np.ndarray]:
    """The indices of each unit when sequences of these ``lengths`` are shared among ``parts``
    workers: at most one unit per worker (at least one, so an empty round is one empty unit), so a
    round is scored in parallel and in as few calls as it can.

    Equal lengths are cut into contiguous runs. Mixed lengths (a shrink's candidates, importance
    samples) keep every length whole in one unit (the largest first, to the least loaded unit):
    backends batch equal-length sequences together, and a batch of other members may differ in the
    last bits of a margin, so whole lengths keep the batches, and the margins, of a local hunt."""
    n = len(lengths)
    parts = max(1, min(parts, n))
    if len(set(lengths)) <= 1:
        edges = np.linspace(0, n, parts + 1).round().astype(int)
        return [np.arange(a, b) for a, b in pairwise(edges)]
    groups: dict[int, list[int]] = {}
    for i, length in enumerate(lengths):
        groups.setdefault(length, []).append(i)
    units: list[list[int]] = [[] for _ in range(parts)]
    load = [0] * parts
    for length, members in sorted(groups.items(), key=lambda g: (-g[0] * len(g[1]), g[0])):
        k = load.index(min(load))
        units[k] += members
        load[k] += length * len(members)
    return [np.array(sorted(u), dtype=np.int64) for u in units if u]


class HuntJob:
    """Score a hunt's candidates under its rendering, by choice (dense where the backend can)."""

    def __init__(self, render_name: str, per_read: bool = False):
        self.render_name, self.per_read = render_name, per_read
        self.template = render.load_template(render_name)

    def recipe(self):
        return HuntJob, (self.render_name, self.per_read)

    def score(self, backend, index: int, kind: str, rows) -> dict:
        """The unit's per-read ``prediction``, ``margin`` and ``target`` (row-major) and per-sequence
        ``tokens`` (the backend's count, else characters)."""
        from ffbench import scoring

        rendered = [render.render(row, self.template) for row in rows]
        if kind == "last":
            rendered = [render.Rendered(r.text, r.spans[-1:], r.targets[-1:], r.choices) for r in rendered]
        out = scoring.score(backend, rendered, self.template, "choice", per_read=self.per_read)
        targets = np.concatenate([r.targets for r in rendered]).astype(np.int64) if rendered else np.zeros(0, np.int64)
        return {"prediction": out.prediction, "margin": out.margin, "target": targets,
                "tokens": np.array(self.count_tokens(backend, [r.text for r in rendered]), dtype=np.int64)}

    def count_tokens(self, backend, texts: list[str]) -> list[int]:
        """Tokens of each text as the model counts them (characters where it cannot say)."""
        counts = [backend.count_tokens(t) for t in texts]
        return [len(t) if n is None else int(n) for t, n in zip(texts, counts)]
