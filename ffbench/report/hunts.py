"""The report's hunt section: what ``ffbench hunt`` found, as plain records for the templates.

A hunt directory (:func:`ffbench.report.data.load_hunt`) becomes one :class:`HuntView`: its key
figures (distinct glitches, reads and tokens spent, the overall yield with its exact interval), the
yield of every family with the i.i.d. suites' rates beside them (both as ``hunt.json`` gives them,
and drawn on one log axis), the shortest glitch drawn like the failing reads of a run (the last
write and the failing read highlighted, long stretches elided), a few more glitches per family, and
for an ``--estimate`` hunt the importance-sampling (or ``--estimator surrogate``) estimate beside the interval i.i.d. sampling
would give with the same number of reads. Every number is worded here; every string from the hunt's
files reaches the page through the template engine's autoescaping.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from ffbench import language, metrics, tasks
from ffbench.report import huntmaps
from ffbench.report.data import Hunt, Model
from ffbench.report.figures import Figure, rate_point
from ffbench.report.svg import PALETTE, Plot, Point, Series
from ffbench.report.views import Token, context_tokens

HUNT_COLOR = PALETTE[0]
IID_COLOR = "#8a93a3"


# ----------------------------------------------------------------------------- glitches
@dataclass
class HuntRead:
    """A glitch's failing read, as :func:`ffbench.report.views.context_tokens` draws it."""

    sequence: str
    position: int  # index of the answer digit in the compact string
    target: int
    prediction: int
    write_distance: int


@dataclass
class GlitchRow:
    """One glitching sequence of ``glitches.parquet``, shown by its earliest failing read."""

    row: int  # its row in glitches.parquet: the seq_index of its read when the file is replayed
    family: str
    point: str  # the parameters of the family point that produced it (or its ancestor)
    origin: str
    length: int  # T
    failing: int  # failing reads in the sequence
    reads: int | None  # reads in the sequence
    read: HuntRead
    verdict: str
    margin: str
    rescored: str
    context: list[Token]

    @property
    def prefix(self) -> str:
        """The sequence up to the failing read's answer: all a causal model saw when it failed."""
        return self.read.sequence[: self.read.position + 1]


def _params(point: str | None) -> str:
    """A family point's parameters without the family's name: 'planted(distance=2,at=0.5)' -> 'distance=2, at=0.5'."""
    p = point or ""
    return p[p.index("(") + 1:-1].replace(",", ", ") if "(" in p and p.endswith(")") else p


def _origin(row: dict) -> str:
    origin = str(row.get("origin") or "")
    moves = [str(m) for m in row.get("moves") or []]
    if origin == "exploit" and moves:
        return f"exploit: {len(moves)} move{'' if len(moves) == 1 else 's'} ({', '.join(moves)})"
    return origin


def _read_at(text: str, position: int, task: str | None = None) -> HuntRead:
    """The read whose answer sits at ``position``; a glitch is a choice-scored read answered with
    the other value, so the prediction is the value the target is not. ``task``: the hunt's language
    (its reads and their write distances, ffbench.tasks)."""
    reads = tasks.get(task).extract_reads(language.to_array([text]))
    k = [int(p) for p in reads.position].index(position)
    target = int(reads.target[k])
    return HuntRead(text, position, target, 1 - target, int(reads.write_distance[k]))


def _margin(values, j: int) -> str:
    try:
        v = float(values[j])
    except (TypeError, IndexError, ValueError):
        return ""
    return "" if math.isnan(v) else f"{v:+.3f}"


def glitch_row(index: int, row: dict, task: str | None = None) -> GlitchRow:
    positions = [int(p) for p in row["failing_positions"]]
    j = min(range(len(positions)), key=positions.__getitem__)
    read = _read_at(str(row["text"]), positions[j], task)
    return GlitchRow(index, str(row.get("family") or "?"), _params(row.get("arm")), _origin(row), len(read.sequence),
                     len(positions), None if row.get("reads") is None else int(row["reads"]), read,
                     f"{read.target} → {read.prediction}", _margin(row.get("margins"), j),
                     _margin(row.get("rescored_margins"), j), context_tokens(read, tasks.get(task).unit))


def _first_position(row: dict) -> int:
    return min(int(p) for p in row["failing_positions"])


