"""lm-evaluation-harness integration: the ``fflm`` task family shipped in ``tasks/fflm/``.

The task YAML files reach this module through the thin ``tasks/fflm/utils.py``; nothing about
flip-flops is re-implemented there. Everything comes from ffbench itself:

* :func:`dataset` is the tasks' ``custom_dataset`` (the way lm-eval's RULER tasks generate their
  data): the sequences of cell (length L, p_ignore P) are exactly
  ``language.sample(FFL.from_p_ignore(P, L), num_sequences, seed)``, the sequences that
  ``ffbench run --p-ignore P --length L --num N --seed S`` scores (and labels ``ffl{P:g}``). Each
  document is the *final read* of one sequence, rendered by :func:`ffbench.render.render` with
  the paper's demonstration prepended (``render.demo_sequence(length=fewshot_length)``).
* :func:`process_choice` scores a multiple-choice document the way ffbench's ``choice`` scoring
  does: right only when the target's log-probability is *strictly* the highest (a tie is wrong;
  lm-eval's own ``acc`` would count a tie as the first choice).
* :func:`parse_generations` is the ``_gen`` tasks' answer-extraction filter
  (:meth:`ffbench.render.Template.parse_answer`), :func:`process_generation` scores its output.
* :func:`task_manager` returns an ``lm_eval.tasks.TaskManager`` that knows the tasks.

Parameters arrive as lm-eval task metadata (``lm_eval --metadata '{"lengths": [64]}'`` or
``TaskManager(metadata=...)``); see :data:`DEFAULTS`. lm-eval merges ``--model_args`` into the same
dictionary, so unknown keys are ignored (a near-miss of a parameter name is warned about).
"""

from __future__ import annotations

import difflib
import logging
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ffbench import language, render
from ffbench.errors import FFBenchError
from ffbench.resources import resource_dir

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "lengths": (16, 64, 256),
    "p_ignore": (0.8, 0.98, 0.1),  # in-distribution FFL(0.8), then the sparse and dense tails
    "num_sequences": 100,  # per (length, p_ignore) cell
    "seed": 0,  # ffbench run's default seed for --p-ignore sets
    "fewshot_length": render.DEMO_LENGTH,  # 0: no demonstration
}
INVALID = "[invalid]"  # what the answer filter yields for a generation that names no answer

# Metric names declared in the task and group YAML files (lm-eval needs them up front to know each
# metric's aggregation and to aggregate it in the group). Other values still get their own
# per-task metric, which lm-eval aggregates as a mean; only these are aggregated in the groups.
CATALOG_LENGTHS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
CATALOG_P_IGNORE = (0.1, 0.5, 0.8, 0.9, 0.98)


def length_metric(length: int) -> str:
    return f"acc_T{int(length)}"


def p_ignore_metric(p_ignore: float) -> str:
    return f"acc_p{float(p_ignore):g}"


def catalog_metrics() -> list[str]:
    """Every accuracy metric name the YAML files declare, in their order."""
    return ["acc", *map(length_metric, CATALOG_LENGTHS), *map(p_ignore_metric, CATALOG_P_IGNORE)]


# ----------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class Params:
    """The fflm parameters, validated: (length, p_ignore) cells x ``num_sequences`` final reads."""

    lengths: tuple[int, ...]
    p_ignore: tuple[float, ...]
    num_sequences: int
    seed: int
    fewshot_length: int

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None = None) -> Params:
        """Read the parameters out of lm-eval task metadata (anything else in it is ignored)."""
        metadata = dict(metadata or {})
        _warn_near_misses(metadata)
        get = lambda key: metadata.get(key, DEFAULTS[key])
        lengths = _unique(_int(v, "lengths") for v in _as_list(get("lengths"), "lengths"))
        p_ignore = _unique(_float(v, "p_ignore") for v in _as_list(get("p_ignore"), "p_ignore"))
        for length in lengths:
            _check("lengths", lambda length=length: language.FFL.from_p_ignore(0.5, length))
        for p in p_ignore:
            _check("p_ignore", lambda p=p: language.FFL.from_p_ignore(p, 16))
        num = _int(get("num_sequences"), "num_sequences")
        if num <= 0:
            raise FFBenchError(f"fflm metadata 'num_sequences': must be a positive integer, got {num}")
        seed = _int(get("seed"), "seed")
        if seed < 0:
            raise FFBenchError(f"fflm metadata 'seed': must be a non-negative integer, got {seed}")
        fewshot = _int(get("fewshot_length"), "fewshot_length")
        if fewshot:
            _check("fewshot_length", lambda: language.FFL(fewshot, 1 / 3, 1 / 3, 1 / 3))
        return cls(lengths, p_ignore, num, seed, fewshot)

    def cells(self) -> list[tuple[int, float]]:
        return [(length, p) for length in self.lengths for p in self.p_ignore]


