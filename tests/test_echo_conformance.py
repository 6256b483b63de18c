"""``openai/`` echo scoring on real tokenizers: against a server that echoes like llama.cpp (offsets
counting the dummy-prefix space, top log-probabilities keyed by string with colliding tokens), like
vLLM (``<s>`` echoed and counted) or exactly, every read gets the prediction and margin that
``hf/`` computes in process on the same weights, on the same text.

The server (``tests/echo_server.py``) runs the real model and tokenizer; only the wire format's
quirks are reproduced. ffbench never trusts ``text_offset`` without checking it against the token
strings, and never takes a top log-probability key as naming one token when the server returned
fewer keys than asked.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import HAS_TORCH
from tests.test_tokenizer_conformance import _rendered
from tests.tokenizer_families import build_model

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="torch and transformers not installed (pip install 'ffbench[hf]')")

CASES = [("sp-legacy", "llamacpp"), ("sp", "vllm"), ("sp", "exact"), ("gpt2", "exact"), ("tekken", "vllm")]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    built: dict = {}

    def get(family):
        if family not in built:
            built[family] = build_model(family, tmp_path_factory.mktemp("tok") / family)
        return built[family]

    return get


@pytest.mark.parametrize("render", ["symbolic", "symbolic_spaced", "lightswitch"])
@pytest.mark.parametrize("family,quirk", CASES)
def test_openai_echo_matches_hf_on_the_same_weights(models, family, quirk, render):
    pytest.importorskip("openai", reason="openai/ needs the openai package")
    from ffbench import scoring
    from ffbench.backends.hf import HFBackend
    from ffbench.backends.openai import OpenAIBackend
    from tests.echo_server import MODEL, EchoServer

    path = models(family)
    template, rendered = _rendered(render, num=4)
    want = scoring.score(HFBackend(str(path)), rendered, template, "choice")
    targets = np.concatenate([r.targets for r in rendered])
    assert 0 < (want.prediction == targets).sum() < len(targets)  # the model is not trivial
    with EchoServer(path, quirk) as server:
        api = OpenAIBackend(MODEL, base_url=server.url, api_key="x", top_logprobs=20, concurrency=4)
        for per_read in (False, True):
            got = scoring.score(api, rendered, template, "choice", per_read=per_read)
            np.testing.assert_array_equal(got.prediction, want.prediction, err_msg=f"{quirk} per_read={per_read}")
            np.testing.assert_allclose(got.margin, want.margin, atol=2e-3, err_msg=f"{quirk} per_read={per_read}")
        api.close()
