"""The map search's parts for ``ffbench hunt --task undo``: descriptors of a read, targets, seeds, mutants.

For the read at instruction slot e of a legal UNDO sequence, with its *answering write* w (the write on
top of the stack at e, :func:`ffbench.undo.trace`), its bit b, and the most recent write l (l >= w):

``retracted``        writes in (w, e): every one of them is undone before the read (as many undos)
``chain``            undos in (l, e): the undos since the most recent write (a retraction chain's depth)
``depth``            the stack's depth at the read (values not undone, the first write included)
``write_distance``   e - w (as :func:`ffbench.undo.extract_reads`)
``reads_between``    reads in (w, e)
``toggle_wrong``     1 when the toggle heuristic (:func:`ffbench.undo.toggle_predictions`) is wrong here
``copy_wrong``       1 when the most recent write's bit is not the answer (copying it is wrong)
``slot``, ``fraction``  e and e / (n - 1)

All exact and vectorised (checked against a symbol-by-symbol reference in tests/test_hunt_tasks.py).
Candidates (:func:`candidate`) are built from targets over these axes, drawn from the task's
``retraction`` preset, or mutated from the lowest-margin sequences; every one passes
:func:`ffbench.undo.first_violation`.
"""

from __future__ import annotations

import numpy as np

from ffbench import language, undo
from ffbench.hunt import descriptors as desc
from ffbench.hunt import taskmap

W, R, I, U, ZERO = language.W, language.R, language.I, undo.U, language.ZERO
DEPTH_EDGES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
FLAG_EDGES = (0, 1)
MAP_DIMENSIONS: dict[str, tuple] = {
    "retracted": desc.SMALL_EDGES,
    "chain": desc.SMALL_EDGES,
    "depth": DEPTH_EDGES,
    "write_distance": desc.DISTANCE_EDGES,
    "reads_between": desc.SMALL_EDGES,
    "toggle_wrong": FLAG_EDGES,
    "copy_wrong": FLAG_EDGES,
    "fraction": desc.FRACTION_EDGES,
}
NAMES = (*MAP_DIMENSIONS, "slot")
COVER_AXES = ("retracted", "chain", "depth", "toggle_wrong", "reads_between")
BACKGROUNDS = (0.0, 0.3, 0.6, 0.8, 0.95)  # the prefix's p_ignore (0: ignores only)



def describe(arr: np.ndarray) -> dict[str, np.ndarray]:
    """Every read of legal UNDO sequences (row-major, as :func:`ffbench.undo.extract_reads`)."""
    arr = np.atleast_2d(arr)
    instr, data = arr[:, 0::2], arr[:, 1::2].astype(np.int64) - ZERO
    n = instr.shape[1]
    tr = undo.trace(arr)
    is_w, is_r, is_u = instr == W, instr == R, instr == U
    seq, e = np.nonzero(is_r)
    w = tr.top_slot[seq, e].astype(np.int64)
    last = language.last_index(is_w)[seq, e].astype(np.int64)
    c_w, c_r, c_u = desc.prefix_counts(is_w), desc.prefix_counts(is_r), desc.prefix_counts(is_u)
    answer = data[seq, e]
    return {
        "seq_index": seq.astype(np.int64),
        "retracted": c_w[seq, e] - c_w[seq, w + 1],
        "chain": c_u[seq, e] - c_u[seq, last + 1],
        "depth": tr.depth[seq, e].astype(np.int64),
        "write_distance": e - w,
        "reads_between": c_r[seq, e] - c_r[seq, w + 1],
        "toggle_wrong": (undo.toggle_predictions(arr) != answer).astype(np.int64),
        "copy_wrong": (data[seq, last] != answer).astype(np.int64),
        "fraction": e / max(n - 1, 1),
        "slot": e.astype(np.int64),
    }


def repair(arr: np.ndarray) -> np.ndarray:
    """``arr`` with every read carrying the value on top of the stack (other symbols kept)."""
    out = arr.copy()
    top = undo.trace(out).top_value
    data = out[:, 1::2]
    data[out[:, 0::2] == R] = (top[out[:, 0::2] == R] + ZERO).astype(np.uint8)
    return out


# ----------------------------------------------------------------------------- targets
def random_target(rng: np.random.Generator, n: int, bins: dict | None = None) -> dict:
    """A target for a read in a sequence of n instructions: inside the given bins where they fit, else
    each count drawn uniformly over its bins (deep chains as common as shallow ones)."""
    bins = bins or {}
    k = taskmap.pick(rng, desc.SMALL_EDGES, 0, (n - 3) // 2, bins.get("retracted"))
    chain = taskmap.pick(rng, desc.SMALL_EDGES, min(1, k), k, bins.get("chain"))
    reads = 0 if "reads_between" not in bins and rng.random() < 0.5 else \
        taskmap.pick(rng, desc.SMALL_EDGES, 0, max(n - 2 - 2 * k, 0), bins.get("reads_between"))
    reads = min(reads, max(n - 2 - 2 * k, 0))
    low = 2 * k + reads + 1
    distance = taskmap.pick(rng, desc.DISTANCE_EDGES, low, max(low, n - 2), bins.get("write_distance"))
    depth = taskmap.pick(rng, DEPTH_EDGES, 1, max(1, n - 1 - distance), bins.get("depth"))
    read_slot = taskmap.fraction_slot(rng, n, bins.get("fraction"), distance + depth - 1)
    toggle = int(bins["toggle_wrong"]) if "toggle_wrong" in bins else int(rng.random() < 0.5)
    return {"read_slot": int(min(read_slot, n - 1)), "distance": int(distance), "retracted": int(k),
            "chain": int(chain), "reads_between": int(reads), "depth": int(depth), "toggle_wrong": toggle if k else 0,
            "background": float(BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))])}