_warned: set[str] = set()


def _warn_near_misses(metadata: Mapping[str, Any]) -> None:
    for key in metadata:
        if key in DEFAULTS or key in _warned:
            continue
        close = difflib.get_close_matches(str(key), list(DEFAULTS), n=1, cutoff=0.8)
        if close:
            _warned.add(key)
            log.warning("fflm: metadata key %r is not an fflm parameter (did you mean %r?); ignored", key, close[0])


def _check(key: str, build) -> None:
    try:
        build()
    except FFBenchError as exc:
        raise FFBenchError(f"fflm metadata {key!r}: {exc}") from None


def _as_list(value, key: str) -> list:
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    elif not isinstance(value, (list, tuple)):
        value = [value]
    if not value:
        raise FFBenchError(f"fflm metadata {key!r}: needs at least one value")
    return list(value)


def _number(value, key: str, cast, types: tuple, what: str):
    """A metadata value as int or float; strings from the command line are parsed first."""
    if isinstance(value, str):
        try:
            value = cast(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, types):
        raise FFBenchError(f"fflm metadata {key!r}: expected {what}, got {value!r}")
    return cast(value)


def _int(value, key: str) -> int:
    return _number(value, key, int, (int, np.integer), "an integer")


def _float(value, key: str) -> float:
    return _number(value, key, float, (int, float, np.integer, np.floating), "a number")


def _unique(values) -> tuple:
    return tuple(dict.fromkeys(values))


# ----------------------------------------------------------------------------- documents
def build_docs(rendering: str, params: Params, generate: bool = False) -> list[dict]:
    """One document per sequence (its final read), interleaved across the (length, p_ignore) cells.

    Document ``k`` belongs to cell ``k % n_cells`` and is sequence ``k // n_cells`` of that cell,
    so ``--limit n_cells * m`` scores the first ``m`` sequences of every cell, which are the
    sequences of ``ffbench run --num m``.
    """
    template = render.load_template(rendering)
    demo = render.demo_sequence(length=params.fewshot_length) if params.fewshot_length else None
    ask = template.ask if generate else ""
    per_cell = []
    for length, p in params.cells():
        arr = language.sample(language.FFL.from_p_ignore(p, length), params.num_sequences, params.seed)
        reads = language.extract_reads(arr)
        final = np.searchsorted(reads.seq_index, np.arange(arr.shape[0]), side="right") - 1
        docs = []
        for i, seq in enumerate(language.to_strings(arr)):
            rendered = render.render(arr[i], template, demo=demo)
            last = len(rendered.targets) - 1
            gold = int(rendered.targets[last])
            docs.append({
                "context": rendered.prompt(last) + ask,
                "choices": list(rendered.choices),
                "gold": gold,
                "answer": rendered.choices[gold].strip(),
                "length": int(length),
                "p_ignore": float(p),
                "suite": f"ffl{p:g}",  # ffbench run's label for this set
                "seed": params.seed,
                "seq_index": i,
                "read_index": int(reads.read_index[final[i]]),
                "write_distance": int(reads.write_distance[final[i]]),
                "render": template.name,
                "sequence": seq,
            })
        per_cell.append(docs)
    return [docs[i] for i in range(params.num_sequences) for docs in per_cell]


def dataset(rendering: str, generate: bool = False, **metadata) -> dict:
    """The tasks' ``custom_dataset``: ``{"test": datasets.Dataset}`` of final-read documents.

    ``rendering`` and ``generate`` come from the task YAML (``dataset_kwargs``); everything else is
    lm-eval's task metadata (``--metadata``, the TaskManager's metadata, and ``--model_args``).
    """
    try:
        params = Params.from_metadata(metadata)
        docs = build_docs(rendering, params, generate=generate)
    except FFBenchError:
        _install_one_line_errors()
        raise
    import datasets

    log.info("fflm: %d final reads rendered %r from %s", len(docs), rendering, asdict(params))
    return {"test": datasets.Dataset.from_list(docs, split=datasets.Split.TEST)}


