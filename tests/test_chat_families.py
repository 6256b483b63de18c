"""Chat templates of the families people run (ChatML as Qwen writes it, Llama-3 headers, Mistral's
[INST], Gemma's turns), each on the real tokenizer family it ships with
(``tests/tokenizer_families.py``): BOS exactly once, the assistant turn opened for a question, the
prompt equal to ``apply_chat_template`` token for token, and dense scoring of the templated
conversation equal to the reference scorer read for read.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import HAS_TORCH
from tests.test_tokenizer_conformance import _reference, _rendered
from tests.tokenizer_families import CHAT, build_chat_model

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="torch and transformers not installed (pip install 'ffbench[hf]')")


@pytest.fixture(scope="module", params=sorted(CHAT))
def chat_model(request, tmp_path_factory):
    return request.param, build_chat_model(request.param, tmp_path_factory.mktemp("chat") / request.param)


def test_question_is_the_template_with_bos_once_and_the_turn_opened(chat_model):
    from transformers import AutoTokenizer

    from ffbench import prompting, render
    from ffbench.backends.tokenized import encode

    kind, path = chat_model
    tok = AutoTokenizer.from_pretrained(path)
    fmt = prompting.PromptOptions(system_prompt="Answer with one bit.").format(render.load_template("chat"), tok)
    assert fmt.chat
    text = fmt.question("w 0 i 1 r")
    ids = encode(tok, [text])[0][0]
    messages = [{"role": "system", "content": "Answer with one bit."}, {"role": "user", "content": "w 0 i 1 r"}]
    want = tok.apply_chat_template(messages, add_generation_prompt=True)
    want = list(want["input_ids"] if hasattr(want, "keys") else want)  # transformers 5 returns an encoding, 4.x ids
    if tok.bos_token is None:
        assert ids == want
    else:
        assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
        assert ids == (want if want[:1] == [tok.bos_token_id] else [tok.bos_token_id] + want)
    opened = {"chatml": "<|im_start|>assistant\n", "llama3": "<|start_header_id|>assistant<|end_header_id|>\n\n",
              "mistral": " [/INST]", "gemma": "<start_of_turn>model\n"}[kind]
    assert text.endswith(opened)


@pytest.mark.parametrize("rendering", ["chat", "lightswitch_chat"])
def test_dense_scoring_of_the_conversation_matches_the_reference(chat_model, rendering):
    from ffbench import prompting, scoring
    from ffbench.backends.hf import HFBackend

    kind, path = chat_model
    template, rendered = _rendered(rendering, num=4)
    backend = HFBackend(str(path))
    options = prompting.PromptOptions(system_prompt="Be exact.")
    forced = prompting.shift(rendered, options.format(template, backend.tokenizer))
    assert forced[0].text != rendered[0].text  # the template applied
    margin, correct, _ = _reference(path, forced)
    targets = np.concatenate([r.targets for r in rendered])
    for per_read in (False, True):
        out = scoring.score(backend, rendered, template, "choice", per_read=per_read, options=options)
        np.testing.assert_array_equal(out.prediction == targets, correct, err_msg=f"{kind} {rendering} {per_read}")
        np.testing.assert_allclose(out.margin, margin, atol=2e-3, err_msg=f"{kind} {rendering} {per_read}")
