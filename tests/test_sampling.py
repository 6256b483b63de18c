"""Sampled greedy reads (``--repeats``, ``--temperature``, ``--top-p``, ``--sampling-seed``) against the
fake OpenAI-compatible server's sampled model, whose per-read error probabilities are known: what is
sent, what is kept per read, the cell's figures, and the usage errors raised before any request."""

from __future__ import annotations

import importlib.util

import numpy as np
import pyarrow.parquet as pq
import pytest

from ffbench import runner, sampling
from ffbench.errors import UsageError
from tests.fault_server import MODEL, FaultServer

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openai") is None, reason="openai not installed")

FAST = {"retry_base": 0.01, "timeout": 2, "concurrency": 4}


def _ref(url, out):
    from ffbench.backends import resolve
    from ffbench.rundir import RunDir

    return resolve(f"openai/{MODEL}", {**FAST, "echo": False}, base_url=url, api_key="sk-test",
                   cache_path=str(RunDir(out).request_cache))


def _cfg(url, **kw):
    base = dict(model=f"openai/{MODEL}", model_args={**FAST, "echo": False}, suites=["in_dist"], lengths=[32],
                num=30, renders=["symbolic"], scorings=["greedy"], batch_size=10, base_url=url)
    base.update(kw)
    return runner.RunConfig(**base)


def _run(srv, tmp_path, name, **kw):
    out = str(tmp_path / name)
    res = runner.run(_cfg(srv.url, **kw), out, _ref(srv.url, out), progress=False, echo=lambda m: None)
    return res, pq.read_table(f"{out}/samples.parquet").to_pandas()


def test_deterministic_model_repeats_are_identical_and_numbers_unchanged(tmp_path):
    with FaultServer(faults=False) as srv:
        one, rows1 = _run(srv, tmp_path, "one")
        five, rows5 = _run(srv, tmp_path, "five", repeats=5, temperature=0.0)
    a, b = one.results[0], five.results[0]
    assert a.sampled is None and "repeats" not in rows1.columns  # one answer per read: today's run, unchanged
    assert a.errors > 0  # the oracle's garbage replies: errors to reproduce
    assert (b.reads, b.errors, b.invalid) == (a.reads, a.errors, a.invalid)
    assert b.variant == "repeats=5+temperature=0" and a.variant == ""
    assert rows5["predictions"].map(lambda p: len(set(p)) == 1).all()  # identical repeats
    assert (rows5["prediction"].to_numpy() == rows1["prediction"].to_numpy()).all()
    s = b.sampled
    assert s["repeats"] == 5 and s["answers"] == 5 * b.reads
    assert s["error_probability"] == pytest.approx(a.glitch_rate)
    assert s["wrong_any"] == pytest.approx(a.glitch_rate) == s["wrong_all"] == s["majority_error_rate"]
    assert s["ci95"][0] <= a.glitch_rate <= s["ci95"][1]
    # run one sent each distinct prompt once (reads with equal prompts share it); run five asked every
    # read 5 times, each its own request (the repeat and read tag stay in the cache key, off the wire)
    assert sum(srv.served.values()) == len(srv.served) + 5 * b.reads and max(srv.served.values()) > 6


def test_sampled_model_repeats_use_provider_default_and_keep_every_answer(tmp_path):
    with FaultServer(faults=False, sampled=0.6, sample_seed=3) as srv:
        res, rows = _run(srv, tmp_path, "r", repeats=4, top_p=0.9, sampling_seed=11)
    cell = res.results[0]
    # no temperature sent (the provider's default); top_p and seed + k sent with every request
    assert set(srv.sampling_seen) == {(None, 0.9, 11 + k, "max_tokens") for k in range(4)}
    assert len(set(srv.sampling_seen.values())) == 1  # every (sampled, non-garbage) prompt asked once per repeat
    preds = np.stack(rows["predictions"].to_numpy())
    wrong = (preds != rows["target"].to_numpy()[:, None]).sum(axis=1)
    assert (wrong == rows["wrong_repeats"].to_numpy()).all() and (rows["repeats"] == 4).all()
    assert len(set(map(tuple, preds.tolist()))) > 1 and 0 < wrong.sum() < preds.size  # the answers vary
    s = cell.sampled
    assert s["error_probability"] == pytest.approx((wrong / 4).mean())
    assert s["wrong_any"] == pytest.approx((wrong > 0).mean()) and s["wrong_all"] == pytest.approx((wrong == 4).mean())
    maj, correct = sampling.majority(preds, rows["target"].to_numpy())
    assert (maj == rows["prediction"].to_numpy()).all() and cell.errors == int((~correct).sum())
    assert s["majority_error_rate"] == pytest.approx(cell.glitch_rate)
    assert s["ci95"][0] < s["error_probability"] < s["ci95"][1]
    assert cell.variant == "repeats=4+top_p=0.9"
    assert all(len(o) == 4 for o in rows["outputs"])


