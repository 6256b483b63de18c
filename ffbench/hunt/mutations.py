"""Local moves on a flip-flop sequence that keep it legal: the hunter's exploit step.

From a near miss (a read the model gets right by a small margin) the hunter tries small edits and
keeps those that lower the margin, so it climbs toward a failure before it has seen one. Each move
edits instructions and data values, then every read is repaired to copy the most recent write and
the result is validated by :func:`ffbench.language.validate`; a move that cannot apply (no ignore
to flip, no write to move) returns None.

Moves (``MOVES``), each aimed near the weakest read with probability ``FOCUS``:

``flip_ignore``     flip the data bit of an ignore
``oppose_ignore``   make an ignore carry the opposite of the value in force (a distractor)
``add_write``       turn an ignore into a write (the opposite value, a decoy, or a random one)
``drop_write``      turn a write (not the first instruction) into an ignore
``flip_write``      flip the value of a write (reads after it follow)
``move_write``      swap a write with a neighbouring ignore
``add_read``        turn an ignore into a read
``drop_read``       turn a read (not the last instruction) into an ignore
``stretch``         insert an ignore before the weakest read and drop one elsewhere (runs get longer,
                    the read's write distance grows by one)
"""

from __future__ import annotations

import numpy as np

from ffbench import language
from ffbench.hunt.families import repair

W, R, I, ZERO = language.W, language.R, language.I, language.ZERO
FOCUS = 0.75  # probability that a move lands within WINDOW instructions before the weakest read
WINDOW = 24
MOVES = ("flip_ignore", "oppose_ignore", "add_write", "drop_write", "flip_write", "move_write", "add_read",
         "drop_read", "stretch")


def _pick(rng: np.random.Generator, candidates: np.ndarray, focus_slot: int) -> int | None:
    """A slot among ``candidates``, most often in the window before ``focus_slot``."""
    if candidates.size == 0:
        return None
    near = candidates[(candidates <= focus_slot) & (candidates >= focus_slot - WINDOW)]
    pool = near if near.size and rng.random() < FOCUS else candidates
    return int(pool[rng.integers(pool.size)])


def mutate(seq: np.ndarray, focus_slot: int, rng: np.random.Generator, move: str | None = None):
    """One random legal move on a (T,) uint8 sequence; returns (new sequence, move name) or None."""
    move = move or MOVES[rng.integers(len(MOVES))]
    instr = seq[0::2].copy()
    data = (seq[1::2] - ZERO).astype(np.uint8)
    n = instr.size
    inner = np.arange(1, n - 1)
    ignores = inner[instr[1:-1] == I]
    writes = inner[instr[1:-1] == W]
    reads = inner[instr[1:-1] == R]
    current = data[language.last_index((instr == W)[None])[0]]  # value in force at each slot
    if move in ("flip_ignore", "oppose_ignore", "add_write", "add_read"):
        slot = _pick(rng, ignores, focus_slot)
        if slot is None:
            return None
        if move == "flip_ignore":
            data[slot] ^= 1
        elif move == "oppose_ignore":
            if data[slot] != current[slot]:
                return None  # already a distractor
            data[slot] = 1 - current[slot]
        elif move == "add_write":
            instr[slot] = W
            data[slot] = 1 - current[slot] if rng.random() < 0.5 else rng.integers(2)
        else:
            instr[slot] = R
    elif move in ("drop_write", "flip_write", "move_write"):
        slot = _pick(rng, writes, focus_slot)
        if slot is None:
            return None
        if move == "drop_write":
            instr[slot] = I
        elif move == "flip_write":
            data[slot] ^= 1
        else:
            side = slot + (1 if rng.random() < 0.5 else -1)
            if not (1 <= side <= n - 2) or instr[side] != I:
                return None
            instr[[slot, side]] = instr[[side, slot]]
            data[[slot, side]] = data[[side, slot]]
    elif move == "drop_read":
        slot = _pick(rng, reads, focus_slot)
        if slot is None:
            return None
        instr[slot] = I
    elif move == "stretch":
        protect = min(WINDOW, focus_slot // 2)  # the run being stretched keeps its ignores
        others = ignores[(ignores < focus_slot - protect) | (ignores > focus_slot)]
        if not (1 <= focus_slot <= n - 1) or others.size == 0:
            return None
        drop = int(others[rng.integers(others.size)])
        bit = 1 - current[focus_slot - 1] if rng.random() < 0.5 else rng.integers(2)
        instr, data = _shift_in(instr, data, focus_slot, drop, bit)
    else:
        raise ValueError(f"unknown move {move!r}")
    instr[0], instr[-1] = W, R
    out = np.empty_like(seq)
    out[0::2] = instr
    out[1::2] = repair(instr[None], data[None])[0] + ZERO
    language.validate(out[None], alphabet=2)
    if np.array_equal(out, seq):
        return None
    return out, move


def _shift_in(instr: np.ndarray, data: np.ndarray, at: int, drop: int, bit: int):
    """Insert an ignore carrying ``bit`` just before slot ``at``, removing slot ``drop`` (length kept)."""
    instr_l, data_l = list(instr), list(data)
    del instr_l[drop], data_l[drop]
    at = at - 1 if drop < at else at
    instr_l.insert(at, I)
    data_l.insert(at, bit)
    return np.array(instr_l, dtype=np.uint8), np.array(data_l, dtype=np.uint8)


def neighbours(seq: np.ndarray, focus_slot: int, rng: np.random.Generator, count: int,
               max_moves: int = 3) -> list[tuple[np.ndarray, list[str]]]:
    """Up to ``count`` distinct legal variants, each 1..max_moves random moves away from ``seq``."""
    out, seen = [], {seq.tobytes()}
    attempts = 0
    while len(out) < count and attempts < 20 * count:
        attempts += 1
        child, moves = seq, []
        for _ in range(int(rng.integers(1, max_moves + 1))):
            step = mutate(child, focus_slot, rng)
            if step is not None:
                child, move = step
                moves.append(move)
        key = child.tobytes()
        if moves and key not in seen:
            seen.add(key)
            out.append((child, moves))
    return out
