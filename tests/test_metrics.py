"""Exact intervals and breakdowns against known values."""

import numpy as np
import pytest

from ffbench import metrics, summary


def test_clopper_pearson_known_values():
    # Textbook values: 5 of 10 -> [0.187, 0.813]; 0 of 10 -> [0, 0.308]; 10 of 10 -> [0.692, 1].
    assert metrics.clopper_pearson(5, 10) == pytest.approx((0.18709, 0.81291), abs=1e-5)
    assert metrics.clopper_pearson(0, 10) == pytest.approx((0.0, 0.30850), abs=1e-5)
    assert metrics.clopper_pearson(10, 10) == pytest.approx((0.69150, 1.0), abs=1e-5)
    lo, hi = metrics.clopper_pearson(3, 353_875)  # a sparse-tail sized cell
    assert lo < 3 / 353_875 < hi and hi < 3e-5


def test_zero_error_bound_is_rule_of_three():
    assert metrics.zero_error_bound(1_000_000) == pytest.approx(3e-6, rel=0.01)
    assert "0 errors in 1,000 reads: rate < 3.0e-03 at 95%" == metrics.describe_rate(0, 1000)
    assert metrics.describe_rate(1, 7237).startswith("1 error in 7,237 reads: rate 1.38e-04 [")


def test_summarize_counts_invalid_as_errors():
    correct = np.array([True, False, False, True])
    invalid = np.array([False, True, False, False])
    s = metrics.summarize(correct, invalid)
    assert (s["reads"], s["errors"], s["invalid"], s["glitch_rate"]) == (4, 2, 1, 0.5)


def test_breakdown_buckets_cover_every_read():
    d = np.array([1, 1, 2, 3, 4, 9, 300])
    c = np.array([True, False, True, True, False, True, False])
    rows = metrics.breakdown(d, c)
    assert [(r["bucket"], r["reads"], r["errors"]) for r in rows] == [("1", 2, 1), ("2-3", 2, 0), ("4-7", 1, 1),
                                                                         ("8-15", 1, 0), ("256-511", 1, 1)]


def test_summary_table_mentions_zero_error_bound():
    r = {"suite": "sparse", "length": 512, "p_ignore": 0.98, "render": "symbolic", "scoring": "choice",
         "num_sequences": 10, "reads": 35, "errors": 0, "invalid": 0, "accuracy": 1.0, "glitch_rate": 0.0,
         "ci95": [0.0, 0.1]}
    from ffbench.schema import CellResult

    text = summary.format_table([CellResult.from_dict(r)])
    assert "0 in 35: < 8.2e-02" in text and "0 errors in 35 reads" in text
    assert "truncated" not in text  # the column appears only when a reply was cut by the token budget
    cut = CellResult.from_dict({**r, "errors": 3, "invalid": 3, "truncated": 2, "glitch_rate": 3 / 35,
                                "accuracy": 32 / 35, "ci95": [0.02, 0.23]})
    text = summary.format_table([cut])
    assert "truncated" in text.splitlines()[0]
    assert "2 read(s) got a reply cut by the token budget" in text
