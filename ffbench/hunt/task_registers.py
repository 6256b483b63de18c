"""The map search's parts for ``ffbench hunt --task registers``: descriptors of a read, targets, seeds, mutants.

For the read at instruction slot e of a legal registers sequence, of register g, whose answering write
(the most recent write to g) is at slot w and carries the bit b:

``staleness``        e - w: instructions since g was last written (as ``write_distance`` of the reads)
``other_writes``     writes in (w, e) (all to other registers)
``registers_since``  distinct registers written in (w, e)
``own_opposite``     ignores of g in (w, e) carrying 1 - b (the register's own distractors)
``reads_between``    reads in (w, e), of any register
``one_variable_wrong``  1 when the most recent write to any register carries 1 - b (a model holding one
                     variable is wrong here, :func:`ffbench.registers.one_variable_predictions`)
``registers``        K: distinct register names in the sequence
``slot``, ``fraction``  e and e / (n - 1), n = T / 3 instructions

All exact and vectorised (a loop over the at most eight register names, none over slots), checked
against a symbol-by-symbol reference in tests/test_hunt_tasks.py. Candidates come from targets over
these axes, the task's ``stale`` preset, and mutants of the lowest-margin sequences; every one passes
:func:`ffbench.registers.first_violation`.
"""

from __future__ import annotations

import numpy as np

from ffbench import language, registers
from ffbench.hunt import descriptors as desc
from ffbench.hunt import taskmap

W, R, I, ZERO, A = language.W, language.R, language.I, language.ZERO, registers.A
UNIT = registers.UNIT
K_EDGES = (1, 2, 3, 4, 5, 6, 7, 8)
FLAG_EDGES = (0, 1)
MAP_DIMENSIONS: dict[str, tuple] = {
    "staleness": desc.DISTANCE_EDGES,
    "other_writes": desc.SMALL_EDGES,
    "registers_since": (0, 1, 2, 3, 4, 5, 6, 7),
    "own_opposite": desc.SMALL_EDGES,
    "reads_between": desc.SMALL_EDGES,
    "one_variable_wrong": FLAG_EDGES,
    "registers": K_EDGES,
    "fraction": desc.FRACTION_EDGES,
}
NAMES = (*MAP_DIMENSIONS, "slot")
COVER_AXES = ("staleness", "other_writes", "own_opposite", "one_variable_wrong", "registers")
BACKGROUNDS = (0.0, 0.3, 0.6, 0.8, 0.95)
K_CHOICES = (1, 2, 2, 2, 3, 4)  # registers in a built sequence: the shipped references were trained with k = 2



def describe(arr: np.ndarray) -> dict[str, np.ndarray]:
    """Every read of legal registers sequences (row-major, as :func:`ffbench.registers.extract_reads`)."""
    arr = np.atleast_2d(arr)
    op, reg, data = arr[:, 0::3], arr[:, 1::3].astype(np.int64) - A, arr[:, 2::3].astype(np.int64) - ZERO
    n = op.shape[1]
    slots = np.arange(n)
    is_w, is_r = op == W, op == R
    seq, e = np.nonzero(is_r)
    g = reg[seq, e]
    w = registers._last_write(arr)[seq, e]
    answer = data[seq, e]
    c_w, c_r = desc.prefix_counts(is_w), desc.prefix_counts(is_r)
    since = np.zeros(e.size, dtype=np.int64)
    own = np.zeros(e.size, dtype=np.int64)
    named = np.zeros(arr.shape[0], dtype=np.int64)
    for r in range(registers.MAX_REGISTERS):
        mine = reg == r
        named += mine.any(axis=1)
        last_r = np.maximum.accumulate(np.where(is_w & mine, slots, -1), axis=1)
        since += (last_r[seq, e] > w) & (g != r)
        in_force = np.take_along_axis(data, np.maximum(last_r, 0), axis=1)
        c_opp = desc.prefix_counts((op == I) & mine & (last_r >= 0) & (data != in_force))
        own += np.where(g == r, c_opp[seq, e] - c_opp[seq, w + 1], 0)
    last_any = language.last_index(is_w)[seq, e]
    return {
        "seq_index": seq.astype(np.int64),
        "staleness": (e - w).astype(np.int64),
        "other_writes": c_w[seq, e] - c_w[seq, w + 1],
        "registers_since": since,
        "own_opposite": own,
        "reads_between": c_r[seq, e] - c_r[seq, w + 1],
        "one_variable_wrong": (data[seq, last_any] != answer).astype(np.int64),
        "registers": named[seq],
        "fraction": e / max(n - 1, 1),
        "slot": e.astype(np.int64),
    }