def build(t: dict, length: int, rng: np.random.Generator) -> np.ndarray | None:
    """A legal sequence aiming at ``t``: a legal UNDO prefix of the background's density with enough
    writes for the depth, the answering write, then ``retracted`` writes undone (``chain`` of them in
    one block right before the read, the rest as write-undo pairs), reads and ignores among them, the
    read; ignores and the final read after it. The exact cell is computed from the result."""
    n = length // 2
    e = min(t["read_slot"], n - 1)
    w = e - t["distance"]
    k, chain, reads = t["retracted"], t["chain"], t["reads_between"]
    if w < 0 or 2 * k + reads > e - w - 1:
        return None
    instr = np.full(n, I, dtype=np.uint8)
    data = (rng.random(n) < 0.5).astype(np.uint8)
    bit = int(data[w])
    # the prefix: legal instructions of the background's density, then writes up to the depth wanted
    depth = 0
    p_i = t["background"]
    for j in range(w):
        if j == 0:
            kind = W
        elif p_i == 0.0:
            kind = I
        else:
            x = rng.random()
            kind = I if x < p_i else W if x < p_i + (1 - p_i) * 0.4 else R if x < p_i + (1 - p_i) * 0.6 else U
            if kind == U and depth <= 1:
                kind = I
        instr[j] = kind
        depth += (kind == W) - (kind == U)
    extra = min(max(t["depth"] - 1 - depth, 0), max(w - 1, 0))
    instr[w - extra:w] = W
    instr[w] = W
    # between: (k - chain) write-undo pairs, then chain writes and chain undos, reads and ignores around them
    ops = [W, U] * (k - chain) + [W] * chain + [U] * chain
    room = e - w - 1
    at = np.sort(rng.choice(room, size=len(ops) + reads, replace=False)) if room else np.zeros(0, np.int64)
    structural = np.sort(rng.choice(at.size, size=len(ops), replace=False)) if at.size else at
    is_struct = np.zeros(at.size, dtype=bool)
    is_struct[structural] = True
    instr[w + 1 + at[is_struct]] = ops
    instr[w + 1 + at[~is_struct]] = R
    if k:
        last_write = w + 1 + int(at[is_struct][len(ops) - chain - 1]) if chain else None
        if last_write is not None:
            # the toggle answers bit(last write) ^ (chain parity): aim it right or wrong as the target says
            data[last_write] = bit ^ (chain & 1) ^ t["toggle_wrong"]
    instr[e] = R
    instr[n - 1] = R
    out = np.empty(2 * n, dtype=np.uint8)
    out[0::2], out[1::2] = instr, data + ZERO
    return repair(out[None])[0]


def preset(length: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A row of the task's ``retraction`` preset (a new seed each time): deep chains where the toggle is wrong."""
    depths = undo.retraction_depths(length)
    depth = depths[int(rng.integers(len(depths)))]
    rows = undo.retraction_chains(length, depth, num=2, seed=int(rng.integers(2**31)))
    return rows[int(rng.integers(2))], {"preset": "retraction", "depth": depth}


def mutate(seq: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str] | None:
    """One random local edit of an instruction before the final read (reads repaired after it); the
    caller keeps it only if it is legal."""
    units = seq.reshape(-1, 2).copy()
    n = units.shape[0]
    if n < 3:
        return None
    j = int(rng.integers(1, n - 1))
    move = ("set", "flip", "swap", "shift")[int(rng.integers(4))]
    if move == "set":
        units[j, 0] = (W, R, I, U)[int(rng.integers(4))]
    elif move == "flip":
        units[j, 1] ^= 1  # '0' <-> '1'
    elif move == "swap" and j + 1 < n - 1:
        units[[j, j + 1]] = units[[j + 1, j]]
    else:  # delete slot j, add an ignore before the final read: everything after j moves one step earlier
        units = np.concatenate([units[:j], units[j + 1:-1], [[I, ZERO + int(rng.integers(2))]], units[-1:]])
        move = "shift"
    return repair(units.astype(np.uint8).reshape(1, -1))[0], f"{move}@{j}"


def candidate(atlas, length: int, rng: np.random.Generator):
    return taskmap.choose(atlas, length, rng, random_target, build, preset, mutate)


def shape(seq: np.ndarray) -> str:
    return taskmap.shape(seq, 2)
