"""The map checks the model's stress tolerance lines: every scored read that is a read of a stress family,
labelled with that family's parameters, and the lines any of them contradict.

A tolerance line (:func:`ffbench.stress.tolerance`) claims that every read of its family, fixed
parameters, length and positions is right up to an axis value. The hunt's candidates are built
differently, but many of their reads have exactly a family's construction; :func:`labels` finds
them from the read's descriptors (:mod:`ffbench.hunt.descriptors`) and the sequence before it, so
:func:`ffbench.stress.check_line` can take them. A read of the decisive write w (bit b) at slot e of
n = T / 2 instructions is labelled (conservatively: only constructions the family's own generator
could have drawn, its layout at this length included):

``run_blocks`` (k)
    w is followed by exactly k ignores carrying 1 - b, then the read, w is where the family puts a
    block at this n and k, and before w the sequence is the family's tiling: blocks of the same k
    from slot 0 with alternating bits, only ignores between them (the first block: w opens the
    sequence).
``distractor_run`` (density=1.0, write_at=start, k)
    the read is the last instruction, w opens the sequence, only ignores between, of which the last
    k carry 1 - b and the one before them (if any) carries b: k is the strict opposite run.
``distractor_run`` (density=1.0, write_at=adjacent, k)
    the read is the last instruction, w is followed by exactly k ignores carrying 1 - b, and before w
    the sequence is either empty or a write of 1 - b at slot 0 followed by ignores (the stale write).
``write_distance`` (distance)
    the read is the last instruction, only ignores since w, and before w nothing or the stale write
    and ignores; distance = e - w.
``decoy_writes`` (placement, decoys) and ``decoy_run`` (decoys, run)
    the read is the last instruction, w is followed only by ignores carrying 1 - b, and before w
    only ignores and m writes of 1 - b, one of them at slot 0 and no read. ``decoy_run``: the other
    m - 1 right before w (run = e - w - 1); ``decoy_writes``: w at the family's fixed slot (its run
    of (n - 2) // 2), placement ``adjacent`` when the other m - 1 are right before w (such a draw is
    also one of ``spread``'s), else ``spread``.
``reads_in_run`` (gap)
    since w only ignores carrying 1 - b and reads, a read after every ``gap`` of the ignores, the
    read itself after the last ``gap``; w at the family's slot, (n - 1) mod (gap + 1), and before it
    nothing or the stale write and ignores.

``dense_interference`` and the density-0.5 ``distractor_run`` lines are not checked (their reads
cannot be told from the descriptors). The labelled reads are kept in the hunt's state (per family,
parameters and position: reads, wrong reads and up to ``EXAMPLES`` failing sequences), so the lines
are checked when hunt.json is written, against every read of the hunt so far.

The lines come from a finished stress run of the same model at the hunt's length and rendering:
``--lines RUN_DIR``, or by default for an ``ffbench/`` builtin its shipped stress results
(``ffbench/baselines/<name>/stress``).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from ffbench import language, stress
from ffbench.errors import FFBenchError, UsageError

W, R, I, ZERO = language.W, language.R, language.I, language.ZERO
EXAMPLES = 5  # failing sequences kept per labelled key (family, parameters, position)


def checkable(line: dict) -> bool:
    """Whether :func:`labels` recognises the reads of this line's family and fixed parameters."""
    return line["family"] != "dense_interference" and line["fixed"].get("density", 1.0) == 1.0


# ----------------------------------------------------------------------------- where the lines come from
def shipped_stress(model: str) -> Path | None:
    """The shipped stress run of an ``ffbench/`` builtin, if there is one."""
    from ffbench.resources import BASELINES_DIR

    provider, _, name = model.partition("/")
    path = BASELINES_DIR / name / "stress"
    return path if provider == "ffbench" and name and (path / "results.json").is_file() else None


