"""``ffbench import``: real lm-eval ``--log_samples`` output and real Inspect logs become run
directories that ``check`` (with the paired test), ``report`` and the registry use unchanged."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from ffbench import check, language, runs, sources
from ffbench.imports import import_log
from ffbench.imports.inspect_log import _whole_sequences
from ffbench.inspect_tasks import reads
from tests.conftest import cli_exit, needs_torch
from tests.inspect_logs import GLITCH_AFTER, MOCK_ARGS, STRESS_ARGS, mock_log, needs_inspect, oracle_log, stress_log  # noqa: F401

needs_lm_eval = pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None,
                                   reason="lm-evaluation-harness is not installed (pip install 'ffbench[lm-eval]')")
LM_META = {"lengths": [16, 24], "p_ignore": [0.8, 0.1], "num_sequences": 12, "stress_num": 1}


def _cli(args) -> int:
    return cli_exit(args)


@pytest.fixture(scope="module")
def lm_eval_logs(tmp_path_factory):
    """Two real lm-eval runs of fflm_symbolic and fflm_symbolic_gen with lm-eval's dummy model (random
    log-likelihoods, seeds 1 and 2), written by lm-eval's own EvaluationTracker as --log_samples does."""
    import lm_eval
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.models.dummy import DummyLM

    from ffbench import lmeval

    out = {}
    for seed in (1, 2):
        folder = tmp_path_factory.mktemp(f"lm-eval-{seed}")
        tracker = EvaluationTracker(output_path=str(folder))
        model = DummyLM()
        model.tokenizer = None  # its tokenizer is a hub download; the fflm tasks need none
        res = lm_eval.simple_evaluate(model=model, tasks=["fflm_symbolic", "fflm_symbolic_gen", "fflm_stress"], log_samples=True,
                                      task_manager=lmeval.task_manager(LM_META, include_defaults=False),
                                      evaluation_tracker=tracker, random_seed=seed, metadata=LM_META)
        samples = res.pop("samples")
        tracker.save_results_aggregated(results=res, samples=samples)
        for task in res["configs"]:
            tracker.save_results_samples(task_name=task, samples=samples[task])
        out[seed] = folder
    return out


def _jsonl(folder, task):
    (path,) = folder.rglob(f"samples_{task}_2*.jsonl")  # the date follows the task name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@needs_lm_eval
def test_lm_eval_samples_import_with_lm_evals_own_verdicts(lm_eval_logs, tmp_path):
    assert _cli(["import", lm_eval_logs[1], "--out", tmp_path / "a"]) == 0
    run = runs.load(str(tmp_path / "a"))
    assert run.model == "lm-eval/DummyLM" and run.backend == {"provider": "lm-eval"}
    docs = _jsonl(lm_eval_logs[1], "fflm_symbolic")
    cells = {(c.render, c.length, c.p_ignore): c for c in run.results if c.suite != "stress"}
    assert len(cells) == 8 and {c.variant for c in run.results} == {"fewshot+final_read"}
    for (length, p) in [(16, 0.8), (16, 0.1), (24, 0.8), (24, 0.1)]:
        own = [d for d in docs if d["doc"]["length"] == length and d["doc"]["p_ignore"] == p]
        cell = cells[("symbolic", length, p)]
        assert (cell.reads, cell.errors, cell.num_sequences) == (12, sum(d["acc"] == 0 for d in own), 12)
        assert cell.source == sources.SourceSpec("ffl", f"ffl{p:g}", length, 12, p, 0)
        assert cell.data_sha256 == sources.SequenceStore().get(cell.source)[2]
        gen = cells[("chat", length, p)]  # the dummy model answers "lol": every read invalid
        assert (gen.scoring, gen.errors, gen.invalid) == ("greedy", 12, 12)
    samples = run.samples
    stress_docs = _jsonl(lm_eval_logs[1], "fflm_stress")
    assert len(samples) == 96 + len(stress_docs)
    (results_file,) = lm_eval_logs[1].rglob("results_*.json")  # lm-eval's results file names the same run
    again = import_log(str(results_file), str(tmp_path / "b"))
    assert [c.to_dict() for c in again.results] == [c.to_dict() for c in run.results]
    # every read sits where ffbench puts the final read of its sequence
    for cell in run.results:
        arr = sources.load_sequences(cell.source)
        flat = language.extract_reads(arr)
        last = np.searchsorted(flat.seq_index, np.arange(len(arr)), side="right") - 1
        mine = samples[samples.cell == cell.id].sort_values("seq_index")
        assert mine.position.tolist() == flat.position[last].tolist()


