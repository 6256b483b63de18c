"""What a hunt writes: ``glitches.parquet`` (replayable by ``ffbench run --data``) and ``hunt.json``.

``glitches.parquet`` is the ``text`` layout, one row per confirmed glitching sequence, with
``suite`` = "hunt" and the stress columns (:data:`ffbench.stress.COLUMNS`) where they apply:
``family`` always; ``point`` and the stress parameters for an unmutated draw of a stress family
point; ``distance``, ``density`` and ``decoys`` for an unmutated ``planted`` draw. Further columns:
``arm`` (the family point that produced the row or its ancestor), ``params`` (that point's
parameters, JSON), ``origin`` (explore | exploit | estimate), ``mutations`` and ``moves`` (the
local-search moves from that ancestor), ``failing_reads`` and ``failing_positions`` (read indices
and character positions of the reads wrong in both scorings), ``margins`` and ``rescored_margins``
(log p(target) - log p(other) of those reads in each scoring), ``failing_write_distance``,
``min_margin``, ``reads`` (reads in the sequence), ``round`` and ``found_after_reads``.
"""

from __future__ import annotations

import datetime as _dt
import json

import numpy as np

from ffbench import language, stress, tasks
from ffbench.metrics import clopper_pearson, zero_error_bound


def write_glitches(path, glitches: list[dict], length: int) -> None:
    import pyarrow as pa

    from ffbench import datafiles
    from ffbench.hunt import families

    arr = language.to_array([g["text"] for g in glitches])
    stress_cols: dict[str, list] = {name: [] for name in stress.COLUMNS}
    for g in glitches:
        fam = families.FAMILIES.get(g["family"])
        if g["origin"] == "explore" and fam is not None:
            from ffbench.stress import Params

            values = fam.columns(Params(g["params"].items()))
        else:
            values = {"family": g["family"], "point": None}
        for name in stress.COLUMNS:
            stress_cols[name].append(values.get(name))
    columns = {"suite": pa.array(["hunt"] * len(glitches), pa.string()), **stress.arrow_columns(stress_cols)}
    ints = pa.list_(pa.int64())
    floats = pa.list_(pa.float64())
    columns.update({
        "arm": pa.array([g["point"] for g in glitches], pa.string()),
        "params": pa.array([json.dumps(g["params"], sort_keys=True) for g in glitches], pa.string()),
        "origin": pa.array([g["origin"] for g in glitches], pa.string()),
        "mutations": pa.array([g["mutations"] for g in glitches], pa.int64()),
        "moves": pa.array([g["moves"] for g in glitches], pa.list_(pa.string())),
        "failing_reads": pa.array([g["failing_reads"] for g in glitches], ints),
        "failing_positions": pa.array([g["failing_positions"] for g in glitches], ints),
        "margins": pa.array([g["margins"] for g in glitches], floats),
        "rescored_margins": pa.array([g["rescored_margins"] for g in glitches], floats),
        "failing_write_distance": pa.array([g["write_distance"] for g in glitches], ints),
        "min_margin": pa.array([_min(g["margins"]) for g in glitches], pa.float64()),
        "reads": pa.array([g["reads"] for g in glitches], pa.int64()),
        "round": pa.array([g["round"] for g in glitches], pa.int64()),
        "found_after_reads": pa.array([g["found_after_reads"] for g in glitches], pa.int64()),
    })
    datafiles.write_sequences(path, [datafiles.Chunk(arr, columns)])


def _min(values: list[float]) -> float:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(min(finite)) if finite else float("nan")


# ----------------------------------------------------------------------------- summary
def summary(cfg, state: dict, bandit, estimate: dict | None, version: str) -> dict:
    spent = state["spent"]
    glitches = state["glitches"]
    scored = spent["reads"] + spent["rescored_reads"]
    tokens = spent["tokens"] + spent["rescored_tokens"]
    failing_reads = sum(len(g["failing_reads"]) for g in glitches)
    out = {
        "model": cfg.model,
        "fingerprint": state["identity"].get("model", {}),
        "ffbench_version": version,
        "created": state["created"],
        "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": cfg.as_dict(),
        "stop_reason": state.get("stop_reason") or "in progress",
        "budget": {"reads": cfg.budget, "tokens": cfg.budget_tokens},
        "spent": {**spent, "rounds": state["round"]},
        "glitches": {
            "distinct": len(glitches),
            "failing_reads": failing_reads,
            "unconfirmed": state.get("unconfirmed", 0),
            "per_scored_read": len(glitches) / scored if scored else None,
            "per_million_tokens": len(glitches) / tokens * 1e6 if tokens else None,
            "by_origin": _count(g["origin"] for g in glitches),
            "shortest": _shortest(glitches),
        },
        "families": origin_yields(state["origins"]) if "origins" in state else family_yields(bandit, glitches),
        "iid": iid_yield(cfg, state, len(glitches), failing_reads, scored),
    }
    if "map" in state:
        from ffbench.hunt import parts

        mp = parts.for_task(getattr(cfg, "task", None))
        out["map"] = mp.summary(mp.atlas(state["map"]), cfg.length)
        out["shapes"] = sorted(state["shapes"].values(),
                               key=lambda e: (-e["glitches"] - e.get("containing", 0), e["length"], e["shape"]))
        if mp.lines:  # the stress tolerance lines are the flip-flop language's
            from ffbench.hunt import lines

            out["lines"] = lines.check(cfg, state)
            out["contradictions"] = out["lines"].pop("contradictions")
    if estimate is not None:
        out["estimate"] = estimate
    return out


