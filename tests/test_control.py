"""Run control without a model: the anytime-valid bound under optional stopping (simulated), the
stopping rules shard by shard, prices, the results fields of a stopped run, and flag errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import betaincinv, betaln

from ffbench import metrics
from ffbench.control import CERTIFIED, FIRST_ERROR, MAX_COST, REFUTED, Controller, RunControl, run_reason
from ffbench.cost import Prices, TokenEstimate
from ffbench.errors import UsageError
from ffbench.schema import CellKey, CellResult, RunResults
from tests.test_cli import one_line, run_main


def _stream(p: float, reps: int, looks: int, per_look: int, seed: int):
    """Cumulative errors and reads at every look of ``reps`` Bernoulli(p) streams."""
    rng = np.random.default_rng(seed)
    errors = np.cumsum(rng.binomial(per_look, p, (reps, looks)), axis=1)
    reads = np.broadcast_to(per_look * np.arange(1, looks + 1), errors.shape)
    return errors, reads


def _stopped_at(decided: np.ndarray) -> np.ndarray:
    """Index of the first look where the rule decided (the last look when it never did)."""
    return np.where(decided.any(axis=1), decided.argmax(axis=1), decided.shape[1] - 1)


@pytest.mark.parametrize("factor", [0.25, 1.0, 2.0])
def test_certify_bound_keeps_its_coverage_under_optional_stopping(factor):
    """The --certify rule looks after every shard (here 400 looks of 250 reads) and stops at the first
    decision. At the stop, the anytime-valid interval covers the true rate in >= 95% of repetitions
    (tolerance 0.015, three standard errors at 2,000 repetitions), at, below and above EPS."""
    eps, alpha, reps = 1e-3, metrics.CERTIFY_ALPHA, 2000
    errors, reads = _stream(factor * eps, reps, 400, 250, seed=int(factor * 100))
    below, above = metrics.anytime_excludes(errors, reads, eps)
    tau = _stopped_at(below | above)
    rows = np.arange(reps)
    over, under = metrics.anytime_excludes(errors[rows, tau], reads[rows, tau], factor * eps)
    miss = float((over | under).mean())
    assert miss <= alpha + 0.015, miss
    if factor != 1.0:  # away from EPS the rule decides, and (almost always) rightly
        assert (below | above).any(axis=1).mean() > 0.99
        assert (below if factor < 1 else above).any(axis=1).mean() > 0.97


def test_fixed_n_clopper_pearson_fails_under_the_same_stopping():
    """Same streams, same rule, but the fixed-n 95% Clopper-Pearson interval (the ci95 of a cell):
    at the true rate = EPS it is valid at a fixed n (miss about 5%), and stopping when it first
    excludes EPS makes it miss in about a third of repetitions; the anytime interval stays under 5%."""
    eps, reps = 1e-3, 2000
    errors, reads = _stream(eps, reps, 400, 250, seed=7)
    low = np.where(errors > 0, betaincinv(np.maximum(errors, 1), reads - errors + 1, 0.025), 0.0)
    high = betaincinv(errors + 1, reads - errors, 0.975)
    fixed_n_miss = float(((high[:, -1] < eps) | (low[:, -1] > eps)).mean())
    assert abs(fixed_n_miss - 0.05) < 0.02, fixed_n_miss
    tau = _stopped_at((high < eps) | (low > eps))
    rows = np.arange(reps)
    naive_miss = float(((high[rows, tau] < eps) | (low[rows, tau] > eps)).mean())
    assert naive_miss > 0.2, naive_miss
    below, above = metrics.anytime_excludes(errors, reads, eps)
    anytime_miss = float((below | above).any(axis=1).mean())  # at the true rate, any decision is a miss
    assert anytime_miss <= 0.05 and naive_miss > 5 * anytime_miss, (anytime_miss, naive_miss)


def test_zero_error_certification_needs_the_closed_form_number_of_reads():
    """With no error, EPS is certified from the first n with n * -log(1 - EPS) >= log(1/alpha) +
    log B(a, b) - log B(a, b + n) (the mixture ratio written out), about 4/EPS reads."""
    a, b = metrics.MIXTURE_PRIOR
    for eps in (1e-2, 1e-3, 1e-4):
        n = next(n for n in range(1, 10**6) if n * -math.log1p(-eps) >= math.log(20) + betaln(a, b) - betaln(a, b + n))
        assert metrics.anytime_excludes(0, n, eps)[0] and not metrics.anytime_excludes(0, n - 1, eps)[0]
        assert metrics.anytime_interval(0, n)[1] < eps <= metrics.anytime_interval(0, n - 1)[1]
        assert 3.5 / eps < n < 4.5 / eps


def test_anytime_interval_contains_the_estimate_and_is_wider_than_fixed_n():
    """Its ends lie beyond the one-sided fixed-n 95% bounds (the price of validity at every n)."""
    for errors, reads in [(0, 10), (1, 1000), (34, 2873), (500, 1000), (1000, 1000)]:
        low, high = metrics.anytime_interval(errors, reads)
        cp_low = betaincinv(errors, reads - errors + 1, 0.05) if errors else 0.0
        cp_high = betaincinv(errors + 1, reads - errors, 0.95) if errors < reads else 1.0
        assert low <= errors / reads <= high
        assert low <= cp_low + 1e-12 and high >= cp_high - 1e-12
        # the ends are where the mixture ratio reaches 1/alpha, checked directly
        for end in (low, high):
            if 0 < end < 1:
                assert metrics.log_mixture_ratio(errors, reads, end) == pytest.approx(math.log(20), abs=1e-6)


# ----------------------------------------------------------------------------- the rules
def test_first_error_stops_only_with_its_flag():
    plain = Controller(RunControl())
    plain.observe("a", 3, 100, 10, {})
    assert plain.open("a") and plain.stop is None
    ctl = Controller(RunControl(stop_at_first_error=True))
    ctl.observe("a", 0, 100, 10, {})
    assert ctl.open("a") and ctl.open("b")
    ctl.observe("a", 2, 100, 10, {}, where="cell a, sequences 10-19")
    assert ctl.stop == FIRST_ERROR and not ctl.open("a") and not ctl.open("b")
    assert ctl.stop_detail == "2 wrong reads in cell a, sequences 10-19"


def test_certify_decides_each_cell_on_its_own_counts():
    ctl = Controller(RunControl(certify=0.01))
    n = next(n for n in range(1, 10**4) if metrics.anytime_excludes(0, n, 0.01)[0])
    ctl.observe("clean", 0, n - 1, 10, {})
    assert ctl.open("clean")
    ctl.observe("clean", 0, 1, 1, {})
    assert not ctl.open("clean") and ctl.decision("clean") == CERTIFIED
    ctl.observe("bad", 1, 20, 2, {})  # one error does not stop a cell by itself
    assert ctl.open("bad") and ctl.decision("bad") is None
    ctl.observe("bad", 30, 300, 30, {})
    assert ctl.decision("bad") == REFUTED and ctl.stop is None and ctl.open("other")
    assert run_reason(ctl.control, None, ["below", "above"]) == REFUTED
    assert run_reason(ctl.control, None, ["below", "undecided"]) == "complete"
    assert run_reason(ctl.control, None, ["below", "below"]) == CERTIFIED
    assert run_reason(ctl.control, FIRST_ERROR, ["below"]) == FIRST_ERROR
    assert run_reason(RunControl(), None, []) == "complete"


def test_max_cost_stops_before_the_shard_that_would_exceed_it():
    prices = Prices(price_in=2.0, price_out=10.0)  # USD per million tokens
    shard = TokenEstimate(requests=4, prompt_tokens=250_000, completion_tokens=0)  # $0.50
    ctl = Controller(RunControl(max_cost=1.5, prices=prices))
    assert ctl.afford(shard)
    ctl.observe("a", 0, 10, 4, {"prompt_tokens": 250_000, "completion_tokens": 50_000})  # $1.00 really spent
    assert ctl.spent == pytest.approx(1.0)
    assert ctl.afford(shard)  # 1.00 + 0.50 = 1.50: exactly the budget is allowed
    ctl.observe("a", 0, 10, 4, {"prompt_tokens": 250_000, "completion_tokens": 0})
    assert not ctl.afford(shard, "cell a, sequences 8-11") and ctl.stop == MAX_COST and not ctl.open("a")
    assert ctl.stop_detail == ("the next shard (cell a, sequences 8-11: 4 requests, 250,000 prompt tokens, up to 0 "
                               "completion tokens) is estimated at $0.5000; with $1.5000 spent it would exceed "
                               "--max-cost $1.5000")


def test_prices_and_cost():
    assert Prices(1.0, 3.0).cost(2_000_000, 1_000_000) == pytest.approx(5.0)
    assert Prices(price_in=1.0).of_usage({"prompt_tokens": 500_000, "completion_tokens": 7}) == pytest.approx(0.5)
    assert not Prices().given and Prices(price_out=0.0).given
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(UsageError, match="--price-in must be a non-negative number of USD per million tokens"):
            Prices(price_in=bad)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"certify": 0.0}, "--certify must be a glitch rate between 0 and 1 (exclusive), got 0.0"),
    ({"certify": 1.0}, "--certify must be a glitch rate between 0 and 1"),
    ({"max_cost": 1.0}, "--max-cost needs the prices of tokens: give --price-in and/or --price-out"),
    ({"max_cost": -1.0, "prices": Prices(1.0)}, "--max-cost must be a non-negative number of USD, got -1.0"),
])
def test_bad_control_is_a_usage_error(kwargs, fragment):
    with pytest.raises(UsageError) as exc:
        RunControl(**kwargs)
    assert fragment in str(exc.value)


@pytest.mark.parametrize("args, fragment", [
    (["--certify", "0"], "--certify must be a glitch rate between 0 and 1 (exclusive), got 0.0"),
    (["--certify", "1.5"], "--certify must be a glitch rate between 0 and 1 (exclusive), got 1.5"),
    (["--max-cost", "1"], "--max-cost needs the prices of tokens"),
    (["--max-cost", "1", "--price-in", "-2"], "--price-in must be a non-negative number"),
    (["--price-out", "nan"], "--price-out must be a non-negative number"),
    (["--certify", "abc"], "'abc' is not a valid float"),
])
def test_bad_stopping_flags_exit_2_before_anything_loads(tmp_path, capsys, args, fragment):
    code, _, err = run_main(capsys, "run", "--model", "ffbench/transformer-ref", *args, "--output-dir",
                            tmp_path / "r", "--no-record")
    assert code == 2
    one_line(err, fragment)
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- results
def test_partial_cells_and_stop_fields_round_trip_and_old_results_read_as_complete():
    key = CellKey("dense", 128, 0.1, "symbolic", "choice")
    cell = CellResult(key=key, data_sha256="f" * 64, num_sequences=20, reads=614, errors=7, complete=False,
                      planned_sequences=200, stop_reason=FIRST_ERROR,
                      certify={"eps": 0.01, "alpha": 0.05, "lower": 0.004, "upper": 0.03, "verdict": "undecided"})
    run = RunResults(model="m", config={}, results=[cell], stop_reason=FIRST_ERROR, stop_detail="why",
                     control=RunControl(stop_at_first_error=True).as_dict(), cost={"usd": 0.5},
                     not_scored=[{"suite": "in_dist", "planned_sequences": 200}])
    back = RunResults.from_dict(run.to_dict())
    assert back.to_dict() == run.to_dict() and not back.complete
    assert back.results[0].certify == cell.certify and back.results[0].planned_sequences == 200
    assert back.cells.loc[0, "certify_high"] == 0.03
    old = run.to_dict()
    for k in ("stop_detail", "control", "cost", "not_scored"):
        del old[k]
    for k in ("complete", "planned_sequences", "stop_reason", "certify"):
        del old["results"][0][k]
    legacy = RunResults.from_dict(old)
    assert legacy.complete and legacy.results[0].complete and legacy.results[0].stop_reason == "complete"
    assert "complete" not in legacy.results[0].breakdowns
