"""Plain-text summary table of a run's results (what ``ffbench run`` prints at the end)."""

from __future__ import annotations

from ffbench import metrics
from ffbench.schema import CellResult


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
            [f"{c.num_sequences:,}", f"{c.reads:,}", f"{c.errors:,}", f"{c.invalid:,}"] + \
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
    cut = sum(c.truncated for c in cells)
    if cut:
        out += ["", f"{cut:,} read(s) got a reply cut by the token budget before it named an answer (counted as "
                    "errors and as invalid): raise --max-new-tokens"]
    return "\n".join(out)
