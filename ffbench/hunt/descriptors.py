"""Named descriptors of every read: the coordinates of the hunt's map of the failure surface.

For the read at instruction slot e of a legal sequence of length T (n = T / 2 instructions), with
its *decisive write* w (the last write before e) carrying the bit b:

``opposite_since_write``  ignores in (w, e) carrying 1 - b (wherever they are; reads may interrupt them)
``opposite_run``          the strict run of ignores carrying 1 - b that ends right before the read: it
                          stops at a read, a write or an ignore carrying b (so with reads in between it
                          is the opposite run since the previous read)
``decoys``                writes of 1 - b before w, back to the previous write of b (or the start)
``reads_between``         reads in (w, e)
``write_distance``        e - w (as :attr:`ffbench.language.Reads.write_distance`)
``write_slot``            w, the instructions before the decisive write (0: the write opens the sequence)
``gap_before_write``      the ignores right before w, back to the previous write or read (0 when w follows
                          one or opens the sequence): a block of decoys a few ignores before w is where
                          transformer-mix fails
``slot``                  e, the read's instruction index
``fraction``              e / (n - 1): where in the sequence the read sits (1 = the last instruction)
``length``                T
``write_density``         writes among the instructions before the read: writes in [0, e) / e

These are exact functions of the sequence and the read (vectorised here, checked in the tests
against a symbol-by-symbol reference). :data:`MAP_DIMENSIONS` and :func:`cell_keys` bin them on
log-ish grids into the cells of the hunt's map (:mod:`ffbench.hunt.atlas`).
"""

from __future__ import annotations

import numpy as np

from ffbench import language

W, R, I, ZERO = language.W, language.R, language.I, language.ZERO

NAMES = ("opposite_since_write", "opposite_run", "decoys", "reads_between", "write_distance", "write_slot",
         "gap_before_write", "slot", "fraction", "length", "write_density")

# Bin edges (each bin is [edge_i, edge_i+1); the last is open). Fine where thresholds were seen
# (10-14 opposite ignores on lstm-ref, 34-38 on transformer-ref, 45-52 after ten decoys on transformer-mix).
COUNT_EDGES = (0, 1, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 36, 40, 44, 48, 56, 64, 96, 128, 192, 256, 384, 512)
SMALL_EDGES = (0, 1, 2, 3, 4, 6, 8, 10, 12, 16, 24, 32, 64, 128, 256)
DISTANCE_EDGES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
FRACTION_EDGES = (0.0, 0.25, 0.5, 0.75, 0.999999)  # the last bin is the final instruction
DENSITY_EDGES = (0.0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5)
SLOT_EDGES = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
GAP_EDGES = (0, 1, 2, 4, 7, 9, 16, 64)  # transformer-mix: right at 0, wrong at 2-6 after ten decoys, right from 8

# The map's axes: a cell is one bin on each. ``length`` is fixed within a hunt; ``slot`` is covered by
# ``fraction``.
MAP_DIMENSIONS: dict[str, tuple] = {
    "opposite_since_write": COUNT_EDGES,
    "opposite_run": COUNT_EDGES,
    "decoys": SMALL_EDGES,
    "reads_between": SMALL_EDGES,
    "write_distance": DISTANCE_EDGES,
    "write_slot": SLOT_EDGES,
    "gap_before_write": GAP_EDGES,
    "fraction": FRACTION_EDGES,
    "write_density": DENSITY_EDGES,
}


def _last(mask: np.ndarray) -> np.ndarray:
    """Per row, the index of the most recent True at or before each column, -1 when none."""
    n = mask.shape[1]
    return np.maximum.accumulate(np.where(mask, np.arange(n), -1), axis=1)


def prefix_counts(mask: np.ndarray) -> np.ndarray:
    """c[:, j] = number of True in columns [0, j) (one column more than the input)."""
    out = np.zeros((mask.shape[0], mask.shape[1] + 1), dtype=np.int64)
    np.cumsum(mask, axis=1, out=out[:, 1:])
    return out


