"""The evaluation engine on real transformers models (tiny, random, built in the test).

Dense scoring must agree with one-request-per-read scoring read for read; every read must be
counted; an interrupted run must resume without rescoring and end equal to an uninterrupted one.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from ffbench import language, metrics, render, runner, scoring
from ffbench.errors import FFBenchError, Interrupted
from tests.conftest import needs_torch

pytestmark = needs_torch


def _backend(path, **kw):
    from ffbench.backends import load_backend

    return load_backend(f"hf/{path}", {"dtype": "float32", "device": "cpu", **kw})


def _ref(path, loader=None):
    """The model reference the runner gets; ``loader`` replaces loading (to count or interrupt calls)."""
    from ffbench.backends import resolve

    ref = resolve(f"hf/{path}", {"dtype": "float32", "device": "cpu"})
    if loader is not None:
        ref.load = loader
    return ref


def _run(cfg, out, model_dir, loader=None, **kw):
    return runner.run(cfg, str(out), _ref(model_dir, loader), progress=False, echo=lambda m: None, **kw)


def _rendered(name, num=12, length=48, p=0.6, seed=3, fewshot=False):
    arr = language.sample(language.FFL.from_p_ignore(p, length), num, seed)
    demo = render.demo_sequence() if fewshot else None
    return [render.render(s, name, demo=demo) for s in arr]


@pytest.mark.parametrize("model", ["tiny_gpt2", "tiny_llama"])
@pytest.mark.parametrize("name", ["symbolic", "symbolic_spaced", "lightswitch"])
def test_dense_equals_per_read_choice(request, model, name):
    backend = _backend(request.getfixturevalue(model))
    template = render.load_template(name)
    rendered = _rendered(name, fewshot=(name == "lightswitch"))
    dense = scoring.score(backend, rendered, template, "choice")
    tokens_dense = backend.usage.prompt_tokens
    per_read = scoring.score(backend, rendered, template, "choice", per_read=True)
    assert np.array_equal(dense.prediction, per_read.prediction)
    assert per_read.per_read.all()
    both = ~np.isnan(dense.margin)
    assert both.sum() >= 0.5 * both.size  # most reads decided by the dense pass
    np.testing.assert_allclose(dense.margin[both], per_read.margin[both], atol=2e-4)
    assert 0.2 < (dense.prediction == np.concatenate([r.targets for r in rendered])).mean() < 0.8  # random model
    if name == "symbolic":
        # One pass per sequence: tokens processed equal the text's tokens, not one prompt per read.
        assert dense.per_read.sum() == 0
        assert tokens_dense == sum(backend.count_tokens(r.text) for r in rendered)


@pytest.mark.parametrize("name", ["symbolic", "lightswitch"])
def test_dense_equals_per_read_greedy(tiny_gpt2, name):
    backend = _backend(tiny_gpt2)
    template = render.load_template(name)
    rendered = _rendered(name, num=8)
    dense = scoring.score(backend, rendered, template, "greedy")
    per_read = scoring.score(backend, rendered, template, "greedy", per_read=True)
    assert np.array_equal(dense.prediction, per_read.prediction)
    assert np.array_equal(dense.invalid, per_read.invalid)


def test_greedy_of_a_model_that_copies_is_all_right(tiny_gpt2):
    """A hand-made backend-independent check: a model forced to always emit '1' is right exactly on reads of 1."""
    import torch

    backend = _backend(tiny_gpt2)
    one = backend.tokenizer("1", add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        backend.lm.lm_head.weight.zero_()
        backend.lm.lm_head.weight[one].fill_(1.0)
        backend.lm.transformer.ln_f.bias.fill_(1.0)
        backend.lm.transformer.ln_f.weight.zero_()
    rendered = _rendered("symbolic", num=10)
    targets = np.concatenate([r.targets for r in rendered])
    for per_read in (False, True):
        out = scoring.score(backend, rendered, render.load_template("symbolic"), "greedy", per_read=per_read)
        assert np.array_equal(out.prediction == targets, targets == 1)
        assert not out.invalid.any()


def _cfg(model_dir, **kw):
    base = dict(model=f"hf/{model_dir}", model_args={"dtype": "float32", "device": "cpu"}, suites=["in_dist", "dense"],
                lengths=[32], num=20, renders=["symbolic", "lightswitch"], scorings=["choice"], batch_size=6)
    base.update(kw)
    return runner.RunConfig(**base)


def test_run_counts_every_read_and_writes_contract(tiny_gpt2, tmp_path):
    cfg = _cfg(tiny_gpt2)
    out = tmp_path / "run"
    res = _run(cfg, out, tiny_gpt2)
    assert sorted(p.name for p in out.iterdir()) == [".lock", "identity.json", "results.json", "samples.parquet"]
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(res.to_dict()))
    for key in ("schema_version", "model", "backend", "ffbench_version", "created", "config", "fingerprint",
                "data_sha256", "stop_reason", "usage", "results"):
        assert key in on_disk
    from ffbench.identity import directory_fingerprint

    assert on_disk["fingerprint"]["model"]["id"] == directory_fingerprint(tiny_gpt2)["id"]
    samples = pq.read_table(out / "samples.parquet").to_pandas()
    for col in ("cell", "suite", "length", "render", "seq_index", "read_index", "target", "prediction", "correct",
                "truncated", "write_distance", "evidence_distance", "margin"):
        assert col in samples.columns
    assert len(res.results) == 4
    for entry in res.results:
        s = language.SUITES[entry.suite]
        arr = language.sample(s.distribution(32), 20, s.seed)
        reads = language.extract_reads(arr)
        rows = samples[samples.cell == entry.id]
        assert entry.reads == len(reads) == len(rows)  # every read, none dropped
        assert entry.errors == int((~rows.correct).sum())
        assert rows.write_distance.tolist() == reads.write_distance.tolist()
        assert rows.read_index.tolist() == reads.read_index.tolist()
        assert list(entry.ci95) == list(metrics.clopper_pearson(entry.errors, entry.reads))
        assert entry.accuracy == pytest.approx(1 - entry.errors / entry.reads)
        assert sum(b["reads"] for b in entry.by_write_distance) == entry.reads
    assert res.cells.reads.sum() == len(samples)  # the pandas view counts the same reads


class CountingBackend:
    """Wraps a real backend, counts texts scored, and can fail after a number of calls."""

    def __init__(self, inner, fail_after=None):
        self.inner, self.calls, self.texts, self.fail_after = inner, 0, 0, fail_after

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def score_dense(self, requests):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.calls += 1
        self.texts += len(requests)
        return self.inner.score_dense(requests)


def test_interrupted_run_resumes_without_rescoring(tiny_gpt2, tmp_path):
    cfg = _cfg(tiny_gpt2)
    full = _run(cfg, tmp_path / "a", tiny_gpt2)
    crashing = CountingBackend(_backend(tiny_gpt2), fail_after=5)
    with pytest.raises(Interrupted, match=r"interrupted: 5 of 16 shards are kept in .*; rerun the same command"):
        _run(cfg, tmp_path / "b", tiny_gpt2, loader=lambda: crashing)
    assert not (tmp_path / "b" / "results.json").exists()
    assert len(list((tmp_path / "b" / "shards").rglob("*.parquet"))) == 5
    resumed = CountingBackend(_backend(tiny_gpt2))
    res = _run(cfg, tmp_path / "b", tiny_gpt2, loader=lambda: resumed)
    total_texts = 4 * 20  # 2 suites x 2 renderings x 20 sequences
    assert crashing.texts + resumed.texts == total_texts  # nothing scored twice
    assert [c.to_dict() for c in res.results] == [c.to_dict() for c in full.results]
    a = pq.read_table(tmp_path / "a" / "samples.parquet").to_pandas()
    b = pq.read_table(tmp_path / "b" / "samples.parquet").to_pandas()
    assert a.equals(b)
    # A third run finds the finished run and loads no model at all.
    _run(cfg, tmp_path / "b", tiny_gpt2, loader=lambda: pytest.fail("model loaded for a finished run"))


def test_output_dir_with_other_config_is_refused(tiny_gpt2, tmp_path):
    _run(_cfg(tiny_gpt2, num=4), tmp_path / "r", tiny_gpt2)
    with pytest.raises(FFBenchError, match=r"holds results of another run \(config \(num\); data of dense T=32 seed 3000, in_dist T=32 seed 1000 differ\)"):
        _run(_cfg(tiny_gpt2, num=5), tmp_path / "r", tiny_gpt2)
    res = _run(_cfg(tiny_gpt2, num=5), tmp_path / "r", tiny_gpt2, rescore=True)
    assert res.results[0].num_sequences == 5


def test_context_too_short_fails_before_writing(short_gpt2, tmp_path):
    cfg = _cfg(short_gpt2, lengths=[64])
    with pytest.raises(FFBenchError, match="model context is 48 tokens but in_dist at T=64 rendered 'symbolic' needs 64"):
        _run(cfg, tmp_path / "r", short_gpt2)
    assert not (tmp_path / "r").exists()


def test_one_cell_identity_two_cells_of_one_key_never_mix(tmp_path):
    """A data file of the dense suite beside the dense suite regenerated with another seed: two cells
    with the same key, different sequences. Each cell's failing reads are its own (by cell id)."""
    from ffbench import datafiles, generate
    from ffbench.backends import resolve
    from ffbench.report import data as report_data

    dense = tmp_path / "dense.parquet"
    datafiles.write_sequences(dense, generate.iter_chunks(generate.suite_parts("dense", 128, 60)))
    cfg = runner.RunConfig(model="ffbench/transformer-ref", suites=["dense"], data=[str(dense)], lengths=[128],
                           num=60, seed=1)
    res = runner.run(cfg, str(tmp_path / "r"), resolve("ffbench/transformer-ref"), progress=False, echo=lambda m: None)
    a, b = res.results
    assert a.key == b.key and a.data_sha256 != b.data_sha256 and a.id != b.id
    assert b.source.kind == "suite" and b.source.path == str(dense)  # the file is recognised as the suite
    assert a.errors > 0 and b.errors > 0 and a.errors != b.errors
    for cell in (a, b):
        rows = res.failing(cell)
        assert rows.num_rows == cell.errors  # exactly this cell's failures, not the other's
        assert set(rows.column("cell").to_pylist()) == {cell.id}
        reads = report_data.failing_reads(res, 10_000)
        assert sum(r.cell.id == cell.id for r in reads) == cell.errors
    seqs = {r.cell.id: r.sequence for r in report_data.failing_reads(res, 1)}
    assert seqs[a.id] != seqs[b.id]


