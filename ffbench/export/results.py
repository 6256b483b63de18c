"""``ffbench export results RUN``: a finished run as what model cards, the Hub and cross-harness
collections read, carrying the glitch rate and its exact interval (and stress tolerances), not only
accuracy. Three files in ``--out``:

``model-index.yaml``
    the ``model-index`` block of a model card's YAML header (the Hub's legacy results metadata, read
    by ``huggingface_hub.ModelCard``): per cell, the read accuracy and the glitch rate with its
    Clopper-Pearson interval, reads and errors as metric arguments; per stress tolerance, how many
    axis values the model got right from the easiest up.
``.eval_results/ffbench.yaml``
    the Hub's eval-results file (one entry per cell, ``huggingface_hub.EvalResultEntry``): dataset =
    the repo where ``ffbench export dataset`` was published (``--dataset``), task = its config
    (``<suite>_T<length>``), value = read accuracy, and the glitch rate with its interval in ``notes``
    (the format has a single value per entry). Written only with ``--dataset``.
``every_eval_ever.json``
    an Every Eval Ever aggregate record (schema :data:`EEE_SCHEMA_VERSION`): per cell the accuracy
    and the glitch rate with ``uncertainty.confidence_interval`` (exact Clopper-Pearson, 95%), per
    stress tolerance a result of its own.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from ffbench import __version__
from ffbench.errors import UsageError
from ffbench.schema import CellResult, RunResults

EEE_SCHEMA_VERSION = "0.3.0"  # every-eval-ever's eval.schema.json this record is written for (tested)
TASK = {"type": "text-generation", "name": "Flip-flop language modeling (attention glitches)"}
CI_METHOD = "exact Clopper-Pearson"
PAPER = "https://arxiv.org/abs/2306.00946"
LOCAL_PROVIDERS = ("hf", "vllm", "ffbench")
RELATIONSHIPS = ("first_party", "third_party", "collaborative", "other")


def config_name(cell: CellResult) -> str:
    """The dataset config the cell's sequences are published under (``ffbench export dataset``)."""
    return f"{cell.suite}_T{cell.length}"


def hub_id(model: str) -> str:
    """The model's name in Hugging Face form: a local provider's prefix dropped (hf/gpt2 -> gpt2)."""
    provider, _, name = model.partition("/")
    return name if provider in ("hf", "vllm") and name else model


def _what(cell: CellResult) -> str:
    return f"ffbench {cell.key.describe()}"


def _rate_words(cell: CellResult) -> str:
    low, high = cell.ci95
    return (f"glitch rate {cell.glitch_rate:.3g} (95% CI [{low:.3g}, {high:.3g}], {CI_METHOD}; "
            f"{cell.errors:,} of {cell.reads:,} reads wrong)")


def _clean_values(tolerance: dict) -> int:
    """Axis values right from the easiest up, before the first failure (all of them if none failed)."""
    count = 0
    for row in tolerance["values"]:
        if row["errors"]:
            break
        count += 1
    return count


def _tolerance_name(tolerance: dict) -> str:
    fixed = ", ".join(f"{k}={v}" for k, v in tolerance["fixed"].items())
    return f"{tolerance['family']}" + (f" ({fixed})" if fixed else "") + f" along {tolerance['axis']}"


# ----------------------------------------------------------------------------- model-index
def model_index(run: RunResults, dataset: str | None = None, source_url: str | None = None) -> dict:
    results = []
    for cell in run.results:
        low, high = cell.ci95
        metrics = [
            {"type": "accuracy", "name": "read accuracy", "value": cell.accuracy, "verified": False},
            {"type": "glitch_rate", "name": "glitch rate", "value": cell.glitch_rate, "verified": False,
             "args": {"ci95_low": low, "ci95_high": high, "ci_method": CI_METHOD, "reads": cell.reads,
                      "errors": cell.errors, "invalid": cell.invalid}},
        ]
        for tol in cell.tolerances:
            metrics.append({"type": "stress_tolerance", "name": _tolerance_name(tol), "value": _clean_values(tol),
                            "verified": False, "args": {"axis_values": len(tol["values"]), "clean_through":
                                                        tol["clean_through"], "first_failure": tol["first_failure"],
                                                        "line": tol["line"]}})
        entry = {"task": dict(TASK),  # a copy each: shared objects become YAML anchors
                 "dataset": {"type": dataset or "ffbench", "name": _what(cell), "config": config_name(cell),
                             "split": "test", "args": {"data_sha256": cell.data_sha256, "render": cell.render,
                                                      "scoring": cell.scoring, "variant": cell.variant}},
                 "metrics": metrics}
        entry["source"] = {"name": f"ffbench {run.ffbench_version or __version__}", "url": source_url or PAPER}
        results.append(entry)
    return {"model-index": [{"name": hub_id(run.model), "results": results}]}


