"""How a hunt's candidates are shared among the engine's workers (ffbench.hunt.job.split) and put
back in order by the driver: fast, without Ray (tests/test_ray_hunt.py runs the same on actors)."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ffbench import engine
from ffbench.hunt import HuntConfig, hunt
from ffbench.hunt.job import split
from tests.conftest import needs_native
from tests.test_hunt import WriteDistanceModel, synthetic_ref


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([4, 6, 8, 32]), max_size=40), st.integers(1, 6))
def test_every_sequence_goes_to_one_unit_and_each_length_stays_whole(lengths, parts):
    units = split(lengths, parts)
    assert 1 <= len(units) <= max(1, min(parts, len(lengths)))
    assert sorted(np.concatenate(units).tolist()) == list(range(len(lengths)))
    assert all((np.diff(u) > 0).all() for u in units)  # each unit keeps the round's order
    if len(set(lengths)) > 1:  # mixed lengths: a length is never cut between units
        owner = {}
        for k, u in enumerate(units):
            for i in u.tolist():
                assert owner.setdefault(lengths[i], k) == k
    else:  # equal lengths: contiguous runs within one sequence of each other in size
        assert np.concatenate(units).tolist() == list(range(len(lengths)))
        sizes = [len(u) for u in units]
        assert max(sizes) - min(sizes) <= 1


@needs_native
def test_a_hunt_shared_among_workers_is_the_hunt_of_one(tmp_path, monkeypatch):
    """Three workers' units, put back in order, give the one-worker hunt: map search with shrinking
    (equal and mixed lengths) and an estimate (mixed lengths, one read each)."""
    runs = {}
    for workers in (1, 3):
        monkeypatch.setattr(engine.LocalScorer, "workers", workers)
        for name, kw in {"map": {"budget": 1200}, "estimate": {"budget": 900, "estimate": "in_dist"}}.items():
            model = WriteDistanceModel()
            cfg = HuntConfig(model="ffbench/transformer-ref", length=32, **kw)
            out = tmp_path / f"{name}-{workers}"
            hunt(cfg, str(out), synthetic_ref(model), echo=lambda m: None)
            state = json.loads((out / "state.json").read_text())
            runs[name, workers] = ({**state, "created": None}, model.calls)
    for name in ("map", "estimate"):
        (one, calls_one), (three, calls_three) = runs[name, 1], runs[name, 3]
        assert one == three and (one["glitches"] or name == "estimate")
        assert calls_three > calls_one  # the rounds really were cut into several units
