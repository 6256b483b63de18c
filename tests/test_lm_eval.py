"""The fflm lm-evaluation-harness tasks (tasks/fflm, ffbench/lmeval.py) through lm-eval itself.

* The documents are ffbench's own sequences and renderings (no re-implementation, no download).
* lm-eval's ``simple_evaluate`` runs EVERY task (the ``fflm`` and ``fflm_gen`` groups plus
  ``fflm_symbolic_spaced``) on a tiny random GPT-2 built in the test; per-length and per-p_ignore
  metrics exist and lie in [0, 1]; each group averages its own tasks, and the default ``fflm`` holds
  the log-likelihood tasks only.
* The committed task YAML is exactly what ``python -m ffbench.lmeval --write-tasks`` generates, and
  importing ``ffbench.lmeval`` changes no logging filter and no ``sys.excepthook``.
* The multiple-choice tasks' verdict on every final read equals, exactly, what ``ffbench run``
  reports for the same sequences' final reads with the same model (choice scoring, few-shot demo);
  so does ``fflm_stress``'s on the stress grid, and its per-family and per-value metrics are the
  means of those verdicts.
* The ``lm_eval`` command line runs a task with ``--include_path $(ffbench tasks-path)`` and
  ``--metadata``; bad metadata ends in ffbench's one-line error.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ffbench import language, lmeval, render
from ffbench.errors import FFBenchError
from tests.conftest import HAS_TORCH

HAS_LM_EVAL = importlib.util.find_spec("lm_eval") is not None
needs_lm_eval = pytest.mark.skipif(not HAS_LM_EVAL,
                                   reason="lm-evaluation-harness not installed (pip install 'ffbench[lm-eval]')")
needs_lm_eval_and_torch = pytest.mark.skipif(
    not (HAS_LM_EVAL and HAS_TORCH),
    reason="lm-evaluation-harness, torch and transformers needed (pip install 'ffbench[lm-eval,hf]')")

META = {"lengths": [16, 32], "p_ignore": [0.8, 0.1], "num_sequences": 6, "seed": 3, "stress_num": 2}
CELLS = [(16, 0.8), (16, 0.1), (32, 0.8), (32, 0.1)]
CHOICE_TASKS = {"fflm_symbolic": "symbolic", "fflm_lightswitch": "lightswitch",
                "fflm_symbolic_spaced": "symbolic_spaced"}
GEN_TASKS = {"fflm_symbolic_gen": "chat", "fflm_lightswitch_gen": "lightswitch_chat"}
GROUP_TASKS = ["fflm_symbolic", "fflm_lightswitch"]  # the default group: log-likelihood only
PER_CELL_KEYS = ["acc_T16", "acc_T32", "acc_p0.8", "acc_p0.1"]
LM_EVAL_CLI_HANG_SECONDS = 1200
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


# ----------------------------------------------------------------------------- documents (no lm-eval needed)
@pytest.mark.parametrize("rendering", ["symbolic", "symbolic_spaced", "lightswitch", "chat"])
def test_documents_are_ffbench_final_reads(rendering):
    params = lmeval.Params.from_metadata(META)
    docs = lmeval.build_docs(rendering, params, generate=rendering == "chat")
    assert len(docs) == len(CELLS) * META["num_sequences"]
    template = render.load_template(rendering)
    demo = render.demo_sequence(length=16)
    for c, (length, p) in enumerate(CELLS):
        arr = language.sample(language.FFL.from_p_ignore(p, length), META["num_sequences"], META["seed"])
        cell = docs[c :: len(CELLS)]  # interleaved: document k is sequence k // 4 of cell k % 4
        assert [d["sequence"] for d in cell] == language.to_strings(arr)
        for i, doc in enumerate(cell):
            r = render.render(arr[i], template, demo=demo)
            assert (doc["length"], doc["p_ignore"], doc["suite"], doc["seq_index"]) == (length, p, f"ffl{p:g}", i)
            assert doc["context"] == r.prompt(len(r.targets) - 1) + (template.ask if rendering == "chat" else "")
            assert doc["choices"] == list(r.choices) and doc["gold"] == r.targets[-1]
            assert doc["gold"] == int(doc["sequence"][-1]) and doc["answer"] == r.choices[doc["gold"]].strip()
            assert doc["read_index"] == len(r.targets) - 1
            # lm-eval moves a context's trailing whitespace into the continuation; none here, so the
            # context/continuation split is the rendering's own prompt/answer split.
            assert doc["context"] == doc["context"].rstrip()


def test_document_order_makes_limit_a_prefix_of_every_cell():
    small = lmeval.build_docs("symbolic", lmeval.Params.from_metadata({**META, "num_sequences": 2}))
    big = lmeval.build_docs("symbolic", lmeval.Params.from_metadata(META))
    assert big[: len(small)] == small  # --limit 8 == the first 2 sequences of each cell == ffbench run --num 2


def test_defaults_and_foreign_metadata():
    params = lmeval.Params.from_metadata({"pretrained": "x", "dtype": "float32", "version": 1.0, "config_source": "y"})
    assert params == lmeval.Params((16, 64, 256), (0.8, 0.98, 0.1), 100, 0, 16)
    assert lmeval.Params.from_metadata({"lengths": "64,16", "p_ignore": 0.5, "fewshot_length": 0}).lengths == (64, 16)
    docs = lmeval.build_docs("symbolic", lmeval.Params.from_metadata({**META, "fewshot_length": 0}))
    assert "\n" not in docs[0]["context"]  # no demonstration


def test_near_miss_metadata_key_is_warned_about(caplog, monkeypatch):
    monkeypatch.setattr(lmeval, "_warned", set())
    with caplog.at_level("WARNING", logger="ffbench.lmeval"):
        assert lmeval.Params.from_metadata({"length": [64]}).lengths == (16, 64, 256)
    assert "'length' is not an fflm parameter (did you mean 'lengths'?)" in caplog.text


@pytest.mark.parametrize("metadata, needle", [
    ({"lengths": [15]}, "'lengths': length must be an even integer >= 4, got 15"),
    ({"lengths": []}, "'lengths': needs at least one value"),
    ({"lengths": ["abc"]}, "'lengths': expected an integer"),
    ({"p_ignore": [0.8, 1.5]}, "'p_ignore': p_ignore must lie in [0, 1], got 1.5"),
    ({"num_sequences": 0}, "'num_sequences': must be a positive integer"),
    ({"seed": -1}, "'seed': must be a non-negative integer"),
    ({"fewshot_length": 3}, "'fewshot_length': length must be an even integer >= 4, got 3"),
    ({"num_sequences": True}, "'num_sequences': expected an integer"),
])
def test_bad_metadata_is_a_one_line_ffbench_error(metadata, needle):
    with pytest.raises(FFBenchError) as err:
        lmeval.dataset("symbolic", **metadata)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_bad_metadata_reaching_the_top_prints_one_line():
    code = "from ffbench import lmeval; lmeval.dataset('symbolic', lengths=[16, 15])"
    res = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert res.stderr == "ffbench: error: fflm metadata 'lengths': length must be an even integer >= 4, got 15\n"


def test_answer_filter_uses_the_templates_parsing():
    chat = lmeval.build_docs("chat", lmeval.Params.from_metadata({**META, "num_sequences": 1}), generate=True)[0]
    light = lmeval.build_docs("lightswitch", lmeval.Params.from_metadata({**META, "num_sequences": 1}))[0]
    replies = [["1"], ["The bit is 0."], ["no idea"], [" on. Bob eats"], ["It is off, not on"], ["?"]]
    out = lmeval.parse_generations(replies, [chat, chat, chat, light, light, light])
    assert out == [["1"], ["0"], [lmeval.INVALID], ["on"], ["off"], [lmeval.INVALID]]
    right = lmeval.process_generation(chat, [chat["answer"]])
    assert right == {"acc": 1.0, "acc_T16": 1.0, "acc_p0.8": 1.0, "invalid": 0.0}
    assert lmeval.process_generation(chat, [lmeval.INVALID])["invalid"] == 1.0


def test_choice_scoring_is_strict_like_ffbench():
    doc = {"gold": 1, "length": 64, "p_ignore": 0.98}
    assert lmeval.process_choice(doc, [(-2.0, False), (-1.0, True)]) == {"acc": 1.0, "acc_T64": 1.0, "acc_p0.98": 1.0}
    assert lmeval.process_choice(doc, [(-1.0, False), (-1.0, False)])["acc"] == 0.0  # a tie is wrong (lm-eval: argmax)
    assert lmeval.process_choice({**doc, "gold": 0}, [(-1.0, False), (-2.0, False)])["acc"] == 1.0
    assert lmeval.process_choice({**doc, "gold": 0}, [(-3.0, False), (-2.0, False)])["acc"] == 0.0


def test_choice_scoring_agrees_with_ffbench_run_on_every_read():
    """lm-eval's verdict equals ffbench run's (rules.choice_prediction: the prediction is the target)
    and the strict rule written out here, on reads with ties, near-ties and three answers."""
    from ffbench import rules

    rng = np.random.default_rng(7)
    values = np.array([-3.0, -2.0, -2.0 + 1e-12, -1.0])  # repeats make ties frequent
    seen = set()
    for _ in range(400):
        m = int(rng.integers(2, 4))
        lls = rng.choice(values, size=m)
        gold = int(rng.integers(m))
        acc = lmeval.process_choice({"gold": gold, "length": 16, "p_ignore": 0.8},
                                    [(float(v), False) for v in lls])["acc"]
        strict = all(lls[gold] > lls[k] for k in range(m) if k != gold)
        run_prediction = int(rules.choice_prediction(lls[None], np.array([gold]))[0][0])
        assert acc == float(strict) == float(run_prediction == gold), (lls, gold)
        seen.add((strict, bool(np.sum(lls == lls.max()) > 1)))
    assert seen == {(True, False), (False, False), (False, True)}  # right, wrong and tied reads were all met


# ----------------------------------------------------------------------------- generated YAML, no import side effects
def test_committed_task_yaml_is_what_the_generator_writes():
    assert lmeval.stale_task_files() == [], "run: python -m ffbench.lmeval --write-tasks"
    assert lmeval.main(["--check"]) == 0


def test_generator_finds_and_repairs_drift(tmp_path, capsys):
    folder = tmp_path / "fflm"
    assert lmeval.write_task_files(folder) == sorted(lmeval.task_files())  # everything was missing
    assert lmeval.stale_task_files(folder) == []
    fflm = folder / "fflm.yaml"
    fflm.write_text(fflm.read_text().replace("  - metric: acc_T64\n", "  - metric: acc_T65\n"))
    (folder / "fflm_old.yaml").write_text("task: fflm_old\n")
    (folder / "README.md").write_text("not generated\n")
    assert lmeval.stale_task_files(folder) == ["fflm.yaml", "fflm_old.yaml"]
    assert lmeval.main(["--check", "--folder", str(folder)]) == 1
    assert "out of date: fflm.yaml, fflm_old.yaml" in capsys.readouterr().err
    assert lmeval.main(["--write-tasks", "--folder", str(folder)]) == 0
    assert lmeval.stale_task_files(folder) == [] and not (folder / "fflm_old.yaml").exists()
    assert (folder / "README.md").read_text() == "not generated\n"


def test_task_readme_states_the_generated_catalog():
    text = " ".join((lmeval.tasks_path() / "fflm" / "README.md").read_text().split())
    lengths, ps = lmeval.CATALOG_LENGTHS, lmeval.CATALOG_P_IGNORE
    assert lengths == tuple(lengths[0] * 2**k for k in range(len(lengths)))  # what "16, 32, ..., 4096" means
    assert f"`acc_T<L>` for L in {lengths[0]}, {lengths[1]}, ..., {lengths[-1]}" in text
    assert f"`acc_p<P>` for P in {', '.join(f'{p:g}' for p in ps)};" in text


def test_groups_never_mix_scoring_kinds():
    kind = {t.name: t.generate for t in lmeval.TASKS}
    groups = {g.name: g.tasks for g in lmeval.GROUPS}
    assert groups == {"fflm": tuple(GROUP_TASKS), "fflm_gen": tuple(GEN_TASKS)}
    for members in groups.values():
        assert len({kind[m] for m in members}) == 1, members
    mixed = lmeval.GroupSpec("bad", ("fflm_symbolic", "fflm_symbolic_gen"), ("x",), 1.0)
    with pytest.raises(ValueError, match="mixes log-likelihood and generation"):
        lmeval._group_yaml(mixed)


_IMPORT_PROBE = """
import logging, sys

