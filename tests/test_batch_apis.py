"""Batch mode (``--model-arg batch=true``) of ``openai/`` (files + Batch API) and ``anthropic/``
(Message Batches) against local fake servers over real HTTP with the real SDKs: a job that
expires half done, results missing, per-request errors, a refused request, a create answered
with a 500 after it created the job, and a run SIGKILLed while its job is pending then rerun."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ffbench import language, render, runner
from ffbench.errors import FFBenchError
from tests import anthropic_server
from tests.anthropic_server import AnthropicServer
from tests.fault_server import MODEL as OPENAI_MODEL
from tests.fault_server import FaultServer, chat_sequence, garbage, oracle_bit, reply_kind

ROOT = Path(__file__).resolve().parents[1]
OPENAI_KEY = "sk-test-secret"


def _needs(provider):
    return pytest.mark.skipif(importlib.util.find_spec(provider) is None, reason=f"{provider} not installed")


PROVIDERS = [pytest.param("openai", marks=_needs("openai")), pytest.param("anthropic", marks=_needs("anthropic"))]


def _server(provider, **kw):
    return FaultServer(faults=False, **kw) if provider == "openai" else AnthropicServer(faults=False, **kw)


def _spec(provider):
    return f"openai/{OPENAI_MODEL}" if provider == "openai" else f"anthropic/{anthropic_server.MODEL}"


def _key(provider):
    return OPENAI_KEY if provider == "openai" else anthropic_server.KEY


def _backend(provider, srv, cache, notices=None, **kw):
    from ffbench.backends import load_backend

    args = {"poll_interval": 0.01, "retry_base": 0.01, **kw}
    if provider == "openai":
        args["api"] = "chat"
    return load_backend(_spec(provider), args, base_url=srv.url, api_key=_key(provider),
                        cache_path=str(cache), notify=notices.append if notices is not None else None)


def _expected(provider, prompt: str) -> str:
    """What each fake server's oracle replies (no thinking requested)."""
    bit = oracle_bit(chat_sequence(prompt))
    kind = ("garbage" if garbage(prompt) else "plain") if provider == "openai" else reply_kind(prompt)
    return {"garbage": "I do not know", "cut": "The answer"}.get(kind, f"The answer is {bit}.")


def _prompts(n: int) -> list[str]:
    t = render.load_template("chat")
    out: dict[str, None] = {}
    for seq in language.sample(language.FFL.from_p_ignore(0.5, 24), 4 * n, 11):
        r = render.render(seq, t)
        out.update((r.prompt(k) + t.ask, None) for k in range(len(r.targets)))
    assert len(out) >= n
    return list(out)[:n]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_expired_partial_and_errored_requests_are_resubmitted_alone(provider, tmp_path):
    prompts = _prompts(40)
    faults = ["expire", "partial", "errors"]
    if provider == "openai":
        faults[0] = "create-500,expire"  # the job exists, but creating it was answered with a 500
    notices: list[str] = []
    cache = tmp_path / "requests.sqlite"
    with _server(provider, batch_faults=faults) as srv:
        backend = _backend(provider, srv, cache, notices, batch=True)
        out = backend.generate(prompts, 16)
        assert [g.text for g in out] == [_expected(provider, p) for p in prompts]
        # 40 sent; 20 expired -> resubmitted; of those 7 had no result -> resubmitted; of those
        # 2 failed with a retryable error -> resubmitted; then all answered.
        jobs = [ids for _, ids in srv.batch_creations]
        assert [len(ids) for ids in jobs] == [40, 20, 7, 2]
        assert all(later < earlier for earlier, later in itertools.pairwise(jobs))  # only the missing ones
        assert len(srv.billed) == 40 and set(srv.billed.values()) == {1}  # each request billed once
        if provider == "openai":
            assert srv.uploads == 4  # the retried create found its job instead of making a second one
        u = backend.usage.as_dict()
        assert (u["requests"], u["batched_requests"], u["batch_jobs"], u["batch_resubmitted"]) == (40, 40, 4, 29)
        assert len(notices) == 3 and all("resubmitting only those" in n for n in notices)
        assert "20 of 40 requests unanswered" in notices[0] and "7 of 20" in notices[1] and "2 of 7" in notices[2]
        backend.close()
        # Results landed in the response cache: batched or online, a rerun sends nothing.
        for batch in (True, False):
            again = _backend(provider, srv, cache, batch=batch)
            assert [g.text for g in again.generate(prompts, 16)] == [g.text for g in out]
            assert again.usage.cached_requests == 40 and again.usage.requests == 0
            again.close()
        assert len(srv.batch_creations) == 4 and srv.requests == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_refused_request_stops_the_run_and_keeps_the_answers(provider, tmp_path):
    prompts = _prompts(12)
    cache = tmp_path / "requests.sqlite"
    with _server(provider, batch_faults=["refuse"]) as srv:
        backend = _backend(provider, srv, cache, batch=True)
        with pytest.raises(FFBenchError, match=r"1 of 12 requests were refused \(.*too long\); the 11 answers are kept"):
            backend.generate(prompts, 16)
        backend.close()
        online = _backend(provider, srv, cache)
        assert [g.text for g in online.generate(prompts, 16)] == [_expected(provider, p) for p in prompts]
        assert srv.requests == 1 and online.usage.cached_requests == 11  # only the refused one was asked again


