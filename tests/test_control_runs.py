"""Run control on real runs: --stop-at-first-error, --certify and --max-cost stop at the exact shard
the rules name, keep what was scored, return the stopped run for the same flags and score on from
the kept shards under others. Native checkpoints (shipped, no download) and the local OpenAI-compatible
fault server (character tokens, real usage counts)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from ffbench import language, metrics, render, runner
from ffbench.backends import load_backend, resolve
from ffbench.control import RunControl
from ffbench.cost import Prices
from ffbench.errors import FFBenchError
from tests.conftest import needs_native
from tests.fault_server import FaultServer
from tests.test_cli import run_main

NATIVE = {"model": "ffbench/transformer-ref", "lengths": [128], "batch_size": 20}
SHARD = 20


class Counting:
    """A real backend that counts the texts it scores densely."""

    def __init__(self, inner):
        self.inner, self.texts = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def score_dense(self, requests):
        self.texts += len(requests)
        return self.inner.score_dense(requests)


def _native(out, control=None, loader=None, **cfg):
    ref = resolve("ffbench/transformer-ref")
    if loader is not None:
        ref.load = loader
    return runner.run(runner.RunConfig(**{**NATIVE, **cfg}), str(out), ref, progress=False, echo=lambda m: None,
                      control=control)


def _counting():
    return Counting(load_backend("ffbench/transformer-ref", {}))


def _samples(path):
    return pq.read_table(path).to_pandas()


def _shard_counts(samples, cell_id, num):
    """(wrong reads, reads) of every shard of a cell, from a complete run's samples."""
    rows = samples[samples.cell == cell_id]
    return [(int((~rows.correct[(rows.seq_index >= s) & (rows.seq_index < s + SHARD)]).sum()),
             int(((rows.seq_index >= s) & (rows.seq_index < s + SHARD)).sum())) for s in range(0, num, SHARD)]


@pytest.fixture(scope="module")
def full_three(tmp_path_factory):
    """in_dist, dense and sparse, 60 sequences each, scored to the end without run control."""
    out = tmp_path_factory.mktemp("full") / "run"
    res = _native(out, suites=["in_dist", "dense", "sparse"], num=60)
    return res, _samples(out / "samples.parquet")


@needs_native
def test_stop_at_first_error_stops_at_the_first_wrong_shard_and_continues_without_the_flag(tmp_path, full_three):
    full, samples = full_three
    cfg = {"suites": ["in_dist", "dense", "sparse"], "num": 60}
    first = next((k, j) for k, c in enumerate(full.results) for j, (wrong, _) in
                 enumerate(_shard_counts(samples, c.id, 60)) if wrong)
    assert first[0] >= 1 or first[1] >= 1, "the test needs a clean first shard to be meaningful"
    backend = _counting()
    out = tmp_path / "r"
    stopped = _native(out, RunControl(stop_at_first_error=True), loader=lambda: backend, **cfg)
    scored = [60] * first[0] + [SHARD * (first[1] + 1)]
    assert stopped.stop_reason == "first_error" and not stopped.complete
    assert [c.num_sequences for c in stopped.results] == scored
    assert [c.complete for c in stopped.results] == [n == 60 for n in scored]
    assert [c.stop_reason for c in stopped.results] == ["complete" if n == 60 else "first_error" for n in scored]
    assert [(e["suite"], e["planned_sequences"]) for e in stopped.not_scored] == \
        [(c.suite, 60) for c in full.results[len(scored):]]
    assert backend.texts == sum(scored)
    # the kept samples are exactly the full run's rows of the scored shards
    keep = samples[samples.apply(lambda r: any(r.cell == c.id and r.seq_index < n
                                               for c, n in zip(full.results, scored)), axis=1)]
    got = _samples(out / "samples.parquet")
    assert got.reset_index(drop=True).equals(keep.reset_index(drop=True))
    assert stopped.results[-1].errors == first_errors(samples, full.results[first[0]].id, first[1]) > 0
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["stop_reason"] == "first_error" and "overstate the glitch rate" in on_disk["stop_detail"]
    assert on_disk["control"]["stop_at_first_error"] is True

    # The same flags again: the stopped run is the answer; no model is loaded.
    again = _native(out, RunControl(stop_at_first_error=True), loader=lambda: pytest.fail("model loaded"), **cfg)
    assert again.to_dict() == stopped.to_dict()

    # Without the flag: the rest is scored, nothing twice, and the result is the full run's.
    rest = _counting()
    done = _native(out, loader=lambda: rest, **cfg)
    assert rest.texts == 180 - sum(scored)
    assert done.stop_reason == "complete" and done.complete and done.not_scored == []
    assert [c.to_dict() for c in done.results] == [c.to_dict() for c in full.results]
    assert _samples(out / "samples.parquet").equals(samples)
    assert not (out / "shards").exists()