def origin_yields(origins: dict) -> list[dict]:
    """The map search's yields per kind of candidate (cover, refine, elite), in the rows of
    :func:`family_yields` (``family`` = ``map:<origin>``)."""
    out = []
    for name, o in origins.items():
        if not o["reads"]:
            continue
        out.append({"family": f"map:{name}", "points": 0, "reads": o["reads"], "sequences": o["sequences"],
                    "wrong_reads": o["errors"], "glitches": o["glitches"], "best_point": None,
                    "glitches_per_read": o["glitches"] / o["reads"],
                    "ci95": list(clopper_pearson(o["glitches"], o["reads"]))})
    out.sort(key=lambda r: r["family"])
    return out


def _count(values) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _shortest(glitches: list[dict]) -> dict | None:
    """The glitch whose earliest failing read comes first: the shortest failing prefix found."""
    if not glitches:
        return None
    g = min(glitches, key=lambda g: (min(g["failing_positions"]), g["text"]))
    pos = min(g["failing_positions"])
    return {"text": g["text"], "prefix": g["text"][: pos + 1], "position": pos, "family": g["family"],
            "arm": g["point"], "origin": g["origin"]}


def family_yields(bandit, glitches: list[dict]) -> list[dict]:
    """Per family (and the local search): reads, wrong reads, glitches found, and the best point."""
    rows: dict[str, dict] = {}
    for label, fam in bandit.families.items():
        s = bandit.stats[label]
        row = rows.setdefault(fam, {"family": fam, "points": 0, "reads": 0, "sequences": 0, "wrong_reads": 0,
                                    "glitches": 0, "best_point": None})
        row["points"] += 1
        row["reads"] += int(s.reads)
        row["sequences"] += s.sequences
        row["wrong_reads"] += s.errors
        row["glitches"] += s.glitches
        best = row["best_point"]
        if s.glitches and (best is None or (s.glitches, -s.reads) > (best["glitches"], -best["reads"])):
            row["best_point"] = {"point": label, "reads": int(s.reads), "glitches": s.glitches}
    out = []
    for row in rows.values():
        if not row["reads"]:
            continue
        row["glitches_per_read"] = row["glitches"] / row["reads"]
        row["ci95"] = list(clopper_pearson(row["glitches"], row["reads"]))
        out.append(row)
    out.sort(key=lambda r: -r["glitches_per_read"])
    roots = _count(g["family"] for g in glitches if g["origin"] == "exploit")
    for row in out:
        if row["family"] != "exploit":
            row["exploit_glitches_descended"] = roots.get(row["family"], 0)
    return out


def iid_yield(cfg, state: dict, glitches: int, failing_reads: int, scored: int) -> dict:
    """The i.i.d. suites' error rate for this model at this length and rendering (a shipped reference run
    of the same builtin, or ``cfg.iid``), the glitches they would find in the same number of reads, and
    the hunt's yield over theirs."""
    from ffbench import runs
    from ffbench.errors import FFBenchError

    ref = getattr(cfg, "iid", None)
    if ref is None:
        provider, _, name = cfg.model.partition("/")
        if provider == "ffbench" and name in runs.shipped_references():
            ref = f"ffbench/{name}"
    if ref is None:
        return {"reference": None, "reason": "no i.i.d. run of this model: run 'ffbench run --suite paper' and pass "
                                              "its directory with --iid to compare"}
    try:
        res = runs.load(ref)
    except FFBenchError as exc:
        return {"reference": ref, "reason": str(exc)}
    render_name = cfg.render.rsplit("/", 1)[-1].removesuffix(".yaml").removesuffix(".yml")
    task = getattr(cfg, "task", None)
    iid_suites = language.SUITES if task is None else \
        {name for name, s in tasks.get(task).suites.items() if s.p is None}  # the task's i.i.d. presets
    variant = "" if task is None else f"task={task}"
    suites = []
    hunt_rate = glitches / scored if scored else 0.0
    for c in res.results:
        if c.length != cfg.length or c.suite not in iid_suites or c.scoring != "choice" \
                or (c.variant or "") != variant or c.render != render_name:
            continue
        row = {"suite": c.suite, "reads": c.reads, "errors": c.errors, "rate": c.errors / c.reads if c.reads else None,
               "ci95": list(c.ci95), "expected_errors_same_reads": c.errors / c.reads * scored if c.reads else None}
        if c.errors:
            row["yield_ratio"] = hunt_rate / (c.errors / c.reads)
            row["failing_read_ratio"] = (failing_reads / scored) / (c.errors / c.reads) if scored else None
        else:
            bound = zero_error_bound(c.reads)
            row["yield_ratio_at_least"] = hunt_rate / bound
            row["note"] = f"0 errors in {c.reads:,} i.i.d. reads (rate < {bound:.1e} at 95%)"
        suites.append(row)
    if not suites:
        return {"reference": ref, "reason": f"{ref} has no i.i.d. suite cell at T={cfg.length} rendered {render_name}"}
    return {"reference": ref, "length": cfg.length, "hunt_glitches_per_read": hunt_rate, "suites": suites}


