"""Greedy scoring on a SentencePiece vocabulary, where a reply's first token carries the space
before it (``▁on``) and a decoder that decodes the reply alone drops that space.

The model is built to answer: a Llama with no layers is a bigram model, so its embeddings and
output rows are set so that after ``▁turned`` it says ``▁on``, and after ``▁r`` it says ``▁`` and
then ``1`` (the spaced symbolic answer `` 1``). Whatever precedes them, greedy replies are exact
answers: right where the target is that answer, wrong elsewhere, never invalid. Dense greedy
scoring (the path read from the one pass) and per-read generation must both see it so.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import HAS_TORCH
from tests.test_tokenizer_conformance import _rendered
from tests.tokenizer_families import build_tokenizer

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="torch and transformers not installed (pip install 'ffbench[hf]')")


@pytest.fixture(scope="module")
def bigram(tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = build_tokenizer("sp-legacy", tmp_path_factory.mktemp("bigram") / "m")
    tok = AutoTokenizer.from_pretrained(out)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=0,
                      num_attention_heads=1, num_key_value_heads=1, head_dim=64, max_position_embeddings=4096,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    rules = {"▁turned": "▁on", "▁r": "▁", "▁": "1"}  # after the key token, say the value
    with torch.no_grad():
        model.model.embed_tokens.weight.normal_(0, 0.02)
        model.lm_head.weight.normal_(0, 0.02)
        for k, (before, after) in enumerate(rules.items()):
            direction = torch.zeros(64)
            direction[k] = 1.0
            model.model.embed_tokens.weight[tok.convert_tokens_to_ids(before)] = direction
            model.lm_head.weight[tok.convert_tokens_to_ids(after)] = 10 * direction
    model.save_pretrained(out, safe_serialization=True)
    return out


@pytest.mark.parametrize("render,answer", [("lightswitch", 1), ("symbolic_spaced", 1)])
def test_greedy_replies_keep_their_leading_space(bigram, render, answer):
    from ffbench import scoring
    from ffbench.backends.hf import HFBackend

    backend = HFBackend(str(bigram))
    template, rendered = _rendered(render, num=6)
    targets = np.concatenate([r.targets for r in rendered])
    for per_read in (False, True):
        out = scoring.score(backend, rendered, template, "greedy", per_read=per_read)
        assert not out.invalid.any(), (render, per_read, [o for o, bad in zip(out.output, out.invalid) if bad][:3])
        np.testing.assert_array_equal(out.prediction, np.full(len(targets), answer), err_msg=f"{render} {per_read}")
        assert all(o.startswith(template.choices()[answer]) for o in out.output), out.output[:3]