def state():
    loggers = [logging.getLogger()] + [l for l in logging.root.manager.loggerDict.values()
                                       if isinstance(l, logging.Logger)]
    return sys.excepthook, {l.name: list(l.filters) for l in loggers if l.filters}

hook, filters = state()
import ffbench.lmeval as lmeval
assert state() == (hook, filters), ("import changed global state", state(), (hook, filters))
names = lmeval.NOISY_LOGGERS
assert all(not logging.getLogger(n).filters for n in names)
lmeval.dataset("symbolic", lengths=[16], p_ignore=[0.8], num_sequences=2)
assert all(len(logging.getLogger(n).filters) == 1 for n in names)  # installed once a dataset is built
lmeval.dataset("symbolic", lengths=[16], p_ignore=[0.8], num_sequences=2)
assert all(len(logging.getLogger(n).filters) == 1 for n in names)  # and only once
assert sys.excepthook is hook  # no error yet: the one-line hook is not needed
try:
    lmeval.dataset("symbolic", lengths=[15])
except lmeval.FFBenchError:
    pass
assert sys.excepthook is not hook and sys.excepthook._ffbench
print("ok")
"""


def test_importing_lmeval_changes_no_global_state():
    pytest.importorskip("datasets")
    res = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], check=False, capture_output=True, text=True,
                         timeout=120, env={**os.environ, **OFFLINE})
    assert res.returncode == 0 and res.stdout == "ok\n", res.stderr[-3000:]


def test_loading_the_task_glue_installs_the_log_filter():
    """lm-eval imports tasks/fflm/utils.py when it resolves an fflm task, before building its dataset."""
    code = ("import importlib.util, logging, sys; from ffbench import lmeval; "
            "assert not logging.getLogger('lm_eval.api.task').filters; "
            "spec = importlib.util.spec_from_file_location('fflm_utils', lmeval.tasks_path() / 'fflm' / 'utils.py'); "
            "spec.loader.exec_module(importlib.util.module_from_spec(spec)); "
            "assert all(len(logging.getLogger(n).filters) == 1 for n in lmeval.NOISY_LOGGERS); print('ok')")
    res = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout == "ok\n", res.stderr[-3000:]


# ----------------------------------------------------------------------------- registration
@needs_lm_eval
def test_yaml_files_declare_the_catalog():
    from lm_eval.tasks._yaml_loader import load_yaml

    folder = lmeval.tasks_path() / "fflm"
    catalog = lmeval.catalog_metrics()
    for name in [*CHOICE_TASKS, *GEN_TASKS]:
        cfg = load_yaml(folder / f"{name}.yaml", resolve_func=False)
        extra = ["invalid"] if name in GEN_TASKS else []
        assert [m["metric"] for m in cfg["metric_list"]] == catalog + extra, name
        rendering = {**CHOICE_TASKS, **GEN_TASKS}[name]
        assert cfg["dataset_kwargs"] == {"rendering": rendering, **({"generate": True} if extra else {})}
    group = load_yaml(folder / "fflm.yaml", resolve_func=False)
    assert group["task"] == GROUP_TASKS and [m["metric"] for m in group["aggregate_metric_list"]] == catalog
    assert all(m["weight_by_size"] is False for m in group["aggregate_metric_list"])
    gen_group = load_yaml(folder / "fflm_gen.yaml", resolve_func=False)
    assert gen_group["task"] == list(GEN_TASKS)
    assert [m["metric"] for m in gen_group["aggregate_metric_list"]] == catalog + ["invalid"]


@needs_lm_eval
def test_task_manager_helper_and_tasks_path(caplog):
    res = subprocess.run([sys.executable, "-m", "ffbench", "tasks-path"], check=False, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and Path(res.stdout.strip()) == lmeval.tasks_path()
    assert (lmeval.tasks_path() / "fflm" / "fflm.yaml").is_file()
    tm = lmeval.task_manager(META, include_defaults=False)
    assert {"fflm", "fflm_gen", *CHOICE_TASKS, *GEN_TASKS} <= set(tm.all_tasks)
    with caplog.at_level("INFO"):
        loaded = tm.load(["fflm_gen"])
    assert set(loaded["tasks"]) == set(GEN_TASKS) and list(loaded["groups"]) == ["fflm_gen"]
    assert "fflm: 24 final reads rendered" in caplog.text  # the dataset was built and logged ...
    assert "Custom kwargs can be passed" not in caplog.text  # ... without lm-eval's RULER hint
    task = loaded["tasks"]["fflm_symbolic_gen"]
    assert len(task.eval_docs) == 24 and task.eval_docs[0]["context"].endswith("Answer with the bit only.")
    with pytest.raises(FFBenchError, match="'p_ignore': p_ignore must lie in"):
        lmeval.task_manager({"p_ignore": [2]}, include_defaults=False)


# ----------------------------------------------------------------------------- lm-eval runs every task
@pytest.fixture(scope="module")
def lm_eval_results(tiny_gpt2):
    if not HAS_LM_EVAL:
        pytest.skip("lm-evaluation-harness not installed")
    import lm_eval

    with pytest.MonkeyPatch.context() as mp:
        for k, v in OFFLINE.items():
            mp.setenv(k, v)
        return lm_eval.simple_evaluate(
            model="hf", model_args={"pretrained": str(tiny_gpt2), "dtype": "float32"}, device="cpu",
            tasks=["fflm", "fflm_gen", "fflm_symbolic_spaced", "fflm_stress"],
            task_manager=lmeval.task_manager(META, include_defaults=False),
            batch_size=8, log_samples=True, gen_kwargs={"max_gen_toks": 4})  # the answer comes first; keep CPU time low


@needs_lm_eval_and_torch
def test_every_task_reports_per_length_and_per_p_ignore_metrics(lm_eval_results):
    results = lm_eval_results["results"]
    for task in [*CHOICE_TASKS, *GEN_TASKS]:
        keys = ["acc", *PER_CELL_KEYS] + (["invalid"] if task in GEN_TASKS else [])
        for key in keys:
            value = results[task][f"{key},none"]
            assert 0.0 <= value <= 1.0, (task, key, value)
        assert "acc_T64,none" not in results[task] and "acc_p0.98,none" not in results[task]  # only requested ones
        samples = lm_eval_results["samples"][task]
        assert len(samples) == len(CELLS) * META["num_sequences"]
        for key, keep in [("acc_T16", lambda d: d["length"] == 16), ("acc_p0.1", lambda d: d["p_ignore"] == 0.1)]:
            own = [s["acc"] for s in samples if keep(s["doc"])]
            assert len(own) == 12 and results[task][f"{key},none"] == pytest.approx(np.mean(own))
    for name, members in [("fflm", GROUP_TASKS), ("fflm_gen", list(GEN_TASKS))]:
        group = lm_eval_results["groups"][name]
        assert lm_eval_results["group_subtasks"][name] == members
        for key in ["acc", *PER_CELL_KEYS] + (["invalid"] if name == "fflm_gen" else []):
            assert group[f"{key},none"] == pytest.approx(np.mean([results[t][f"{key},none"] for t in members]))
    assert "invalid,none" not in lm_eval_results["groups"]["fflm"]


@needs_lm_eval_and_torch
def test_choice_tasks_equal_ffbench_run_exactly(lm_eval_results, tiny_gpt2, tmp_path):
    import pyarrow.parquet as pq

    from ffbench import backends, runner

    cfg = runner.RunConfig(model=f"hf/{tiny_gpt2}", model_args={"dtype": "float32", "device": "cpu"},
                           p_ignore=META["p_ignore"], lengths=META["lengths"], num=META["num_sequences"],
                           seed=META["seed"], renders=list(CHOICE_TASKS.values()), scorings=["choice"], fewshot=True)
    runner.run(cfg, str(tmp_path / "run"), backends.resolve(cfg.model, cfg.model_args), progress=False)
    table = pq.read_table(tmp_path / "run" / "samples.parquet").to_pandas()
    final = table.loc[table.groupby(["suite", "length", "render", "seq_index"])["read_index"].idxmax()]
    assert len(final) == len(CHOICE_TASKS) * len(CELLS) * META["num_sequences"]
    verdicts = []
    for task, rendering in CHOICE_TASKS.items():
        ours = final[final["render"] == rendering]
        ffbench_by_seq = {(r.suite, r.length, r.seq_index): (bool(r.correct), r.margin, r.read_index)
                          for r in ours.itertuples()}
        lm_by_seq = {}
        for s in lm_eval_results["samples"][task]:
            doc = s["doc"]
            # lm-eval scored exactly the rendering's prompt and answer strings
            assert [a[0] for a in s["arguments"]] == [doc["context"]] * 2
            assert [a[1] for a in s["arguments"]] == doc["choices"]
            lls = [r[0] for r in s["filtered_resps"]]
            lm_by_seq[(doc["suite"], doc["length"], doc["seq_index"])] = (
                bool(s["acc"]), lls[doc["gold"]] - lls[1 - doc["gold"]], doc["read_index"])
        assert lm_by_seq.keys() == ffbench_by_seq.keys()
        for key, (right, margin, read_index) in lm_by_seq.items():
            ff_right, ff_margin, ff_read = ffbench_by_seq[key]
            assert right == ff_right and read_index == ff_read, (task, key)
            assert margin == pytest.approx(ff_margin, abs=1e-4), (task, key)
            verdicts.append(right)
        ff_acc = float(np.mean([v[0] for v in ffbench_by_seq.values()]))
        assert lm_eval_results["results"][task]["acc,none"] == ff_acc
    assert any(verdicts) and not all(verdicts)  # the random model gets some right and some wrong


@needs_lm_eval_and_torch
def test_lm_eval_command_line(lm_eval_results, tiny_gpt2, tmp_path):
    tasks_path = subprocess.run([sys.executable, "-m", "ffbench", "tasks-path"], check=False, capture_output=True,
                                text=True, timeout=60).stdout.strip()
    script = Path(sys.executable).with_name("lm_eval")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "lm_eval"]
    cmd += ["--model", "hf", "--model_args", f"pretrained={tiny_gpt2},dtype=float32", "--device", "cpu",
            "--include_path", tasks_path, "--tasks", "fflm_symbolic", "--metadata", json.dumps(META),
            "--limit", "8", "--batch_size", "8", "--output_path", str(tmp_path / "out"), "--log_samples"]
    # A hang guard, not a speed test: the command takes ~10 s on an idle 2-core machine but was seen past
    # 240 s with the machine shared by several test runs; offline, nothing in it can wait on the network.
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=LM_EVAL_CLI_HANG_SECONDS,
                         cwd=tmp_path, env={**os.environ, **OFFLINE})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "acc_T16" in res.stdout and "acc_p0.1" in res.stdout
    (results_file,) = (tmp_path / "out").rglob("results_*.json")
    results = json.loads(results_file.read_text())["results"]["fflm_symbolic"]
    (samples_file,) = (tmp_path / "out").rglob("samples_fflm_symbolic_*.jsonl")
    cli = {s["doc_id"]: s["acc"] for s in map(json.loads, samples_file.read_text().splitlines())}
    # --limit 8 = the first two sequences of each of the four cells, scored as the API run scored them
    api = {s["doc_id"]: s["acc"] for s in lm_eval_results["samples"]["fflm_symbolic"] if s["doc_id"] < 8}
    assert cli == api
    for key in ["acc", *PER_CELL_KEYS]:
        assert 0.0 <= results[f"{key},none"] <= 1.0
    assert results["acc,none"] == pytest.approx(np.mean(list(cli.values())))


# ----------------------------------------------------------------------------- fflm_stress
STRESS_META = {"lengths": META["lengths"], "stress_num": META["stress_num"]}  # what lm_eval_results ran


def test_stress_documents_are_the_grids_final_reads():
    from ffbench import stress

    params = lmeval.StressParams.from_metadata(STRESS_META)
    assert params == lmeval.StressParams((16, 32), 2, stress.STRESS_SEED, 16)
    docs = lmeval.build_stress_docs("symbolic", params)
    template, demo = render.load_template("symbolic"), render.demo_sequence(length=16)
    total = 0
    for length in (16, 32):
        arr, columns = stress.sample_suite(length, stress.STRESS_SEED, 2)
        mine = sorted((d for d in docs if d["length"] == length), key=lambda d: d["seq_index"])
        assert [d["seq_index"] for d in mine] == list(range(arr.shape[0]))  # every sequence once
        assert [d["sequence"] for d in mine] == language.to_strings(arr)
        assert [d["point"] for d in mine] == columns["point"] and [d["family"] for d in mine] == columns["family"]
        reads = language.extract_reads(arr)
        for d in mine:
            i = d["seq_index"]
            r = render.render(arr[i], template, demo=demo)
            assert d["context"] == r.prompt(len(r.targets) - 1) and d["context"] == d["context"].rstrip()
            assert d["gold"] == r.targets[-1] == int(d["sequence"][-1]) and d["choices"] == ["0", "1"]
            family, point_params = stress.parse_point(d["point"])
            assert d["axis"] == stress.FAMILIES[family].axis and d["value"] == str(point_params[d["axis"]])
            last = np.flatnonzero(reads.seq_index == i)[-1]  # the final read, not the first
            assert (d["read_index"], d["write_distance"]) == (reads.read_index[last], reads.write_distance[last])
        total += arr.shape[0]
    assert len(docs) == total
    # dense_interference holds several reads per sequence: its documents are the last of them
    dense = [d for d in docs if d["family"] == "dense_interference"]
    assert dense and all(d["read_index"] > 0 for d in dense)


def test_stress_document_order_makes_limit_a_prefix_of_every_point():
    one = lmeval.build_stress_docs("symbolic", lmeval.StressParams.from_metadata({**STRESS_META, "stress_num": 1}))
    two = lmeval.build_stress_docs("symbolic", lmeval.StressParams.from_metadata(STRESS_META))
    # --limit n_points scores the sequences of ffbench run --suite stress --num 1 (seq_index counts rows of
    # the grid actually built, so only it differs)
    def strip(docs):
        return [{k: v for k, v in d.items() if k != "seq_index"} for d in docs]

    assert len(two) == 2 * len(one) and strip(two[: len(one)]) == strip(one)
    assert len({(d["length"], d["point"]) for d in one}) == len(one)  # one row of every (length, point)


@pytest.mark.parametrize("metadata, needle", [
    ({"lengths": [10]}, "'lengths': stress suites need an even length >= 12, got 10"),
    ({"lengths": [15]}, "'lengths': length must be an even integer >= 4, got 15"),
    ({"stress_num": 0}, "'stress_num': must be a positive integer, got 0"),
    ({"stress_num": "many"}, "'stress_num': expected an integer"),
    ({"stress_seed": -2}, "'stress_seed': must be a non-negative integer, got -2"),
])
def test_bad_stress_metadata_is_a_one_line_ffbench_error(metadata, needle):
    with pytest.raises(FFBenchError) as err:
        lmeval.stress_dataset("symbolic", **metadata)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_stress_metadata_near_miss_is_warned_about_and_other_tasks_keys_pass(caplog, monkeypatch):
    monkeypatch.setattr(lmeval, "_warned", set())
    with caplog.at_level("WARNING", logger="ffbench.lmeval"):
        params = lmeval.StressParams.from_metadata({"stress_nums": 4, "p_ignore": [0.5], "num_sequences": 3})
    assert params.per_point is None and params.lengths == (16, 64, 256)
    assert "'stress_nums' is not an fflm parameter (did you mean 'stress_num'?)" in caplog.text
    assert "p_ignore" not in caplog.text and "num_sequences" not in caplog.text
    with caplog.at_level("WARNING", logger="ffbench.lmeval"):
        lmeval.Params.from_metadata({"stress_seed": 1, "stress_num": 2})  # the fflm tasks accept them silently
    assert "stress_seed" not in caplog.text


def test_stress_choice_scoring_metrics_and_strictness():
    doc = {"gold": 1, "length": 64, "family": "distractor_run", "value": "16"}
    keys = {"acc", "acc_T64", "acc_distractor_run", "acc_distractor_run_16"}
    assert lmeval.process_stress_choice(doc, [(-2.0, False), (-1.0, True)]) == dict.fromkeys(keys, 1.0)
    assert lmeval.process_stress_choice(doc, [(-1.0, False), (-1.0, False)]) == dict.fromkeys(keys, 0.0)  # a tie
    assert lmeval.process_stress_choice({**doc, "gold": 0}, [(-3.0, False), (-2.0, False)])["acc"] == 0.0


def test_stress_catalog_covers_every_point_at_every_catalog_length():
    from ffbench import stress

    catalog = lmeval.stress_catalog_metrics()
    assert len(catalog) == len(set(catalog)) and catalog[0] == "acc"
    for length in lmeval.CATALOG_LENGTHS:
        assert lmeval.length_metric(length) in catalog
        for point in stress.grid(length, num=1):
            axis = stress.FAMILIES[point.family].axis
            doc = {"gold": 0, "length": length, "family": point.family, "value": str(point.params[axis])}
            assert set(lmeval.process_stress_choice(doc, [(0.0, False), (-1.0, False)])) <= set(catalog), point.id
    assert "acc_distractor_run_16" in catalog and "acc_dense_interference_2" in catalog
    assert "acc_write_distance_2047" in catalog  # T = 4096: the decisive write is the first instruction


def test_task_readme_documents_the_stress_task():
    from ffbench import stress

    text = (lmeval.tasks_path() / "fflm" / "README.md").read_text()
    for key in lmeval.STRESS_DEFAULTS:
        assert f"| `{key}` |" in text, key
    assert f"| `stress_seed` | `{stress.STRESS_SEED}` |" in text
    assert all(f"`{name}`" in text for name in stress.FAMILIES) and "`acc_<family>_<value>`" in text


@needs_lm_eval
def test_stress_yaml_declares_its_catalog():
    from lm_eval.tasks._yaml_loader import load_yaml

    folder = lmeval.tasks_path() / "fflm"
    raw = load_yaml(folder / "fflm_stress.yaml", resolve_func=False)
    assert [m["metric"] for m in raw["metric_list"]] == lmeval.stress_catalog_metrics()
    assert raw["dataset_kwargs"] == {"rendering": "symbolic"}
    tm = lmeval.task_manager(STRESS_META, include_defaults=False)
    task = tm.load(["fflm_stress"])["tasks"]["fflm_stress"]
    assert task.OUTPUT_TYPE == "multiple_choice" and len(task.eval_docs) == 172  # 86 points at T = 16, 32 x 2


@needs_lm_eval_and_torch
def test_stress_task_equals_ffbench_run_on_final_reads(lm_eval_results, tiny_gpt2, tmp_path):
    from ffbench import backends, runner, stress

    cfg = runner.RunConfig(model=f"hf/{tiny_gpt2}", model_args={"dtype": "float32", "device": "cpu"},
                           suites=["stress"], lengths=STRESS_META["lengths"], num=STRESS_META["stress_num"],
                           renders=["symbolic"], scorings=["choice"], fewshot=True)
    res = runner.run(cfg, str(tmp_path / "run"), backends.resolve(cfg.model, cfg.model_args), progress=False,
                     echo=lambda m: None)
    table = res.samples
    final = table.loc[table.groupby(["length", "seq_index"])["read_index"].idxmax()]
    ours = {(r.length, r.seq_index): (bool(r.correct), r.margin, r.point) for r in final.itertuples()}
    samples = lm_eval_results["samples"]["fflm_stress"]
    assert len(samples) == len(ours) == 172
    theirs = {}
    for s in samples:
        doc = s["doc"]
        lls = [r[0] for r in s["filtered_resps"]]
        theirs[(doc["length"], doc["seq_index"])] = (bool(s["acc"]), lls[doc["gold"]] - lls[1 - doc["gold"]],
                                                     doc["point"])
    assert theirs.keys() == ours.keys()
    for key, (right, margin, point) in theirs.items():
        assert (right, point) == (ours[key][0], ours[key][2]), key
        assert margin == pytest.approx(ours[key][1], abs=1e-4), key
    verdicts = [v[0] for v in theirs.values()]
    assert any(verdicts) and not all(verdicts)  # the random model gets some right and some wrong
    # every per-family and per-value metric is the mean of ffbench's own verdicts on those final reads
    results = lm_eval_results["results"]["fflm_stress"]
    axis = {name: family.axis for name, family in stress.FAMILIES.items()}
    final = final.assign(value=[str(int(getattr(r, axis[r.family]))) for r in final.itertuples()])
    expected = {"acc": final["correct"].mean()}
    expected.update({f"acc_T{t}": g["correct"].mean() for t, g in final.groupby("length")})
    expected.update({f"acc_{f}": g["correct"].mean() for f, g in final.groupby("family")})
    expected.update({f"acc_{f}_{v}": g["correct"].mean() for (f, v), g in final.groupby(["family", "value"])})
    reported = {k.removesuffix(",none"): v for k, v in results.items() if k.endswith(",none") and "stderr" not in k}
    assert reported.keys() == expected.keys()
    for key, value in expected.items():
        assert reported[key] == pytest.approx(value), key
