"""The CI regression gate: is the candidate's glitch rate significantly worse than the baseline's?

Glitches are rare, so an observed rise from 3 to 5 errors in 10^5 reads is noise, and a gate that
compares point estimates would fail releases at random. Each comparable cell (same suite, length,
p_ignore, rendering and scoring) is tested exactly:

- *regression*: Fisher's exact one-sided test on the 2x2 table of errors and correct reads, i.e.
  conditional on the total number of errors, are too many of them the candidate's?
  p = P(X >= e_c), X ~ Hypergeometric(n_c + n_b reads, e_c + e_b errors, n_c drawn);
- *ceiling* (``--max-glitch-rate X``): the exact binomial test of rate <= X,
  p = P(Binomial(n_c, X) >= e_c); the gate fails only when the rate is shown to be above X.

``--alpha`` is family-wise: the Holm step-down procedure across every test of the run, so adding
cells does not raise the chance of a false alarm. Exit status: 0 pass, 1 a significant regression
or ceiling breach, 2 usage errors (raised by the CLI).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.etree import ElementTree as ET

from ffbench import metrics
from ffbench.runs import LoadedRun, cell_key, describe_key


@dataclass
class Test:
    key: tuple
    kind: str  # regression | ceiling
    candidate: tuple[int, int]  # errors, reads
    reference: tuple[int, int] | float  # baseline (errors, reads) or the ceiling rate
    p_value: float
    failed: bool = False

    @property
    def name(self) -> str:
        return f"{describe_key(self.key)} [{self.kind}]"

    def explain(self) -> str:
        e, n = self.candidate
        cand = f"{e}/{n:,} ({_rate(e, n)})"
        if self.kind == "regression":
            be, bn = self.reference
            return f"candidate {cand} vs baseline {be}/{bn:,} ({_rate(be, bn)}): one-sided p = {self.p_value:.3g}"
        return f"candidate {cand} vs ceiling {self.reference:.3g}: one-sided p = {self.p_value:.3g}"


@dataclass
class Verdict:
    tests: list[Test]
    alpha: float
    unmatched: list[tuple] = field(default_factory=list)  # candidate cells the baseline lacks
    candidate: str = ""
    baseline: str = ""

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


def compare(candidate: LoadedRun, baseline: LoadedRun | None, alpha: float = 0.05,
            max_glitch_rate: float | None = None) -> Verdict:
    base_cells = {cell_key(c): c for c in baseline.results["results"]} if baseline is not None else {}
    tests, unmatched = [], []
    for cell in candidate.results["results"]:
        key = cell_key(cell)
        cand = (int(cell["errors"]), int(cell["reads"]))
        if baseline is not None:
            if key in base_cells:
                b = base_cells[key]
                ref = (int(b["errors"]), int(b["reads"]))
                tests.append(Test(key, "regression", cand, ref, regression_p(*cand, *ref)))
            else:
                unmatched.append(key)
        if max_glitch_rate is not None:
            tests.append(Test(key, "ceiling", cand, max_glitch_rate, ceiling_p(*cand, max_glitch_rate)))
    for test, reject in zip(tests, holm([t.p_value for t in tests], alpha)):
        test.failed = reject
    return Verdict(tests, alpha, unmatched, candidate.label, baseline.label if baseline is not None else "")


# ----------------------------------------------------------------------------- outputs
def markdown(verdict: Verdict) -> str:
    status = "PASS" if verdict.passed else f"FAIL ({len(verdict.failed)} of {len(verdict.tests)} tests)"
    lines = [f"### ffbench check: {status}", "",
             f"Candidate `{_md(verdict.candidate)}`" + (f" against baseline `{_md(verdict.baseline)}`"
                                                         if verdict.baseline else ""),
             f"(exact one-sided tests, Holm family-wise alpha = {verdict.alpha:g})", "",
             "| cell | test | candidate errors/reads | reference | p | verdict |",
             "|---|---|---|---|---|---|"]
    for t in verdict.tests:
        e, n = t.candidate
        ref = f"{t.reference[0]}/{t.reference[1]:,}" if t.kind == "regression" else f"ceiling {t.reference:.3g}"
        lines.append(f"| {_md(describe_key(t.key))} | {t.kind} | {e}/{n:,} ({_rate(e, n)}) | {ref} | "
                     f"{t.p_value:.3g} | {'**FAIL**' if t.failed else 'ok'} |")
    for key in verdict.unmatched:
        lines.append(f"| {_md(describe_key(key))} | regression | - | not in baseline | - | skipped |")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("`", "'").replace("\n", " ")


def junit_xml(verdict: Verdict) -> bytes:
    suite = ET.Element("testsuite", name="ffbench check", tests=str(len(verdict.tests) + len(verdict.unmatched)),
                       failures=str(len(verdict.failed)), errors="0", skipped=str(len(verdict.unmatched)))
    for t in verdict.tests:
        case = ET.SubElement(suite, "testcase", classname=f"ffbench.{t.key[0]}", name=t.name, time="0")
        if t.failed:
            ET.SubElement(case, "failure", message=t.explain(), type=f"glitch-{t.kind}").text = t.explain()
        else:
            ET.SubElement(case, "system-out").text = t.explain()
    for key in verdict.unmatched:
        case = ET.SubElement(suite, "testcase", classname=f"ffbench.{key[0]}", name=f"{describe_key(key)} [regression]",
                             time="0")
        ET.SubElement(case, "skipped", message="the baseline has no such cell")
    root = ET.Element("testsuites", name="ffbench", tests=suite.get("tests"), failures=suite.get("failures"))
    root.append(suite)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def text_summary(verdict: Verdict) -> str:
    lines = []
    for t in verdict.tests:
        lines.append(f"{'FAIL' if t.failed else 'ok  '}  {t.name}: {t.explain()}")
    for key in verdict.unmatched:
        lines.append(f"skip  {describe_key(key)}: not in the baseline")
    n_fail = len(verdict.failed)
    lines.append(f"{'FAIL' if n_fail else 'PASS'}: {n_fail} of {len(verdict.tests)} tests significant at "
                 f"family-wise alpha {verdict.alpha:g} (Holm)")
    return "\n".join(lines)

