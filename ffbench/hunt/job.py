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


def split(rows, parts: int) -> list[tuple]:
    """``rows`` cut into at most ``parts`` contiguous units (at least one, so an empty round is one
    empty unit): one per worker, so a round is scored in parallel and in as few calls as it can."""
    n = len(rows)
    parts = max(1, min(parts, n))
    edges = np.linspace(0, n, parts + 1).round().astype(int)
    return [(k, rows[a:b]) for k, (a, b) in enumerate(pairwise(edges))]


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