# ----------------------------------------------------------------------------- .eval_results
def eval_results(run: RunResults, dataset: str, source_url: str | None = None) -> list[dict]:
    out = []
    for cell in run.results:
        notes = f"{cell.render} rendering, {cell.scoring} scoring" + (f", {cell.variant}" if cell.variant else "")
        notes += f"; {_rate_words(cell)}"
        if cell.tolerances:
            notes += "; stress: " + "; ".join(t["line"] for t in cell.tolerances)
        entry = {"dataset": {"id": dataset, "task_id": config_name(cell)}, "value": cell.accuracy,
                 "date": run.created or None, "notes": notes}
        if source_url:
            entry["source"] = {"url": source_url, "name": f"ffbench {run.ffbench_version or __version__}"}
        out.append({k: v for k, v in entry.items() if v is not None})
    return out


# ----------------------------------------------------------------------------- Every Eval Ever
def every_eval_ever(run: RunResults, dataset: str | None = None, relationship: str = "third_party",
                    now: float | None = None) -> dict:
    if relationship not in RELATIONSHIPS:
        raise UsageError(f"--relationship must be one of {', '.join(RELATIONSHIPS)}, got {relationship!r}")
    retrieved = str(int(now if now is not None else time.time()))
    provider = run.model.split("/", 1)[0]
    local = provider in LOCAL_PROVIDERS
    harness = run.config.get("imported_from")
    fingerprint = (run.fingerprint.get("model") or {}).get("id", "")
    model_info = {"name": run.model, "id": hub_id(run.model), "inference_engine": {"name": provider},
                  "additional_details": {"deployment_type": "self_deployed" if local else "unknown",
                                         "model_availability": "open_weights" if local else "unknown",
                                         "ffbench_model_spec": run.model, "ffbench_model_fingerprint": fingerprint}}
    results = []
    for cell in run.results:
        source = _source_data(cell, dataset)
        low, high = cell.ci95
        details = {"reads": str(cell.reads), "errors": str(cell.errors), "invalid": str(cell.invalid),
                   "sequences": str(cell.num_sequences), "render": cell.render, "scoring": cell.scoring,
                   "variant": cell.variant, "data_sha256": cell.data_sha256}
        common = {"source_data": source, "evaluation_timestamp": run.created}
        results.append({"evaluation_result_id": f"{cell.id}/accuracy", "evaluation_name": _what(cell), **common,
                        "metric_config": _metric("ffbench.read_accuracy", "read accuracy", "accuracy", False,
                                                 "Reads whose answer is strictly the model's choice (a tie is wrong)"),
                        "score_details": {"score": cell.accuracy, "details": details,
                                          "uncertainty": _interval(1 - high, 1 - low, cell.reads)}})
        results.append({"evaluation_result_id": f"{cell.id}/glitch_rate", "evaluation_name": _what(cell), **common,
                        "metric_config": _metric("ffbench.glitch_rate", "glitch rate", "error_rate", True,
                                                 "Wrong reads / reads; a reply naming no answer counts as wrong"),
                        "score_details": {"score": cell.glitch_rate, "details": details,
                                          "uncertainty": _interval(low, high, cell.reads)}})
        for tol in cell.tolerances:
            name = _tolerance_name(tol)
            metric = _metric(f"ffbench.stress_tolerance.{tol['family']}", f"stress tolerance: {name}", "count", False,
                             "Axis values the model reads right on every read, from the easiest up, before the "
                             "first failure", maximum=len(tol["values"]))
            results.append({"evaluation_result_id": f"{cell.id}/tolerance/{name}", "evaluation_name":
                            f"{_what(cell)}: {name}", **common, "metric_config": metric,
                            "score_details": {"score": _clean_values(tol), "details": {
                                "line": tol["line"], "axis": tol["axis"], "harder": tol["harder"],
                                "clean_through": json.dumps(tol["clean_through"]),
                                "first_failure": json.dumps(tol["first_failure"]),
                                "recovers": json.dumps(tol["recovers"]), "fixed": json.dumps(tol["fixed"])}}})
    library = {"name": "ffbench", "version": run.ffbench_version or __version__}
    if harness:
        library["additional_details"] = {"scored_by": str(harness)}
    return {"schema_version": EEE_SCHEMA_VERSION,
            "evaluation_id": f"ffbench/{hub_id(run.model)}/{retrieved}",
            "evaluation_timestamp": run.created, "retrieved_timestamp": retrieved,
            "source_metadata": {"source_name": "ffbench", "source_type": "evaluation_run",
                                "source_organization_name": "ffbench", "evaluator_relationship": relationship,
                                "additional_details": {"paper": PAPER}},
            "eval_library": library, "model_info": model_info, "evaluation_results": results}