def test_majority_rule_counts_ties_as_errors():
    pred, correct = sampling.majority(np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0]]), np.array([1, 1, 1]))
    assert pred.tolist() == [1, 0, 0] and correct.tolist() == [True, False, False]
    pred, correct = sampling.majority(np.array([[1, 0, -1, 0], [1, -1, -1, 1]]), np.array([1, 1]))
    assert pred.tolist() == [0, -1] and correct.tolist() == [False, False]  # 1 vs 0 tie 2:2; 2:2 with no answer


def test_no_wrong_answer_gives_the_exact_zero_error_bound():
    s = sampling.cell_stats(np.repeat(np.arange(10), 3), np.zeros(30), np.full(30, 4), np.ones(30, bool))
    assert s["ci95"] == [0.0, pytest.approx(-np.log(0.05) / 120)]


@pytest.mark.parametrize("kw, message", [
    (dict(repeats=3, scorings=["choice"]), "--repeats applies to --scoring greedy"),
    (dict(repeats=0), "--repeats must be a positive integer"),
    (dict(temperature=3.0), "--temperature must be between 0 and 2"),
    (dict(model="openai/o3-mini", temperature=0.5), "reasoning model and accepts only its default temperature"),
    (dict(model="openai/gpt-5", top_p=0.5), "reasoning model and does not accept top_p"),
    (dict(model="hf/gpt2", temperature=0.5), "hf/ models decode greedily and take no sampling parameters"),
])
def test_usage_errors_before_anything_loads(kw, message):
    with pytest.raises(UsageError, match=message):
        runner.plan(_cfg("http://127.0.0.1:9", **kw))


def test_reasoning_model_requests_are_built_as_openai_requires(tmp_path):
    """The fake server refuses what OpenAI's reasoning models refuse (a temperature, top_p, max_tokens):
    one answer per read and repeats both go through, with the provider's default sampling."""
    from ffbench.backends import resolve
    from ffbench.rundir import RunDir

    with FaultServer(faults=False, sampled=0.4, model="o4-mini", reasoning=True) as srv:
        for name, repeats in (("one", None), ("three", 3)):
            out = str(tmp_path / name)
            cfg = _cfg(srv.url, model="openai/o4-mini", model_args={**FAST, "api": "chat"}, renders=["chat"], num=8,
                       reasoning_budget=256, repeats=repeats)
            ref = resolve("openai/o4-mini", {**FAST, "api": "chat"}, base_url=srv.url, api_key="sk-test",
                          cache_path=str(RunDir(out).request_cache))
            res = runner.run(cfg, out, ref, progress=False, echo=lambda m: None)
            assert res.results[0].reads > 0
        assert srv.refused == 0
        assert set(srv.sampling_seen) == {(None, None, None, "max_completion_tokens")}
    assert res.results[0].variant.endswith("repeats=3") and res.results[0].sampled["repeats"] == 3


@pytest.mark.parametrize("kw, message", [
    (dict(model_args={"api": "chat"}), "pass --reasoning-budget"),
    (dict(reasoning_budget=64), "served by the chat API: pass --model-arg api=chat"),
])
def test_reasoning_model_usage_errors(kw, message):
    with pytest.raises(UsageError, match=message):
        runner.plan(_cfg("http://127.0.0.1:9", **{"model": "openai/o3", "renders": ["chat"], **kw}))


def test_anthropic_thinking_with_repeats_sends_no_temperature(tmp_path):
    from ffbench.backends import resolve
    from ffbench.rundir import RunDir
    from tests.anthropic_server import KEY, MODEL as CLAUDE, AnthropicServer

    args = {**FAST, "thinking": 2048}
    with AnthropicServer(faults=False, accepts_sampling=True) as srv:
        out = str(tmp_path / "a")
        cfg = _cfg(srv.url, model=f"anthropic/{CLAUDE}", model_args=args, renders=["chat"], num=6, repeats=2)
        ref = resolve(f"anthropic/{CLAUDE}", args, base_url=srv.url, api_key=KEY,
                      cache_path=str(RunDir(out).request_cache))
        res = runner.run(cfg, out, ref, progress=False, echo=lambda m: None)
        assert set(srv.sampling_seen) == {(None, None, "enabled")}
        assert sum(srv.sampling_seen.values()) == sum(srv.served.values()) > 0
    assert res.results[0].sampled["repeats"] == 2
    for kw, message in ((dict(temperature=0.5), "with thinking on samples at temperature 1 only"),
                        (dict(sampling_seed=3), "takes no seed"),
                        (dict(model_args={"thinking": 512}), "thinking budget is at least 1024")):
        with pytest.raises(UsageError, match=message):
            runner.plan(_cfg(srv.url, **{"model": f"anthropic/{CLAUDE}", "model_args": args, "renders": ["chat"],
                                         **kw}))


