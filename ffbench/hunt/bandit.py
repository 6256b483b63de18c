"""Thompson sampling over the hunter's arms: where to spend the next scored read.

An arm is a family point (:mod:`ffbench.hunt.families`) or the local search (``exploit``). Its
reward per scored read is 1 for a wrong read and ``exp(-margin / TEMPERATURE)`` for a right one,
so a read right by a hair counts almost as much as a failure and a confident read counts nothing
(about 1e-4 at margin 9): the bandit climbs toward near misses before it has seen any glitch.
A duplicate of a glitch already found earns nothing, so an arm that can only repeat itself (a
point with two distinct sequences) stops being chosen.

Each arm keeps reads and summed reward; its posterior is Beta(prior + reward, prior' + reads -
reward), with the prior centred on its family's pooled rate (strength ``PRIOR_STRENGTH`` reads),
so one failing point lifts its neighbours and a barren family is left after a few draws of each
point. A batch is chosen by drawing one posterior sample per arm per pick, so it mixes arms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TEMPERATURE = 1.0
PRIOR_STRENGTH = 20.0


def reward(correct: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """Per read: 1 when wrong, exp(-margin / TEMPERATURE) when right (0 when the margin is unknown)."""
    soft = np.exp(-np.clip(np.nan_to_num(margin, nan=np.inf), 0, None) / TEMPERATURE)
    return np.where(correct, soft, 1.0)


@dataclass
class ArmStats:
    reads: int = 0  # scored reads
    reward: float = 0.0
    sequences: int = 0
    errors: int = 0  # wrong reads
    glitches: int = 0  # new distinct confirmed glitching sequences
    skipped: int = 0  # reads of draws that repeated a sequence already scored (not scored, no reward)

    def as_dict(self) -> dict:
        return {"reads": self.reads, "reward": self.reward, "sequences": self.sequences, "errors": self.errors,
                "glitches": self.glitches, "skipped": self.skipped}

    @property
    def tried(self) -> int:
        return self.reads + self.skipped


@dataclass
class Bandit:
    """Arms keyed by label, grouped by family; state is plain data (saved with the hunt)."""

    families: dict[str, str]  # arm label -> family
    stats: dict[str, ArmStats] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for label in self.families:
            self.stats.setdefault(label, ArmStats())

    def _family_rate(self) -> dict[str, float]:
        pooled: dict[str, list[float]] = {}
        for label, fam in self.families.items():
            s = self.stats[label]
            acc = pooled.setdefault(fam, [0.0, 0.0])
            acc[0] += s.reward
            acc[1] += s.tried
        total = [sum(v[0] for v in pooled.values()), sum(v[1] for v in pooled.values())]
        overall = (total[0] + 1.0) / (total[1] + 2.0)
        return {f: (r + PRIOR_STRENGTH * overall) / (n + PRIOR_STRENGTH) for f, (r, n) in pooled.items()}

    def choose(self, rng: np.random.Generator, picks: int, available: set[str] | None = None) -> list[str]:
        """``picks`` arm labels, each the argmax of one fresh posterior draw over the available arms."""
        labels = [a for a in self.families if available is None or a in available]
        if not labels:
            return []
        fam_rate = self._family_rate()
        prior = np.array([min(max(fam_rate[self.families[a]], 1e-9), 1 - 1e-9) for a in labels])
        r = np.array([self.stats[a].reward for a in labels])
        n = np.array([self.stats[a].tried for a in labels], dtype=np.float64)
        alpha = PRIOR_STRENGTH * prior + r
        beta = PRIOR_STRENGTH * (1 - prior) + np.maximum(n - r, 0.0)
        draws = rng.beta(alpha[None, :], beta[None, :], size=(picks, len(labels)))
        return [labels[j] for j in draws.argmax(axis=1)]

    def skip(self, label: str, reads: int) -> None:
        """A draw that repeated a sequence already scored: counts against the arm, earns nothing."""
        self.stats[label].skipped += int(reads)

    def update(self, label: str, reads: int, reward_sum: float, errors: int, glitches: int) -> None:
        s = self.stats[label]
        s.reads += int(reads)
        s.reward += float(reward_sum)
        s.sequences += 1
        s.errors += int(errors)
        s.glitches += int(glitches)

    def state(self) -> dict:
        return {label: s.as_dict() for label, s in self.stats.items()}

    def load(self, raw: dict) -> None:
        for label, s in raw.items():
            if label in self.stats:
                self.stats[label] = ArmStats(int(s["reads"]), float(s["reward"]), int(s["sequences"]),
                                             int(s["errors"]), int(s["glitches"]), int(s.get("skipped", 0)))