@functools.lru_cache(maxsize=4)  # hunt.json is rewritten after every round: read the run once
def load(model: str, length: int, render_name: str, ref: str | None) -> tuple[str | None, list[dict], str | None]:
    """(source, lines, reason): the tolerance lines (results.json dicts) of a stress run of ``model``
    at T = ``length`` rendered ``render_name``, from ``ref`` (a run directory) or the shipped stress
    run. A ``ref`` of another model, without stress results at this T, or not a run is refused
    (UsageError); without ``ref`` and without a shipped run, no lines and the reason."""
    from ffbench.runs import RunDir

    render_name = render_name.rsplit("/", 1)[-1].removesuffix(".yaml").removesuffix(".yml")
    if ref is None:
        path = shipped_stress(model)
        if path is None:
            return None, [], "no stress run of this model: pass one with --lines RUN_DIR to check its tolerance lines"
        source = f"ffbench/{model.partition('/')[2]} (shipped stress run)"
        res = RunDir(path).load(source, reference=True)
    else:
        if not Path(ref).expanduser().is_dir():
            raise UsageError(f"--lines {ref!r}: not a run directory (a finished 'ffbench run --suite stress')")
        try:
            res = RunDir(Path(ref).expanduser()).load(ref)
        except FFBenchError as exc:
            raise UsageError(f"--lines {ref!r}: {exc}") from None
        source = ref
        if res.model != model:
            raise UsageError(f"--lines {ref!r} is a run of {res.model}, not of {model}: its lines say nothing about "
                             "this model")
    cells = [c for c in res.results if c.suite == "stress" and c.scoring == "choice" and not c.variant]
    here = [c for c in cells if c.length == length and c.render == render_name]
    if not here:
        held = [f"T={t} {r}" for t, r in sorted({(c.length, c.render) for c in cells})]
        if ref is None:
            return source, [], f"the shipped stress run has no cell at T={length} rendered {render_name}"
        raise UsageError(f"--lines {ref!r} holds no stress results at T={length} rendered {render_name} "
                         f"({'it has ' + ', '.join(held) if held else 'no stress cell at all'})")
    lines = [t for c in here for t in c.tolerances if t.get("region") and checkable(t)]
    return source, lines, None


# ----------------------------------------------------------------------------- labelling reads
def _prefix_plain(instr: np.ndarray, data: np.ndarray, w: int, b: int) -> bool:
    """Before w: nothing, or a write of 1 - b at slot 0 and then only ignores (the stale write)."""
    if w == 0:
        return True
    return instr[0] == W and data[0] != b and bool(np.all(instr[1:w] == I))


def _tiled(instr: np.ndarray, data: np.ndarray, w: int, k: int) -> bool:
    """Whether [0, w) is run_blocks' tiling for k: blocks (a write, k ignores of the other bit, a read) from
    slot 0, bits alternating, only ignores between blocks, the last block's bit the opposite of w's."""
    writes = np.flatnonzero(instr[:w + 1] == W)
    if writes[0] != 0 or np.any(data[writes[1:]] == data[writes[:-1]]):
        return False
    for a in writes[:-1]:
        if a + k + 1 >= w or instr[a + k + 1] != R or np.any(instr[a + 1:a + k + 1] != I) \
                or np.any(data[a + 1:a + k + 1] == data[a]):
            return False
    reads = np.flatnonzero(instr[:w] == R)
    return np.array_equal(reads, writes[:-1] + k + 1)


def labels(instr: np.ndarray, data: np.ndarray, e: int) -> list[tuple[str, dict]]:
    """The stress families (with their parameters) whose construction the read at slot ``e`` of one
    sequence (instructions and 0/1 data values, n slots) has. See the module docstring."""
    n = instr.size
    w = int(np.flatnonzero(instr[:e] == W)[-1])
    b = int(data[w])
    ops, vals = instr[w + 1:e], data[w + 1:e]
    opposite = (ops == I) & (vals != b)
    only_ignores = bool(np.all(ops == I))
    pure = bool(np.all(opposite))  # every slot since the write an opposite ignore
    run = int(ops.size - 1 - np.flatnonzero(~opposite)[-1]) if (~opposite).any() else int(ops.size)  # the strict run
    last = e == n - 1
    plain = _prefix_plain(instr, data, w, b)
    out: list[tuple[str, dict]] = []
    if pure and ops.size and w in stress.RunBlocks._blocks(n, ops.size) and (w == 0 or _tiled(instr, data, w, ops.size)):
        out.append(("run_blocks", {"k": ops.size}))
    if last and only_ignores and w == 0:
        out.append(("distractor_run", {"density": 1.0, "write_at": "start", "k": run}))
    if last and pure and plain:
        out.append(("distractor_run", {"density": 1.0, "write_at": "adjacent", "k": ops.size}))
    if last and only_ignores and plain:
        out.append(("write_distance", {"distance": e - w}))
    if ops.size and not np.any(ops == W):
        gap = run
        # the family's layout: the write (n - 1) mod (gap + 1) slots in, a read after every gap ignores
        if gap >= 1 and (ops.size + 1) % (gap + 1) == 0 and plain and w == (n - 1) % (gap + 1):
            slots = np.arange(1, ops.size + 1)
            want_read = slots % (gap + 1) == 0
            if np.array_equal(ops == R, want_read) and bool(np.all(opposite | want_read)):
                out.append(("reads_in_run", {"gap": gap}))
    if last and pure and w > 0 and instr[0] == W and not np.any(instr[:w] == R):
        writes = np.flatnonzero(instr[:w] == W)
        if np.all(data[writes] != b):
            m = int(writes.size)
            adjacent = np.array_equal(writes, np.r_[0, w - (m - 1):w]) if m > 1 else True
            if adjacent and w - (m - 1) > 0:
                out.append(("decoy_run", {"decoys": m, "run": ops.size}))
            slot = (n - 2) - (n - 2) // 2
            if w == slot:
                out.append(("decoy_writes", {"placement": "adjacent" if adjacent else "spread", "decoys": m}))
                if adjacent:
                    out.append(("decoy_writes", {"placement": "spread", "decoys": m}))
    return out