def first_errors(samples, cell_id, shard):
    rows = samples[(samples.cell == cell_id) & (samples.seq_index < SHARD * (shard + 1))]
    return int((~rows.correct).sum())


@pytest.fixture(scope="module")
def full_two(tmp_path_factory):
    out = tmp_path_factory.mktemp("full2") / "run"
    res = _native(out, suites=["in_dist", "dense"], num=200)
    return res, _samples(out / "samples.parquet")


def _decided_at(counts, eps):
    """Index of the shard after which the anytime interval excludes EPS, else None."""
    wrong = np.cumsum([w for w, _ in counts])
    reads = np.cumsum([n for _, n in counts])
    below, above = metrics.anytime_excludes(wrong, reads, eps)
    hits = np.flatnonzero(below | above)
    return (int(hits[0]), "certified" if below[hits[0]] else "refuted") if hits.size else (None, "complete")


@needs_native
def test_certify_stops_each_cell_at_its_decision_and_a_smaller_eps_scores_on(tmp_path, full_two):
    full, samples = full_two
    cfg = {"suites": ["in_dist", "dense"], "num": 200}
    eps = 0.005
    expected = [_decided_at(_shard_counts(samples, c.id, 200), eps) for c in full.results]
    assert [e[1] for e in expected] == ["certified", "refuted"], expected  # in_dist is clean, dense glitches (1%)
    backend = _counting()
    out = tmp_path / "r"
    res = _native(out, RunControl(certify=eps), loader=lambda: backend, **cfg)
    assert [c.num_sequences for c in res.results] == [SHARD * (k + 1) for k, _ in expected]
    assert [c.stop_reason for c in res.results] == ["certified", "refuted"]
    assert [c.certify["verdict"] for c in res.results] == ["below", "above"]
    assert res.results[0].certify["upper"] < eps < res.results[1].certify["lower"]
    assert res.stop_reason == "refuted" and backend.texts == sum(c.num_sequences for c in res.results)
    for c, f in zip(res.results, full.results):
        k = c.num_sequences // SHARD - 1
        assert (c.errors, c.reads) == tuple(np.sum(_shard_counts(samples, f.id, 200)[: k + 1], axis=0))

    # A smaller EPS: dense is already shown above it from the kept shards; in_dist scores on to its end.
    more = _counting()
    res2 = _native(out, RunControl(certify=0.002), loader=lambda: more, **cfg)
    k2, why = _decided_at(_shard_counts(samples, full.results[0].id, 200), 0.002)
    assert more.texts == (200 if k2 is None else SHARD * (k2 + 1)) - res.results[0].num_sequences
    assert res2.results[1].num_sequences == res.results[1].num_sequences
    assert res2.results[0].stop_reason == ("complete" if k2 is None else why)
    assert res2.stop_reason == "refuted"


@needs_native
def test_max_cost_native_stops_before_the_shard_over_budget_and_resumes_with_more(tmp_path):
    """transformer-ref reads one token per character: a shard of 20 sequences at T = 128 sends 2,560
    prompt tokens, $0.00256 at $1 per million. $0.0077 pays for 3 shards, $0.0128 for 5."""
    cfg = {"suites": ["in_dist"], "num": 200}
    prices = Prices(price_in=1.0)
    backend = _counting()
    out = tmp_path / "r"
    res = _native(out, RunControl(max_cost=0.0077, prices=prices), loader=lambda: backend, **cfg)
    cell = res.results[0]
    assert res.stop_reason == "max_cost" and cell.num_sequences == 60 and cell.stop_reason == "max_cost"
    assert backend.texts == 60 and res.usage["prompt_tokens"] == 3 * 2560
    assert res.cost["usd"] == pytest.approx(3 * 2560 / 1e6) and res.cost["max_cost"] == 0.0077
    assert "estimated at $0.0026; with $0.0077 spent it would exceed --max-cost $0.0077" in res.stop_detail
    more = _counting()
    res2 = _native(out, RunControl(max_cost=0.0128, prices=prices), loader=lambda: more, **cfg)
    assert res2.results[0].num_sequences == 100 and more.texts == 40 and res2.usage["prompt_tokens"] == 5 * 2560
    # a budget below the first shard scores nothing and leaves no directory
    with pytest.raises(FFBenchError, match=r"nothing was scored: the next shard .* is estimated at \$0.0026; .*"
                                           r"raise --max-cost"):
        _native(tmp_path / "none", RunControl(max_cost=0.001, prices=prices), **cfg)
    assert not (tmp_path / "none").exists()


