"""No response shape crashes a run or poisons its cache (issue 23), shown with Hypothesis: the fake
OpenAI-compatible server mutates every answer it sends (a key dropped, a value replaced by any
JSON value, a list cut short) and the run must either finish or fail with one ffbench error line;
then, the server fixed, the same command must finish from what the cache kept."""

from __future__ import annotations

import importlib.util
import json
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ffbench import runner
from ffbench.errors import FFBenchError
from ffbench.rundir import RunDir
from tests.fault_server import FaultServer
from tests.test_openai_faults import FAST, _cfg, _ref

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openai") is None, reason="openai not installed")

ARGS = {**FAST, "max_retries": 1}
JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats() | st.text(max_size=4),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                    max_leaves=4)


def paths(value, prefix=()):
    """Every path into a JSON value (keys and list indices), parents before children."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):  # the first few items stand for the rest
            out += paths(v, prefix + (i,))
    return out


class Mutation:
    """One change applied the same way to every answer: ``pick`` chooses the path (modulo their
    number), ``op`` what happens there."""

    def __init__(self, pick: int, op: str, value):
        self.pick, self.op, self.value = pick, op, value

    def __repr__(self):
        return f"Mutation({self.pick}, {self.op!r}, {self.value!r})"

    def __call__(self, body: dict) -> dict:
        body = json.loads(json.dumps(body))
        candidates = paths(body)[1:]
        path = candidates[self.pick % len(candidates)]
        parent = body
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        if self.op == "drop":
            if isinstance(parent, dict):
                del parent[last]
            else:
                parent.pop(last)
        elif self.op == "cut" and isinstance(parent[last], (list, str)):
            parent[last] = parent[last][: len(parent[last]) // 2]
        else:
            parent[last] = self.value
        return body


MUTATIONS = st.builds(Mutation, st.integers(0, 10_000), st.sampled_from(["drop", "replace", "cut"]), JSON)


def _run(url, out, scoring):
    cfg = _cfg(url, num=2, lengths=[16], batch_size=2, scorings=[scoring],
               model_args={**ARGS, "echo": scoring == "choice"})
    ref = _ref(url, str(out), **cfg.model_args)
    return runner.run(cfg, str(out), ref, progress=False, echo=lambda m: None)


@pytest.mark.parametrize("scoring", ["choice", "greedy"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=MUTATIONS)
def test_no_answer_shape_crashes_the_run_or_poisons_the_cache(scoring, mutation):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r"
        with FaultServer(faults=False, mutate=mutation) as srv:
            try:
                _run(srv.url, out, scoring)
                finished = True
            except FFBenchError as exc:
                assert "\n" not in str(exc)
                finished = False
            srv.mutate = None  # the server is fixed
            if finished:
                RunDir(out).reopen()  # score again from the kept answers alone
                requests = srv.requests
            res = _run(srv.url, out, scoring)
            if finished:
                assert srv.requests == requests  # every kept answer was usable
        assert res.results[0].reads > 0


class SetUsage:
    """Every answer's ``usage`` replaced by one value (CI's Hypothesis run found ``usage: 1`` crashing
    the cached-token count, after the token count itself had been made safe)."""

    def __init__(self, value):
        self.value = value

    def __call__(self, body: dict) -> dict:
        return {**json.loads(json.dumps(body)), "usage": self.value}


@pytest.mark.parametrize("usage", [1, True, [None], "x", {"prompt_tokens_details": 3},
                                   {"prompt_tokens": "a", "prompt_tokens_details": {"cached_tokens": []}}])
def test_a_usage_field_of_any_shape_counts_nothing_and_the_run_completes(usage, tmp_path):
    with FaultServer(faults=False, mutate=SetUsage(usage)) as srv:
        res = _run(srv.url, tmp_path / "r", "choice")
    assert res.complete and res.usage["prompt_tokens"] == 0 and res.usage.get("cached_tokens", 0) == 0
