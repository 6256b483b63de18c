"""Plain-text summary table of a run's results (what ``ffbench run`` prints at the end)."""

from __future__ import annotations

from ffbench import metrics


def format_table(results: list[dict]) -> str:
    header = ("suite", "T", "p_ignore", "render", "scoring", "seqs", "reads", "errors", "invalid", "accuracy",
              "glitch rate (95% CI)")
    rows = []
    for r in results:
        if r["errors"] == 0:
            rate = f"0 in {r['reads']:,}: < {metrics.zero_error_bound(r['reads']):.1e}"
        else:
            lo, hi = r["ci95"]
            rate = f"{r['glitch_rate']:.2e} [{lo:.1e}, {hi:.1e}]"
        p = "" if r["p_ignore"] is None else f"{r['p_ignore']:g}"
        rows.append((r["suite"], str(r["length"]), p, r["render"], r["scoring"], f"{r['num_sequences']:,}",
                     f"{r['reads']:,}", f"{r['errors']:,}", f"{r['invalid']:,}", f"{r['accuracy']:.6f}", rate))
    widths = [max(len(h), *(len(row[k]) for row in rows)) if rows else len(h) for k, h in enumerate(header)]
    right = {1, 2, 5, 6, 7, 8, 9}

    def line(cells):
        return "  ".join(c.rjust(w) if k in right else c.ljust(w) for k, (c, w) in enumerate(zip(cells, widths)))

    out = [line(header), line(tuple("-" * w for w in widths))] + [line(row) for row in rows]
    notes = [f"{r['suite']} T={r['length']} {r['render']} {r['scoring']}: {metrics.describe_rate(r['errors'], r['reads'])}"
             for r in results if r["errors"] == 0]
    if notes:
        out += ["", "zero-error cells (one-sided 95% bound, about 3/N):"] + [f"  {n}" for n in notes]
    return "\n".join(out)
