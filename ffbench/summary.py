"""Plain-text summary table of a run's results (what ``ffbench run`` prints at the end)."""

from __future__ import annotations

from ffbench import metrics
from ffbench.schema import CellResult, RunResults, parameter_axes


def format_table(cells: list[CellResult]) -> str:
    show_truncated = any(c.truncated for c in cells)
    show_variant = any(c.variant for c in cells)
    header = ["suite", "T", "p_ignore", "render", "scoring"] + (["variant"] if show_variant else []) + \
        ["seqs", "reads", "errors", "invalid"] + (["truncated"] if show_truncated else []) + \
        ["accuracy", "glitch rate (95% CI)"]
    rows = []
    for c in cells:
        if c.errors == 0:
            rate = f"0 in {c.reads:,}: < {metrics.zero_error_bound(c.reads):.1e}"
        else:
            lo, hi = c.ci95
            rate = f"{c.glitch_rate:.2e} [{lo:.1e}, {hi:.1e}]"
        p = "" if c.p_ignore is None else f"{c.p_ignore:g}"
        row = [c.suite, str(c.length), p, c.render, c.scoring] + ([c.variant] if show_variant else []) + \
            [_seqs(c), f"{c.reads:,}", f"{c.errors:,}", f"{c.invalid:,}"] + \
            ([f"{c.truncated:,}"] if show_truncated else []) + [f"{c.accuracy:.6f}", rate]
        rows.append(row)
    widths = [max(len(h), *(len(row[k]) for row in rows)) if rows else len(h) for k, h in enumerate(header)]
    left = {"suite", "render", "scoring", "variant", "glitch rate (95% CI)"}

    def line(cells):
        return "  ".join(c.ljust(w) if h in left else c.rjust(w) for h, c, w in zip(header, cells, widths))

    out = [line(header), line(["-" * w for w in widths])] + [line(row) for row in rows]
    notes = [f"{c.key.describe()}: {metrics.describe_rate(c.errors, c.reads)}" for c in cells if c.errors == 0]
    if notes:
        out += ["", "zero-error cells (one-sided 95% bound, about 3/N):"] + [f"  {n}" for n in notes]
    for c in cells:
        if c.tolerances:
            out += ["", f"stress profile, {c.key.describe()} (exact 95% intervals):"]
            out += [f"  {t['line']}" for t in c.tolerances]
    structured = [c for c in cells if c.breakdowns.get("by_parameter")]
    if structured:
        out += ["", "structured families, errors / reads per parameter (where each breaks):"]
        out += [f"  {line}" for c in structured for line in format_by_parameter(c)]
    guessed = [c for c in cells if c.breakdowns.get("heuristic")]
    if guessed:
        out += ["", "reference heuristic (undo: toggle, an undo flips the bit; registers: one variable, the last write "
                    "anywhere):"]
        for c in guessed:
            h = c.breakdowns["heuristic"]
            agrees = "" if h["agrees_there"] is None else f", the model gives its answer on {h['agrees_there']:.1%}"
            out.append(f"  {c.key.describe()}: {h['name']} right on {h['accuracy']:.1%}; on the {h['reads_where_wrong']:,} "
                       f"reads where it is wrong the model errs on {h['errors_there']:,}{agrees}")
    sampled = [c for c in cells if c.sampled]
    if sampled:
        out += ["", "sampled reads (mean per-read error probability, 95% cluster-robust interval over sequences):"]
        out += [f"  {line}" for c in sampled for line in format_sampled(c)]
    asked = [c for c in cells if c.reads_scored_per_read and not c.sampled]  # a sampled read is always asked
    if asked:
        out += ["", "reads scored by a request of their own (the dense pass could not decide them exactly):"]
        out += [f"  {c.key.describe()}: {c.reads_scored_per_read:,} of {c.reads:,} "
                f"({c.reads_scored_per_read / max(c.reads, 1):.1%})" for c in asked]
    cut = sum(c.truncated for c in cells)
    if cut:
        out += ["", f"{cut:,} read(s) got a reply cut by the token budget before it named an answer (counted as "
                    "errors and as invalid): raise --max-new-tokens"]
    return "\n".join(out)


