"""The CI regression gate: is the candidate's glitch rate significantly worse than the baseline's?

Glitches are rare, so an observed rise from 3 to 5 errors in 10^5 reads is noise, and a gate that
compares point estimates would fail releases at random. Each comparable cell (equal
:class:`~ffbench.schema.CellKey`: suite, length, p_ignore, rendering, scoring, variant) is tested
exactly:

- *regression, paired* (candidate and baseline scored the very same sequences: equal content
  hash, and both runs hold every read's outcome): the exact one-sided McNemar test on the
  discordant reads. With b reads wrong only for the candidate and c wrong only for the baseline,
  p = P(Binomial(b + c, 1/2) >= b). Pairing removes the sequences' own difficulty from the
  comparison, so it detects smaller regressions than an unpaired test on the same reads;
- *regression, unpaired* (different sequences of the same distribution): Fisher's exact one-sided
  test on the 2x2 table of errors and correct reads, p = P(X >= e_c) with
  X ~ Hypergeometric(n_c + n_b, e_c + e_b, n_c);
- *regression, sampled and paired* (both cells hold K answers per read, ``--repeats``, on the very
  same reads): the paired permutation test over sequences on the per-read error fractions
  (:mod:`ffbench.paired`), which respects the clustering of a sequence's reads;
- *stress cells* are tested point by point (each family at each parameter value, with the same
  paired or unpaired test), so a release whose tolerance drops on one family fails even when the
  cell's total barely moves;
- *ceiling* (``--max-glitch-rate X``): the exact binomial test of rate <= X,
  p = P(Binomial(n_c, X) >= e_c); a cell fails only when its rate is shown to be above X.
  ``--max-glitch-rate 0`` is the paper's own objective (any wrong read is a glitch): a cell with
  any error fails, a rule rather than a test, so it takes no part in the multiple-testing correction.

``--alpha`` is family-wise: the Holm step-down procedure across every test of the run, so adding
cells does not raise the chance of a false alarm. Exit status: 0 pass, 1 a significant regression
or ceiling breach, 2 usage errors (raised by the CLI).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.etree import ElementTree as ET

from ffbench import metrics
from ffbench.errors import UsageError
from ffbench.schema import CellKey, CellResult, RunResults


@dataclass
class Test:
    key: CellKey
    kind: str  # regression | ceiling
    method: str  # mcnemar | fisher | binomial | zero-tolerance
    candidate: tuple[int, int]  # errors, reads
    reference: tuple[int, int] | float  # baseline (errors, reads) or the ceiling rate
    p_value: float
    discordant: tuple[int, int] | None = None  # (wrong only in candidate, wrong only in baseline)
    failed: bool = False
    point: str | None = None  # a stress point, when the test covers one point of a stress cell

    @property
    def name(self) -> str:
        return f"{self.key.describe()}{' ' + self.point if self.point else ''} [{self.kind}]"

    def explain(self) -> str:
        e, n = self.candidate
        cand = f"{e}/{n:,} ({_rate(e, n)})"
        if self.method == "zero-tolerance":
            return f"candidate {cand} vs ceiling 0: any error fails the cell"
        if self.kind == "regression":
            be, bn = self.reference
            paired = f"; discordant reads {self.discordant[0]} vs {self.discordant[1]}" if self.discordant else ""
            return (f"candidate {cand} vs baseline {be}/{bn:,} ({_rate(be, bn)}){paired}: "
                    f"{_METHOD[self.method]} one-sided p = {self.p_value:.3g}")
        return f"candidate {cand} vs ceiling {self.reference:.3g}: exact binomial one-sided p = {self.p_value:.3g}"


_METHOD = {"mcnemar": "exact McNemar (paired)", "fisher": "Fisher's exact (unpaired)",
           "sign-flip": "paired permutation over sequences (sampled reads)"}


@dataclass
class Verdict:
    tests: list[Test]
    alpha: float
    unmatched: list[CellKey] = field(default_factory=list)  # candidate cells the baseline lacks
    candidate: str = ""
    baseline: str = ""
    provenance: list[str] = field(default_factory=list)  # which weights and data each side is

    @property
    def failed(self) -> list[Test]:
        return [t for t in self.tests if t.failed]

    @property
    def passed(self) -> bool:
        return not self.failed


def _rate(errors: int, reads: int) -> str:
    if errors == 0:
        return f"< {metrics.zero_error_bound(reads):.1e}"
    return f"{errors / reads:.2e}"


def regression_p(cand_errors: int, cand_reads: int, base_errors: int, base_reads: int) -> float:
    """Fisher's exact one-sided p-value that the candidate's error rate exceeds the baseline's."""
    from scipy.stats import hypergeom

    total_errors = cand_errors + base_errors
    if total_errors == 0:
        return 1.0
    return float(hypergeom.sf(cand_errors - 1, cand_reads + base_reads, total_errors, cand_reads))