@needs_lm_eval
def test_a_system_instruction_or_chat_template_enters_the_variant(lm_eval_logs, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(lm_eval_logs[1], folder)
    (results,) = folder.rglob("results_*.json")
    raw = json.loads(results.read_text())
    raw.update(system_instruction="Be careful.", system_instruction_sha="ab" * 32, chat_template="{{x}}",
               chat_template_sha="cd" * 32)
    results.write_text(json.dumps(raw))
    run = import_log(str(folder), str(tmp_path / "run"))
    assert {c.variant for c in run.results} == {"fewshot+chat_template=cdcdcdcd+system_prompt=abababab+final_read"}


@needs_lm_eval
def test_check_compares_two_lm_eval_imports_with_the_paired_test(lm_eval_logs, tmp_path):
    for seed in (1, 2):
        assert _cli(["import", lm_eval_logs[seed], "--out", tmp_path / str(seed)]) == 0
    verdict = check.compare(runs.load(str(tmp_path / "2")), runs.load(str(tmp_path / "1")))
    stress_tests = [t for t in verdict.tests if t.point is not None]
    assert not verdict.unmatched and len(verdict.tests) == 8 + len(stress_tests)
    one, two = (_jsonl(lm_eval_logs[s], "fflm_symbolic") for s in (1, 2))
    s1, s2 = (_jsonl(lm_eval_logs[s], "fflm_stress") for s in (1, 2))
    assert len(stress_tests) == len({(d["doc"]["length"], d["doc"]["point"]) for d in s1})
    for test in stress_tests:  # the stress cells are tested point by point, paired
        pairs = [(a["acc"], b["acc"]) for a, b in zip(s1, s2) if a["doc_id"] == b["doc_id"]
                 and (a["doc"]["length"], a["doc"]["point"]) == (test.key.length, test.point)]
        assert test.method == "mcnemar" and pairs
        assert test.discordant == (sum(b == 0 < a for a, b in pairs), sum(a == 0 < b for a, b in pairs))
    for test in [t for t in verdict.tests if t.point is None]:
        assert test.method == "mcnemar"
        k = test.key
        pairs = [(a["acc"], b["acc"]) for a, b in zip(one, two)
                 if (a["doc"]["length"], a["doc"]["p_ignore"]) == (k.length, k.p_ignore) and a["doc_id"] == b["doc_id"]]
        if k.render == "symbolic":  # discordant reads counted from lm-eval's own acc, pair by pair
            assert test.discordant == (sum(b == 0 < a for a, b in pairs), sum(a == 0 < b for a, b in pairs))
            assert test.p_value == pytest.approx(check.mcnemar_p(*test.discordant))
        else:
            assert test.discordant == (0, 0)
    assert _cli(["check", "--candidate", tmp_path / "2", "--baseline", tmp_path / "1"]) == 0


@needs_inspect
def test_an_inspect_log_imports_every_read(mock_log, tmp_path):
    run = import_log(mock_log.location, str(tmp_path / "run"))
    (cell,) = run.results
    spec = reads.source("flipflop", **MOCK_ARGS)
    flat = language.extract_reads(sources.load_sequences(spec))
    errors = int(((flat.write_distance > GLITCH_AFTER) | ((flat.write_distance == 1) & (flat.target == 1))).sum())
    assert (cell.key.suite, cell.key.render, cell.key.scoring, cell.key.variant) == ("in_dist", "chat", "greedy", "")
    assert (cell.reads, cell.errors, cell.num_sequences, cell.source) == (len(flat.target), errors, 6, spec)
    samples = run.samples
    assert samples.write_distance.tolist() == flat.write_distance.tolist()
    assert (samples.correct == ~((samples.write_distance > GLITCH_AFTER) | samples.invalid)).all()
    assert {row["bucket"]: row["errors"] for row in cell.by_write_distance if row["errors"]}  # breakdowns computed
    assert run.model == "mockllm/model"


@needs_inspect
def test_check_report_and_registry_on_inspect_imports(mock_log, oracle_log, tmp_path):
    glitchy, clean = tmp_path / "glitchy", tmp_path / "clean"
    assert _cli(["import", mock_log.location, "--out", glitchy, "--model", "mock/candidate"]) == 0
    assert _cli(["import", oracle_log.location, "--out", clean, "--model", "mock/baseline"]) == 0
    verdict = check.compare(runs.load(str(glitchy)), runs.load(str(clean)))
    (test,) = verdict.tests
    errors = runs.load(str(glitchy)).results[0].errors
    assert test.method == "mcnemar" and test.discordant == (errors, 0) and test.p_value == pytest.approx(0.5 ** errors)
    assert _cli(["check", "--candidate", glitchy, "--baseline", clean]) == 1  # a real regression fails
    assert _cli(["check", "--candidate", clean, "--baseline", glitchy]) == 0
    reg = tmp_path / "reg.sqlite"
    assert _cli(["record", clean, "--registry", reg]) == 0
    assert _cli(["check", "--candidate", glitchy, "--baseline", "registry:mock/baseline", "--registry", reg]) == 1
    assert _cli(["report", glitchy, clean, "--no-refs", "--out", tmp_path / "r.html"]) == 0
    assert "mock/candidate" in (tmp_path / "r.html").read_text()


@needs_inspect
def test_an_inspect_stress_log_imports_with_its_points_and_tolerances(stress_log, tmp_path):
    from ffbench import stress

    run = import_log(stress_log.location, str(tmp_path / "run"))
    (cell,) = run.results
    spec = reads.source("stress", **STRESS_ARGS)
    arr, columns = sources.load_sequences(spec), sources.SequenceStore().columns(spec)
    flat = language.extract_reads(arr)
    wrong = (flat.write_distance > GLITCH_AFTER) | ((flat.write_distance == 1) & (flat.target == 1))
    points = [columns["point"][s] for s in flat.seq_index.tolist()]
    expected = {o.family + str(dict(o.params)): (o.reads, o.errors) for o in stress.count_outcomes(points, ~wrong)}
    got = {row["family"] + str({k: row[k] for k in stress.FAMILIES[row["family"]].parameters}): (row["reads"], row["errors"])
           for row in cell.by_point}
    assert got == expected and cell.errors == int(wrong.sum()) > 0
    outcomes = stress.count_outcomes(points, ~wrong, flat.position, arr.shape[1])
    assert [t["line"] for t in cell.tolerances] == [t.line for t in stress.profile(outcomes)]


def test_a_limit_that_cuts_a_sequence_keeps_the_whole_ones():
    from ffbench.imports.build import ImportedRead

    spec = reads.source("flipflop", "dense", 16, 4)
    store = sources.SequenceStore()
    flat = store.get(spec)[1]
    keys = list(zip(flat.seq_index.tolist(), flat.read_index.tolist()))
    cut = keys.index((2, 1))  # every read of sequences 0 and 1, and the first of sequence 2
    got = {key: ImportedRead(0) for key in keys[:cut]}
    kept_spec, kept, notes = _whole_sequences(spec, got, store)
    assert kept_spec.num == 2 and set(kept) == {k for k in keys if k[0] < 2} and "1 reads" in notes[0]


def test_import_usage_errors(tmp_path, capsys):
    assert _cli(["import", tmp_path / "nope.eval", "--out", tmp_path / "x"]) == 2
    (tmp_path / "notes.txt").write_text("hello")
    assert _cli(["import", tmp_path / "notes.txt", "--out", tmp_path / "x"]) == 2
    (tmp_path / "samples_other_task_2025.jsonl").write_text('{"doc": {}}\n')
    assert _cli(["import", tmp_path / "samples_other_task_2025.jsonl", "--out", tmp_path / "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("ffbench: error:") == 3 and "not the samples of an fflm task" in err
    assert not (tmp_path / "x").exists()


@needs_lm_eval
@needs_torch
def test_an_lm_eval_import_of_a_real_model_agrees_with_ffbench_run_read_for_read(tiny_gpt2, tmp_path, monkeypatch):
    """lm-eval scores a tiny GPT-2 on fflm_symbolic; its import holds, at every final read, the
    position, target, verdict and margin that ``ffbench run`` of the same model gives that read."""
    import lm_eval
    from lm_eval.loggers import EvaluationTracker

    from ffbench import backends, lmeval, runner

    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(key, "1")
    meta = {"lengths": [16], "p_ignore": [0.8, 0.1], "num_sequences": 6}
    tracker = EvaluationTracker(output_path=str(tmp_path / "lm"))
    res = lm_eval.simple_evaluate(model="hf", model_args={"pretrained": str(tiny_gpt2), "dtype": "float32"},
                                  device="cpu", tasks=["fflm_symbolic"], log_samples=True, batch_size=8,
                                  task_manager=lmeval.task_manager(meta, include_defaults=False),
                                  evaluation_tracker=tracker, metadata=meta)
    samples = res.pop("samples")
    tracker.save_results_aggregated(results=res, samples=samples)
    tracker.save_results_samples(task_name="fflm_symbolic", samples=samples["fflm_symbolic"])
    imported = import_log(str(tmp_path / "lm"), str(tmp_path / "imported"))
    cfg = runner.RunConfig(model=f"hf/{tiny_gpt2}", model_args={"dtype": "float32", "device": "cpu"}, p_ignore=[0.8, 0.1],
                           lengths=[16], num=6, seed=0, renders=["symbolic"], fewshot=True)
    ran = runner.run(cfg, str(tmp_path / "run"), backends.resolve(cfg.model, cfg.model_args), progress=False)
    assert imported.model == ran.model
    mine, theirs = imported.samples, ran.samples
    assert len(mine) == 12
    for cell in imported.results:
        (twin,) = [c for c in ran.results if (c.suite, c.length) == (cell.suite, cell.length)]
        assert cell.data_sha256 == twin.data_sha256 and cell.variant == twin.variant + "+final_read"
        a = mine[mine.cell == cell.id].set_index(["seq_index", "read_index"])
        b = theirs[theirs.cell == twin.id].set_index(["seq_index", "read_index"]).loc[a.index]
        assert a.position.tolist() == b.position.tolist() and a.target.tolist() == b.target.tolist()
        assert a.correct.tolist() == b.correct.tolist() and a.prediction.tolist() == b.prediction.tolist()
        assert np.allclose(a.margin, b.margin, atol=1e-4)


@needs_lm_eval
def test_an_lm_eval_stress_import_counts_each_point_from_lm_evals_verdicts(lm_eval_logs, tmp_path):
    run = import_log(str(lm_eval_logs[1]), str(tmp_path / "run"))
    docs = _jsonl(lm_eval_logs[1], "fflm_stress")
    for length in LM_META["lengths"]:
        (cell,) = [c for c in run.results if c.suite == "stress" and c.length == length]
        assert cell.source == sources.stress_source(length, 1)
        own = [d for d in docs if d["doc"]["length"] == length]
        expected = {}
        for d in own:
            reads, errors = expected.get(d["doc"]["point"], (0, 0))
            expected[d["doc"]["point"]] = (reads + 1, errors + (d["acc"] == 0))
        assert {row["point"]: (row["reads"], row["errors"]) for row in cell.by_point} == expected
        assert cell.tolerances and cell.num_sequences == len(own) == cell.reads