def _source_data(cell: CellResult, dataset: str | None) -> dict:
    details = {"config": config_name(cell), "data_sha256": cell.data_sha256,
               "source": json.dumps(cell.source.as_dict() if cell.source else None)}
    if dataset:
        return {"dataset_name": f"ffbench {config_name(cell)}", "source_type": "hf_dataset", "hf_repo": dataset,
                "hf_split": "test", "samples_number": cell.num_sequences, "additional_details": details}
    return {"dataset_name": f"ffbench {config_name(cell)}", "source_type": "other", "additional_details": details}


def _metric(metric_id: str, name: str, kind: str, lower_is_better: bool, description: str, maximum: float = 1) -> dict:
    return {"evaluation_description": description, "metric_id": metric_id, "metric_name": name, "metric_kind": kind,
            "metric_unit": "proportion" if maximum == 1 else "values", "lower_is_better": lower_is_better,
            "score_type": "continuous", "min_score": 0, "max_score": maximum}


def _interval(low: float, high: float, reads: int) -> dict:
    return {"confidence_interval": {"lower": max(0.0, low), "upper": min(1.0, high), "confidence_level": 0.95,
                                    "method": CI_METHOD}, "num_samples": reads}


# ----------------------------------------------------------------------------- writing
def export(run: RunResults, out: str, dataset: str | None = None, source_url: str | None = None,
           relationship: str = "third_party") -> list[Path]:
    """Write the files into ``out`` (created if needed); return their paths."""
    import yaml

    from ffbench.io import atomic_path, write_json

    if not run.complete:
        raise UsageError(f"{run.label or run.model} stopped early ({run.stop_reason}): its counts are not a sample of "
                         "fixed size; complete it before publishing its results")
    if any(math.isnan(c.glitch_rate) for c in run.results):
        raise UsageError(f"{run.label or run.model} has a cell without reads; nothing to publish for it")
    record = every_eval_ever(run, dataset, relationship)  # validates --relationship before anything is written
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "model-index.yaml", folder / "every_eval_ever.json"]
    with atomic_path(written[0]) as tmp:
        tmp.write_text(yaml.safe_dump(model_index(run, dataset, source_url), sort_keys=False), encoding="utf-8")
    write_json(written[1], record)
    if dataset:
        (folder / ".eval_results").mkdir(exist_ok=True)
        written.append(folder / ".eval_results" / "ffbench.yaml")
        with atomic_path(written[-1]) as tmp:
            tmp.write_text(yaml.safe_dump(eval_results(run, dataset, source_url), sort_keys=False), encoding="utf-8")
    return written
