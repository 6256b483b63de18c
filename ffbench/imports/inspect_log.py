"""An Inspect AI log of ``ffbench/flipflop`` or ``ffbench/stress`` -> imported reads.

The task's arguments (``eval.task_args``) name the sequences; :mod:`ffbench.inspect_tasks.reads`
regenerates them, as the task did. Each sample is one read (its metadata holds ``seq_index`` and
``read_index``), its ``flipflop_read`` score the verdict (prediction, invalid, truncated). Only the
first epoch is read. Sequences are kept whole: when ``--limit`` (or a failed sample) left a
sequence with some reads unscored, the import keeps the leading sequences scored in full and says
what it dropped.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ffbench import sources, tasks
from ffbench.errors import FFBenchError, UsageError
from ffbench.imports.build import Imported, ImportedCell, ImportedRead
from ffbench.inspect_tasks import reads as task_reads
from ffbench.schema import variant_of

TASKS = {f"ffbench/{name}": name for name in task_reads.RENDERINGS}  # registry name -> reads.source's task
SCORER = "flipflop_read"


def read(path: Path) -> Imported:
    try:
        from inspect_ai.log import read_eval_log
    except ImportError:
        raise FFBenchError("reading an Inspect log needs inspect-ai: pip install 'ffbench[inspect]'") from None
    try:
        log = read_eval_log(str(path))
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line
        raise UsageError(f"{path} is not a readable Inspect log ({type(exc).__name__}: {str(exc).splitlines()[0]})") \
            from None
    task = TASKS.get(log.eval.task_registry_name or log.eval.task)
    if task is None:
        raise UsageError(f"{path} is a log of Inspect task {log.eval.task!r}, not of an ffbench task "
                         f"({', '.join(TASKS)})")
    args = dict(log.eval.task_args)
    registers = args.get("registers", tasks.get(task).default_registers) if task == "registers" else None
    spec = task_reads.source(task, args.get("suite"), args.get("length"), args.get("num"), args.get("seed"),
                             args.get("p_ignore"), registers)
    rendering = str(args.get("rendering", task_reads.RENDERINGS[task]))
    store = sources.SequenceStore()
    got: dict[tuple[int, int], ImportedRead] = {}
    for sample in log.samples or []:
        score = (sample.scores or {}).get(SCORER)
        if sample.epoch != 1 or score is None:
            continue
        meta, verdict = sample.metadata, score.metadata or {}
        got[(int(meta["seq_index"]), int(meta["read_index"]))] = ImportedRead(
            int(verdict["prediction"]), bool(verdict["invalid"]), bool(verdict["truncated"]),
            sample.output.completion if sample.output else None, target=int(meta["target"]))
    spec, kept, notes = _whole_sequences(spec, got, store)
    max_tokens = int(args.get("max_tokens", task_reads.MAX_TOKENS))
    config = {"harness_task": log.eval.task_registry_name, "task_args": args, "renders": [rendering],
              "scorings": ["greedy"], "fewshot": bool(args.get("fewshot")), "alphabet": 2,
              "max_new_tokens": None if max_tokens == task_reads.MAX_TOKENS else max_tokens, "log": str(path),
              "task": spec.task}  # a task other than ffl enters every cell's variant, as in ffbench run
    variant = variant_of(config, "greedy", chat=False, asks=True)
    cell = ImportedCell(spec, rendering, "greedy", variant, kept)
    identity = {"model": log.eval.model, "base_url": log.eval.model_base_url, "model_args": log.eval.model_args}
    return Imported("inspect", log.eval.model, [cell], config, identity, str(path), notes)


def _whole_sequences(spec: sources.SourceSpec, got: dict, store: sources.SequenceStore):
    """The leading sequences whose every read the log scored: (their spec, their reads, notes)."""
    arr, flat, _ = store.get(spec)
    per_seq: dict[int, int] = {}
    for s in flat.seq_index.tolist():
        per_seq[s] = per_seq.get(s, 0) + 1
    scored: dict[int, int] = {}
    for s, _ in got:
        scored[s] = scored.get(s, 0) + 1
    whole = 0
    while whole < arr.shape[0] and scored.get(whole, 0) == per_seq.get(whole, 0):
        whole += 1
    if whole == 0:
        raise FFBenchError("the log scored no sequence in full (every read of it): nothing to import")
    notes = []
    dropped = sum(1 for s, _ in got if s >= whole)
    if dropped:
        notes.append(f"{dropped} reads of sequences after the first {whole} were dropped (those sequences were "
                     "scored only in part)")
    if whole < arr.shape[0]:
        if spec.kind == "stress":
            raise FFBenchError(f"the log scored {whole} of the stress grid's {arr.shape[0]} sequences in full; "
                               "import needs the whole grid (rerun without --limit)")
        spec = replace(spec, num=whole)  # the first k rows of num = N are the rows of num = k
    return spec, {key: r for key, r in got.items() if key[0] < whole}, notes