def mcnemar_p(only_candidate: int, only_baseline: int) -> float:
    """Exact one-sided McNemar p-value: P(Binomial(b + c, 1/2) >= b), b = reads wrong only for the candidate."""
    from scipy.stats import binom

    n = only_candidate + only_baseline
    if only_candidate == 0:
        return 1.0
    return float(binom.sf(only_candidate - 1, n, 0.5))


def ceiling_p(errors: int, reads: int, ceiling: float) -> float:
    """Exact one-sided p-value that the rate exceeds ``ceiling``."""
    from scipy.stats import binom

    if errors == 0:
        return 1.0
    return float(binom.sf(errors - 1, reads, ceiling))


def holm(p_values: list[float], alpha: float) -> list[bool]:
    """Holm's step-down rejections: family-wise error rate <= alpha over all tests."""
    order = sorted(range(len(p_values)), key=lambda k: p_values[k])
    reject = [False] * len(p_values)
    for rank, k in enumerate(order):
        if p_values[k] > alpha / (len(p_values) - rank):
            break
        reject[k] = True
    return reject


def wrong_reads(run: RunResults, cell: CellResult) -> dict[tuple[int, int], str | None] | None:
    """(sequence, read) -> stress point of every wrong read of a cell, or None when the run does not hold
    them all (a registry entry keeps counts only; a shipped reference keeps a bounded number of failures)."""
    table = run.failing(cell)
    if table is None or table.num_rows != cell.errors:
        return None
    points = table.column("point").to_pylist() if "point" in table.column_names else [None] * table.num_rows
    return dict(zip(zip(table.column("seq_index").to_pylist(), table.column("read_index").to_pylist()), points))