def repair(arr: np.ndarray) -> np.ndarray:
    """``arr`` with every read of a written register carrying its latest write's bit (others kept)."""
    out = arr.copy()
    last = registers._last_write(out)
    data = out[:, 2::3]
    fixed = np.take_along_axis(data, np.maximum(last, 0), axis=1)
    reads = (out[:, 0::3] == R) & (last >= 0)
    data[reads] = fixed[reads]
    return out


# ----------------------------------------------------------------------------- targets
def random_target(rng: np.random.Generator, n: int, bins: dict | None = None) -> dict:
    """A target read in a sequence of n instructions: inside the given bins where they fit."""
    bins = bins or {}
    k = taskmap.pick(rng, K_EDGES, 1, 4, bins.get("registers")) if "registers" in bins else \
        K_CHOICES[int(rng.integers(len(K_CHOICES)))]
    others = taskmap.pick(rng, desc.SMALL_EDGES, 0, n - 3, bins.get("other_writes")) if k > 1 else 0
    if k > 1 and "other_writes" not in bins and rng.random() < 0.25:
        others = 0
    since = min(taskmap.pick(rng, (0, 1, 2, 3, 4, 5, 6, 7), min(1, others), min(k - 1, others),
                             bins.get("registers_since")), others)
    own = 0 if "own_opposite" not in bins and rng.random() < 0.5 else \
        taskmap.pick(rng, desc.SMALL_EDGES, 0, max(n - 3 - others, 0), bins.get("own_opposite"))
    own = min(own, max(n - 3 - others, 0))
    reads = 0 if "reads_between" not in bins and rng.random() < 0.5 else \
        taskmap.pick(rng, desc.SMALL_EDGES, 0, max(n - 3 - others - own, 0), bins.get("reads_between"))
    reads = min(reads, max(n - 3 - others - own, 0))
    low = others + own + reads + 1
    staleness = taskmap.pick(rng, desc.DISTANCE_EDGES, low, max(low, n - 2), bins.get("staleness"))
    read_slot = taskmap.fraction_slot(rng, n, bins.get("fraction"), staleness)
    wrong = int(bins["one_variable_wrong"]) if "one_variable_wrong" in bins else int(rng.random() < 0.5)
    return {"read_slot": int(min(read_slot, n - 1)), "staleness": int(staleness), "registers": int(k),
            "other_writes": int(others), "registers_since": int(since), "own_opposite": int(own),
            "reads_between": int(reads), "one_variable_wrong": wrong if others else 0,
            "background": float(BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))])}


