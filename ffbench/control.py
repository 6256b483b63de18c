"""Run control: how much of a planned run to score (``--stop-at-first-error``, ``--certify EPS``,
``--max-cost USD``), decided shard by shard.

A run plans its cells and their shards; run control only decides how many of those shards get
scored. It never changes what a read measures, so it is not part of the run's config or identity:
every shard scored under one set of stopping flags is a valid shard of the same run under
another. That is what makes a stopped run continuable: rerunning with the same flags returns the
stopped result; rerunning with other flags (none, a smaller EPS, a higher budget) scores on from
the kept shards, and the flags then apply to everything scored so far, kept shards included.

The rules, checked before each shard that is still to be scored:

* ``--stop-at-first-error``: the run stops once any scored shard holds a wrong read (an invalid
  answer is a wrong read). Run-wide: the question it answers is "does this model glitch at all?".
* ``--certify EPS``: per cell. A cell stops once the anytime-valid 95% confidence sequence of its
  glitch rate (:func:`ffbench.metrics.anytime_excludes`) lies below EPS (certified) or above it
  (refuted); otherwise it runs to the end of its data. Other cells go on. Errors do not stop a
  cell by themselves: a model with a rate of 1e-6 can be certified below 1e-4 after an error, and
  the interval stays valid however the stop came about (combine with ``--stop-at-first-error``
  to stop at the first error as well).
* ``--max-cost USD``: before each shard, its cost is estimated from the prices and the tokens it
  will send (:mod:`ffbench.cost`); the run stops before a shard that would take the total (what
  the kept shards really used, plus this estimate) over the budget. The stop depends on token
  counts, not on whether reads were right, so the rates of what was scored stay unbiased.

Run-level ``stop_reason``: ``first_error`` or ``max_cost`` when those cut the run; with
``--certify``, ``certified`` when every cell's bound is below EPS, ``refuted`` when some cell is
shown above EPS, ``complete`` when some cell's data ran out undecided; otherwise ``complete``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ffbench import metrics
from ffbench.cost import Prices, TokenEstimate
from ffbench.errors import UsageError

COMPLETE, FIRST_ERROR, MAX_COST, CERTIFIED, REFUTED = "complete", "first_error", "max_cost", "certified", "refuted"


@dataclass(frozen=True)
class RunControl:
    """The stopping flags of one ``ffbench run`` (recorded in results.json as ``control``)."""

    stop_at_first_error: bool = False
    certify: float | None = None  # EPS: the glitch rate to certify each cell below
    max_cost: float | None = None  # USD
    prices: Prices = field(default_factory=Prices)

    def __post_init__(self) -> None:
        if self.certify is not None and not (isinstance(self.certify, (int, float)) and 0.0 < self.certify < 1.0):
            raise UsageError(f"--certify must be a glitch rate between 0 and 1 (exclusive), got {self.certify!r}")
        if self.max_cost is not None:
            if not (isinstance(self.max_cost, (int, float)) and math.isfinite(self.max_cost) and self.max_cost >= 0):
                raise UsageError(f"--max-cost must be a non-negative number of USD, got {self.max_cost!r}")
            if not self.prices.given:
                raise UsageError("--max-cost needs the prices of tokens: give --price-in and/or --price-out "
                                 "(USD per million tokens)")

    @property
    def active(self) -> bool:
        return self.stop_at_first_error or self.certify is not None or self.max_cost is not None

    def as_dict(self) -> dict:
        return {"stop_at_first_error": self.stop_at_first_error, "certify": self.certify,
                "certify_alpha": metrics.CERTIFY_ALPHA if self.certify is not None else None,
                "max_cost": self.max_cost, **self.prices.as_dict()}


@dataclass
class Tally:
    """What has been scored of one cell so far."""

    errors: int = 0
    reads: int = 0
    sequences: int = 0
    shards: int = 0


class Controller:
    """Applies a :class:`RunControl` to a run as its shards are scored (or found kept)."""

    def __init__(self, control: RunControl):
        self.control = control
        self.tally: dict[str, Tally] = {}
        self.spent = 0.0  # USD of the usage of every shard seen
        self.stop: str | None = None  # a run-wide stop: FIRST_ERROR or MAX_COST
        self.stop_detail = ""
        self._decided: dict[str, str] = {}  # cell id -> CERTIFIED or REFUTED

    def observe(self, cell_id: str, errors: int, reads: int, sequences: int, usage: dict, where: str = "",
                glitched: int | None = None) -> None:
        """Count a scored shard of a cell (a kept one or one just scored). ``glitched``: with
        repeats, the reads with any wrong answer (the first-error rule stops on them; ``errors``
        counts wrong majority answers, which ``--certify`` judges)."""
        t = self.tally.setdefault(cell_id, Tally())
        t.errors, t.reads, t.sequences, t.shards = t.errors + errors, t.reads + reads, t.sequences + sequences, t.shards + 1
        self.spent += self.control.prices.of_usage(usage)
        sampled = glitched is not None
        glitched = glitched if sampled else errors
        if self.control.stop_at_first_error and glitched and self.stop is None:
            self.stop = FIRST_ERROR
            noun = "read" if glitched == 1 else "reads"
            what = f"{noun} with a wrong answer" if sampled else f"wrong {noun}"
            self.stop_detail = f"{glitched:,} {what} in {where or cell_id}"
        if self.control.certify is not None and cell_id not in self._decided:
            below, above = metrics.anytime_excludes(t.errors, t.reads, self.control.certify)
            if below:
                self._decided[cell_id] = CERTIFIED
            elif above:
                self._decided[cell_id] = REFUTED

    def open(self, cell_id: str) -> bool:
        """Whether more of this cell may be scored (the run goes on and the cell is undecided)."""
        return self.stop is None and cell_id not in self._decided

    def decision(self, cell_id: str) -> str | None:
        return self._decided.get(cell_id)

    def afford(self, estimate: TokenEstimate, where: str = "", in_flight: float = 0.0) -> bool:
        """Whether the next shard fits the budget; if not, the run stops here (``max_cost``).
        ``in_flight``: the estimated cost of shards sent but not yet back (Ray actors), counted as
        spent so that parallel shards cannot together pass the budget."""
        if self.control.max_cost is None:
            return True
        cost = estimate.cost(self.control.prices)
        if self.spent + in_flight + cost <= self.control.max_cost:
            return True
        self.stop = MAX_COST
        flying = f" and {usd(in_flight)} in flight" if in_flight else ""
        self.stop_detail = (f"the next shard ({where}: {estimate.describe()}) is estimated at {usd(cost)}; with "
                            f"{usd(self.spent)} spent{flying} it would exceed --max-cost {usd(self.control.max_cost)}")
        return False


def run_reason(control: RunControl, cut: str | None, verdicts: list[str]) -> str:
    """The run's stop_reason from a run-wide cut and the cells' certify verdicts (below|above|undecided)."""
    if cut:
        return cut
    if control.certify is None:
        return COMPLETE
    if "above" in verdicts:
        return REFUTED
    if "undecided" in verdicts or not verdicts:
        return COMPLETE
    return CERTIFIED


def certify_entry(errors: int, reads: int, eps: float) -> dict:
    """A cell's anytime-valid interval and its verdict at EPS (results.json: the cell's ``certify``)."""
    lower, upper = metrics.anytime_interval(errors, reads)
    below, above = metrics.anytime_excludes(errors, reads, eps)
    verdict = "below" if below else ("above" if above else "undecided")
    return {"eps": eps, "alpha": metrics.CERTIFY_ALPHA, "lower": lower, "upper": upper, "verdict": verdict,
            "method": "anytime-valid confidence sequence (Beta({:g}, {:g}) mixture martingale)".format(*metrics.MIXTURE_PRIOR)}


def explain(reason: str, control: RunControl, detail: str, partial: list[str], undecided: list[str],
            refuted: list[str]) -> str:
    """One paragraph for results.json (``stop_detail``) and the summary: why scoring stopped and what
    that means for the numbers."""
    cont = ""
    if partial:
        cont = (" 1 cell holds only part of its sequences." if len(partial) == 1 else
                f" {len(partial)} cells hold only part of their sequences.")
    if reason == FIRST_ERROR:
        return (f"Stopped at the first shard holding a wrong read ({detail}).{cont} The errors are real, but rates "
                "and intervals of a run that stopped because it saw an error overstate the glitch rate: read them "
                "as 'this model glitches', not as estimates. Rerun without --stop-at-first-error to score the rest "
                "(kept shards are reused).")
    if reason == MAX_COST:
        return (f"Stopped before a shard that would exceed the budget: {detail}.{cont} The stop depends on token "
                "counts, not on the answers, so the rates and intervals of what was scored are valid for those "
                "sequences. Rerun with a higher --max-cost to continue (kept shards are reused).")
    if control.certify is None:
        return "Every planned sequence was scored."
    eps = f"{control.certify:g}"
    level = f"{1 - metrics.CERTIFY_ALPHA:.0%}"
    valid = (" These intervals are anytime-valid: they hold although scoring stopped on them (the ci95 column is "
             "the fixed-n Clopper-Pearson interval and does not).")
    if reason == CERTIFIED:
        return f"Every cell's glitch rate is certified below {eps}: its {level} upper bound is below {eps}.{cont}{valid}"
    if reason == REFUTED:
        return f"Not certified: the glitch rate of {', '.join(refuted)} is shown above {eps} (its {level} lower " \
               f"bound is above {eps}).{cont}{valid}"
    return (f"Not certified: the data of {', '.join(undecided)} ran out before its {level} interval settled whether "
            f"the glitch rate is below {eps}; score more sequences (--num) to decide.{cont}{valid}")


def usd(value: float) -> str:
    return f"${value:,.4f}" if value < 100 else f"${value:,.2f}"
