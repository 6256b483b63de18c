"""Importance sampling of rare glitch rates: the rate under FFL(T, p) from reads drawn elsewhere.

The quantity. Under a target p = FFL(T, p_w, p_r, p_i) the glitch rate of ``ffbench run`` (wrong
reads / all reads) converges to theta = E_p[errors per sequence] / E_p[reads per sequence]. The
denominator is known, 1 + (T/2 - 2) p_r. The numerator is a sum over the instruction slots e that
can hold a read: sum_e c_e E_p[f_e], where c_e = p_r for a middle slot and 1 for the last (always
a read), and f_e(x_1..e-1) says whether the model answers a read at slot e wrongly after the
instructions before it. For a causal model f_e depends on nothing after the read, so one sample
needs only the prefix: a *read-level* estimator.

The proposal. A sample picks a read slot e with probability a(e) = c_e / E_p[reads] (where the
target's reads are), draws the instructions before it
from q_e = alpha * p + (1 - alpha) * sum_k beta_k profile_k, and ends with the read at e: a legal
sequence of length 2(e + 1) whose last read, alone, is scored. A *profile* gives each earlier
instruction i a distribution over five outcomes relative to the value in force (``OUTCOMES``:
write the same value, write the other one, read, ignore carrying the same value, ignore carrying
the other one; under p they have probabilities p_w/2, p_w/2, p_r, p_i/2, p_i/2) that depends on
its distance e - i to the read, in buckets (``BUCKETS``). A profile can so say "a write of the
other value right before the read", "writes of the old value 4 to 12 instructions back" or "no
write or read for 48 instructions": the configurations that break models, as a distribution with
an exact density. With a profile equal to a tilted p' everywhere this is the tilted FFL(T, p') of
the plain cross-entropy method.

The estimate. Each sample contributes Z = f_e * w with weight w = c_e p(x_<e) / (a(e) q_e(x_<e)),
computed exactly (with a(e) as above, w = E_p[reads] p(x_<e) / q_e(x_<e)); E[Z] = theta *
E_p[reads], so mean(Z) / E_p[reads] is unbiased. Samples are
independent; the 95% interval is the studentized bootstrap (bootstrap-t) interval of mean(Z), which
follows the skew of the weights where the plain t interval covers less than it claims (both are
asymptotic, valid as the failing samples grow; ``reliable`` says whether there are ``MIN_HITS``). The defensive share alpha bounds every
weight (``Proposal.max_weight``: E_p[reads] / alpha), which gives an exact, conservative upper bound
too: Z <= max_weight * f, and a Clopper-Pearson bound on the failing share.

The adaptation (cross-entropy method: Rubinstein 1999; for rare outputs of language models see Wu
& Hilton, arXiv 2410.13211). Each stage samples the current proposal; the elite samples are the
failing ones once they are a ``RHO`` share (and ``MIN_ELITE``), else that many with the lowest margins (near
misses share the contexts of failures; the level rises from stage to stage). Weighted by w, the elites' prefixes refit the profiles
(counts per profile, bucket and outcome, the profiles' shares of each prefix as responsibilities:
one EM step for the mixture), shrunk toward p. The estimate uses only samples of the final,
fixed proposal.

Assumptions: the model is causal (a read's verdict depends only on the text before its answer, as
for every autoregressive language model scored by teacher forcing) and deterministic; the data
values of the target are uniform (they are in FFL), so only instructions and the relation of each
value to the value in force enter the weights.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ffbench import language
from ffbench.errors import UsageError

OUTCOMES = ("w_same", "w_diff", "r", "i_same", "i_diff")
W_SAME, W_DIFF, READ, I_SAME, I_DIFF = range(5)
BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
DEFENSIVE = 0.2  # alpha: the target's own share of every prefix distribution
RHO = 0.02  # elite share of a stage's samples while fewer of them fail (multilevel cross-entropy) ...
MIN_ELITE = 30  # ... but never fewer elite samples than this
NEAR = 16  # the initial tilts act on the instructions this close to the read
SHRINK = 2.0  # pseudo-counts of p added to every (profile, bucket)
STEP = 0.7  # how far a stage moves toward the new fit
FLOOR = 1e-3  # no outcome of a profile falls below this probability
MIN_HITS = 10  # failing samples needed before the t interval is called reliable


# ----------------------------------------------------------------------------- targets
@dataclass(frozen=True)
class Target:
    """The distribution whose glitch rate is estimated."""

    name: str
    dist: language.FFL

    @property
    def probs(self) -> np.ndarray:
        """Probabilities of the five outcomes under the target."""
        d = self.dist
        return np.array([d.p_write / 2, d.p_write / 2, d.p_read, d.p_ignore / 2, d.p_ignore / 2])

    @property
    def slots(self) -> int:
        """Instruction slots per sequence."""
        return self.dist.length // 2

    def read_mass(self) -> np.ndarray:
        """c_e for e = 1 .. n - 1: the probability that slot e holds a read (index 0 is slot 1)."""
        c = np.full(self.slots - 1, self.dist.p_read)
        c[-1] = 1.0
        return c

    def expected_reads(self) -> float:
        return self.dist.expected_reads()


_FFL = re.compile(r"^ffl\(\s*([0-9.eE+-]+)\s*(?:,\s*([0-9.eE+-]+)\s*,\s*([0-9.eE+-]+)\s*)?\)$", re.IGNORECASE)


def parse_target(name: str, length: int) -> Target:
    """``sparse`` | ``dense`` | ``in_dist`` | ``FFL(P)`` | ``FFL(W,R,I)`` at length T."""
    text = name.strip()
    if text in language.SUITES:
        return Target(text, language.SUITES[text].distribution(length))
    m = _FFL.match(text)
    if not m:
        raise UsageError(f"unknown --estimate target {name!r} (use in_dist, sparse, dense, FFL(P) or FFL(W,R,I))")
    try:
        values = [float(g) for g in m.groups() if g is not None]
    except ValueError:
        raise UsageError(f"--estimate {name!r}: not a number inside FFL(...)") from None
    dist = language.FFL.from_p_ignore(values[0], length) if len(values) == 1 else language.FFL(length, *values)
    if dist.p_read == 0:
        raise UsageError(f"--estimate {name!r}: p_read = 0 leaves only the final read; give a p with reads")
    if dist.p_read == 1:
        raise UsageError(f"--estimate {name!r}: every instruction would be a read")
    return Target(f"FFL({','.join(f'{v:g}' for v in values)})", dist)


# ----------------------------------------------------------------------------- proposals
def bucket_of(distance) -> np.ndarray:
    """Bucket index of distances >= 1 (instructions between a prefix slot and the read)."""
    return np.searchsorted(np.asarray(BUCKETS), distance, side="right") - 1


@dataclass
class Proposal:
    """Read slots ``slot_probs`` (a(e), e = 1 .. n - 1) and prefixes alpha * p + (1 - alpha) * sum_k
    beta_k profile_k, with ``profiles`` (K, buckets, 5) outcome probabilities by distance bucket."""

    defensive: float
    slot_probs: np.ndarray  # (n - 1,)
    shares: np.ndarray  # (K,)
    profiles: np.ndarray  # (K, B, 5)

    @classmethod
    def initial(cls, target: Target) -> Proposal:
        """Read slots as the target has them; three profiles, all p beyond ``NEAR`` instructions from
        the read and, nearer: p itself, more writes of either value (decoys), fewer writes and reads
        (a longer gap). The cross-entropy stages take it from there."""
        p = target.probs
        n_buckets = int(bucket_of(target.slots)) + 1
        near = np.asarray(BUCKETS[:n_buckets]) <= NEAR
        profiles = np.tile(p, (3, n_buckets, 1))
        profiles[1, near] = _tilt(p, [3.0, 3.0, 1.0, 1.0, 1.0])
        profiles[2, near] = _tilt(p, [0.2, 0.2, 0.2, 1.0, 1.0])
        c = target.read_mass()
        return cls(DEFENSIVE, c / c.sum(), np.full(3, 1 / 3), _floored(profiles))

    def max_weight(self, target: Target) -> float:
        """The largest weight any sample can have: c_e / (a(e) * alpha)."""
        return float(np.max(target.read_mass() / self.slot_probs) / self.defensive)

    def as_dict(self) -> dict:
        return {"defensive": self.defensive, "slot_probs": self.slot_probs.tolist(), "shares": self.shares.tolist(),
                "profiles": self.profiles.tolist(), "outcomes": list(OUTCOMES),
                "buckets": list(BUCKETS[: self.profiles.shape[1]])}

    @classmethod
    def from_dict(cls, raw: dict) -> Proposal:
        return cls(float(raw["defensive"]), np.asarray(raw["slot_probs"], dtype=np.float64),
                   np.asarray(raw["shares"], dtype=np.float64), np.asarray(raw["profiles"], dtype=np.float64))

    def describe(self, target: Target) -> dict:
        """Readable: per profile its share and, per distance bucket, the tilt of each outcome against p."""
        return {"defensive": self.defensive, "profiles": [
            {"share": float(s), "by_distance": {f">={b}": dict(zip(OUTCOMES, np.round(row / target.probs, 2).tolist()))
                                                for b, row in zip(BUCKETS, prof)}}
            for s, prof in zip(self.shares, self.profiles)]}


def _tilt(p: np.ndarray, factors) -> np.ndarray:
    q = p * np.asarray(factors)
    return q / q.sum()


def _floored(profiles: np.ndarray) -> np.ndarray:
    out = np.maximum(profiles, FLOOR)
    return out / out.sum(axis=-1, keepdims=True)


@dataclass
class Draw:
    """Samples of a proposal: per sample the read slot and the outcomes before it."""

    slot: np.ndarray  # (N,) e, the read's instruction slot (1 .. n - 1)
    outcomes: np.ndarray  # (N, n) int8; slots 1 .. e - 1 hold the prefix, slot e READ, -1 after
    first_bit: np.ndarray  # (N,) the first write's value
    component: np.ndarray  # (N,) -1: the prefix came from p, else the profile index

    def sequences(self) -> list[np.ndarray]:
        """Each sample as a legal compact sequence ending with its read (length 2(e + 1))."""
        full = _sequences(np.where(self.outcomes < 0, I_SAME, self.outcomes).astype(np.int8), self.first_bit)
        return [full[k, : 2 * (int(e) + 1)] for k, e in enumerate(self.slot)]

    def write_distance(self) -> np.ndarray:
        """Instructions from the latest write to the read (the read's write distance)."""
        n = self.outcomes.shape[1]
        writes = (self.outcomes == W_SAME) | (self.outcomes == W_DIFF)
        writes[:, 0] = True
        idx = np.where(writes & (np.arange(n)[None, :] < self.slot[:, None]), np.arange(n)[None, :], 0)
        return self.slot - idx.max(axis=1)


def sample(target: Target, proposal: Proposal, num: int, rng: np.random.Generator) -> Draw:
    n = target.slots
    slot = 1 + rng.choice(n - 1, size=num, p=proposal.slot_probs / proposal.slot_probs.sum())
    k = len(proposal.shares)
    component = np.where(rng.random(num) < proposal.defensive, -1,
                         rng.choice(k, size=num, p=proposal.shares / proposal.shares.sum()))
    slots = np.arange(n)
    dist = slot[:, None] - slots[None, :]
    probs = np.broadcast_to(target.probs, (num, n, 5)).copy()
    tilted = (component[:, None] >= 0) & (dist > 0)
    rows = np.nonzero(tilted)
    probs[rows] = proposal.profiles[component[rows[0]], bucket_of(dist[rows])]
    u = rng.random((num, n, 1))
    outcomes = np.minimum((u > np.cumsum(probs, axis=2)).sum(axis=2), 4).astype(np.int8)
    outcomes[:, 0] = W_SAME
    outcomes[dist == 0] = READ
    outcomes[dist < 0] = -1
    first_bit = (rng.random(num) < 0.5).astype(np.uint8)
    return Draw(slot, outcomes, first_bit, component)


def _sequences(outcomes: np.ndarray, first_bit: np.ndarray) -> np.ndarray:
    """Compact strings from relative outcomes: a write of the other value flips the value in force."""
    num, n = outcomes.shape
    flips = (outcomes == W_DIFF).astype(np.int64)
    flips[:, 0] = 0
    value = (first_bit[:, None] + np.cumsum(flips, axis=1)) % 2  # value in force after each slot
    before = np.concatenate([first_bit[:, None], value[:, :-1]], axis=1)
    instr = np.choose(outcomes, [language.W, language.W, language.R, language.I, language.I]).astype(np.uint8)
    data = np.where((outcomes == W_DIFF) | (outcomes == I_DIFF), 1 - before, before).astype(np.uint8)
    data[:, 0] = first_bit
    arr = np.empty((num, 2 * n), dtype=np.uint8)
    arr[:, 0::2] = instr
    arr[:, 1::2] = data + language.ZERO
    return arr


def outcomes_of(sequence: np.ndarray) -> np.ndarray:
    """The relative outcome of every instruction of one legal sequence (the inverse of sampling)."""
    instr, data = sequence[0::2], sequence[1::2]
    last = language.last_index((instr == language.W)[None])[0]
    before = data[np.concatenate([[0], last[:-1]])]
    same = data == before
    out = np.where(instr == language.W, np.where(same, W_SAME, W_DIFF),
                   np.where(instr == language.R, READ, np.where(same, I_SAME, I_DIFF))).astype(np.int8)
    out[0] = W_SAME
    return out


# ----------------------------------------------------------------------------- weights
def _log_profile_ratio(target: Target, proposal: Proposal, draw: Draw) -> np.ndarray:
    """(N, K): log prod over prefix slots of profile_k[bucket(e - i), o_i] / p(o_i)."""
    n = target.slots
    slots = np.arange(n)
    dist = draw.slot[:, None] - slots[None, :]
    prefix = (dist > 0) & (slots[None, :] >= 1)
    o = np.where(prefix, draw.outcomes, 0).astype(np.int64)
    b = bucket_of(np.maximum(dist, 1))
    log_ratio = np.log(proposal.profiles) - np.log(target.probs)  # (K, B, 5)
    return np.stack([np.where(prefix, log_ratio[k][b, o], 0.0).sum(axis=1) for k in range(len(proposal.shares))],
                    axis=1)


def weights(target: Target, proposal: Proposal, draw: Draw) -> np.ndarray:
    """Per sample: c_e p(prefix) / (a(e) q_e(prefix)), exactly."""
    lr = _log_profile_ratio(target, proposal, draw) + np.log(proposal.shares)[None, :]
    top = lr.max(axis=1, keepdims=True)
    mix = np.exp(top[:, 0]) * np.exp(lr - top).sum(axis=1)  # sum_k beta_k profile_k / p
    q_over_p = proposal.defensive + (1 - proposal.defensive) * mix
    e = draw.slot - 1
    return target.read_mass()[e] / (proposal.slot_probs[e] / proposal.slot_probs.sum()) / q_over_p


# ----------------------------------------------------------------------------- the estimate
@dataclass(frozen=True)
class Estimate:
    target: str
    rate: float
    ci95: tuple[float, float]  # bootstrap-t (studentized) interval; [0, upper95_exact] with < 2 hits
    ci95_normal: tuple[float, float]  # the plain Student t interval, for reference
    std_error: float
    samples: int  # scored reads (one per sample)
    hits: int  # failing samples
    effective_hits: float  # Kish effective number of the failing samples' weights
    upper95_exact: float  # conservative bound valid with any number of hits
    reliable: bool  # hits >= MIN_HITS

    def as_dict(self) -> dict:
        return {"target": self.target, "rate": self.rate, "ci95": list(self.ci95), "ci95_normal": list(self.ci95_normal),
                "std_error": self.std_error, "samples": self.samples, "hits": self.hits,
                "effective_hits": self.effective_hits, "upper95_exact": self.upper95_exact, "reliable": self.reliable}


BOOTSTRAP = 2000  # resamples of the studentized bootstrap
BOOTSTRAP_SEED = 20241017


def estimate(target: Target, wrong: np.ndarray, weight: np.ndarray, max_weight: float) -> Estimate:
    """The unbiased estimate, its intervals and the exact upper bound (see the module docstring).

    The interval is the studentized (bootstrap-t) one: the weights of the failing samples are
    skewed (a few large ones), and the plain t interval then covers less than it claims; the
    bootstrap-t interval reproduces that skew (Hall 1988). Deterministic: a fixed resampling seed.
    """
    from scipy.stats import t as student

    from ffbench.metrics import clopper_pearson

    wrong = np.asarray(wrong, dtype=bool)
    z = np.where(wrong, weight, 0.0) / target.expected_reads()
    n = int(z.size)
    mean = float(z.mean()) if n else math.nan
    se = float(z.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf
    half = float(student.ppf(0.975, max(n - 1, 1))) * se
    hits = int(np.count_nonzero(wrong))
    w = weight[wrong]
    ess = float(w.sum() ** 2 / np.sum(w**2)) if w.size else 0.0
    bound = min(1.0, max_weight * clopper_pearson(hits, n)[1] / target.expected_reads()) if n else 1.0
    normal = (max(0.0, mean - half), mean + half)
    ci = _bootstrap_t(z, mean, se) if hits >= 2 else (0.0, bound)
    return Estimate(target.name, mean, ci, normal, se, n, hits, ess, bound, hits >= MIN_HITS)


def _bootstrap_t(z: np.ndarray, mean: float, se: float) -> tuple[float, float]:
    """Studentized bootstrap 95% interval of the mean of ``z`` (mostly zeros): resamples draw the number
    of nonzero values binomially, then the values themselves."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    n = z.size
    values = z[z > 0]
    counts = rng.binomial(n, values.size / n, size=BOOTSTRAP)
    t = np.zeros(BOOTSTRAP)
    for b, k in enumerate(counts):
        v = rng.choice(values, size=k)
        m = v.sum() / n
        s = math.sqrt(max(np.sum(v**2) - n * m * m, 0.0) / (n - 1) / n)
        t[b] = (m - mean) / s if s > 0 else 0.0
    lo, hi = np.quantile(t, [0.025, 0.975])
    return max(0.0, mean - hi * se), mean - lo * se


def iid_comparison(rate: float, width: float, reads: int) -> dict:
    """What i.i.d. sampling would give: the exact interval of ``reads`` reads at this rate, and the
    reads it needs for an interval as narrow as ``width`` (Clopper-Pearson at the expected count)."""
    if not rate > 0 or not width > 0:
        return {"reads": reads, "ci95_width": None, "reads_for_same_width": None, "read_ratio": None}
    lo, hi = 1.0, 1e15
    for _ in range(200):  # bisection on log(reads): the width falls monotonically with reads
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if _cp_width(rate, mid) > width else (lo, mid)
    return {"reads": reads, "expected_errors": rate * reads, "ci95_width": _cp_width(rate, reads),
            "reads_for_same_width": hi, "read_ratio": hi / reads if reads else None}


def _cp_width(rate: float, n: float) -> float:
    """Clopper-Pearson 95% width at the (possibly fractional) expected error count rate * n."""
    from scipy.special import betaincinv

    k = rate * n
    low = 0.0 if k <= 0 else float(betaincinv(k, n - k + 1, 0.025))
    high = float(betaincinv(k + 1, max(n - k, 1e-9), 0.975))
    return high - low


# ----------------------------------------------------------------------------- cross-entropy step
def elite(margin: np.ndarray, wrong: np.ndarray) -> np.ndarray:
    """The samples the next proposal is fitted to: the failing ones once they are a ``RHO`` share,
    else those at or below the ``RHO`` quantile of the margins (the level rises stage by stage)."""
    wrong = np.asarray(wrong, dtype=bool)
    count = max(math.ceil(RHO * wrong.size), MIN_ELITE)
    if wrong.size == 0 or np.count_nonzero(wrong) >= count:
        return wrong.copy()
    signed = np.where(wrong, -np.inf, np.nan_to_num(margin, nan=np.inf))
    return signed <= np.sort(signed)[min(count, signed.size) - 1]


def update(target: Target, proposal: Proposal, draw: Draw, weight: np.ndarray, chosen: np.ndarray) -> Proposal:
    """One cross-entropy (EM) step: profiles and shares refitted to the elite samples (the read slots
    keep the target's distribution: fitting 60-odd slot probabilities to a few dozen elites only adds
    noise, and large weights where the fit left a slot thin)."""
    idx = np.flatnonzero(chosen)
    if idx.size == 0:
        return proposal
    w = weight[idx]
    w = w / w.sum() * (w.sum() ** 2 / np.sum(w**2))  # scaled to the Kish effective sample size
    k, n_buckets, _ = proposal.profiles.shape
    n = target.slots
    sub = Draw(draw.slot[idx], draw.outcomes[idx], draw.first_bit[idx], draw.component[idx])
    lr = _log_profile_ratio(target, proposal, sub) + np.log(proposal.shares)[None, :]
    resp = np.exp(lr - lr.max(axis=1, keepdims=True))
    resp /= resp.sum(axis=1, keepdims=True)
    counts = np.zeros((k, n_buckets, 5))
    slots = np.arange(n)
    for j in range(idx.size):
        e = int(sub.slot[j])
        prefix = slots[1:e]
        if prefix.size == 0:
            continue
        b = bucket_of(e - prefix)
        o = sub.outcomes[j, prefix].astype(np.int64)
        for c in range(k):
            np.add.at(counts[c], (b, o), w[j] * resp[j, c])
    fit = (counts + SHRINK * target.probs) / (counts.sum(axis=2, keepdims=True) + SHRINK)
    profiles = _floored(STEP * fit + (1 - STEP) * proposal.profiles)
    share_fit = (resp * w[:, None]).sum(axis=0) + 1.0
    shares = STEP * share_fit / share_fit.sum() + (1 - STEP) * proposal.shares
    return Proposal(proposal.defensive, proposal.slot_probs, shares / shares.sum(), profiles)
