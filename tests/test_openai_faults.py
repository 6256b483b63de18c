"""The OpenAI backend against a local fault-injecting server: retries, Retry-After, invalid
answers, the request cache, an unreachable server, and SIGKILL + resume in a real subprocess."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from ffbench import language, render, runner
from ffbench.errors import FFBenchError
from tests.fault_server import MODEL, FaultServer, garbage, oracle_bit

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openai") is None, reason="openai not installed")

FAST = {"retry_base": 0.01, "timeout": 0.5, "concurrency": 4}


def _backend(url, out=None, **kw):
    from ffbench.backends import load_backend

    return load_backend(f"openai/{MODEL}", {**FAST, **kw}, base_url=url, api_key="sk-test-secret", cache_dir=out)


def _ref(url, out=None, **kw):
    from ffbench.backends import resolve

    return resolve(f"openai/{MODEL}", {**FAST, **kw}, base_url=url, api_key="sk-test-secret", cache_dir=out)


def _cfg(url, **kw):
    base = dict(model=f"openai/{MODEL}", model_args={**FAST, "echo": False}, suites=["in_dist"], lengths=[32],
                num=30, renders=["symbolic"], scorings=["greedy"], batch_size=8, base_url=url)
    base.update(kw)
    return runner.RunConfig(**base)


def _expected_invalid(length=32, num=30, chat=False):
    s = language.SUITES["in_dist"]
    arr = language.sample(s.distribution(length), num, s.seed)
    name = "chat" if chat else "symbolic"
    t = render.load_template(name)
    n = 0
    for seq in arr:
        out = render.render(seq, t)
        n += sum(garbage(out.prompt(k) + t.ask) for k in range(len(out.targets)))
    return n


def test_faults_are_retried_and_nothing_is_lost(tmp_path):
    with FaultServer() as srv:
        cfg = _cfg(srv.url)
        out = tmp_path / "run"
        res = runner.run(cfg, str(out), _ref(srv.url, str(out), echo=False), progress=False,
                         echo=lambda m: None)
        entry = res.results[0]
        s = language.SUITES["in_dist"]
        reads = language.extract_reads(language.sample(s.distribution(32), 30, s.seed))
        assert entry.reads == len(reads)
        expected_invalid = _expected_invalid()
        assert expected_invalid > 0
        # The oracle is right on every parseable answer: errors are exactly the garbage answers.
        assert entry.invalid == entry.errors == expected_invalid
        assert all(v > 0 for v in srv.injected.values()), srv.injected
        assert srv.duplicates() == 0
        assert min(srv.after_429) >= 0.15  # Retry-After (ms header) honoured
        # Identical prompts (short sequences share prefixes) are asked once and then served from the cache.
        usage = res.usage
        assert usage["requests"] == len(srv.served) and usage["requests"] + usage["cached_requests"] == len(reads)
        assert usage["completion_tokens"] == 3 * usage["requests"]
        text = (out / "results.json").read_text()
        assert "sk-test-secret" not in text and "sk-test-secret" not in (out / "requests.sqlite").read_bytes().decode(
            "latin-1")

        # Rescoring the same run directory from its cache sends no request at all.
        before = srv.requests
        (out / "results.json").unlink()
        (out / "samples.parquet").unlink()
        again = runner.run(cfg, str(out), _ref(srv.url, str(out), echo=False), progress=False,
                           echo=lambda m: None)
        assert srv.requests == before
        assert [c.to_dict() for c in again.results] == [c.to_dict() for c in res.results]


def test_chat_generation_is_parsed_strictly(tmp_path):
    with FaultServer(faults=False) as srv:
        cfg = _cfg(srv.url, renders=["chat"], model_args={**FAST, "api": "chat"})
        res = runner.run(cfg, str(tmp_path / "r"), _ref(srv.url, str(tmp_path / "r"), api="chat"),
                         progress=False, echo=lambda m: None)
        entry = res.results[0]
        assert entry.invalid == entry.errors == _expected_invalid(chat=True) > 0
        # What the model said is kept for every generated read: the report shows it beside failures.
        import pyarrow.parquet as pq

        rows = pq.read_table(tmp_path / "r" / "samples.parquet", columns=["invalid", "output"]).to_pylist()
        assert all(r["output"] for r in rows)
        assert {r["output"] for r in rows if r["invalid"]} == {"I do not know"}
        assert all(r["output"].startswith("The answer is ") for r in rows if not r["invalid"])
        with pytest.raises(FFBenchError, match="with api=chat gives no log-probabilities of answers: use --scoring greedy"):
            runner.run(_cfg(srv.url, renders=["chat"], scorings=["choice"], model_args={"api": "chat"}),
                       str(tmp_path / "c"), _ref(srv.url, api="chat"), progress=False, echo=lambda m: None)


def test_dense_echo_scoring_matches_oracle_and_per_read(tmp_path):
    from ffbench import scoring

    with FaultServer() as srv:
        backend = _backend(srv.url, str(tmp_path))
        arr = language.sample(language.FFL.from_p_ignore(0.5, 40), 10, 1)
        rendered = [render.render(s, "symbolic") for s in arr]
        t = render.load_template("symbolic")
        dense = scoring.score(backend, rendered, t, "choice")
        per_read = scoring.score(backend, rendered, t, "choice", per_read=True)
        targets = np.concatenate([r.targets for r in rendered])
        assert np.array_equal(dense.prediction, targets) and np.array_equal(per_read.prediction, targets)
        np.testing.assert_allclose(dense.margin, np.log(9.0))
        np.testing.assert_allclose(per_read.margin, np.log(9.0))
        assert not dense.per_read.any()
        greedy = scoring.score(backend, rendered, t, "greedy")
        assert np.array_equal(greedy.prediction, targets)
        assert srv.duplicates() == 0


def test_unreachable_server_and_unknown_model():
    with pytest.raises(FFBenchError, match="cannot reach an OpenAI-compatible server at http://127.0.0.1:9/v1"):
        _backend("http://127.0.0.1:9/v1")
    with FaultServer(faults=False) as srv:
        from ffbench.backends import load_backend

        with pytest.raises(FFBenchError, match="does not serve model 'gpt-9'"):
            load_backend("openai/gpt-9", FAST, base_url=srv.url, api_key="x")


def _cli(args, env, **kw):
    return subprocess.Popen([sys.executable, "-m", "ffbench", "run", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_sigkill_midway_then_rerun_equals_uninterrupted(tmp_path):
    with FaultServer(faults=False) as srv:
        env = {**os.environ, "OPENAI_API_KEY": "sk-test-secret", "OPENAI_BASE_URL": srv.url}
        args = ["--model", f"openai/{MODEL}", "--suite", "in_dist", "--length", "32", "--num", "200",
                "--scoring", "greedy", "--batch-size", "4", "--model-arg", "echo=false",
                "--model-arg", "concurrency=1", "--no-progress"]
        full = _cli(args + ["--output-dir", str(tmp_path / "full")], env)
        assert full.wait(timeout=300) == 0, full.stderr.read()

        killed_dir = tmp_path / "killed"
        proc = _cli(args + ["--output-dir", str(killed_dir)], env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if len(list((killed_dir / "shards").rglob("*.parquet"))) >= 10:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (killed_dir / "results.json").exists()
        served_before = sum(srv.served.values())
        rerun = _cli(args + ["--output-dir", str(killed_dir)], env)
        assert rerun.wait(timeout=300) == 0, rerun.stderr.read()
        a = pq.read_table(tmp_path / "full" / "samples.parquet").to_pandas()
        b = pq.read_table(killed_dir / "samples.parquet").to_pandas()
        assert a.equals(b)
        ra = json.loads((tmp_path / "full" / "results.json").read_text())["results"]
        rb = json.loads((killed_dir / "results.json").read_text())["results"]
        assert ra == rb
        # The killed run's answered requests were cached: its rerun asked the server only for the rest.
        # Each request reached the server once per run directory, except at most the one request
        # in flight at the SIGKILL (answered, but the process died before caching it; concurrency 1).
        distinct = len(srv.served)
        assert sum(srv.served.values()) - served_before < distinct
        assert all(n >= 2 for n in srv.served.values())
        assert sum(n - 2 for n in srv.served.values()) <= 1