# ----------------------------------------------------------------------------- the lines the CLI prints
def format_summary(summary: dict, out: str) -> str:
    cfg, spent, g = summary["config"], summary["spent"], summary["glitches"]
    lines = []
    est = summary.get("estimate")
    if est is not None:
        lines += _estimate_lines(est, spent)
    else:
        lines.append(f"hunt of {cfg['model']}{' on --task ' + cfg['task'] if cfg.get('task') else ''} at T={cfg['length']}: {g['distinct']:,} distinct glitching sequence"
                     f"{'' if g['distinct'] == 1 else 's'} ({g['failing_reads']:,} wrong reads) in "
                     f"{spent['reads']:,} scored reads + {spent['rescored_reads']:,} re-scored to confirm")
        if g["per_scored_read"] is not None:
            lines.append(f"  {g['per_scored_read']:.3g} glitches per scored read, {g['per_million_tokens']:,.0f} per "
                         "million scored tokens")
        iid = summary.get("iid") or {}
        for row in iid.get("suites", []):
            if "yield_ratio" in row:
                lines.append(f"  i.i.d. {row['suite']} ({row['errors']:,} wrong in {row['reads']:,} reads of "
                             f"{iid['reference']}): {row['expected_errors_same_reads']:.3g} expected in as many reads;"
                             f" the hunt's yield is {row['yield_ratio']:,.3g}x")
            elif "yield_ratio_at_least" in row:
                lines.append(f"  i.i.d. {row['suite']}: {row['note']}; the hunt's yield is at least "
                             f"{row['yield_ratio_at_least']:,.0f}x")
        if iid.get("reason"):
            lines.append(f"  i.i.d. comparison: {iid['reason']}")
        for row in summary["families"]:  # every family (at most seven), with the reads each got
            lines.append(f"  {row['family']}: {row['glitches']:,} glitches in {row['reads']:,} reads "
                         f"({row['glitches_per_read']:.3g} per read)")
        amap = summary.get("map")
        if amap is not None:
            shapes = summary.get("shapes") or []
            lines.append(f"  map: {amap['cells_tried']:,} cells tried, {amap['cells_failing']:,} with a confirmed "
                         f"wrong read; {len(shapes):,} minimal shape{'' if len(shapes) == 1 else 's'} "
                         f"({spent.get('shrink_reads', 0):,} reads spent shrinking)")
            for sh in shapes[:SHAPES_PRINTED]:
                held = f", {sh['containing']} more holding it" if sh.get("containing") else ""
                lines.append(f"    {_clip(sh['shape'])}  ({sh['glitches']} shrunk glitch"
                             f"{'' if sh['glitches'] == 1 else 'es'}{held}{'' if sh['minimal'] else ', not minimal'})")
            held_corners = [c for c in amap.get("corners", []) if c["reads"]]
            if held_corners:  # the named corners of known failures (ffbench.hunt.corners), wrong/reads
                lines.append("  corners (wrong/reads): " + ", ".join(f"{c['name']} {c['errors']}/{c['reads']}"
                                                                     for c in held_corners))
        lines += _line_lines(summary)
        short = g.get("shortest")
        if short:
            lines.append(f"  shortest failing prefix ({short['position'] + 1} characters, {short['arm']}): "
                         f"{_clip(short['prefix'])}")
    lines.append(f"hunt directory: {out} ({_stopped(summary['stop_reason'], cfg)})")
    if g["distinct"]:
        task = f" --task {cfg['task']}" if cfg.get("task") else ""
        lines.append(f"next: ffbench run --model {cfg['model']}{task} --data {out}/glitches.parquet   (every glitch replays)")
    return "\n".join(lines)