def sampled_shares(run: RunResults, cell: CellResult):
    """(sequence, read) -> fraction of the read's K answers that were wrong, for a cell with repeats
    (None when the run does not hold them)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not cell.sampled or run.samples_path is None or not run.samples_complete:
        return None
    table = pq.read_table(run.samples_path, columns=["cell", "seq_index", "read_index", "wrong_repeats", "repeats"])
    table = table.filter(pc.equal(table.column("cell"), cell.id))
    if table.num_rows != cell.reads:
        return None
    share = table.column("wrong_repeats").to_numpy() / table.column("repeats").to_numpy()
    return dict(zip(zip(table.column("seq_index").to_pylist(), table.column("read_index").to_pylist()), share))


def _sampled_test(cand_run: RunResults, cell: CellResult, base_run: RunResults, base: CellResult) -> Test | None:
    """The paired permutation test of two sampled cells on the very same reads (None when it does not apply)."""
    import numpy as np

    from ffbench import paired

    if not (cell.sampled and base.sampled and cell.data_sha256 == base.data_sha256 and cell.reads == base.reads):
        return None
    mine, theirs = sampled_shares(cand_run, cell), sampled_shares(base_run, base)
    if mine is None or theirs is None or set(mine) != set(theirs):
        return None
    keys = sorted(mine)
    d = paired.sequence_differences(np.array([k[0] for k in keys]), np.array([mine[k] for k in keys]),
                                    np.array([theirs[k] for k in keys]))
    return Test(cell.key, "regression", "sign-flip", (cell.errors, cell.reads), (base.errors, base.reads),
                paired.sign_flip_p(d))


def _regression(cand_run: RunResults, cell: CellResult, base_run: RunResults, base: CellResult) -> list[Test]:
    sampled = _sampled_test(cand_run, cell, base_run, base)
    if sampled is not None:
        return [sampled]
    paired = None
    if cell.data_sha256 and cell.data_sha256 == base.data_sha256 and cell.reads == base.reads:
        mine, theirs = wrong_reads(cand_run, cell), wrong_reads(base_run, base)
        if mine is not None and theirs is not None:
            paired = (mine, theirs)
    theirs_by_point = {row["point"]: row for row in base.by_point}
    if cell.by_point and all(row["point"] in theirs_by_point for row in cell.by_point):
        return [_test(cell.key, (row["errors"], row["reads"]),
                      (theirs_by_point[row["point"]]["errors"], theirs_by_point[row["point"]]["reads"]),
                      paired, row["point"]) for row in cell.by_point]
    return [_test(cell.key, (cell.errors, cell.reads), (base.errors, base.reads), paired)]


def _test(key: CellKey, cand: tuple[int, int], ref: tuple[int, int], paired, point: str | None = None) -> Test:
    """The paired test when both sides' wrong reads are known, else Fisher's, on one cell or one stress point."""
    if paired is not None:
        mine, theirs = ({r for r, pt in side.items() if point is None or pt == point} for side in paired)
        b, c = len(mine - theirs), len(theirs - mine)
        return Test(key, "regression", "mcnemar", cand, ref, mcnemar_p(b, c), discordant=(b, c), point=point)
    return Test(key, "regression", "fisher", cand, ref, regression_p(*cand, *ref), point=point)


def compare(candidate: RunResults, baseline: RunResults | None, alpha: float = 0.05,
            max_glitch_rate: float | None = None) -> Verdict:
    """Every test of the candidate against the baseline and/or the ceiling, Holm-corrected.

    A run cut short by a stopping rule (``complete`` false) holds counts that depend on when it
    stopped (a run stopped at its first error overstates its rate), so it takes part only in the
    zero-tolerance rule, which stays exact: any error it holds is an error.
    """
    for run in (candidate, baseline):
        if run is not None and not run.complete and not (run is candidate and baseline is None
                                                         and max_glitch_rate == 0):
            raise UsageError(f"{run.label or run.model} stopped early ({run.stop_reason}): its counts are not a "
                             "sample of fixed size, so they cannot be compared; complete it (rerun without the "
                             "stopping flags) or gate it with --max-glitch-rate 0 alone")
    by_key: dict[CellKey, list[CellResult]] = {}
    for c in baseline.results if baseline is not None else []:
        by_key.setdefault(c.key, []).append(c)
    tests, unmatched = [], []
    for cell in candidate.results:
        if baseline is not None:
            matches = by_key.get(cell.key, [])
            if matches:  # prefer the baseline cell that scored the very same sequences
                base = next((b for b in matches if b.data_sha256 == cell.data_sha256), matches[0])
                tests += _regression(candidate, cell, baseline, base)
            else:
                unmatched.append(cell.key)
        if max_glitch_rate == 0:
            tests.append(Test(cell.key, "ceiling", "zero-tolerance", (cell.errors, cell.reads), 0.0,
                              0.0 if cell.errors else 1.0, failed=cell.errors > 0))
        elif max_glitch_rate is not None:
            tests.append(Test(cell.key, "ceiling", "binomial", (cell.errors, cell.reads), max_glitch_rate,
                              ceiling_p(cell.errors, cell.reads, max_glitch_rate)))
    tested = [t for t in tests if t.method != "zero-tolerance"]
    for test, reject in zip(tested, holm([t.p_value for t in tested], alpha)):
        test.failed = reject
    return Verdict(tests, alpha, unmatched, candidate.label, baseline.label if baseline is not None else "",
                   [_provenance("candidate", candidate)] + ([_provenance("baseline", baseline)] if baseline else []))


def _provenance(role: str, run: RunResults) -> str:
    model = run.fingerprint.get("model") or {}
    fp = model.get("id", "")[:12] or "not recorded"
    what = {"local": "weights", "hub": "hub commit", "api": "server model"}.get(model.get("kind"), "model")
    return f"{role} {run.label}: {run.model}, {what} fingerprint {fp}"


# ----------------------------------------------------------------------------- outputs
def markdown(verdict: Verdict) -> str:
    status = "PASS" if verdict.passed else f"FAIL ({len(verdict.failed)} of {len(verdict.tests)} tests)"
    lines = [f"### ffbench check: {status}", "",
             f"Candidate `{_md(verdict.candidate)}`" + (f" against baseline `{_md(verdict.baseline)}`"
                                                         if verdict.baseline else ""),
             f"(exact one-sided tests, Holm family-wise alpha = {verdict.alpha:g})", ""]
    lines += [f"- {_md(p)}" for p in verdict.provenance] + [""]
    lines += ["| cell | test | method | candidate errors/reads | reference | p | verdict |",
              "|---|---|---|---|---|---|---|"]
    for t in verdict.tests:
        e, n = t.candidate
        ref = f"{t.reference[0]}/{t.reference[1]:,}" if t.kind == "regression" else f"ceiling {t.reference:.3g}"
        lines.append(f"| {_md(t.key.describe() + (' ' + t.point if t.point else ''))} | {t.kind} | {t.method} | {e}/{n:,} ({_rate(e, n)}) | {ref} | "
                     f"{t.p_value:.3g} | {'**FAIL**' if t.failed else 'ok'} |")
    for key in verdict.unmatched:
        lines.append(f"| {_md(key.describe())} | regression | - | - | not in baseline | - | skipped |")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("`", "'").replace("\n", " ")


def junit_xml(verdict: Verdict) -> bytes:
    suite = ET.Element("testsuite", name="ffbench check", tests=str(len(verdict.tests) + len(verdict.unmatched)),
                       failures=str(len(verdict.failed)), errors="0", skipped=str(len(verdict.unmatched)))
    for t in verdict.tests:
        case = ET.SubElement(suite, "testcase", classname=f"ffbench.{t.key.suite}", name=t.name, time="0")
        if t.failed:
            ET.SubElement(case, "failure", message=t.explain(), type=f"glitch-{t.kind}").text = t.explain()
        else:
            ET.SubElement(case, "system-out").text = t.explain()
    for key in verdict.unmatched:
        case = ET.SubElement(suite, "testcase", classname=f"ffbench.{key.suite}", name=f"{key.describe()} [regression]",
                             time="0")
        ET.SubElement(case, "skipped", message="the baseline has no such cell")
    root = ET.Element("testsuites", name="ffbench", tests=suite.get("tests"), failures=suite.get("failures"))
    root.append(suite)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def verdict_json(verdict: Verdict) -> dict:
    """The verdict as data (``ffbench check --json``): what a CI step reads for its outputs, with the
    p-values at full precision rather than the 3 digits of the text and Markdown."""
    return {"passed": verdict.passed, "alpha": verdict.alpha, "candidate": verdict.candidate,
            "baseline": verdict.baseline, "failed": len(verdict.failed),
            "tests": [{"name": t.name, "cell": t.key.describe(), "point": t.point, "kind": t.kind,
                       "method": t.method, "p_value": t.p_value, "failed": t.failed} for t in verdict.tests],
            "unmatched": [key.describe() for key in verdict.unmatched]}


def text_summary(verdict: Verdict) -> str:
    lines = list(verdict.provenance)
    for t in verdict.tests:
        lines.append(f"{'FAIL' if t.failed else 'ok  '}  {t.name}: {t.explain()}")
    for key in verdict.unmatched:
        lines.append(f"skip  {key.describe()}: not in the baseline")
    n_fail = len(verdict.failed)
    lines.append(f"{'FAIL' if n_fail else 'PASS'}: {n_fail} of {len(verdict.tests)} tests failed at "
                 f"family-wise alpha {verdict.alpha:g} (Holm)")
    return "\n".join(lines)
