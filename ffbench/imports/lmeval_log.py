"""lm-evaluation-harness ``--log_samples`` output of the fflm tasks -> imported reads.

lm-eval writes, per task, ``samples_<task>_<date>.jsonl`` (one line per document: ``doc``,
``resps``, ``filtered_resps``, the metrics) beside ``results_<date>.json`` (model, arguments, task
metadata). An fflm document is the final read of one sequence (:func:`ffbench.lmeval.final_read_docs`)
and carries the sequence, its cell (length, p_ignore, seed; for ``fflm_stress`` the grid's point),
``seq_index`` and ``read_index``; the import regenerates every cell's sequences with ffbench (an
``fflm_stress`` cell is the whole grid at one length), checks each document's sequence and whole
context against them, and reads the verdict with ffbench's rules: strictly the highest
log-likelihood (a tie is wrong) for the multiple-choice tasks, the filtered answer for the
generation tasks. The tasks of another language (``fflm_undo_*``, ``fflm_registers_*``,
``fflm_haystack``) import into that task's cells (``task=NAME``, K from the task metadata
``registers``), as ``ffbench run --task`` plans them. Cells get the variant ``final_read`` (only the last read of each sequence was
asked), ``fewshot`` when the paper's demonstration preceded it, and ``chat_template=<sha>`` /
``system_prompt=<sha>`` when lm-eval wrapped the contexts (``--apply_chat_template``,
``--system_instruction``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ffbench import language, lmeval, render, sources
from ffbench import tasks as ffl_tasks
from ffbench.errors import FFBenchError, UsageError
from ffbench.imports.build import Imported, ImportedCell, ImportedRead
from ffbench.rules import choice_prediction

FINAL_READ = "final_read"
MODEL_TYPES = {"hf": "hf", "hf-auto": "hf", "huggingface": "hf", "vllm": "vllm", "openai-completions": "openai",
               "openai-chat-completions": "openai", "local-completions": "openai", "local-chat-completions": "openai",
               "anthropic-chat": "anthropic", "anthropic-chat-completions": "anthropic"}


def read(path: Path) -> Imported:
    files = sorted(path.rglob("samples_*.jsonl")) if path.is_dir() else [path]
    if not files:
        raise UsageError(f"{path}: no lm-eval samples_*.jsonl files (run lm_eval with --log_samples)")
    results = _results_json(files)
    meta_by_task = {task: cfg.get("metadata") or {} for task, cfg in (results.get("configs") or {}).items()}
    groups: dict[tuple, dict] = {}
    tasks = []
    for file in files:
        docs = _lines(file)
        if not docs:
            continue
        task = _task_name(file)
        language = next((t.task for t in lmeval.TASKS if t.name == task), ffl_tasks.DEFAULT)
        tasks.append(task)
        meta = meta_by_task.get(task) or {}
        chosen = ffl_tasks.get(language)
        k = int(meta.get("registers", lmeval.DEFAULTS["registers"])) if chosen.default_registers else None
        fewshot = int(meta.get("fewshot_length", lmeval.DEFAULTS["fewshot_length"]))
        per_point = meta.get("stress_num", lmeval.STRESS_DEFAULTS["stress_num"])
        for record in docs:
            doc = record.get("doc") or {}
            if "sequence" not in doc or "seq_index" not in doc:
                raise UsageError(f"{file}: not an fflm task's samples (no sequence in its documents)")
            generate = isinstance((record.get("filtered_resps") or [None])[0], str)
            p = ("stress", None if per_point is None else int(per_point)) if "family" in doc else float(doc["p_ignore"])
            key = (task, int(doc["length"]), p, int(doc["seed"]), doc["render"], generate, fewshot, language, k)
            groups.setdefault(key, {})[int(doc["seq_index"])] = record
    if len(set(tasks)) != len(tasks):
        raise UsageError(f"{path}: holds more than one log of the same task; give one samples file or one run's folder")
    prompt = _prompt_variant(results)
    cells = [_cell(key, records, prompt) for key, records in groups.items()]  # in the order of the files
    config = results.get("config") or {}
    model = _model_spec(config)
    identity = {"model": config.get("model"), "model_args": config.get("model_args"),
                "lm_eval_version": results.get("lm_eval_version"), "model_sha": results.get("model_sha")}
    run_config = {"harness_tasks": sorted(set(tasks)), "lm_eval_config": config, "log": str(path)}
    return Imported("lm-eval", model, cells, run_config, identity, str(path))


def _prompt_variant(results: dict) -> list[str]:
    """What lm-eval wrapped around the contexts (a chat template, a system instruction), by short hash,
    as ffbench's variant names them: such cells are not comparable with plain ones."""
    out = []
    if results.get("chat_template"):
        out.append(f"chat_template={str(results.get('chat_template_sha') or '')[:8]}")
    if results.get("system_instruction"):
        out.append(f"system_prompt={str(results.get('system_instruction_sha') or '')[:8]}")
    return out


