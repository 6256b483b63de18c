"""``ffbench export results``: each file validated by its consumer's own library (huggingface_hub
for model-index metadata and the Hub's eval-results format, every-eval-ever's schema and models
for the Every Eval Ever record), carrying the glitch rate, its exact interval and the tolerances."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from ffbench import metrics, runs
from ffbench.export import results as export_results
from ffbench.rundir import RunDir
from ffbench.runs import BASELINES_DIR
from tests.conftest import cli_exit

HAS_EEE = importlib.util.find_spec("every_eval_ever") is not None
# every-eval-ever declares Python >= 3.12 but its schema, models and validator run on 3.11: .ci/run
# installs it with --ignore-requires-python --no-deps (its imports are inspect-ai's dependencies).
needs_eee = pytest.mark.skipif(not HAS_EEE, reason="every-eval-ever is not installed (.ci/run installs it; "
                               "pip refuses it on Python < 3.12 without --ignore-requires-python)")


def _cli(args) -> int:
    return cli_exit(args)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The shipped LSTM reference's paper-suite run and its stress run, exported."""
    out = {}
    for name, ref in (("run", "ffbench/lstm-ref"), ("stress", str(BASELINES_DIR / "lstm-ref" / "stress"))):
        folder = tmp_path_factory.mktemp(name)
        assert _cli(["export", "results", ref, "--out", folder, "--dataset", "me/ffbench",
                     "--source-url", "https://example.org/report.html"]) == 0
        out[name] = (runs.load(ref), folder)
    return out


def test_model_index_reads_back_with_huggingface_hub(exported):
    from huggingface_hub import ModelCard

    for run, folder in exported.values():
        meta = yaml.safe_load((folder / "model-index.yaml").read_text())
        card = ModelCard(f"---\n{yaml.safe_dump(meta)}---\n# model\n")
        parsed = card.data.eval_results
        cells = run.results
        glitch = [r for r in parsed if r.metric_type == "glitch_rate"]
        assert [r.metric_value for r in glitch] == [c.glitch_rate for c in cells]
        assert [r.metric_args["ci95_high"] for r in glitch] == [c.ci95[1] for c in cells]
        assert [r.metric_value for r in parsed if r.metric_type == "accuracy"] == [c.accuracy for c in cells]
        assert {r.dataset_config for r in parsed} == {f"{c.suite}_T{c.length}" for c in cells}
        assert all(r.dataset_type == "me/ffbench" and r.source_url == "https://example.org/report.html" for r in parsed)
        tolerances = [t for c in cells for t in c.tolerances]
        assert len([r for r in parsed if r.metric_type == "stress_tolerance"]) == len(tolerances)


def test_stress_tolerances_are_carried_as_counts_of_clean_axis_values(exported):
    run, folder = exported["stress"]
    meta = yaml.safe_load((folder / "model-index.yaml").read_text())
    assert any(t["first_failure"] is not None for c in run.results for t in c.tolerances)
    for cell, result in zip(run.results, meta["model-index"][0]["results"]):
        rows = [m for m in result["metrics"] if m["type"] == "stress_tolerance"]
        assert len(rows) == len(cell.tolerances) > 0
        for tol, row in zip(cell.tolerances, rows):
            values = [v[tol["axis"]] for v in tol["values"]]
            clean = values.index(tol["first_failure"]) if tol["first_failure"] is not None else len(values)
            assert row["value"] == clean and row["args"]["line"] == tol["line"]
            if clean:
                assert values[clean - 1] == tol["clean_through"]


def test_eval_results_file_is_the_hubs_format(exported):
    from huggingface_hub import eval_result_entries_to_yaml, parse_eval_result_entries

    for run, folder in exported.values():
        data = yaml.safe_load((folder / ".eval_results" / "ffbench.yaml").read_text())
        entries = parse_eval_result_entries(data)
        assert eval_result_entries_to_yaml(entries) == data  # nothing outside the format
        assert [e.value for e in entries] == [c.accuracy for c in run.results]
        assert [e.task_id for e in entries] == [f"{c.suite}_T{c.length}" for c in run.results]
        for entry, cell in zip(entries, run.results):
            assert f"[{cell.ci95[0]:.3g}, {cell.ci95[1]:.3g}]" in entry.notes and f"{cell.reads:,} reads" in entry.notes


@needs_eee
def test_every_eval_ever_record_passes_the_projects_own_validator(exported, tmp_path, capsys):
    """The validator the Every Eval Ever repository's PR bot runs (strict JSON, the schema models and
    its semantic checks), on each record placed where a submission goes:
    data/<benchmark>/<developer>/<model>/<uuid>.json."""
    import uuid

    from every_eval_ever.validator.validate import main as eee_validate

    for name, (run, folder) in exported.items():
        record = json.loads((folder / "every_eval_ever.json").read_text())
        developer, model = record["model_info"]["id"].split("/", 1) if "/" in record["model_info"]["id"] else \
            ("unknown", record["model_info"]["id"])
        target = tmp_path / name / "data" / "ffbench" / developer / model.replace("/", "_") / f"{uuid.uuid4()}.json"
        target.parent.mkdir(parents=True)
        target.write_text((folder / "every_eval_ever.json").read_text())
        assert eee_validate([str(target), "--format", "json"]) == 0, capsys.readouterr().out
    # And the validator is not a rubber stamp: a record without its results fails.
    record["evaluation_results"] = "none"
    target.write_text(json.dumps(record))
    assert eee_validate([str(target), "--format", "json"]) == 1


@needs_eee
def test_every_eval_ever_record_validates_against_its_schema(exported):
    import jsonschema
    from every_eval_ever.eval_types import EvaluationLog

    schema_file = Path(importlib.util.find_spec("every_eval_ever").submodule_search_locations[0]) / "schemas" / \
        "eval.schema.json"
    schema = json.loads(schema_file.read_text())
    assert schema["version"] == export_results.EEE_SCHEMA_VERSION
    for run, folder in exported.values():
        record = json.loads((folder / "every_eval_ever.json").read_text())
        jsonschema.validate(record, schema)
        EvaluationLog.model_validate(record)
        rates = [r for r in record["evaluation_results"] if r["metric_config"]["metric_id"] == "ffbench.glitch_rate"]
        for r, cell in zip(rates, run.results):
            ci = r["score_details"]["uncertainty"]["confidence_interval"]
            assert (r["score_details"]["score"], ci["lower"], ci["upper"]) == (cell.glitch_rate, *cell.ci95)
            assert (ci["lower"], ci["upper"]) == metrics.clopper_pearson(cell.errors, cell.reads)


def test_every_eval_ever_record_has_the_required_shape_without_the_package():
    run = runs.load("ffbench/transformer-ref")
    record = export_results.every_eval_ever(run, None, now=0)
    assert set(record) >= {"schema_version", "evaluation_id", "retrieved_timestamp", "source_metadata",
                           "model_info", "eval_library", "evaluation_results"}
    assert record["retrieved_timestamp"] == "0" and record["model_info"]["additional_details"]["deployment_type"]
    assert len(record["evaluation_results"]) == 2 * len(run.results)


def test_a_stopped_run_is_refused(tmp_path, capsys):
    raw = json.loads((BASELINES_DIR / "lstm-ref" / "run" / "results.json").read_text())
    raw["stop_reason"], raw["results"][0]["complete"] = "first_error", False
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "results.json").write_text(json.dumps(raw))
    assert RunDir(tmp_path / "r").load().complete is False
    assert _cli(["export", "results", tmp_path / "r", "--out", tmp_path / "out"]) == 2
    assert "stopped early" in capsys.readouterr().err and not (tmp_path / "out").exists()