def pick_examples(rows: list[tuple[int, dict]], k: int) -> list[tuple[int, dict]]:
    """Up to ``k`` glitches, shortest failing prefix first, one per family point before a second
    from any point (the points differ in what they vary, so the first few cover the most)."""
    ordered = sorted(rows, key=lambda ir: (_first_position(ir[1]), ir[0]))
    seen, first, rest = set(), [], []
    for ir in ordered:
        arm = ir[1].get("arm")
        (rest if arm in seen else first).append(ir)
        seen.add(arm)
    return (first + rest)[:k]


@dataclass
class FamilyExamples:
    family: str
    total: int  # glitches of this family in the file
    rows: list[GlitchRow]


def examples(hunt: Hunt, per_family: int, skip: int | None, order: list[str],
             task: str | None = None) -> list[FamilyExamples]:
    """A few glitches of each family (the shortest glitch, row ``skip``, is shown apart), families in
    ``order`` (the yield table's) and then as they first appear in the file."""
    groups: dict[str, list[tuple[int, dict]]] = {}
    for i, row in enumerate(hunt.glitches):
        groups.setdefault(str(row.get("family") or "?"), []).append((i, row))
    names = [f for f in order if f in groups] + [f for f in groups if f not in order]
    out = []
    for name in names:
        rows = [ir for ir in groups[name] if ir[0] != skip]
        out.append(FamilyExamples(name, len(groups[name]),
                                  [glitch_row(i, r, task) for i, r in pick_examples(rows, per_family)]))
    return out


# ----------------------------------------------------------------------------- yields
@dataclass
class YieldRow:
    family: str
    points: int
    reads: int
    sequences: int
    wrong_reads: int
    glitches: int
    rate: str
    ci: str
    best: str
    descended: int | None  # glitches the local search found from this family's sequences


def _rate(glitches: int, reads: int, ci: list | None) -> tuple[str, str]:
    """A yield and its interval: exact two-sided as hunt.json gives it, or for zero the one-sided
    95% bound, as the summary table words zero-error cells."""
    if not reads:
        return "", ""
    if glitches == 0:
        return "0", f"< {metrics.zero_error_bound(reads):.1e} (one-sided)"
    lo, hi = ci if ci else metrics.clopper_pearson(glitches, reads)
    return f"{glitches / reads:.3g}", f"[{lo:.2g}, {hi:.2g}]"


def yield_rows(families: list[dict]) -> list[YieldRow]:
    out = []
    for f in families:
        rate, ci = _rate(int(f["glitches"]), int(f["reads"]), f.get("ci95"))
        best = f.get("best_point") or {}
        best_text = (f"{_params(best.get('point'))} ({best['glitches']:,} in {best['reads']:,} reads)"
                     if best.get("point") else "")
        out.append(YieldRow(str(f["family"]), int(f.get("points", 0)), int(f["reads"]), int(f.get("sequences", 0)),
                            int(f.get("wrong_reads", 0)), int(f["glitches"]), rate, ci, best_text,
                            f.get("exploit_glitches_descended")))
    return out


@dataclass
class IidRow:
    suite: str
    counts: str  # "1 error in 7,237 reads"
    rate: str
    ci: str
    expected: str  # errors i.i.d. reads would show in as many reads as the hunt scored
    ratio: str  # the hunt's yield over the suite's


def _times(ratio: float) -> str:
    return f"{ratio:,.0f}×" if ratio >= 100 else f"{ratio:.3g}×"


def iid_rows(iid: dict) -> list[IidRow]:
    out = []
    for s in iid.get("suites") or []:
        errors, reads = int(s["errors"]), int(s["reads"])
        rate, ci = _rate(errors, reads, s.get("ci95"))
        if rate and errors:
            rate = f"{errors / reads:.2e}"
        if "yield_ratio" in s:
            ratio = _times(s["yield_ratio"])
        elif "yield_ratio_at_least" in s:
            ratio = f"≥ {_times(s['yield_ratio_at_least'])}"
        else:
            ratio = ""
        expected = s.get("expected_errors_same_reads")
        out.append(IidRow(str(s["suite"]), f"{errors:,} error{'' if errors == 1 else 's'} in {reads:,} reads", rate,
                          ci, "" if expected is None else f"{expected:.3g}", ratio))
    return out