def test_prefix_is_paid_once_on_anthropic(tmp_path):
    """Reads of a T=512 sequence asked in prefix order with cache_control on the shared prefix: the
    fake server bills like the prompt cache, and results.json's cost prices what it billed."""
    from ffbench.backends import resolve
    from ffbench.control import RunControl
    from ffbench.cost import CACHE_WRITE, Prices
    from tests.anthropic_server import KEY, MODEL as CLAUDE, AnthropicServer

    prices = Prices(3.0, 15.0, 0.3)
    with AnthropicServer(faults=False, prompt_cache=True) as srv:
        cfg = _cfg(srv.url, model=f"anthropic/{CLAUDE}", model_args=FAST, renders=["lightswitch_chat"], lengths=[512],
                   num=2, batch_size=2)
        ref = resolve(f"anthropic/{CLAUDE}", dict(FAST), base_url=srv.url, api_key=KEY, cache_path=None)
        res = runner.run(cfg, str(tmp_path / "a"), ref, progress=False, echo=lambda m: None,
                         control=RunControl(prices=prices))
        billed = dict(srv.billed_tokens)
    cost = res.cost
    assert cost["cached_tokens"] == billed["cache_read"] > 0 and cost["cache_write_tokens"] == billed["cache_write"]
    assert cost["prompt_tokens"] == billed["input"] + billed["cache_read"] + billed["cache_write"]
    full = billed["input"] + billed["cache_write"]
    assert cost["prompt_tokens"] >= 5 * full  # the prefix is paid for once, not once per read
    usd = (3.0 * billed["input"] + 0.3 * billed["cache_read"] + CACHE_WRITE * 3.0 * billed["cache_write"]
           + 15.0 * cost["completion_tokens"]) / 1e6
    assert cost["usd"] == pytest.approx(usd)
    assert res.results[0].errors == res.results[0].invalid  # the oracle still answers every read it parses
    estimate = runner.dry_run(cfg, resolve(f"anthropic/{CLAUDE}", dict(FAST)), prices)
    assert estimate.cached_tokens > 0 and estimate.cost() < prices.cost(estimate.prompt_tokens,
                                                                          estimate.generation_budget)


def test_prefix_waves_and_breaks():
    from ffbench import language, render, scoring

    t = render.load_template("chat")
    rendered = [render.render(s, t) for s in language.sample(language.FFL.from_p_ignore(0.5, 24), 3, 1)]
    counts = [len(r.targets) for r in rendered]
    reads = np.arange(sum(counts))
    waves = scoring.prefix_waves(rendered, reads)
    assert [w.size for w in waves] == [sum(c > k for c in counts) for k in range(max(counts))]
    assert sorted(np.concatenate(waves).tolist()) == reads.tolist()
    breaks = scoring.prefix_breaks(rendered, reads)
    assert breaks[counts[0] - 1] == rendered[0].spans[:, 0].tolist()  # the last read of sequence 0: every end
    assert breaks[counts[0]] == [int(rendered[1].spans[0, 0])]


def test_cluster_interval_is_the_t_interval_of_sequence_means_when_sequences_are_equal():
    """With equally many reads per sequence the cluster-robust ratio interval is the one-sample
    t-interval of the sequences' means (an independent reference: scipy's)."""
    from scipy import stats

    rng = np.random.default_rng(1)
    share = rng.binomial(4, 0.2, size=(12, 5)) / 4  # 12 sequences of 5 reads, K = 4
    lo, hi = sampling.cluster_interval(np.repeat(np.arange(12), 5), share.ravel())
    ref = stats.ttest_1samp(share.mean(axis=1), 0).confidence_interval(0.95)
    assert (lo, hi) == (pytest.approx(ref.low), pytest.approx(ref.high))
    # unequal sequences: reads of a long sequence do not count as independent
    groups = np.array([0] * 20 + [1, 2, 3])
    values = np.array([1.0] * 20 + [0.0, 0.0, 0.0])
    lo, hi = sampling.cluster_interval(groups, values)
    naive = stats.ttest_1samp(values, 0).confidence_interval(0.95)  # as if the 23 reads were independent
    assert hi - lo > 1.5 * (naive.high - naive.low)  # one sequence holds every error: far less is known


def test_temperature_zero_with_one_answer_is_todays_greedy_cell():
    plain = sampling.Sampling()
    zero = sampling.Sampling(temperature=0.0)
    assert zero.variant_parts() == plain.variant_parts() == [] and not zero.sampled
    assert zero.temperature_to_send() == plain.temperature_to_send() == 0.0
    assert sampling.Sampling(repeats=3).temperature_to_send() is None  # the provider's default
    assert sampling.Sampling(repeats=3, temperature=0.0).variant_parts() == ["repeats=3", "temperature=0"]


def test_dry_run_counts_exactly_the_sampled_requests_sent(tmp_path):
    with FaultServer(faults=False, sampled=0.3) as srv:
        cfg = _cfg(srv.url, repeats=3, num=12)
        res = runner.run(cfg, str(tmp_path / "r"), _ref(srv.url, str(tmp_path / "r")), progress=False,
                         echo=lambda m: None)
    from ffbench.backends import resolve

    estimate = runner.dry_run(cfg, resolve(f"openai/{MODEL}", {**FAST, "echo": False}))
    assert estimate.requests == res.usage["requests"] == 3 * res.results[0].reads
