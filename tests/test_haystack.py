"""Flip-flops hidden in a long story (--task haystack): the filler rendering, the presets (final read
only, or every read), and lengths chosen as token budgets of the model's own tokenizer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ffbench import language, model_handle, preflight, render, tasks
from ffbench.errors import UsageError
from tests.conftest import cli_exit


def test_ignores_become_story_sentences_chosen_by_position_and_bit():
    template = render.load_template("haystack")
    bank = template.filler
    assert len(bank) == 64 and len(set(bank)) == 64
    seq = language.to_array(["w1i0i1i1r1"])[0]
    out = render.render(seq, template)
    want = ["Alice turns the light on.", bank[(1 * 37 + 0) % 64], bank[(2 * 37 + 1) % 64], bank[(3 * 37 + 1) % 64],
            "The light is turned on."]
    assert out.text == " ".join(want)
    assert [out.text[s:e] for s, e in out.spans] == [" on"] and out.targets.tolist() == [1]
    assert all(sentence in render.every_piece(template) for sentence in bank)  # the tokenizer check sees them all


def test_presets_score_the_final_read_only_or_every_read():
    task = tasks.get("haystack")
    final = task.sample(task.suite_dist("final", 0.98, 256), 200, 7000)
    reads = language.extract_reads(final)
    assert reads.seq_index.tolist() == list(range(200))  # one read per sequence: the final one
    writes = (final[:, 0::2][:, 1:-1] == language.W).mean()
    assert abs(writes - 0.02) <= 5 * np.sqrt(0.02 * 0.98 / final[:, 0::2][:, 1:-1].size)
    every = task.sample(task.suite_dist("every", 0.96, 256), 200, 7100)
    assert np.array_equal(every, language.sample(language.FFL(256, 0.02, 0.02, 0.96), 200, 7100))
    with pytest.raises(UsageError, match=r"p_ignore must lie in \[0, 1\) for --task haystack"):
        task.dist(1.0, 64)


@pytest.mark.parametrize("budget", [300, 2000])
def test_context_tokens_pick_the_longest_length_within_the_budget(budget):
    """With a character tokenizer a token is a character: the chosen T renders to at most N characters
    and T + 2 to more (the probe is the first preset, seed 0)."""
    handle = model_handle.resolve("ffbench/lstm-ref", {})
    task = tasks.get("haystack")
    template = render.load_template("haystack")
    (length,) = preflight.lengths_for_tokens(handle, template, task, [budget])

    def chars(t):
        return len(render.render(task.sample(task.suite_dist("final", 0.98, t), 1, 0)[0], template).text)

    assert length % 2 == 0 and chars(length) <= budget < chars(length + 2)


def test_run_with_context_tokens_records_budgets_and_lengths(tiny_gpt2, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_exit(["run", "--model", f"hf/{tiny_gpt2}", "--task", "haystack", "--context-tokens", "300,900",
                     "--num", "3", "--no-record", "--output-dir", out]) == 0
    results = json.loads((out / "results.json").read_text())
    cfg = results["config"]
    assert cfg["task"] == "haystack" and cfg["context_tokens"] == [300, 900] and len(cfg["lengths"]) == 2
    assert sorted({(c["suite"], c["length"]) for c in results["results"]}) == \
        sorted((s, t) for s in ("every", "final") for t in cfg["lengths"])
    finals = [c for c in results["results"] if c["suite"] == "final"]
    assert all(c["reads"] == 3 for c in finals)
    capsys.readouterr()
    assert cli_exit(["run", "--model", f"hf/{tiny_gpt2}", "--context-tokens", "300", "--no-record"]) == 2
    assert "--context-tokens is not available with --task ffl (it supports --task haystack)" in capsys.readouterr().err


def test_generate_and_validate_with_task_haystack(tmp_path, capsys):
    out = tmp_path / "h.jsonl"
    assert cli_exit(["generate", "--task", "haystack", "--num", "4", "--length", "32", "--out", out]) == 0
    assert cli_exit(["validate", "--task", "haystack", out]) == 0
    assert "ok: 4 sequences of length 32, 4 reads (1.00 per sequence)" in capsys.readouterr().out
    want = language.sample(language.FFL(32, 0.02, 0.0, 0.98), 4, 0)  # Haystack(0.98): the final preset's law
    assert language.to_strings(want) == [json.loads(line)["text"] for line in out.read_text().splitlines()]


def test_context_tokens_in_a_real_tokenizer_agree_with_an_independent_count(tmp_path):
    """The Llama-2 / Mistral 32K SentencePiece vocabulary (mistral_common's file, no download), loaded
    the way users load it: the chosen T's probe takes at most N tokens and T + 2's more, counted not
    through transformers but by sentencepiece on the .model file. (GPT-2's BPE agrees with tiktoken the
    same way at 1K-128K: benchmarks/haystack_lengths.py; building it takes 13 s, too slow for a test.)"""
    from tests.tokenizer_families import build_tokenizer

    folder = build_tokenizer("sp", tmp_path / "sp")
    sp = pytest.importorskip("sentencepiece").SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    task, template = tasks.get("haystack"), render.load_template("haystack")
    budgets = [1000, 3000]
    lengths = preflight.lengths_for_tokens(model_handle.resolve(f"hf/{folder}", {}), template, task, budgets)

    def probe(t):
        return len(sp.encode(render.render(task.sample(task.suite_dist("final", 0.98, t), 1, 0)[0], template).text))

    assert lengths == sorted(lengths) and lengths[0] < lengths[1]
    for budget, length in zip(budgets, lengths):
        assert length % 2 == 0 and probe(length) <= budget < probe(length + 2)
        assert probe(length) >= 0.98 * budget  # a sentence is a dozen tokens: the probe fills the budget


def test_the_memory_preflight_counts_a_haystack_in_the_models_own_tokens(tmp_path):
    """A story takes 3-4 times fewer SentencePiece tokens than characters; the memory check counted
    characters and refused --context-tokens 16000 on a machine where it fits. It now counts what the
    model will read (sentencepiece on the .model file is the independent count; the scorer adds BOS)."""
    from ffbench import runner
    from tests.tokenizer_families import build_tokenizer

    folder = build_tokenizer("sp", tmp_path / "sp")
    sp = pytest.importorskip("sentencepiece").SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    task, template = tasks.get("haystack"), render.load_template("haystack")
    text = render.render(task.sample(task.suite_dist("final", 0.98, 2000), 1, 0)[0], template).text
    counted = runner._tokens_of(model_handle.resolve(f"hf/{folder}", {}).ref, text)
    assert counted in (len(sp.encode(text)), len(sp.encode(text)) + 1)
    assert counted < len(text) / 3