def yield_figure(families: list[dict], iid: dict) -> Figure | None:
    """Glitches per search read of every family beside the i.i.d. suites' errors per read, on one log
    axis with exact 95% whiskers; a family without a glitch sits at its one-sided bound."""
    fams = [f for f in families if int(f["reads"])]
    if not fams:
        return None
    suites = [s for s in iid.get("suites") or [] if int(s["reads"])]
    cats = [str(f["family"]) for f in fams] + [f"i.i.d. {s['suite']}" for s in suites]
    if len(cats) < 2:
        return None  # one point compares with nothing; the table says it
    plot = Plot("category", "log", "", "per scored read", categories=cats, height=260)
    if len(cats) > 6:  # the axis turns its labels: room below for the longest family name
        plot.M = dict(Plot.M, bottom=24 + 3 * max(len(c) for c in cats))
        plot.H += plot.M["bottom"] - Plot.M["bottom"]
    plot.add(Series("hunt: glitching sequences per search read of the family", HUNT_COLOR,
                    [rate_point(str(f["family"]), int(f["glitches"]), int(f["reads"]), f"{f['family']}: ")
                     for f in fams], connect=False))
    if suites:
        ref = iid.get("reference") or "i.i.d. run"
        plot.add(Series(f"i.i.d. suites ({ref}, T={iid.get('length')}): errors per read", IID_COLOR,
                        [rate_point(f"i.i.d. {s['suite']}", int(s["errors"]), int(s["reads"]), f"{s['suite']}: ")
                         for s in suites], connect=False))
    return Figure(plot, "glitch yield per family beside the i.i.d. suites' error rates")


# ----------------------------------------------------------------------------- the estimate
@dataclass
class IntervalRow:
    label: str
    reads: str
    rate: str
    ci: str
    note: str = ""


@dataclass
class EstimateView:
    target: str
    distribution: str
    reason: str = ""  # why there is no estimate yet
    rows: list[IntervalRow] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)
    warning: str = ""
    figure: Figure | None = None
    stages: list[dict] = field(default_factory=list)


def expected_interval(rate: float, reads: float) -> tuple[float, float]:
    """The exact (Clopper-Pearson) 95% interval i.i.d. sampling would give with ``reads`` reads at
    ``rate``, at the expected (fractional) error count: the comparison hunt.json's widths are made on."""
    from scipy.special import betaincinv

    k = rate * reads
    low = 0.0 if k <= 0 else float(betaincinv(k, reads - k + 1, 0.025))
    high = float(betaincinv(k + 1, max(reads - k, 1e-9), 0.975))
    return low, high


def _ci(lo: float, hi: float) -> str:
    return f"[{lo:.3g}, {hi:.3g}]"