# ----------------------------------------------------------------------------- scoring
def _metrics(doc: Mapping, value: float) -> dict[str, float]:
    """The document's outcome under ``acc`` and under its own length's and p_ignore's keys.

    Keys of other lengths are omitted rather than filled with a sentinel, so each per-length
    metric is the plain mean (with lm-eval's standard error) over exactly its own documents.
    """
    return {"acc": value, length_metric(doc["length"]): value, p_ignore_metric(doc["p_ignore"]): value}


def process_choice(doc: Mapping, results: list) -> dict[str, float]:
    """Multiple choice: right when the target's log-probability is strictly the highest (as ffbench)."""
    lls = [float(r[0]) for r in results]
    gold = int(doc["gold"])
    correct = all(lls[gold] > ll for k, ll in enumerate(lls) if k != gold)
    return _metrics(doc, float(correct))


def parse_generations(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """Filter: each generation -> the answer it names (stripped choice text) or ``[invalid]``."""
    out = []
    for gens, doc in zip(resps, docs):
        template = render.load_template(doc["render"])
        names = [c.strip() for c in doc["choices"]]
        parsed = []
        for text in gens:
            value = template.parse_answer(text if isinstance(text, str) else "", len(names))
            parsed.append(INVALID if value is None else names[value])
        out.append(parsed)
    return out


def process_generation(doc: Mapping, results: list) -> dict[str, float]:
    """Generation: right when the parsed answer is the target; unparseable answers are wrong and invalid."""
    answer = results[0]
    return {**_metrics(doc, float(answer == doc["answer"])), "invalid": float(answer == INVALID)}


# ----------------------------------------------------------------------------- registration
def tasks_path() -> Path:
    """The folder to pass to ``lm_eval --include_path`` (what ``ffbench tasks-path`` prints)."""
    return resource_dir("tasks")


def task_manager(metadata: Mapping[str, Any] | None = None, include_defaults: bool = True,
                 include_path: str | Path | list | None = None, **kwargs):
    """An ``lm_eval.tasks.TaskManager`` that knows the fflm tasks, with ``metadata`` for all tasks.

    The metadata is validated here first, so a bad value fails before lm-eval loads anything.
    ``include_defaults=False`` skips indexing lm-eval's own ~15,000 task files (much faster) when
    only fflm is wanted; ``include_path`` adds further task folders.
    """
    Params.from_metadata(metadata)
    try:
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise FFBenchError("the fflm tasks need lm-evaluation-harness: pip install 'ffbench[lm-eval]'") from None
    extra = [] if include_path is None else list(include_path) if isinstance(include_path, (list, tuple)) \
        else [include_path]
    return TaskManager(include_path=[str(tasks_path()), *map(str, extra)], include_defaults=include_defaults,
                       metadata=dict(metadata or {}), **kwargs)


class _FFLMNoiseFilter(logging.Filter):
    """Drop two lm-eval log messages about fflm tasks that do not apply to them (other tasks'
    messages pass through):

    * the hint printed before every ``custom_dataset`` call, whose example names RULER's
      ``max_seq_lengths`` (the fflm parameters are documented in tasks/fflm/README.md);
    * the warning that a task's metrics were scored on different numbers of documents: by design
      each ``acc_T<L>`` / ``acc_p<P>`` covers only its own documents, and the fflm groups average
      their tasks unweighted (``weight_by_size: false``), so the over-weighting it warns of does
      not occur.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if not msg.startswith(("fflm", "[fflm")):
            return True
        return not ("Custom kwargs can be passed to `--metadata`" in msg
                    or "not scored on the same number of documents" in msg)


def _quiet_lm_eval_notes() -> None:
    for name in ("lm_eval.api.task", "lm_eval.evaluator_utils"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _FFLMNoiseFilter) for f in logger.filters):
            logger.addFilter(_FFLMNoiseFilter())


# The YAML files import this module (through tasks/fflm/utils.py) before lm-eval builds a task.
_quiet_lm_eval_notes()


# ----------------------------------------------------------------------------- one-line errors
def _install_one_line_errors() -> None:
    """Make an FFBenchError that reaches the top of the process (the ``lm_eval`` command) print as
    ffbench's one-line message instead of a traceback through lm-eval's task loading. Callers that
    catch the exception (Python API, tests) still receive it unchanged."""
    if getattr(sys.excepthook, "_ffbench", False):
        return
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        err = exc
        while err is not None and not isinstance(err, FFBenchError):
            err = err.__cause__ or err.__context__
        if err is None:
            return previous(exc_type, exc, tb)
        print(f"ffbench: error: {err}", file=sys.stderr)

    hook._ffbench = True  # type: ignore[attr-defined]
    sys.excepthook = hook