def _child(provider, srv, cache, prompts_file):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tests.batch_child", _spec(provider), srv.url, _key(provider),
                             str(cache), str(prompts_file)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.integration
@pytest.mark.parametrize("provider", PROVIDERS)
def test_sigkill_while_the_batch_is_pending_then_rerun_polls_it(provider, tmp_path):
    prompts = _prompts(30)
    prompts_file = tmp_path / "prompts.json"
    prompts_file.write_text(json.dumps(prompts))
    cache = tmp_path / "requests.sqlite"
    with _server(provider, hold=True) as srv:
        first = _child(provider, srv, cache, prompts_file)
        _wait_for(lambda: srv.batch_creations and srv.polls[srv.batch_creations[0][0]] >= 1)
        job_id = srv.batch_creations[0][0]
        first.send_signal(signal.SIGKILL)
        first.wait()
        with sqlite3.connect(cache) as db:  # the job id was recorded before the first poll
            assert db.execute("SELECT job_id, state FROM batch_jobs").fetchall() == [(job_id, "submitted")]
        polls = srv.polls[job_id]
        second = _child(provider, srv, cache, prompts_file)
        _wait_for(lambda: srv.polls[job_id] > polls)  # the rerun polls the recorded job ...
        srv.release()  # ... which then completes
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
        assert json.loads(out) == [_expected(provider, p) for p in prompts]
        assert f"{provider} batch {job_id} for these 30 requests was submitted by an earlier run" in err
        # Exactly one job was ever created for these requests, and each request was billed once.
        assert len(srv.batch_creations) == 1 and len(srv.batch_creations[0][1]) == 30
        assert len(srv.billed) == 30 and set(srv.billed.values()) == {1}
        if provider == "openai":
            assert srv.uploads == 1
        assert srv.requests == 0  # nothing went online