def test_missing_model_path_and_bad_args(tmp_path):
    with pytest.raises(FFBenchError, match="model path .* does not exist"):
        _backend(tmp_path / "nope")
    from ffbench.backends import load_backend, parse_model_args, parse_spec

    with pytest.raises(FFBenchError, match="unknown provider 'hugging'"):
        parse_spec("hugging/face")
    with pytest.raises(FFBenchError, match="must be key=value"):
        parse_model_args(["dtype"])
    assert parse_model_args(["a=1", "b=0.5", "c=true", "d=x"]) == {"a": 1, "b": 0.5, "c": True, "d": "x"}
    with pytest.raises(FFBenchError, match="unknown dtype 'float8'"):
        load_backend(f"hf/{tmp_path}", {"dtype": "float8"})


@pytest.fixture(scope="module")
def bpe_gpt2(tmp_path_factory):
    """GPT-2 with a byte-level BPE tokenizer trained here on light-switch text (no download)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    arr = language.sample(language.FFL.from_p_ignore(0.5, 64), 200, 11)
    corpus = [render.render(s, "lightswitch").text for s in arr]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    torch.manual_seed(1)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(hf_tok), n_positions=1024, n_embd=64, n_layer=2, n_head=2))
    out = tmp_path_factory.mktemp("bpe") / "gpt2-bpe"
    model.save_pretrained(out)
    hf_tok.save_pretrained(out)
    return out, hf_tok


def test_lightswitch_with_trained_bpe_is_dense_and_exact(bpe_gpt2):
    path, tok = bpe_gpt2
    assert len(tok(" on", add_special_tokens=False)["input_ids"]) == 1  # answers are single BPE tokens
    assert len(tok(" off", add_special_tokens=False)["input_ids"]) == 1
    backend = _backend(path)
    template = render.load_template("lightswitch")
    rendered = _rendered("lightswitch", num=10, length=64, fewshot=True)
    dense = scoring.score(backend, rendered, template, "choice")
    per_read = scoring.score(backend, rendered, template, "choice", per_read=True)
    assert np.array_equal(dense.prediction, per_read.prediction)
    assert not dense.per_read.any()  # every read decided by the one dense pass
    np.testing.assert_allclose(dense.margin, per_read.margin, atol=2e-4)


def test_recurrent_models_stream_long_sequences_exactly(monkeypatch):
    """The LSTM is streamed through long sequences in chunks with its state carried over (memory no
    longer grows with T): the verdicts and margins equal one unchunked pass."""
    from ffbench.backends import native
    from ffbench.backends.base import ScoreRequest

    backend = native.NativeBackend("lstm-ref", device="cpu")
    arr = language.sample(language.FFL.from_p_ignore(0.9, 2048), 3, 5)
    rendered = [render.render(s, "symbolic") for s in arr]
    requests = [ScoreRequest(r.text, r.spans, r.choices) for r in rendered]
    whole = backend.score_dense(requests)
    monkeypatch.setattr(native, "STREAM_CHUNK", 100)  # 21 chunks per sequence, boundaries inside reads
    chunked = backend.score_dense(requests)
    for a, b in zip(whole, chunked):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)
        assert np.array_equal(a.greedy, b.greedy)
    assert sum(len(r.targets) for r in rendered) > 100


def test_memory_preflight_names_the_batch_flag_that_fits(tmp_path):
    """A sequence that fits but a batch that does not: the line gives the --max-batch-tokens that fits."""
    from ffbench.backends import resolve
    from ffbench.errors import UsageError

    cfg = runner.RunConfig(model="ffbench/transformer-ref", suites=["in_dist"], lengths=[2048], num=100)
    p = runner.plan(cfg)
    ref = resolve("ffbench/transformer-ref")
    one = ref.cls.memory_per_sequence(ref.name, ref.args, 2048)
    runner.preflight_memory(ref, p, available=int(one * 40))  # 32 sequences per batch need 32x: does not fit
    ref.args["max_batch_tokens"] = 2048 * 64
    few = runner.plan(runner.RunConfig(model="ffbench/transformer-ref", suites=["in_dist"], lengths=[2048], num=2))
    runner.preflight_memory(ref, few, available=int(one * 4))  # a batch is never more sequences than the cell has
    with pytest.raises(UsageError, match=r"a batch of 64 sequences of 2,048 tokens needs about .* pass "
                                         r"--max-batch-tokens \d+ \(or less\)"):
        runner.preflight_memory(ref, p, available=int(one * 40))
    with pytest.raises(UsageError, match="one sequence of 2,048 tokens .* needs about"):
        runner.preflight_memory(ref, p, available=int(one))