SHAPES_PRINTED = 8
CONTRADICTIONS_PRINTED = 3


def _line_lines(summary: dict) -> list[str]:
    """The tolerance lines the map checked, and the reads that contradict them."""
    checked = summary.get("lines")
    if checked is None:
        return []
    if not checked["checked"]:
        return [f"  tolerance lines: {checked['reason']}"] if checked.get("reason") else []
    bad = [c for c in checked["checked"] if c["contradicting"]]
    claimed = sum(c["claimed"] for c in checked["checked"])
    unchecked = checked.get("unchecked", [])
    out = [f"  tolerance lines of {checked['source']}: {len(checked['checked'])} checked, {claimed:,} of the hunt's "
           f"reads in a line's claim; {len(bad)} contradicted"
           + (f" ({sum(c['contradicting'] for c in bad):,} wrong reads)" if bad else "")
           + (f"; {len(unchecked)} not checkable (hunt.json lines.unchecked says why)" if unchecked else "")]
    examples = {}
    for c in summary.get("contradictions", []):
        examples.setdefault(c["line"], c)
    for row in bad[:CONTRADICTIONS_PRINTED]:  # each contradicted line once, with its first wrong read
        out.append(f"    contradicts {row['line']}")
        c = examples.get(row["line"])
        if c is not None:
            out.append(f"      {row['contradicting']:,} wrong read{'' if row['contradicting'] == 1 else 's'}, e.g. at "
                       f"position {c['position']}: {_clip(c['text'][: c['position'] + 1])}")
    return out


def _stopped(reason: str, cfg: dict) -> str:
    """Why the hunt stopped, in words (``stop_reason`` in hunt.json)."""
    if reason == "budget":
        return f"stopped: the --budget of {cfg['budget']:,} reads is spent; a larger --budget continues it"
    if reason == "token budget":
        return f"stopped: the --budget-tokens of {cfg['budget_tokens']:,} tokens is spent"
    if reason == "exhausted":
        return "stopped: no new candidate fits the reads left in the budget"
    return reason


def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3):]


def _surrogate_lines(head: str, est: dict, result: dict) -> list[str]:
    low, high = result["ci95"]
    lines = [(f"{head} ({est['distribution']}): {result['rate']:.3g}, 95% CI [{low:.3g}, {high:.3g}] from "
              f"{result['samples']:,} reads of {est['scored_sequences']:,} i.i.d. sequences ({result['hits']:,} wrong) "
              f"and a learned guess of each read over {est['free_sequences']:,} unscored ones")]
    if result.get("variance_left") is not None:
        lines.append(f"  the guess leaves {result['variance_left']:.1%} of a read's variance")
    if not result["reliable"]:
        lines.append("  few wrong reads: the guess had little to learn from and the normal interval is unreliable")
    iid = est.get("iid_same_reads") or {}
    if iid.get("reads_for_same_width"):
        lines.append(f"  i.i.d. sampling would need {iid['reads_for_same_width']:,.0f} reads for an interval this "
                     f"narrow: {iid['read_ratio']:.3g}x the {iid['reads']:,} reads spent here (fitting included)")
    return lines


def _estimate_lines(est: dict, spent: dict) -> list[str]:
    head = f"estimate of the glitch rate under {est['target']}"
    result = est.get("result")
    if result is None:
        return [f"{head}: not available ({est.get('reason')})"]
    if est.get("method") == "surrogate":
        return _surrogate_lines(head, est, result)
    low, high = result["ci95"]
    lines = [(f"{head} ({est['distribution']}): {result['rate']:.3g}, 95% CI [{low:.3g}, {high:.3g}] from "
              f"{result['samples']:,} reads of the final proposal ({result['hits']:,} wrong) after "
              f"{est['adapt_reads']:,} reads adapting it")]
    if not result["reliable"]:
        lines.append(f"  few failing sequences: the normal interval is unreliable; exact upper bound "
                     f"{result['upper95_exact']:.3g}")
    iid = est.get("iid_same_reads") or {}
    if iid.get("reads_for_same_width"):
        lines.append(f"  i.i.d. sampling would need {iid['reads_for_same_width']:,.0f} reads for an interval this "
                     f"narrow: {iid['read_ratio']:.3g}x the {iid['reads']:,} reads spent here (adapting included)")
    tok = est.get("iid_same_tokens") or {}
    if tok.get("token_ratio"):
        lines.append(f"  in tokens: {tok['tokens_for_same_width']:,.0f} i.i.d. against {tok['tokens_spent']:,} here "
                     f"({tok['token_ratio']:.3g}x): each sample reads its whole prefix for one answer")
    return lines