@pytest.mark.parametrize("provider", PROVIDERS)
def test_batched_run_equals_online_run_with_one_job_per_shard(provider, tmp_path):
    model_args = {"retry_base": 0.01, **({"api": "chat"} if provider == "openai" else {})}
    results = {}
    for batch in (False, True):
        cfg = runner.RunConfig(model=_spec(provider), model_args={**model_args, "batch": batch}, suites=["in_dist"],
                               lengths=[24], num=20, renders=["chat"], scorings=["greedy"], batch_size=8)
        out = tmp_path / f"batch-{batch}"
        with _server(provider) as srv:
            def make(srv=srv, cache=out / "requests.sqlite", batch=batch):
                return _backend(provider, srv, cache, batch=batch)

            from ffbench.backends import resolve

            ref = resolve(cfg.model, cfg.model_args)
            ref.load = make
            res = runner.run(cfg, str(out), ref, progress=False, echo=lambda m: None)
            results[batch] = [c.to_dict() for c in res.results]
            if batch:
                assert len(srv.batch_creations) == 3 and srv.requests == 0  # 20 sequences in shards of 8
                assert res.usage["batch_jobs"] == 3
            else:
                assert not srv.batch_creations
    assert results[True] == results[False]
    assert results[True][0]["errors"] > 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_create_that_times_out_after_creating_the_job(provider, tmp_path):
    """OpenAI jobs carry the request-set hash in their metadata, so the retry finds the job the
    timed-out attempt created: one job. Anthropic's cannot be found, so the create is not retried:
    the run stops saying the job may exist, and a rerun (told so) submits again."""
    prompts = _prompts(10)
    cache = tmp_path / "requests.sqlite"
    notices: list[str] = []
    with _server(provider, batch_faults=["create-stall"]) as srv:
        backend = _backend(provider, srv, cache, notices, batch=True, timeout=0.5)
        if provider == "openai":
            assert [g.text for g in backend.generate(prompts, 16)] == [_expected(provider, p) for p in prompts]
            assert len(srv.batch_creations) == 1 and srv.uploads == 1
            return
        with pytest.raises(FFBenchError, match="creating an anthropic batch for 10 requests failed .*timeout.*it may "
                                               "exist anyway"):
            backend.generate(prompts, 16)
        backend.close()
        assert len(srv.batch_creations) == 1
        again = _backend(provider, srv, cache, notices, batch=True)
        assert [g.text for g in again.generate(prompts, 16)] == [_expected(provider, p) for p in prompts]
        assert len(srv.batch_creations) == 2
        assert any("cannot say whether it was created: submitting them again" in n for n in notices)


@pytest.mark.integration
@_needs("openai")
def test_ffbench_run_killed_while_a_batch_is_pending_resumes_without_resubmitting(tmp_path):
    """The whole CLI: `ffbench run ... --model-arg batch=true` SIGKILLed while its first shard's job
    is pending; the rerun polls that job, every shard gets exactly one job, and the results equal
    an online run's."""
    args = ["--model", f"openai/{OPENAI_MODEL}", "--suite", "in_dist", "--length", "24", "--num", "12",
            "--render", "chat", "--scoring", "greedy", "--batch-size", "4", "--model-arg", "api=chat",
            "--model-arg", "retry_base=0.01", "--no-progress", "--no-record"]
    batched = args + ["--model-arg", "batch=true", "--model-arg", "poll_interval=0.05"]
    with _server("openai", hold=True) as srv:
        env = {**os.environ, "OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": srv.url, "PYTHONPATH": str(ROOT)}

        def cli(extra):
            return subprocess.Popen([sys.executable, "-m", "ffbench", "run", *extra], cwd=ROOT, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        first = cli(batched + ["--output-dir", str(tmp_path / "batched")])
        _wait_for(lambda: srv.batch_creations and srv.polls[srv.batch_creations[0][0]] >= 1)
        first.send_signal(signal.SIGKILL)
        first.wait()
        job_id = srv.batch_creations[0][0]
        polls = srv.polls[job_id]
        second = cli(batched + ["--output-dir", str(tmp_path / "batched")])
        _wait_for(lambda: srv.polls[job_id] > polls)
        srv.release()
        out, err = second.communicate(timeout=300)
        assert second.returncode == 0, err
        assert "submitted by an earlier run: polling it" in err
        assert len(srv.batch_creations) == 3  # 12 sequences in shards of 4: one job each, none twice
        assert set(srv.billed.values()) == {1} and srv.requests == 0
        online = cli(args + ["--output-dir", str(tmp_path / "online")])
        assert online.wait(timeout=300) == 0, online.stderr.read()
    a = json.loads((tmp_path / "batched" / "results.json").read_text())
    b = json.loads((tmp_path / "online" / "results.json").read_text())
    assert a["results"] == b["results"] and a["results"][0]["errors"] > 0
    assert a["usage"]["batch_jobs"] == 2  # the first shard's job was created by the killed run
    assert a["usage"]["batched_requests"] == sum(len(ids) for _, ids in srv.batch_creations)
