"""``anthropic/MODEL`` through the real ``anthropic`` SDK against a local fake Messages server (real
HTTP): 429 and 529 with retry-after, malformed replies, thinking blocks, replies cut at the
budget, sampling parameters refused as by the real API, the cache, and runs through the runner."""

from __future__ import annotations

import importlib.util
import sqlite3

import pyarrow.parquet as pq
import pytest

from ffbench import language, render, runner
from ffbench.errors import FFBenchError, UsageError
from tests.anthropic_server import KEY, MODEL, AnthropicServer
from tests.fault_server import chat_sequence, oracle_bit, reply_kind

pytestmark = pytest.mark.skipif(importlib.util.find_spec("anthropic") is None,
                                reason="anthropic not installed (pip install 'ffbench[anthropic]')")

FAST = {"retry_base": 0.01, "timeout": 5, "concurrency": 4}


def _backend(url, cache=None, key=KEY, model=MODEL, **kw):
    from ffbench.backends import load_backend

    return load_backend(f"anthropic/{model}", {**FAST, **kw}, base_url=url, api_key=key,
                        cache_path=str(cache) if cache else None)


def _chat_prompts(num=24, length=24, seed=5):
    t = render.load_template("chat")
    prompts = []
    for seq in language.sample(language.FFL.from_p_ignore(0.5, length), num, seed):
        r = render.render(seq, t)
        prompts += [r.prompt(k) + t.ask for k in range(len(r.targets))]
    return prompts


def test_replies_thinking_truncation_and_faults(tmp_path):
    prompts = _chat_prompts()
    distinct = set(prompts)
    kinds = {p: reply_kind(p) for p in distinct}
    assert {"think", "cut", "garbage", "plain"} <= set(kinds.values())
    t = render.load_template("chat")
    cache = tmp_path / "requests.sqlite"
    with AnthropicServer() as srv:
        backend = _backend(srv.url, cache, thinking=1024)
        assert backend.capabilities.chat and not backend.capabilities.dense
        assert backend.context_length() == 200000 and backend.describe()["served_model"] == MODEL
        out = backend.generate(prompts, 32)
        for p, g in zip(prompts, out):
            bit, kind = oracle_bit(chat_sequence(p)), kinds[p]
            assert g.truncated == (kind == "cut")
            # The thinking block names the wrong bit first: it is kept apart, never parsed.
            assert g.reasoning == (f"Is it {1 - int(bit)}? No: the last write was {bit}." if kind == "think" else None)
            assert g.text == {"cut": "The answer", "garbage": "I do not know"}.get(kind, f"The answer is {bit}.")
            assert t.parse_answer(g.text) == (None if kind in ("cut", "garbage") else int(bit))
        # Exact accounting: every distinct request answered once; the server saw exactly those plus
        # the injected faults, each retried after the retry-after the server asked for.
        assert srv.injected["429"] > 0 and srv.injected["529"] > 0 and srv.injected["malformed"] > 0
        assert len(srv.served) == len(distinct) and srv.duplicates() == 0
        assert srv.requests == len(distinct) + sum(srv.injected.values())
        assert min(srv.after_fault) >= 0.1
        u = backend.usage
        assert u.requests == len(distinct) and u.cached_requests == len(prompts) - len(distinct)
        assert u.extra["throttled"] == srv.injected["429"] + srv.injected["529"]
        assert u.prompt_tokens == sum(len(p) for p in distinct) and u.completion_tokens == 5 * len(distinct)
        backend.close()
        # A second backend on the same cache file sends nothing.
        before = srv.requests
        again = _backend(srv.url, cache, thinking=1024)
        assert [g.text for g in again.generate(prompts, 32)] == [g.text for g in out]
        assert srv.requests == before and again.usage.cached_requests == len(prompts)
        again.close()
    # The key never reaches the cache file.
    assert KEY.encode() not in cache.read_bytes()
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == len(distinct)


def test_refusals_fail_at_once_in_one_line(tmp_path):
    with AnthropicServer(faults=False) as srv:
        backend = _backend(srv.url, temperature=0)
        with pytest.raises(FFBenchError, match="anthropic server refused the request: HTTP 400: "
                                               "temperature: Extra inputs are not permitted"):
            backend.generate(["Sequence:\nw 1 r"], 8)
        assert srv.requests == 1  # a refusal is not retried
        with pytest.raises(FFBenchError, match="does not know model 'claude-nope'"):
            _backend(srv.url, model="claude-nope")
        with pytest.raises(FFBenchError, match="HTTP 401"):
            _backend(srv.url, key="sk-wrong")
    with pytest.raises(FFBenchError, match="cannot use the Anthropic API at http://127.0.0.1:9"):
        _backend("http://127.0.0.1:9")
    with pytest.raises(UsageError, match="thinking must be off, adaptive or a token budget"):
        _backend("http://127.0.0.1:9", thinking="lots")


def _expected_errors(prompts) -> int:
    return sum(reply_kind(p) in ("garbage", "cut") for p in prompts)


def test_run_scores_chat_reads_and_resumes_from_cache(tmp_path):
    cfg = runner.RunConfig(model=f"anthropic/{MODEL}", model_args=FAST, suites=["in_dist"], lengths=[24], num=20,
                           renders=["chat"], scorings=["greedy"], batch_size=8)
    s = language.SUITES["in_dist"]
    arr = language.sample(s.distribution(24), 20, s.seed)
    t = render.load_template("chat")
    prompts = []
    for seq in arr:
        r = render.render(seq, t)
        prompts += [r.prompt(k) + t.ask for k in range(len(r.targets))]
    out = tmp_path / "run"
    with AnthropicServer() as srv:
        def make():
            return _backend(srv.url, out / "requests.sqlite")

        from ffbench.backends import resolve

        ref = resolve(cfg.model, cfg.model_args)
        ref.load = make
        res = runner.run(cfg, str(out), ref, progress=False, echo=lambda m: None)
        entry = res.results[0]
        assert entry.reads == len(prompts)
        # The oracle is right whenever its reply names a bit: errors are the garbage and cut replies.
        assert entry.errors == entry.invalid == _expected_errors(prompts) > 0
        assert entry.truncated == sum(reply_kind(p) == "cut" for p in prompts) > 0  # cut replies are truncated
        rows = pq.read_table(out / "samples.parquet", columns=["output"]).to_pylist()
        assert all(r["output"] for r in rows)
        sent = srv.requests
        (out / "results.json").unlink()
        (out / "samples.parquet").unlink()
        again = runner.run(cfg, str(out), ref, progress=False, echo=lambda m: None)
        assert [c.to_dict() for c in again.results] == [c.to_dict() for c in res.results] and srv.requests == sent
        with pytest.raises(FFBenchError, match="gives no log-probabilities of answers: use --scoring greedy"):
            runner.run(runner.RunConfig(**{**cfg.__dict__, "scorings": ["choice"]}), str(tmp_path / "c"), ref,
                       progress=False, echo=lambda m: None)


def test_system_prompt_reaches_the_messages_api():
    with AnthropicServer(faults=False) as srv:
        backend = _backend(srv.url, system_prompt="Answer with one bit.")
        out = backend.generate(["Sequence:\nw 1 i 0 r", "Sequence:\nw 0 r"], 16)
        assert [g.text for g in out] == ["The answer is 1.", "The answer is 0."]
        assert srv.system_prompts == {"Answer with one bit.": 2}