def estimate_view(est: dict, iid: dict) -> EstimateView:
    view = EstimateView(str(est.get("target", "?")), str(est.get("distribution", "")))
    view.stages = [{"stage": st.get("stage"), "samples": st.get("samples"), "failing": st.get("failing"),
                    "elite": st.get("elite"), "level": f"{st.get('elite_margin_level', float('nan')):+.3g}",
                    "estimate": f"{st.get('estimate', float('nan')):.3g}"} for st in est.get("stages") or []]
    res = est.get("result")
    if not res:
        view.reason = str(est.get("reason") or "no estimate in hunt.json")
        return view
    rate, (lo, hi) = float(res["rate"]), res["ci95"]
    adapt = int(est.get("adapt_reads", 0))
    surrogate = est.get("method") == "surrogate"
    method = "learned guess (control variate)" if surrogate else "importance sampling"
    if surrogate:
        left = res.get("variance_left")
        view.rows.append(IntervalRow(
            method, f"{int(res['samples']):,}", f"{rate:.3g}", _ci(lo, hi),
            f"{int(res['hits']):,} wrong reads of {int(est['scored_sequences']):,} i.i.d. sequences; guess over "
            f"{int(est['free_sequences']):,} unscored ones" + (f", {float(left):.1%} of the variance left" if left
                                                               is not None else "") + "; normal interval"))
    else:
        view.rows.append(IntervalRow(
            method, f"{int(res['samples']):,} (+ {adapt:,} adapting)", f"{rate:.3g}", _ci(lo, hi),
            f"{int(res['hits']):,} failing samples ({float(res['effective_hits']):.1f} effective); studentized "
            "bootstrap interval (asymptotic)"))
    plot = Plot("category", "log", "", f"glitch rate under {view.target}", height=240)
    plot.add(Series(f"{method}, {int(res['samples']) + adapt:,} reads", HUNT_COLOR,
                    [Point(method, rate, lo, hi, tip=f"{rate:.3g} {_ci(lo, hi)}")], connect=False))
    same = est.get("iid_same_reads") or {}
    if same.get("ci95_width") is not None and rate > 0:
        n = int(same["reads"])
        ilo, ihi = expected_interval(rate, n)
        view.rows.append(IntervalRow("i.i.d., the same reads", f"{n:,}", "", _ci(ilo, ihi),
                                     f"if the rate were {rate:.3g}: the exact interval at the "
                                     f"{float(same['expected_errors']):.3g} errors expected in as many reads"))
        plot.add(Series(f"i.i.d. sampling, the same {n:,} reads (expected)", IID_COLOR,
                        [Point("i.i.d., same reads", rate, ilo, ihi, tip=f"{_ci(ilo, ihi)} at {n:,} reads")],
                        connect=False))
        if same.get("reads_for_same_width"):
            spent = "fitting included" if surrogate else "adapting included"
            view.rows.append(IntervalRow("i.i.d., as narrow", f"{float(same['reads_for_same_width']):,.0f}", "", "",
                                         f"{float(same['read_ratio']):.3g}× the reads spent here ({spent})"))
    measured = next((s for s in iid.get("suites") or [] if s.get("suite") == view.target and int(s["reads"])), None)
    if measured is not None:
        errors, reads = int(measured["errors"]), int(measured["reads"])
        mrate, mci = _rate(errors, reads, measured.get("ci95"))
        view.rows.append(IntervalRow(f"i.i.d. measured ({iid.get('reference')})", f"{reads:,}",
                                     f"{errors / reads:.3g}" if errors else mrate, mci,
                                     f"{errors:,} error{'' if errors == 1 else 's'} in the {view.target} suite at "
                                     f"T={iid.get('length')}"))
        plot.add(Series(f"i.i.d. measured: {iid.get('reference')}", "#59a14f",
                        [rate_point("i.i.d. measured", errors, reads, f"{view.target}: ")], connect=False))
    view.figure = Figure(plot, f"estimate of the glitch rate under {view.target} beside i.i.d. intervals")
    tok = est.get("iid_same_tokens") or {}
    if tok.get("token_ratio"):
        view.facts.append(f"In tokens: {float(tok['tokens_for_same_width']):,.0f} for i.i.d. sampling as narrow "
                          f"against {int(tok['tokens_spent']):,} spent here ({float(tok['token_ratio']):.3g}×): each "
                          "sample reads its whole prefix for one answer.")
    if res.get("ci95_normal"):
        nlo, nhi = res["ci95_normal"]
        view.facts.append(f"Normal-theory interval {_ci(nlo, nhi)}; exact but conservative upper bound "
                          f"{float(res['upper95_exact']):.3g} (every weight is at most "
                          f"{float(est['max_weight']):.3g}).")
    if surrogate:
        if not res.get("reliable", True):
            view.warning = (f"Only {int(res['hits']):,} wrong reads: the guess had little to learn from and the "
                            "normal interval is not reliable here.")
        return view
    if not res.get("reliable", True):
        view.warning = (f"Only {int(res['hits']):,} failing samples: the interval is asymptotic and not reliable here; "
                        f"the exact upper bound is {float(res['upper95_exact']):.3g}.")
    return view


# ----------------------------------------------------------------------------- one hunt
@dataclass
class HuntView:
    hunt: Hunt
    model: Model | None  # the report's model of the same spec (its colour), if any
    title: str
    facts: list[tuple[str, str]]
    yields: list[YieldRow]
    exploit_column: bool  # some glitches came from the local search: show what each family seeded
    figure: Figure | None
    iid_rows: list[IidRow]
    iid_caption: str
    iid_reason: str
    shortest: GlitchRow | None
    examples: list[FamilyExamples]
    per_family: int
    estimate: EstimateView | None
    provenance: list[tuple[str, str]]
    config: str
    map: object = None  # huntmaps.MapView of a map search


def _count(n) -> str:
    return f"{int(n):,}"


