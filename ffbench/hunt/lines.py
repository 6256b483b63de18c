"""The map checks the model's stress tolerance lines: every scored read of the hunt that falls in a
line's region, labelled with the line's family and parameters, and the lines any of them contradict.

A tolerance line (:func:`ffbench.stress.tolerance`) claims that every read of its region is right up to
an axis value. Each line states its region in terms of the read descriptors
(:func:`ffbench.stress.descriptor_region`: the descriptor that is its axis and conditions on the
others, plus the T and the positions it was measured at), so any read of the hunt, however it was
built, is tested for it: :func:`label_reads` evaluates every region on the exact descriptors of every
read (:func:`ffbench.hunt.descriptors.describe`). The regions contain every read the family itself
draws (tested: each grid read gets its own point's label) and, where the family's construction has
more than the descriptors see, the wider set they can test -- a later ``run_blocks`` block, say, is any
pure run of k opposite ignores right after a write that follows one write of the other bit, whatever
came before. A line claims a read of that region only inside the range its own grid reads had (:func:`envelopes`:
per axis value, the [min, max] of the other :data:`ENVELOPE` descriptors over the grid's reads at that T,
the two bracketing axis values united): a write_distance line measured on 32 draws whose ignores are
about half opposite says nothing about a draw with every ignore opposite. hunt.json counts the
labelled reads outside that range per line (``outside_measured``).

``dense_interference`` and the density-0.5 ``distractor_run`` lines have no descriptor region (their
axis is not a descriptor of a read): hunt.json lists them under ``lines.unchecked`` with the reason.

The labelled reads are kept in the hunt's state (per family, parameters and position: reads, wrong
reads and up to ``EXAMPLES`` failing sequences), so the lines are checked when hunt.json is written,
against every read of the hunt so far.

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


def unchecked_reason(line: dict, length: int) -> str | None:
    """Why the map cannot check this line (None: it can): no region stated, or none in descriptor terms."""
    if not line.get("region"):
        return "the line states no region (its run did not record where its reads were)"
    return stress.descriptor_region(line["family"], line["fixed"], length).get("unchecked")


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
    lines = [t for c in here for t in c.tolerances]
    return source, lines, None


# ----------------------------------------------------------------------------- labelling reads
_NAMESPACE = {"__builtins__": {}, "abs": np.abs}


@functools.lru_cache(maxsize=8)
def regions(length: int) -> tuple[tuple[str, tuple, str, str, tuple[str, ...]], ...]:
    """(family, fixed parameters, axis parameter, axis descriptor, conditions) for every line the grid at
    T = ``length`` gives a descriptor region (the fixed parameters of a family's points, in grid order)."""
    out, seen = [], set()
    for p in stress.grid(length):
        family = stress.FAMILIES[p.family]
        fixed = tuple((k, v) for k, v in p.params.items() if k != family.axis)
        if (p.family, fixed) in seen:
            continue
        seen.add((p.family, fixed))
        region = stress.descriptor_region(p.family, dict(fixed), length)
        if "axis" in region:
            out.append((p.family, fixed, family.axis, region["axis"], tuple(region["where"])))
    return tuple(out)


def in_region(desc: dict, where: tuple[str, ...]) -> np.ndarray:
    """Which reads (descriptor arrays of :func:`ffbench.hunt.descriptors.describe`) satisfy every condition.
    The conditions are ffbench's own (:func:`ffbench.stress.descriptor_region`), never read from a file."""
    ok = np.ones(desc["slot"].size, dtype=bool)
    for cond in where:  # fixed expressions of stress.descriptor_region, never text from a file
        ok &= np.asarray(eval(cond, _NAMESPACE, desc), dtype=bool)
    return ok


def label_reads(arr: np.ndarray) -> list[list[tuple[str, dict]]]:
    """Per read of the (N, T) legal sequences (in :func:`ffbench.language.extract_reads` order), the
    lines' (family, parameters) whose descriptor region holds it."""
    from ffbench.hunt import descriptors

    arr = np.atleast_2d(arr)
    desc = descriptors.describe(arr)
    out: list[list[tuple[str, dict]]] = [[] for _ in range(desc["slot"].size)]
    for family, fixed, axis, name, where in regions(arr.shape[1]):
        for j in np.flatnonzero(in_region(desc, where)).tolist():
            out[j].append((family, {**dict(fixed), axis: int(desc[name][j])}))
    return out


def labels(instr: np.ndarray, data: np.ndarray, e: int) -> list[tuple[str, dict]]:
    """The lines' (family, parameters) whose region holds the read at slot ``e`` of one sequence
    (instructions and 0/1 data values)."""
    seq = np.empty(2 * instr.size, dtype=np.uint8)
    seq[0::2], seq[1::2] = instr, np.asarray(data, dtype=np.int64) + ZERO
    reads = np.flatnonzero(instr == R)
    return label_reads(seq)[int(np.flatnonzero(reads == e)[0])]


# The descriptors besides the axis that the grid's reads of a line spread over (random filler, layout): a
# line claims a read only inside the range its own grid reads had at the bracketing axis values.
ENVELOPE = ("opposite_since_write", "opposite_run", "decoys", "reads_between", "write_distance", "gap_before_write",
            "writes")


def _envelope_values(desc: dict) -> dict[str, np.ndarray]:
    return {name: (np.rint(desc["write_density"] * desc["slot"]).astype(np.int64) if name == "writes"
                   else desc[name]) for name in ENVELOPE}


@functools.lru_cache(maxsize=4)
def envelopes(length: int) -> dict[tuple, dict[str, tuple[int, int]]]:
    """(family, fixed parameters, axis value) -> per :data:`ENVELOPE` descriptor the [min, max] over the
    reads of that grid point at T = ``length`` (the default grid: seed and sequences of the shipped runs)."""
    from ffbench.hunt import descriptors

    out: dict[tuple, dict[str, tuple[int, int]]] = {}
    for p in stress.grid(length):
        family = stress.FAMILIES[p.family]
        fixed = tuple((k, v) for k, v in p.params.items() if k != family.axis)
        if "axis" not in stress.descriptor_region(p.family, dict(fixed), length):
            continue
        values = _envelope_values(descriptors.describe(stress.sample_point(p, length)))
        out[(p.family, fixed, p.params[family.axis])] = {k: (int(v.min()), int(v.max())) for k, v in values.items()}
    return out


def line_envelope(line: dict, length: int) -> list[tuple]:
    """(axis value, per-descriptor range) of the line's grid points, easiest first."""
    fixed = tuple(sorted(line["fixed"].items()))
    return sorted((key[2], box) for key, box in envelopes(length).items()
                  if key[0] == line["family"] and tuple(sorted(key[1])) == fixed)


def measured(read: dict, axis: str, points: list[tuple]) -> bool:
    """Whether a labelled read (with its ``env`` values) lies inside the range the line's own grid reads had
    (``points``: :func:`line_envelope`), on every :data:`ENVELOPE` descriptor, at the axis values bracketing
    its own (the union of the two)."""
    env = read.get("env")
    if env is None:
        return True
    x = read[axis]
    boxes = [box for v, box in points if v <= x][-1:] + [box for v, box in points if v >= x][:1]
    return bool(boxes) and all(min(b[k][0] for b in boxes) <= env[k] <= max(b[k][1] for b in boxes)
                               for k in ENVELOPE)


def _key(family: str, params: dict, position: int, env: dict | None = None) -> str:
    return json.dumps({"family": family, **params, "position": position, **({"env": env} if env else {})},
                      sort_keys=True)


def record(store: dict, seq: np.ndarray, slots: np.ndarray, wrong: np.ndarray) -> None:
    """Count the reads of one scored sequence (``slots``: their instruction slots; ``wrong``: wrong in both
    scorings) under every family label they carry; keep up to ``EXAMPLES`` failing sequences per key."""
    from ffbench.hunt import descriptors

    text = None
    found_all = label_reads(seq)
    if len(found_all) != len(slots):
        raise FFBenchError(f"{len(slots)} verdicts for a sequence of {len(found_all)} reads")
    values = _envelope_values(descriptors.describe(seq[None]))
    for j, (e, bad, found) in enumerate(zip(slots.tolist(), wrong.tolist(), found_all)):
        env = {k: int(v[j]) for k, v in values.items()} if found else None
        for family, params in found:
            entry = store.setdefault(_key(family, params, 2 * int(e) + 1, env), {"reads": 0, "wrong": 0, "examples": []})
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
        return {"source": cfg.lines, "reason": str(exc), "checked": [], "unchecked": [], "contradictions": []}
    return {"source": source, "reason": reason, **check_lines(lines, state.get("labeled", {}), cfg.length)}


def check_lines(lines: list[dict], store: dict, length: int) -> dict:
    """Each line (results.json form) checked against the labelled reads of ``store`` (:func:`record`)."""
    reads = _reads(store, length)
    checked, contradictions, unchecked = [], [], []
    for line in lines:
        reason = unchecked_reason(line, length)
        if reason is not None:
            unchecked.append({"line": line["line"], "family": line["family"], "fixed": line["fixed"], "reason": reason})
            continue
        lo, hi = line["region"]["positions"]
        mine = [r for r in reads if r["family"] == line["family"] and lo <= r["position"] <= hi
                and all(r.get(k) == v for k, v in line["fixed"].items())]
        points = line_envelope(line, length)
        inside = [r for r in mine if measured(r, line["axis"], points)]
        result = stress.check_line(line, inside)
        checked.append({"line": line["line"], "family": line["family"], "fixed": line["fixed"],
                        "region": {"positions": line["region"]["positions"],
                                   **stress.descriptor_region(line["family"], line["fixed"], length)},
                        "clean_through": line["clean_through"], "in_region": result.in_region,
                        "outside_measured": len(mine) - len(inside),
                        "claimed": result.claimed, "contradicting": len(result.contradicting)})
        params = (*line["fixed"], line["axis"])
        shown: set = set()
        for r in result.contradicting:
            if r.get("text") is None or (r["text"], r["position"]) in shown:
                continue
            shown.add((r["text"], r["position"]))
            contradictions.append({"line": line["line"], "family": line["family"],
                                   "params": {k: r[k] for k in params}, "position": r["position"], "text": r["text"]})
    return {"labelled_reads": len(reads), "checked": checked, "unchecked": unchecked,
            "contradictions": contradictions}
