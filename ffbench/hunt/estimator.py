"""Importance sampling of rare glitch rates: the rate under FFL(T, p) from sequences drawn elsewhere.

The quantity. Under a target distribution p = FFL(T, p_w, p_r, p_i) the glitch rate of ``ffbench
run`` is wrong reads / all reads, which converges to theta = E_p[errors per sequence] / E_p[reads
per sequence]; the denominator is known exactly, 1 + (T/2 - 2) p_r, so only the numerator is
estimated.

The proposal. Sequences are drawn from q = alpha * p + (1 - alpha) * sum_k beta_k q_k. Each q_k is a
*window profile*: pick a slot e uniformly among the instructions 1 .. T/2 - 1, make slot e a read,
draw each earlier instruction from a distribution that depends on its distance e - i to that read
(bucketed, ``BUCKETS``) and each later one from p. Instructions are drawn over five outcomes
relative to the value in force (``OUTCOMES``: write the same value, write the other one, read,
ignore carrying the same value, ignore carrying the other one); under p these have probabilities
(p_w/2, p_w/2, p_r, p_i/2, p_i/2). A profile can so say "a write of the other value right before the
read", "three writes within the last eight instructions" or "no write or read for 48 instructions":
the configurations that break models (the stress families) as a distribution with an exact density.
With every profile equal to p this is the tilted FFL(T, p') of the plain cross-entropy method,
plus a planted read.

The weights. Every read j of a sequence counts with the likelihood ratio of its *prefix*,
w_j = p(x_1..j) / q(x_1..j), computed exactly (a sum over profiles and window ends, in log space):
a causal model's verdict on read j depends only on the text before its answer, so
E_q[sum_j w_j err_j] = E_p[errors] (per-decision importance sampling). The defensive share alpha
bounds every weight by 1 / alpha.

The estimator and its interval. With Y_s = sum of w_j err_j over the reads of sequence s, the
estimate is mean(Y) / E_p[reads]: unbiased. Its 95% interval is the Student t interval on the
sequences' Y (independent draws), valid as the number of failing sequences grows; hunt.json also
gives an exact, conservative upper bound (Y_s <= N_max / alpha times the indicator that sequence s
fails, and a Clopper-Pearson bound on that indicator), which holds with any number of failures.

The adaptation (cross-entropy method, Rubinstein 1999; for rare model outputs see Wu & Hilton,
arXiv 2410.13211). Each stage draws from the current proposal; the elite reads are the wrong ones
once there are enough, else the ``RHO`` share with the lowest margins. Each elite read's prefix,
weighted by w_j, is counted per (profile, distance bucket, outcome), with the profiles' shares of the
read as responsibilities (one EM step for the mixture), and the profiles move to those counts,
shrunk toward p. The estimate uses only the draws after adaptation stops, from one fixed proposal.
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
DEFENSIVE = 0.2  # alpha: the target's own share of the proposal
ELITE = 64  # reads the proposal is refitted to at each stage: the wrong ones, then the lowest margins
SHRINK = 2.0  # pseudo-reads of p added to every (profile, bucket) count
STEP = 0.7  # how far a stage moves the profiles toward the new fit
FLOOR = 1e-3  # no outcome of a profile falls below this probability (bounds the log-weights)
MIN_HITS = 10
NEAR = 16  # window slots this close to the window's read keep their fitted read probability
THIN = 0.1  # elsewhere in a window sequence reads are this much rarer than fitted (they cost budget)  # failing sequences needed before the t interval is called reliable


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
    if not 0 < dist.p_ignore + dist.p_write:
        raise UsageError(f"--estimate {name!r}: every instruction would be a read")
    return Target(f"FFL({','.join(f'{v:g}' for v in values)})", dist)


# ----------------------------------------------------------------------------- proposals
def bucket_of(distance: np.ndarray) -> np.ndarray:
    """Bucket index of distances >= 1 (instructions between a window slot and its read)."""
    return np.searchsorted(np.asarray(BUCKETS), distance, side="right") - 1


@dataclass
class Proposal:
    """alpha * p + (1 - alpha) * sum_k beta_k window_k.

    ``profiles`` (K, buckets, 5) are the outcome probabilities of window slots by distance bucket;
    ``after`` (5,) those of the slots after the window's read (shared by the profiles).
    """

    defensive: float
    shares: np.ndarray  # (K,) beta, summing to 1
    profiles: np.ndarray  # (K, B, 5) outcome probabilities by distance bucket
    after: np.ndarray  # (5,)

    @classmethod
    def initial(cls, target: Target, length: int) -> "Proposal":
        """Three windows: the target's own, denser (writes and reads), sparser (ignores); reads
        thinned beyond ``NEAR`` instructions before the window's read and after it."""
        p = target.probs
        n_buckets = int(bucket_of(np.array([length // 2]))[0]) + 1
        dense = np.array([0.15, 0.15, 0.2, 0.25, 0.25])
        sparse = np.array([0.005, 0.005, 0.01, 0.49, 0.49])
        profiles = np.stack([np.tile(v, (n_buckets, 1)) for v in (p, dense, sparse)])
        return cls(DEFENSIVE, np.full(3, 1 / 3), thin_far(profiles), thin(p[None])[0])

    def as_dict(self) -> dict:
        return {"defensive": self.defensive, "shares": self.shares.tolist(),
                "profiles": np.round(self.profiles, 12).tolist(), "after": np.round(self.after, 12).tolist(),
                "outcomes": list(OUTCOMES), "buckets": list(BUCKETS[: self.profiles.shape[1]])}

    @classmethod
    def from_dict(cls, raw: dict) -> "Proposal":
        return cls(float(raw["defensive"]), np.asarray(raw["shares"], dtype=np.float64),
                   np.asarray(raw["profiles"], dtype=np.float64), np.asarray(raw["after"], dtype=np.float64))


def thin(probs: np.ndarray) -> np.ndarray:
    """Reads made ``THIN`` times as likely (the rest to the other outcomes, in proportion), floored."""
    out = probs.copy()
    out[..., READ] *= THIN
    rest = 1.0 - out[..., READ]
    others = [W_SAME, W_DIFF, I_SAME, I_DIFF]
    out[..., others] *= (rest / probs[..., others].sum(axis=-1))[..., None]
    return _floored(out)


def thin_far(profiles: np.ndarray) -> np.ndarray:
    """Profiles with reads thinned in the buckets beyond ``NEAR`` instructions from the window's read:
    a read there costs as much as the window's own and tells little about it."""
    out = _floored(profiles)
    far = np.asarray(BUCKETS[: profiles.shape[1]]) > NEAR
    out[:, far] = thin(out[:, far])
    return out


def _floored(profiles: np.ndarray) -> np.ndarray:
    out = np.maximum(profiles, FLOOR)
    return out / out.sum(axis=-1, keepdims=True)


@dataclass
class Draw:
    """Sequences drawn from a proposal, with the outcome of every instruction."""

    sequences: np.ndarray  # (N, T) uint8
    outcomes: np.ndarray  # (N, n) int8; slot 0 is W_SAME by convention, the last slot READ
    component: np.ndarray  # (N,) -1 for the target, else the profile index
    end: np.ndarray  # (N,) the window's read slot (-1 for the target)


def sample(target: Target, proposal: Proposal, num: int, rng: np.random.Generator) -> Draw:
    """``num`` validated sequences from ``proposal`` at the target's length."""
    length = target.dist.length
    n = length // 2
    k = len(proposal.shares)
    component = np.where(rng.random(num) < proposal.defensive, -1,
                         rng.choice(k, size=num, p=proposal.shares / proposal.shares.sum()))
    end = np.where(component >= 0, rng.integers(1, n, size=num), -1)
    slots = np.arange(n)
    dist = end[:, None] - slots[None, :]  # distance to the window's read (window slots: > 0)
    in_window = (component[:, None] >= 0) & (dist > 0)
    buckets = bucket_of(np.maximum(dist, 1))
    probs = np.broadcast_to(target.probs, (num, n, 5)).copy()
    rows = np.nonzero(in_window)
    probs[rows] = proposal.profiles[component[rows[0]], buckets[rows]]
    probs[(component[:, None] >= 0) & (dist < 0)] = proposal.after
    cum = np.cumsum(probs, axis=2)
    u = rng.random((num, n, 1))
    outcomes = np.minimum((u > cum).sum(axis=2), 4).astype(np.int8)
    planted = (component >= 0) & (end < n - 1)
    outcomes[planted, end[planted]] = READ
    outcomes[:, 0], outcomes[:, -1] = W_SAME, READ
    first_bit = (rng.random(num) < 0.5).astype(np.uint8)
    return Draw(_sequences(outcomes, first_bit), outcomes, component, end)


def _sequences(outcomes: np.ndarray, first_bit: np.ndarray) -> np.ndarray:
    """Compact strings from relative outcomes: a write of the other value flips the value in force."""
    num, n = outcomes.shape
    flips = (outcomes == W_DIFF).astype(np.uint8)
    value = (first_bit[:, None] + np.cumsum(flips, axis=1)) % 2  # value in force after each slot
    before = np.concatenate([first_bit[:, None], value[:, :-1]], axis=1)  # in force before each slot
    instr = np.choose(outcomes, [language.W, language.W, language.R, language.I, language.I]).astype(np.uint8)
    data = np.where((outcomes == W_DIFF) | (outcomes == I_DIFF), 1 - before, before).astype(np.uint8)
    data[:, 0] = first_bit
    arr = np.empty((num, 2 * n), dtype=np.uint8)
    arr[:, 0::2] = instr
    arr[:, 1::2] = data + language.ZERO
    language.validate(arr, alphabet=2)
    return arr


def outcomes_of(sequences: np.ndarray) -> np.ndarray:
    """The relative outcome of every instruction of legal sequences (inverse of sampling)."""
    instr, data = sequences[:, 0::2], sequences[:, 1::2]
    last = language.last_index(instr == language.W)
    prev_write = np.concatenate([np.zeros_like(last[:, :1]), last[:, :-1]], axis=1)  # latest write before slot
    before = np.take_along_axis(data, prev_write, axis=1)
    same = data == before
    out = np.where(instr == language.W, np.where(same, W_SAME, W_DIFF),
                   np.where(instr == language.R, READ, np.where(same, I_SAME, I_DIFF))).astype(np.int8)
    out[:, 0] = W_SAME
    return out


# ----------------------------------------------------------------------------- weights
def log_prefix_ratio(target: Target, proposal: Proposal, outcomes: np.ndarray, chunk: int = 32) -> np.ndarray:
    """(N, n): log q(x_1..j) / p(x_1..j) for every slot j (0 at slot 0), exactly.

    For window profile k ending at slot e, the ratio through slot j is the product over window
    slots i <= min(j, e - 1) of profile_k[bucket(e - i), o_i] / p(o_i), times 1 / p_r once j >= e
    when the read at e was planted (and 0 if slot e is not a read).
    """
    num, n = outcomes.shape
    log_p = np.log(target.probs)
    log_ratio = np.log(proposal.profiles) - log_p  # (K, B, 5)
    slots = np.arange(n)
    e_idx = np.arange(1, n)  # window read slots
    dist = e_idx[:, None] - slots[None, :]  # (E, n)
    window = (dist > 0) & (slots[None, :] >= 1) & (slots[None, :] <= n - 2)
    bucket = bucket_of(np.maximum(dist, 1))
    planted = e_idx <= n - 2
    log_share = np.log(proposal.shares) - math.log(n - 1)
    log_after = np.log(proposal.after) - log_p
    middle = (slots >= 1) & (slots <= n - 2)
    out = np.zeros((num, n))
    for lo in range(0, num, chunk):
        o = outcomes[lo : lo + chunk].astype(np.int64)
        m = o.shape[0]
        terms = []
        forced = np.where(o[:, e_idx] == READ, -math.log(target.dist.p_read), -np.inf)  # (m, E)
        forced = np.where(planted[None, :], forced, 0.0)
        after = slots[None, None, :] >= e_idx[None, :, None]  # (1, E, n): the planted read is in the prefix
        # slots after the window's read follow ``after``: sum over e < i <= j = A[j] - A[e]
        tail = np.cumsum(np.where(middle[None, :], log_after[o], 0.0), axis=1)  # (m, n)
        tail = np.where(after, tail[:, None, :] - tail[:, e_idx][:, :, None], 0.0)  # (m, E, n)
        forced = forced[:, :, None] + tail
        for k in range(log_ratio.shape[0]):
            step = log_ratio[k][bucket[None, :, :], o[:, None, :]]  # (m, E, n)
            step = np.where(window[None], step, 0.0)
            cum = np.cumsum(step, axis=2) + np.where(after, forced, 0.0)
            terms.append(cum + log_share[k])
        mix = _logsumexp(np.concatenate(terms, axis=1), axis=1)  # (m, n): log sum_k,e share * ratio
        out[lo : lo + m] = np.logaddexp(math.log(proposal.defensive), math.log1p(-proposal.defensive) + mix)
    out[:, 0] = 0.0
    return out


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(top, axis=axis) + np.log(np.sum(np.exp(a - top), axis=axis))


def read_weights(target: Target, proposal: Proposal, sequences: np.ndarray,
                 outcomes: np.ndarray | None = None) -> tuple[language.Reads, np.ndarray]:
    """Every read of the sequences and its weight p(prefix) / q(prefix), in read order."""
    reads = language.extract_reads(sequences)
    outcomes = outcomes_of(sequences) if outcomes is None else outcomes
    log_q_over_p = log_prefix_ratio(target, proposal, outcomes)
    slot = (reads.position - 1) // 2
    return reads, np.exp(-log_q_over_p[reads.seq_index, slot])


# ----------------------------------------------------------------------------- the estimate
@dataclass(frozen=True)
class Estimate:
    target: str
    rate: float
    ci95: tuple[float, float]
    std_error: float
    sequences: int
    reads: int
    errors: int  # wrong reads seen (under the proposal)
    hits: int  # sequences with at least one wrong read
    effective_sequences: float  # Kish effective sample size of the failing reads' weights
    upper95_exact: float  # conservative bound valid with any number of hits
    reliable: bool  # hits >= MIN_HITS

    def as_dict(self) -> dict:
        return {"target": self.target, "rate": self.rate, "ci95": list(self.ci95), "std_error": self.std_error,
                "sequences": self.sequences, "reads": self.reads, "errors": self.errors, "hits": self.hits,
                "effective_failing_reads": self.effective_sequences, "upper95_exact": self.upper95_exact,
                "reliable": self.reliable}


def estimate(target: Target, defensive: float, seq_index: np.ndarray, wrong: np.ndarray, weight: np.ndarray,
             num_sequences: int, length: int) -> Estimate:
    """The unbiased estimate and its intervals from per-read verdicts and weights (see the module docstring)."""
    from scipy.stats import t as student

    from ffbench.metrics import clopper_pearson

    wrong = np.asarray(wrong, dtype=bool)
    y = np.bincount(seq_index, weights=np.where(wrong, weight, 0.0), minlength=num_sequences)
    expected = target.expected_reads()
    n = num_sequences
    mean = float(y.mean()) if n else math.nan
    se = float(y.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf
    half = float(student.ppf(0.975, max(n - 1, 1))) * se
    hits = int(np.count_nonzero(y > 0))
    w_fail = weight[wrong]
    ess = float(w_fail.sum() ** 2 / np.sum(w_fail**2)) if w_fail.size else 0.0
    n_max = length // 2 - 1
    bound = n_max / defensive * clopper_pearson(hits, n)[1] / expected if n else 1.0
    return Estimate(target.name, mean / expected, (max(0.0, (mean - half) / expected), (mean + half) / expected),
                    se / expected, n, int(seq_index.size), int(wrong.sum()), hits, ess, min(1.0, bound),
                    hits >= MIN_HITS)


def iid_comparison(rate: float, width: float, reads: int) -> dict:
    """What i.i.d. sampling would give: the exact interval of ``reads`` reads at this rate, and the
    reads i.i.d. sampling needs for an interval as narrow as ``width`` (Clopper-Pearson at the expected count)."""
    if not rate > 0 or not width > 0:
        return {"reads": reads, "ci95_width": None, "reads_for_same_width": None, "read_ratio": None}
    w_same = _cp_width(rate, reads)
    lo, hi = 1.0, 1e15
    for _ in range(200):  # bisection on log(reads): the width falls monotonically with reads
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if _cp_width(rate, mid) > width else (lo, mid)
    return {"reads": reads, "expected_errors": rate * reads, "ci95_width": w_same, "reads_for_same_width": hi,
            "read_ratio": hi / reads if reads else None}


def _cp_width(rate: float, n: float) -> float:
    """Clopper-Pearson 95% width at the (possibly fractional) expected error count rate * n."""
    from scipy.special import betaincinv

    k = rate * n
    low = 0.0 if k <= 0 else float(betaincinv(k, n - k + 1, 0.025))
    high = float(betaincinv(k + 1, max(n - k, 1e-9), 0.975))
    return high - low


# ----------------------------------------------------------------------------- cross-entropy step
def elite(margin: np.ndarray, wrong: np.ndarray) -> np.ndarray:
    """The reads the next proposal is fitted to: every wrong read, topped up to ELITE reads with the
    lowest margins (near misses share the contexts of failures)."""
    signed = np.where(wrong, -np.inf, np.nan_to_num(margin, nan=np.inf))
    chosen = np.zeros(signed.size, dtype=bool)
    chosen[np.argsort(signed, kind="stable")[:ELITE]] = True
    return chosen | np.asarray(wrong, dtype=bool)


def update(target: Target, proposal: Proposal, outcomes: np.ndarray, reads: language.Reads, weight: np.ndarray,
           elite: np.ndarray) -> Proposal:
    """One cross-entropy (EM) step: profiles and shares refit to the elite reads' weighted prefixes."""
    k, n_buckets, _ = proposal.profiles.shape
    chosen = np.flatnonzero(elite)
    if chosen.size == 0:
        return proposal
    w = weight[chosen]
    w = w / w.sum() * (w.sum() ** 2 / np.sum(w**2))  # scaled to the Kish effective sample size
    counts = np.zeros((k, n_buckets, 5))
    resp_total = np.zeros(k)
    log_ratio = np.log(proposal.profiles) - np.log(target.probs)
    n = outcomes.shape[1]
    for weight_j, j in zip(w, chosen):
        s, e = int(reads.seq_index[j]), int((reads.position[j] - 1) // 2)
        window = np.arange(1, min(e, n - 1))
        if window.size == 0:
            continue
        o = outcomes[s, window].astype(np.int64)
        b = np.minimum(bucket_of(e - window), n_buckets - 1)
        log_resp = np.log(proposal.shares) + np.array([log_ratio[c][b, o].sum() for c in range(k)])
        resp = np.exp(log_resp - log_resp.max())
        resp /= resp.sum()
        resp_total += weight_j * resp
        for c in range(k):
            np.add.at(counts[c], (b, o), weight_j * resp[c])
    fit = (counts + SHRINK * target.probs) / (counts.sum(axis=2, keepdims=True) + SHRINK)
    profiles = thin_far(STEP * fit + (1 - STEP) * proposal.profiles)
    shares = STEP * (resp_total + 1.0) / (resp_total.sum() + k) + (1 - STEP) * proposal.shares
    return Proposal(proposal.defensive, shares / shares.sum(), profiles, proposal.after)