def build(t: dict, length: int, rng: np.random.Generator) -> np.ndarray | None:
    """A legal sequence aiming at ``t``: a prefix of the background's density over K registers, the write
    to the read's register, then writes to ``registers_since`` other registers (round robin, the last
    with the bit that makes one variable wrong or right as aimed), own opposite ignores, reads and
    ignores of other registers in random order, the read; ignores and a final read after it."""
    n = length // UNIT
    e = min(t["read_slot"], n - 1)
    w = e - t["staleness"]
    k = t["registers"]
    others, own, reads = t["other_writes"], t["own_opposite"], t["reads_between"]
    if w < 0 or others + own + reads > e - w - 1 or (others and k < 2):
        return None
    g = int(rng.integers(k))
    op = np.full(n, I, dtype=np.uint8)
    reg = rng.integers(0, k, size=n).astype(np.uint8)
    data = (rng.random(n) < 0.5).astype(np.uint8)
    p_i = t["background"]
    if p_i > 0:
        x = rng.random(w)
        op[:w] = np.where(x < p_i, I, np.where(x < p_i + (1 - p_i) * 0.7, W, R))
    op[0] = W
    op[w], reg[w] = W, g
    bit = int(data[w])
    other_regs = [r for r in range(k) if r != g]
    kinds = np.array([W] * others + [I] * own + [R] * reads + [I] * (e - w - 1 - others - own - reads), dtype=np.uint8)
    role = np.array([0] * others + [1] * own + [2] * reads + [3] * (kinds.size - others - own - reads))
    order = rng.permutation(kinds.size)
    kinds, role = kinds[order], role[order]
    between = slice(w + 1, e)
    op[between] = kinds
    regs_between = reg[between].copy()
    bits_between = data[between].copy()
    cycle = other_regs[: max(t["registers_since"], 1)] if other_regs else [g]
    j_w = np.flatnonzero(role == 0)
    regs_between[j_w] = [cycle[i % len(cycle)] for i in range(j_w.size)]
    if j_w.size:
        bits_between[j_w[-1]] = bit ^ t["one_variable_wrong"]
    regs_between[role == 1], bits_between[role == 1] = g, 1 - bit
    filler = role == 3  # ignores: of other registers, or of g with the bit in force
    if other_regs:
        regs_between[filler] = rng.choice(other_regs, size=int(filler.sum()))
    else:
        regs_between[filler], bits_between[filler] = g, bit
    reads_at = np.flatnonzero(role == 2)
    regs_between[reads_at] = g if not other_regs else rng.choice([g, *cycle], size=reads_at.size)
    op[between], reg[between], data[between] = kinds, regs_between, bits_between
    op[e], reg[e] = R, g
    op[n - 1], reg[n - 1] = R, g
    out = registers._assemble(op[None], reg[None], data[None])
    # a read of a register not yet written (in the prefix, or an in-between read of a register written
    # later) becomes an ignore
    last = registers._last_write(out)
    bad = (op[None] == R) & (last < 0)
    out[:, 0::3][bad] = I
    return repair(out)[0]


def preset(length: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A row of the task's ``stale`` preset (a new seed each time)."""
    k = int(rng.integers(2, 5))
    distances = registers.stale_distances(length)
    d = distances[int(rng.integers(len(distances)))]
    filler = ("writes", "ignores")[int(rng.integers(2))]
    rows = registers.stale_reads(length, k, d, filler, num=2, seed=int(rng.integers(2**31)))
    return rows[int(rng.integers(2))], {"preset": "stale", "registers": k, "distance": d, "filler": filler}


def mutate(seq: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str] | None:
    """One random local edit of an instruction before the final read (reads repaired after it)."""
    units = seq.reshape(-1, UNIT).copy()
    n = units.shape[0]
    if n < 3:
        return None
    j = int(rng.integers(1, n - 1))
    used = int(units[:, 1].max()) - A + 1
    move = ("set", "register", "flip", "swap", "shift")[int(rng.integers(5))]
    if move == "set":
        units[j, 0] = (W, R, I)[int(rng.integers(3))]
    elif move == "register":
        units[j, 1] = A + int(rng.integers(min(used + 1, registers.MAX_REGISTERS)))
    elif move == "flip":
        units[j, 2] ^= 1  # '0' <-> '1'
    elif move == "swap" and j + 1 < n - 1:
        units[[j, j + 1]] = units[[j + 1, j]]
    else:
        filler = [[I, units[j, 1], ZERO + int(rng.integers(2))]]
        units = np.concatenate([units[:j], units[j + 1:-1], filler, units[-1:]])
        move = "shift"
    return repair(units.astype(np.uint8).reshape(1, -1))[0], f"{move}@{j}"


def candidate(atlas, length: int, rng: np.random.Generator):
    return taskmap.choose(atlas, length, rng, random_target, build, preset, mutate)


def shape(seq: np.ndarray) -> str:
    return taskmap.shape(seq, UNIT)
