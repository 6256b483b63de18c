"""Secrets never kept (issue 23): a password in ``--base-url`` (or a key in its query) is masked in
everything written (identity.json, results.json, the report, the registry) and printed (error lines)."""

from __future__ import annotations

import importlib.util
import sqlite3

import pytest

from ffbench import redact
from tests.fault_server import MODEL, FaultServer
from tests.test_cli import run_main

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openai") is None, reason="openai not installed")


@pytest.mark.parametrize("address, masked", [
    ("http://user:hunter2@host:8000/v1", "http://user:***@host:8000/v1"),
    ("http://sk-abc@host/v1", "http://***@host/v1"),
    ("https://host/v1?api_key=sk-abc&region=eu", "https://host/v1?api_key=***&region=eu"),
    ("https://host/v1?sig=abc", "https://host/v1?sig=***"),
    ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
])
def test_url_masks_only_the_secret_parts(address, masked):
    assert redact.url(address) == masked
    assert redact.text(f"cannot reach {address}: refused") == f"cannot reach {masked}: refused"


def test_a_password_in_the_base_url_is_never_written_or_printed(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    secret = "hunter2-very-secret"
    with FaultServer(faults=False) as srv:
        url = srv.url.replace("http://", f"http://me:{secret}@")
        code, out, err = run_main(capsys, "run", "--model", f"openai/{MODEL}", "--base-url", url, "--model-arg",
                                  "echo=false", "--scoring", "greedy", "--suite", "in_dist", "--length", "16",
                                  "--num", "3", "-o", tmp_path / "r", "--registry", tmp_path / "reg.sqlite",
                                  "--no-progress")
        assert code == 0, err
        code, out2, err2 = run_main(capsys, "report", tmp_path / "r", "--no-refs", "--out", tmp_path / "r.html")
        assert code == 0, err2
    # a server that does not answer: the error line names the URL, masked
    code, _, err3 = run_main(capsys, "run", "--model", f"openai/{MODEL}", "--base-url",
                             f"http://me:{secret}@127.0.0.1:9/v1", "--model-arg", "echo=false", "--model-arg",
                             "max_retries=0", "--scoring", "greedy", "--suite", "in_dist", "--length", "16",
                             "--num", "3", "-o", tmp_path / "r2", "--no-record", "--no-progress")
    assert code == 1 and "http://me:***@127.0.0.1:9/v1" in err3
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"identity.json", "results.json", "r.html", "reg.sqlite"}
    for path in written:
        assert secret.encode() not in path.read_bytes(), path
    with sqlite3.connect(tmp_path / "reg.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
    assert "me:***@" in (tmp_path / "r" / "results.json").read_text()
    assert secret not in out + err + out2 + err2 + err3