def _key(family: str, params: dict, position: int) -> str:
    return json.dumps({"family": family, **params, "position": position}, sort_keys=True)


def record(store: dict, seq: np.ndarray, slots: np.ndarray, wrong: np.ndarray) -> None:
    """Count the reads of one scored sequence (``slots``: their instruction slots; ``wrong``: wrong in both
    scorings) under every family label they carry; keep up to ``EXAMPLES`` failing sequences per key."""
    instr, data = seq[0::2], (seq[1::2].astype(np.int64) - ZERO)
    text = None
    for e, bad in zip(slots.tolist(), wrong.tolist()):
        for family, params in labels(instr, data, int(e)):
            entry = store.setdefault(_key(family, params, 2 * int(e) + 1), {"reads": 0, "wrong": 0, "examples": []})
            entry["reads"] += 1
            if bad:
                entry["wrong"] += 1
                if len(entry["examples"]) < EXAMPLES:
                    text = text or language.to_strings(seq[None])[0]
                    entry["examples"].append(text)


# ----------------------------------------------------------------------------- checking
def _reads(store: dict, length: int) -> list[dict]:
    """The labelled reads in :func:`ffbench.stress.check_line`'s form (one dict per read; a failing one
    carries its sequence's ``text`` when it was kept)."""
    out = []
    for key, entry in store.items():
        read = {**json.loads(key), "T": length}
        out += [{**read, "wrong": False}] * (entry["reads"] - entry["wrong"])
        texts = entry["examples"] + [None] * (entry["wrong"] - len(entry["examples"]))
        out += [{**read, "wrong": True, "text": t} for t in texts]
    return out


def check(cfg, state: dict) -> dict:
    """hunt.json's ``lines``: the source, per line how many labelled reads fell in its region, how many it
    claims and how many contradict it, and the contradictions (line, read text, position)."""
    try:
        source, lines, reason = load(cfg.model, cfg.length, cfg.render, getattr(cfg, "lines", None))
    except UsageError as exc:  # the run moved or changed since the hunt started: say so, keep the hunt
        return {"source": cfg.lines, "reason": str(exc), "checked": [], "contradictions": []}
    return {"source": source, "reason": reason, **check_lines(lines, state.get("labeled", {}), cfg.length)}


def check_lines(lines: list[dict], store: dict, length: int) -> dict:
    """Each line (results.json form) checked against the labelled reads of ``store`` (:func:`record`)."""
    reads = _reads(store, length)
    checked, contradictions = [], []
    for line in lines:
        result = stress.check_line(line, reads)
        checked.append({"line": line["line"], "family": line["family"], "fixed": line["fixed"],
                        "clean_through": line["clean_through"], "in_region": result.in_region,
                        "claimed": result.claimed, "contradicting": len(result.contradicting)})
        params = (*line["fixed"], line["axis"])
        shown: set = set()
        for r in result.contradicting:
            if r.get("text") is None or (r["text"], r["position"]) in shown:
                continue
            shown.add((r["text"], r["position"]))
            contradictions.append({"line": line["line"], "family": line["family"],
                                   "params": {k: r[k] for k in params}, "position": r["position"], "text": r["text"]})
    return {"labelled_reads": len(reads), "checked": checked, "contradictions": contradictions}