def format_by_parameter(c: CellResult) -> list[str]:
    """A structured family's counts per parameter value on one line per family and fixed other
    parameters: ``retraction_chain by k: 1: 5/50, 2: 19/50, ...`` (a numeric parameter varies)."""
    groups: dict[tuple, list[str]] = {}
    for row in c.breakdowns["by_parameter"]:
        varied, fixed = parameter_axes(row)  # a depth or distance varies
        head = (row["family"], tuple(f"{k}={row[k]}" for k in fixed), varied)
        groups.setdefault(head, []).append(f"{row[varied]}: {row['errors']:,}/{row['reads']:,}")
    return [f"{c.key.describe()} {family}{' (' + ', '.join(fixed) + ')' if fixed else ''} by {varied}: "
            + ", ".join(parts) for (family, fixed, varied), parts in groups.items()]


def format_sampled(c: CellResult) -> list[str]:
    """A repeated cell's figures (:mod:`ffbench.sampling`) in two lines."""
    s, k = c.sampled, c.sampled["repeats"]
    lo, hi = s["ci95"]
    return [f"{c.key.describe()}: {s['error_probability']:.3e} [{lo:.2e}, {hi:.2e}] from {s['answers']:,} answers "
            f"({k} per read)",
            f"    reads wrong in at least one of {k}: {s['wrong_any']:.2%}; in all {k}: {s['wrong_all']:.2%}; "
            f"majority answer wrong: {s['majority_error_rate']:.2%}"]


def _seqs(c: CellResult) -> str:
    """Scored sequences, and of how many planned when a stopping rule cut the cell."""
    if c.complete or c.planned_sequences is None:
        return f"{c.num_sequences:,}"
    return f"{c.num_sequences:,} of {c.planned_sequences:,}"


def format_stop(results: RunResults) -> str:
    """Why the run stopped and what it means for the numbers ('' for a plain complete run)."""
    lines = []
    certify = [c for c in results.results if c.certify]
    if results.stop_reason != "complete" or not results.complete or certify:
        lines.append(f"stopped: {results.stop_reason}. {results.stop_detail}")
    for c in certify:
        cert = c.certify
        word = {"below": "certified below", "above": "shown above", "undecided": "undecided at"}[cert["verdict"]]
        lines.append(f"  {c.key.describe()}: {word} {cert['eps']:g} after {c.reads:,} reads, {c.errors:,} wrong "
                     f"(anytime-valid {1 - cert['alpha']:.0%} interval [{cert['lower']:.3g}, {cert['upper']:.3g}])")
    for e in results.not_scored:
        lines.append(f"  not scored: {e['suite']} T={e['length']} {e['render']} {e['scoring']} "
                     f"({e['planned_sequences']:,} sequences planned)")
    if results.cost is not None:
        cost = results.cost
        budget = "" if cost.get("max_cost") is None else f" of --max-cost ${cost['max_cost']:,.4f}"
        cached = ""
        if cost.get("cached_tokens") or cost.get("cache_write_tokens"):
            rate = cost.get("price_cached_in")
            cached = (f"; of the prompt tokens {cost.get('cached_tokens', 0):,} read from the provider's cache"
                      + ("" if rate is None else f" at ${rate:g}")
                      + (f", {cost['cache_write_tokens']:,} written to it" if cost.get("cache_write_tokens") else ""))
        lines.append(f"cost: ${cost['usd']:,.4f}{budget} ({cost['prompt_tokens']:,} prompt and "
                     f"{cost['completion_tokens']:,} completion tokens at ${cost['price_in'] or 0:g} / "
                     f"${cost['price_out'] or 0:g} per million{cached})")
    return "\n".join(lines)