def test_max_cost_on_an_api_server_counts_real_usage_and_sends_nothing_twice(tmp_path):
    """openai/ against the local server (one token per character, real usage in every response): the
    estimate (characters, plus the one token an echo request may generate) and the usage agree."""
    from tests.test_openai_faults import FAST, _cfg, _ref

    p_in, p_out = 10.0, 1000.0
    s = language.SUITES["in_dist"]
    arr = language.sample(s.distribution(32), 40, s.seed)
    chars = [sum(len(render.render(q, "symbolic").text) for q in arr[k: k + 8]) for k in range(0, 40, 8)]
    actual = [p_in * c / 1e6 for c in chars]  # echo requests generate nothing here
    estimate = [a + p_out * 8 / 1e6 for a in actual]
    budget = sum(actual[:3]) + estimate[3] - 1e-9  # three shards, and the fourth just does not fit
    with FaultServer(faults=False) as srv:
        cfg = _cfg(srv.url, num=40, scorings=["choice"], model_args=FAST)
        out = tmp_path / "r"

        def go(control):
            return runner.run(cfg, str(out), _ref(srv.url, str(out)), progress=False, echo=lambda m: None,
                              control=control)

        res = go(RunControl(max_cost=budget, prices=Prices(p_in, p_out)))
        assert res.stop_reason == "max_cost" and res.results[0].num_sequences == 24
        assert res.usage["prompt_tokens"] == sum(chars[:3]) and srv.requests == 24
        assert res.cost["usd"] == pytest.approx(sum(actual[:3]))
        assert go(RunControl(max_cost=budget, prices=Prices(p_in, p_out))).to_dict() == res.to_dict()
        assert srv.requests == 24  # the stopped run answered; nothing sent
        done = go(RunControl(max_cost=1.0, prices=Prices(p_in, p_out)))
        assert done.stop_reason == "complete" and done.results[0].num_sequences == 40
        assert srv.requests == 40 and srv.duplicates() == 0
        assert done.usage["prompt_tokens"] == sum(chars) and done.cost["usd"] == pytest.approx(sum(actual))
        fresh = runner.run(cfg, str(tmp_path / "fresh"), _ref(srv.url, str(tmp_path / "fresh")), progress=False,
                           echo=lambda m: None)
        assert [c.to_dict() for c in done.results] == [c.to_dict() for c in fresh.results]


@needs_native
def test_cli_says_why_it_stopped_and_does_not_record_a_partial_run(tmp_path, capsys):
    out = tmp_path / "r"
    code, stdout, _ = run_main(capsys, "run", "--model", "ffbench/transformer-ref", "--suite", "dense,in_dist",
                               "--num", 40, "--batch-size", 20, "--stop-at-first-error", "--price-in", "2",
                               "--output-dir", out, "--no-progress")
    assert code == 0
    raw = json.loads((out / "results.json").read_text())
    assert raw["stop_reason"] == "first_error" and raw["results"][0]["complete"] is False
    assert f"{raw['results'][0]['num_sequences']} of 40" in stdout
    assert "stopped: first_error. Stopped at the first shard holding a wrong read (" in stdout
    assert "not scored: in_dist T=128 symbolic choice (40 sequences planned)" in stdout
    assert f"cost: ${raw['cost']['usd']:,.4f} ({raw['usage']['prompt_tokens']:,} prompt and 0 completion" in stdout
    assert "registry: not recorded: the run stopped early (first_error)" in stdout


@pytest.mark.parametrize("scoring, per_read", [("choice", False), ("choice", True), ("greedy", True)])
def test_hf_shard_estimate_is_the_prompt_tokens_the_backend_sends(tiny_llama, scoring, per_read):
    """The --max-cost estimate of a shard against the usage hf/ reports for it (a Llama tokenizer
    that adds BOS): prompt tokens equal, completion tokens within the generation budget."""
    from ffbench import runner
    from ffbench import scoring as scorer
    from ffbench.backends import resolve
    from ffbench.preflight import Estimator

    args = {"dtype": "float32", "device": "cpu"}
    backend = load_backend(f"hf/{tiny_llama}", args)
    cfg = runner.RunConfig(model=f"hf/{tiny_llama}", model_args=args, p_ignore=[0.5], lengths=[24], num=6, seed=3,
                           scorings=[scoring], per_read=per_read)
    p = runner.plan(cfg)
    cell = p.cells[0]
    template = p.templates[cell.render]
    rendered = [render.render(q, template) for q in p.store.sequences(cell.source)]
    estimate = Estimator(p, resolve(cfg.model, args)).shard(cell, rendered)
    scorer.score(backend, rendered, template, scoring, per_read=per_read)
    assert estimate.counted and backend.usage.prompt_tokens == estimate.prompt_tokens > 0
    assert backend.usage.requests == estimate.requests
    assert backend.usage.completion_tokens <= estimate.completion_tokens
