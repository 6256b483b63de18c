"""``ffbench hunt`` on API models, against the project's fake OpenAI and Anthropic servers: the hunt
resolves its model exactly as ``ffbench run`` does (:mod:`ffbench.model_handle`), so it reaches
the server named by the flag or by the provider's own environment variable, keeps a response cache
in its directory, records no key, and refuses a chat model (``api=chat``, ``anthropic/``) before
anything is sent or any directory is made."""

from __future__ import annotations

import importlib.util
import json

import pytest

from ffbench import model_handle
from ffbench.cli import main
from tests.anthropic_server import KEY as ANTHROPIC_KEY
from tests.anthropic_server import MODEL as ANTHROPIC_MODEL
from tests.anthropic_server import AnthropicServer
from tests.conftest import needs_native
from tests.fault_server import MODEL, FaultServer

needs_openai = pytest.mark.skipif(importlib.util.find_spec("openai") is None, reason="openai not installed")
needs_anthropic = pytest.mark.skipif(importlib.util.find_spec("anthropic") is None, reason="anthropic not installed")
SECRET = "sk-test-secret-hunt"


def _cli(args, capsys) -> tuple[int, str, str]:
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def _hunt_args(out, *extra):
    return ["hunt", "--model", f"openai/{MODEL}", "--budget", 10, "--length", 16, "--out", out, "--no-progress",
            "--model-arg", "retry_base=0.01", *extra]


@needs_openai
def test_hunt_scores_an_openai_model_resumes_from_its_cache_and_records_no_key(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    out = tmp_path / "h"
    with FaultServer(faults=False) as srv:
        code, _, err = _cli(_hunt_args(out, "--base-url", srv.url, "--api-key", SECRET), capsys)
        assert code == 0, err
        summary = json.loads((out / "hunt.json").read_text())
        assert summary["spent"]["reads"] == 10
        assert summary["glitches"]["failing_reads"] == 0  # the server's oracle answers every read right
        assert summary["config"]["base_url"] == srv.url
        assert (out / "requests.sqlite").is_file()
        sent = srv.requests
        assert sent > 0

        # the same hunt again, with the server and key from the provider's own environment variables
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
        monkeypatch.setenv("OPENAI_API_KEY", SECRET)
        code, _, err = _cli(_hunt_args(out), capsys)
        assert code == 0, err
        assert "hunt already complete" in err
        assert srv.requests == sent  # nothing re-sent

        # a run of the same model resolves it the same way: one fingerprint for both
        run_dir = tmp_path / "run"
        code, _, err = _cli(["run", "--model", f"openai/{MODEL}", "--suite", "in_dist", "--length", 16, "--num", 2,
                             "--no-record", "--no-progress", "--output-dir", run_dir, "--model-arg",
                             "retry_base=0.01"], capsys)
        assert code == 0, err
    results = json.loads((run_dir / "results.json").read_text())
    assert results["fingerprint"]["model"]["id"] == summary["fingerprint"]["id"]
    for path in out.rglob("*"):
        if path.is_file() and path.suffix != ".sqlite":
            assert SECRET.encode() not in path.read_bytes(), path


@needs_openai
def test_hunt_refuses_api_chat_before_sending_anything(tmp_path, capsys):
    with FaultServer(faults=False) as srv:
        code, _, err = _cli(_hunt_args(tmp_path / "h", "--base-url", srv.url, "--model-arg", "api=chat"), capsys)
        assert srv.requests == 0
    assert code == 2
    assert err.startswith("ffbench: error: openai/oracle is a chat model") and err.count("\n") == 1
    assert not (tmp_path / "h").exists()


@needs_anthropic
def test_hunt_refuses_an_anthropic_model_before_sending_anything(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    with AnthropicServer(faults=False) as srv:
        code, _, err = _cli(["hunt", "--model", f"anthropic/{ANTHROPIC_MODEL}", "--base-url", srv.url, "--budget", 10,
                             "--length", 16, "--out", tmp_path / "h"], capsys)
        assert srv.requests == 0
    assert code == 2
    assert err.startswith(f"ffbench: error: anthropic/{ANTHROPIC_MODEL} is a chat model") and err.count("\n") == 1
    assert not (tmp_path / "h").exists()


@needs_openai
@needs_anthropic
def test_the_handle_takes_each_provider_server_from_its_own_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://openai.test/v1")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://anthropic.test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    openai_model = model_handle.resolve("openai/m", {"api_key_extra": "x", "api": "completions"})
    assert (openai_model.recorded_base_url, openai_model.is_chat) == ("http://openai.test/v1", False)
    assert openai_model.recorded_args == {"api": "completions"}  # credential-looking args are never recorded
    assert model_handle.resolve("openai/m", {"api": "chat"}).is_chat
    claude = model_handle.resolve("anthropic/c")
    assert (claude.recorded_base_url, claude.api_key, claude.is_chat) == ("http://anthropic.test", ANTHROPIC_KEY, True)
    ref = claude.connect("/x/requests.sqlite")
    assert ref.options["cache_path"] == "/x/requests.sqlite" and ref.options["base_url"] == "http://anthropic.test"


@needs_native
def test_the_handle_of_a_local_model_has_its_training_length_and_no_connection():
    local = model_handle.resolve("ffbench/transformer-ref")
    assert (local.recorded_base_url, local.default_length(), local.connect("/x").options) == (None, 128, {})