def hunt_view(hunt: Hunt, models: list[Model], per_family: int) -> HuntView:
    s = hunt.summary
    cfg, spent, g = s["config"], s["spent"], s["glitches"]
    distinct = int(g["distinct"])
    scored = int(spent["reads"]) + int(spent.get("rescored_reads", 0))
    tokens = int(spent.get("tokens", 0)) + int(spent.get("rescored_tokens", 0))
    mode = (f"estimate under {cfg['estimate']}" + (f" ({cfg['estimator']})" if cfg.get("estimator") else "")
            if cfg.get("estimate") else "search")
    facts = [("reads", f"{_count(scored)} scored: {_count(spent['reads'])} "
                       f"{'sampling' if cfg.get('estimate') else 'searching'} + "
                       f"{_count(spent.get('rescored_reads', 0))} re-scoring glitches to confirm them"
                       f" ({_count(spent.get('rounds', 0))} rounds)"),
             ("tokens", f"{_count(tokens)} scored"),
             ("glitches", f"{_count(distinct)} distinct glitching sequence{'' if distinct == 1 else 's'}, "
                          f"{_count(g.get('failing_reads', 0))} wrong reads"
                          + (f"; {_count(g['unconfirmed'])} more failed once but not on re-scoring"
                             if g.get("unconfirmed") else ""))]
    if scored and not cfg.get("estimate"):  # an estimate's samples come from a tilted proposal: no yield
        rate, ci = _rate(distinct, scored, None)
        per_tok = f", {g['per_million_tokens']:,.0f} per million scored tokens" if g.get("per_million_tokens") else ""
        facts.append(("yield", f"{rate} glitches per scored read, exact 95% CI {ci}{per_tok}" if distinct else
                               f"0 glitches per scored read, exact 95% bound {ci}"))
    if g.get("by_origin") and not cfg.get("estimate"):
        facts.append(("found by", ", ".join(f"{k} {_count(v)}" for k, v in g["by_origin"].items())))
    budget = s.get("budget") or {}
    facts.append(("budget", f"{_count(budget.get('reads') or cfg.get('budget') or 0)} reads"
                            + (f", {_count(budget['tokens'])} tokens" if budget.get("tokens") else "")
                            + f"; stopped: {s.get('stop_reason', '?')}"))
    facts.append(("settings", f"T={cfg.get('length')}, seed {cfg.get('seed')}, rendering {cfg.get('render')}, "
                              f"families {', '.join(cfg.get('families') or []) or 'all'}"
                              + (", one request per read" if cfg.get("per_read") else "")))

    iid = s.get("iid") or {}
    task = cfg.get("task")  # a task hunt's language (absent: ffl)
    shortest, skip = None, None
    short = g.get("shortest")
    if short:
        skip = next((i for i, r in enumerate(hunt.glitches) if r.get("text") == short["text"]), None)
        if skip is not None:
            shortest = glitch_row(skip, hunt.glitches[skip], task)
        else:  # glitches.parquet missing: draw it from hunt.json alone
            read = _read_at(short["text"], int(short["position"]), task)
            shortest = GlitchRow(-1, short.get("family", "?"), _params(short.get("arm")), short.get("origin", ""),
                                 len(short["text"]), 1, None, read, f"{read.target} → {read.prediction}", "", "",
                                 context_tokens(read, tasks.get(task).unit))
    families = s.get("families") or []
    fp = s.get("fingerprint") or {}
    provenance = [("hunt directory", hunt.path), ("model", hunt.model),
                  ("model fingerprint", f"{fp.get('kind', '?')} {fp.get('id', 'not recorded')}"),
                  ("ffbench", str(s.get("ffbench_version", "?"))), ("created", str(s.get("created", "?"))),
                  ("updated", str(s.get("updated", "?")))]
    same_model = next((m for m in models if m.model == hunt.model), None)
    return HuntView(
        hunt, same_model, f"{hunt.model}: {mode} at T={cfg.get('length')}",
        facts, yield_rows(families), any(f["family"] == "exploit" and int(f["glitches"]) for f in families),
        yield_figure(families, iid), iid_rows(iid),
        f"i.i.d. suites of {iid.get('reference')} at T={iid.get('length')}" if iid.get("suites") else "",
        "" if iid.get("suites") else str(iid.get("reason") or ""), shortest,
        examples(hunt, per_family, skip, [str(f["family"]) for f in families], task), per_family,
        estimate_view(s["estimate"], iid) if s.get("estimate") else None,
        provenance, json.dumps(cfg, indent=2), huntmaps.map_view(s))