def _cell(key: tuple, records: dict[int, dict], prompt: list[str]) -> ImportedCell:
    task, length, p, seed, rendering, generate, fewshot, task_name, k = key
    chosen = ffl_tasks.get(task_name)
    m = len(records)
    if isinstance(p, tuple):  # fflm_stress: the whole grid at this length
        spec = sources.stress_source(length, p[1], seed)
        where = f"the stress grid at T={length}"
    elif chosen.name == ffl_tasks.DEFAULT:
        spec = sources.SourceSpec("ffl", f"ffl{p:g}", length, m, p, seed)
        where = f"cell T={length} p_ignore={p:g}"
    else:  # as ffbench run --task plans an i.i.d. set of the task's language (and lm-eval labels it)
        (spec,) = sources.plan_sources([], [], [length], [p], m, seed, task=chosen.name,
                                       registers_k=None if k is None else [k])
        where = f"cell T={length} p_ignore={p:g} of --task {chosen.name}"
    if sorted(records) != list(range(spec.num)):
        raise FFBenchError(f"{task}: the documents of {where} are not its sequences 0..{spec.num - 1} "
                           "(lm-eval --limit cut it: import needs every sequence of a cell)")
    arr = sources.load_sequences(spec)
    template = render.load_template(rendering)
    demo = None
    if fewshot:
        demo = render.demo_sequence(length=fewshot) if chosen.name == ffl_tasks.DEFAULT else chosen.demo(length=fewshot)
    ask = template.ask if generate else ""
    expected = lmeval.final_read_docs(arr, template, demo, ask, {}, task=chosen.name)
    reads: dict[tuple[int, int], ImportedRead] = {}
    for i, doc_expected in enumerate(expected):
        record = records[i]
        doc = record["doc"]
        if doc["sequence"] != language.to_strings(arr[i : i + 1])[0] or doc["context"] != doc_expected["context"]:
            raise FFBenchError(f"{task}: document {record.get('doc_id')} ({where}, sequence {i}) is not what "
                               "ffbench generates for it (other metadata or a changed task?)")
        reads[(i, int(doc["read_index"]))] = _verdict(record, doc, generate)
    variant = "+".join(([] if chosen.name == ffl_tasks.DEFAULT else [f"task={chosen.name}"])  # as variant_of orders it
                       + ([] if not fewshot else ["fewshot" if fewshot == render.DEMO_LENGTH else f"fewshot_T{fewshot}"])
                       + prompt + [FINAL_READ])
    return ImportedCell(spec, template.name, "greedy" if generate else "choice", variant, reads)


def _verdict(record: dict, doc: dict, generate: bool) -> ImportedRead:
    gold = int(doc["gold"])
    if generate:
        answer = record["filtered_resps"][0]
        names = [c.strip() for c in doc["choices"]]
        prediction = names.index(answer) if answer in names else -1
        raw = record.get("resps") or [[None]]
        return ImportedRead(prediction, prediction < 0, False, raw[0][0] if raw and raw[0] else None, target=gold)
    lls = np.array([[float(r[0]) for r in record["filtered_resps"]]])
    pred, margin = choice_prediction(lls, np.array([gold]))
    return ImportedRead(int(pred[0]), False, False, None, float(margin[0]), target=gold)


def _task_name(file: Path) -> str:
    name = file.name.removeprefix("samples_")
    known = [t.name for t in (*lmeval.TASKS, *lmeval.STRESS_TASKS)]
    for task in sorted(known, key=len, reverse=True):
        if name.startswith(task + "_"):
            return task
    raise UsageError(f"{file}: not the samples of an fflm task ({', '.join(known)})")


def _lines(file: Path) -> list[dict]:
    out = []
    with open(file, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise UsageError(f"{file}: line {lineno}: not valid JSON ({exc.msg})") from None
    return out


def _results_json(files: list[Path]) -> dict:
    """lm-eval's results file written beside the samples (the model and task metadata), if any."""
    found = sorted({p for f in files for p in f.parent.glob("results_*.json")})
    if len(found) > 1:
        raise UsageError(f"{files[0].parent}: holds {len(found)} lm-eval results files; give one run's samples file")
    return json.loads(found[0].read_text(encoding="utf-8")) if found else {}


def _model_spec(config: dict) -> str:
    """ffbench's spec of the model lm-eval ran (hf/NAME, vllm/NAME, openai/NAME), else lm-eval/TYPE."""
    kind = str(config.get("model") or "unknown")
    args = config.get("model_args") or {}
    if isinstance(args, str):
        args = dict(part.split("=", 1) for part in args.split(",") if "=" in part)
    name = args.get("pretrained") or args.get("model")
    provider = MODEL_TYPES.get(kind)
    return f"{provider}/{name}" if provider and name else f"lm-eval/{kind}" + (f"/{name}" if name else "")