def describe(arr: np.ndarray) -> dict[str, np.ndarray]:
    """Every read of an (N, T) array of legal sequences, in the order of
    :func:`ffbench.language.extract_reads` (row-major), as one int or float array per descriptor
    (plus ``seq_index``)."""
    arr = np.atleast_2d(arr)
    instr, data = arr[:, 0::2], (arr[:, 1::2].astype(np.int64) - ZERO)
    n = instr.shape[1]
    is_w, is_r, is_i = instr == W, instr == R, instr == I
    seq, e = np.nonzero(is_r)
    last_w = _last(is_w)
    w = last_w[seq, e]  # slot 0 is always a write, so w >= 0
    b = data[seq, w]
    in_force = np.take_along_axis(data, np.maximum(last_w, 0), axis=1)
    opposite_ignore = is_i & (data != in_force)
    c_opp, c_reads, c_writes = prefix_counts(opposite_ignore), prefix_counts(is_r), prefix_counts(is_w)
    # the strict run: slots back from e - 1 while they are opposite ignores
    not_opp = _last(~opposite_ignore)
    run = (e - 1) - not_opp[seq, e - 1]
    # decoys: writes of 1 - b in (p, w), p the previous write of b before w (-1 if none)
    w_one, w_zero = _last(is_w & (data == 1)), _last(is_w & (data == 0))
    before = np.maximum(w - 1, 0)
    prev_same = np.where(w >= 1, np.where(b == 1, w_one[seq, before], w_zero[seq, before]), -1)
    c_w1, c_w0 = prefix_counts(is_w & (data == 1)), prefix_counts(is_w & (data == 0))
    not_ignore = _last(~is_i)
    gap = np.where(w >= 1, w - 1 - not_ignore[seq, np.maximum(w - 1, 0)], 0)
    opp_writes = np.where(b == 1, c_w0[seq, w] - c_w0[seq, prev_same + 1], c_w1[seq, w] - c_w1[seq, prev_same + 1])
    return {
        "seq_index": seq.astype(np.int64),
        "opposite_since_write": (c_opp[seq, e] - c_opp[seq, w + 1]).astype(np.int64),
        "opposite_run": run.astype(np.int64),
        "decoys": opp_writes.astype(np.int64),
        "reads_between": (c_reads[seq, e] - c_reads[seq, w + 1]).astype(np.int64),
        "write_distance": (e - w).astype(np.int64),
        "write_slot": w.astype(np.int64),
        "gap_before_write": gap.astype(np.int64),
        "slot": e.astype(np.int64),
        "fraction": e / max(n - 1, 1),
        "length": np.full(e.size, 2 * n, dtype=np.int64),
        "write_density": c_writes[seq, e] / e,
    }


def bin_index(values: np.ndarray, edges: tuple) -> np.ndarray:
    """The bin of each value: i with edges[i] <= value < edges[i + 1] (the last bin open; below the
    first edge is bin 0)."""
    return np.clip(np.searchsorted(np.asarray(edges), values, side="right") - 1, 0, len(edges) - 1)


def bin_label(edges: tuple, i: int) -> str:
    """``[14,16)``, ``>=512``; shares as ``.25-.5`` (short enough for a heatmap's column)."""
    if isinstance(edges[0], float):
        def fmt(v):
            return (f"{v:.2f}".rstrip("0").rstrip(".").removeprefix("0") or "0") if v < 0.9999 else "1"
        if i == len(edges) - 1:
            return "last" if edges is FRACTION_EDGES else f">={fmt(edges[i])}"
        return f"{fmt(edges[i])}-{fmt(edges[i + 1])}"
    if i == len(edges) - 1:
        return f">={edges[i]}"
    lo, hi = edges[i], edges[i + 1]
    return str(lo) if hi == lo + 1 else f"[{lo},{hi})"


def cell_keys(desc: dict[str, np.ndarray]) -> np.ndarray:
    """(reads, len(MAP_DIMENSIONS)) bin indices: each read's cell."""
    return np.stack([bin_index(desc[name], edges) for name, edges in MAP_DIMENSIONS.items()], axis=1)


def key_string(key) -> str:
    return ",".join(str(int(k)) for k in key)


def key_labels(key_str: str) -> dict[str, str]:
    """A cell's bins as readable labels, one per map dimension."""
    idx = [int(k) for k in key_str.split(",")]
    return {name: bin_label(edges, i) for (name, edges), i in zip(MAP_DIMENSIONS.items(), idx)}
