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
* :func:`stress_dataset` / :func:`process_stress_choice` are ``fflm_stress``'s: the final read of
  every sequence of the stress grid (``ffbench.stress.iter_suite``, the sequences of ``ffbench run
  --suite stress``), scored by the same strict rule, counted per family and per value of the
  family's axis parameter (:func:`stress_metric`).
* :func:`task_manager` returns an ``lm_eval.tasks.TaskManager`` that knows the tasks.
* :func:`task_files` generates every task and group YAML file from :data:`TASKS`,
  :data:`STRESS_TASKS`, :data:`GROUPS` and the metric catalogues, so the metric names exist in one
  place:
  ``python -m ffbench.lmeval --write-tasks`` regenerates ``tasks/fflm/*yaml`` (``--check`` fails
  when the committed files differ).

Importing this module changes nothing in the host program. Process-wide hooks are installed only
once fflm is really used: a logging filter on two lm-eval messages that do not apply to fflm
(:func:`install_task_hooks`, when an fflm task is loaded or its dataset built), and, after a
bad-metadata error while building a dataset, an exception hook that prints that error as one line
instead of a traceback through lm-eval.

Parameters arrive as lm-eval task metadata (``lm_eval --metadata '{"lengths": [64]}'`` or
``TaskManager(metadata=...)``); see :data:`DEFAULTS`. lm-eval merges ``--model_args`` into the same
dictionary, so unknown keys are ignored (a near-miss of a parameter name is warned about).
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ffbench import language, render, stress, tasks
from ffbench.errors import FFBenchError
from ffbench.resources import resource_dir
from ffbench.rules import choice_correct

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "lengths": (16, 64, 256),
    "p_ignore": (0.8, 0.98, 0.1),  # in-distribution FFL(0.8), then the sparse and dense tails
    "num_sequences": 100,  # per (length, p_ignore) cell
    "seed": 0,  # ffbench run's default seed for --p-ignore sets
    "fewshot_length": render.DEMO_LENGTH,  # 0: no demonstration
    "registers": 2,  # k of the fflm_registers tasks (ffbench run --task registers --registers K)
}
# The fflm_registers tasks' default lengths: the instruction counts of DEFAULTS' (8, 32, 128), three
# characters each (a registers length is a multiple of 3).
REGISTERS_LENGTHS = (24, 96, 384)
NOT_IN_COMMENT = ("fewshot_length", "registers")  # defaults the common YAML's example leaves out
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
    registers: int = DEFAULTS["registers"]  # k, for the registers tasks only

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None = None, task: str | None = None) -> Params:
        """Read the parameters out of lm-eval task metadata (anything else in it is ignored); ``task``
        (the language) checks the lengths by its rules and picks its default lengths."""
        metadata = dict(metadata or {})
        _warn_near_misses(metadata)
        chosen = tasks.get(task)
        defaults = {**DEFAULTS, **({"lengths": REGISTERS_LENGTHS} if chosen.default_registers else {})}
        get = lambda key: metadata.get(key, defaults[key])
        lengths = _unique(_int(v, "lengths") for v in _as_list(get("lengths"), "lengths"))
        p_ignore = _unique(_float(v, "p_ignore") for v in _as_list(get("p_ignore"), "p_ignore"))
        k = _int(get("registers"), "registers")
        if chosen.default_registers:
            _check("registers", lambda: chosen.dist(0.5, 24, 2, k))
        for length in lengths:
            _check("lengths", lambda length=length: chosen.dist(0.5, length, 2, k if chosen.default_registers else None))
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
        return cls(lengths, p_ignore, num, seed, fewshot, k)

    def cells(self) -> list[tuple[int, float]]:
        return [(length, p) for length in self.lengths for p in self.p_ignore]


_warned: set[str] = set()


def _warn_near_misses(metadata: Mapping[str, Any]) -> None:
    known = [*DEFAULTS, *STRESS_DEFAULTS]
    for key in metadata:
        if key in known or key in _warned:
            continue
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.8)
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
def final_read_docs(arr: np.ndarray, template, demo, ask: str, cell: dict, first_index: int = 0,
                    task: str | None = None) -> list[dict]:
    """One document per sequence of ``arr``: its final read as a question (context, choices, gold,
    answer), the read's identity in ``ffbench run``'s samples (``seq_index`` counts from
    ``first_index``), and the ``cell`` fields every document of the set shares. ``task``: the
    language of ``arr`` (:mod:`ffbench.tasks`; default ffl)."""
    reads = tasks.get(task).extract_reads(arr)
    final = np.searchsorted(reads.seq_index, np.arange(arr.shape[0]), side="right") - 1
    docs = []
    for i, seq in enumerate(language.to_strings(arr)):
        rendered = render.render(arr[i], template, demo=demo)
        last = len(rendered.targets) - 1
        gold = int(rendered.targets[last])
        docs.append({"context": rendered.prompt(last) + ask, "choices": list(rendered.choices), "gold": gold,
                     "answer": rendered.choices[gold].strip(), **cell, "seq_index": first_index + i,
                     "read_index": int(reads.read_index[final[i]]),
                     "write_distance": int(reads.write_distance[final[i]]), "render": template.name,
                     "sequence": seq})
    return docs


def build_docs(rendering: str, params: Params, generate: bool = False, task: str | None = None) -> list[dict]:
    """One document per sequence (its final read), interleaved across the (length, p_ignore) cells.

    Document ``k`` belongs to cell ``k % n_cells`` and is sequence ``k // n_cells`` of that cell,
    so ``--limit n_cells * m`` scores the first ``m`` sequences of every cell, which are the
    sequences of ``ffbench run --num m`` (with ``--task`` ``task``: the sequences are of its language).
    """
    chosen = tasks.get(task)
    template = render.load_template(rendering)
    render.check_task(template, chosen)
    demo = None
    if params.fewshot_length:
        demo = render.demo_sequence(length=params.fewshot_length) if chosen.name == tasks.DEFAULT \
            else chosen.demo(length=params.fewshot_length)
    ask = template.ask if generate else ""
    per_cell = []
    k = params.registers if chosen.default_registers else None
    suffix = f"_k{k}" if k is not None and k != chosen.default_registers else ""  # as ffbench.sources labels it
    for length, p in params.cells():
        arr = chosen.sample(chosen.dist(p, length, 2, k), params.num_sequences, params.seed)
        cell = {"length": int(length), "p_ignore": float(p), "suite": f"{chosen.name}{p:g}{suffix}",  # ffbench run's label
                "seed": params.seed}
        per_cell.append(final_read_docs(arr, template, demo, ask, cell, task=chosen.name))
    return [docs[i] for i in range(params.num_sequences) for docs in per_cell]


def dataset(rendering: str, generate: bool = False, task: str = tasks.DEFAULT, **metadata) -> dict:
    """The tasks' ``custom_dataset``: ``{"test": datasets.Dataset}`` of final-read documents.

    ``rendering``, ``generate`` and ``task`` (the language, ``ffl``, ``undo`` or ``registers``) come from the task
    YAML (``dataset_kwargs``); everything else is lm-eval's task metadata (``--metadata``, the
    TaskManager's metadata, and ``--model_args``).
    """
    return _dataset("fflm", lambda m: Params.from_metadata(m, task),
                    lambda params: build_docs(rendering, params, generate=generate, task=task), rendering, metadata)


def _dataset(task: str, read_params, build, rendering: str, metadata: dict) -> dict:
    """A task's ``{"test": datasets.Dataset}``: parameters from the metadata, documents built from them,
    and a bad value reported as ffbench's one-line error at the top of the ``lm_eval`` process."""
    install_task_hooks()
    try:
        params = read_params(metadata)
        docs = build(params)
    except FFBenchError:
        _install_one_line_errors()
        raise
    import datasets

    log.info("%s: %d final reads rendered %r from %s", task, len(docs), rendering, asdict(params))
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
    lls = np.array([[float(r[0]) for r in results]])
    correct = bool(choice_correct(lls, np.array([int(doc["gold"])]))[0])
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


NOISY_LOGGERS = ("lm_eval.api.task", "lm_eval.evaluator_utils")


def install_task_hooks() -> None:
    """Install the fflm log filter on lm-eval's loggers (idempotent).

    Called when an fflm task is about to be built: by ``tasks/fflm/utils.py``, which lm-eval
    imports only when it resolves an fflm task's YAML (lm-eval logs its ``custom_dataset`` hint
    *before* it calls :func:`dataset`), and by :func:`dataset`. Never at import of this module.
    """
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _FFLMNoiseFilter) for f in logger.filters):
            logger.addFilter(_FFLMNoiseFilter())


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


# ----------------------------------------------------------------------------- task files
@dataclass(frozen=True)
class TaskSpec:
    """One fflm task: its name, the ffbench rendering it reads, and how it is scored."""

    name: str
    rendering: str
    generate: bool  # True: the model's greedy reply is parsed; False: multiple choice by log-likelihood
    about: str  # one line, written at the top of the task's YAML file
    task: str = tasks.DEFAULT  # the language (ffbench.tasks): ffl, undo, registers or haystack


TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("fflm_symbolic", "symbolic", False, "compact flip-flop string (w0i1r0), the layout of ffbench's data files"),
    TaskSpec("fflm_lightswitch", "lightswitch", False, "the paper's Alice/Bob light-switch sentences"),
    TaskSpec("fflm_symbolic_spaced", "symbolic_spaced", False,
             "spaced symbols (w 0 i 1 r 0); variant for tokenizers that merge a letter with a digit"),
    TaskSpec("fflm_symbolic_gen", "chat", True,
             "the rules of the game, then the spaced sequence, then a question (ffbench's chat rendering)"),
    TaskSpec("fflm_lightswitch_gen", "lightswitch_chat", True,
             "the light-switch game as an instruction, then the story, then a question (ffbench's lightswitch_chat)"),
    TaskSpec("fflm_undo_symbolic", "symbolic_undo", False,
             "UNDO flip-flop (ffbench run --task undo): compact strings with u, UNDO(p_ignore) sequences", task="undo"),
    TaskSpec("fflm_undo_lightswitch", "lightswitch_undo", False,
             "UNDO flip-flop (ffbench run --task undo): light switches with take-backs", task="undo"),
    TaskSpec("fflm_registers_symbolic", "symbolic_registers", False,
             "k registers (ffbench run --task registers): compact strings wa1wb0rb0, Registers(p_ignore) sequences, "
             "metadata registers (k, default 2), lengths multiples of 3 (default 24, 96, 384)", task="registers"),
    TaskSpec("fflm_registers_lightswitch", "lightswitch_registers", False,
             "k registers (ffbench run --task registers): a light per room, Registers(p_ignore) sequences",
             task="registers"),
    TaskSpec("fflm_haystack", "haystack", False,
             "flip-flops in a haystack (ffbench run --task haystack): light switches among story sentences, "
             "writes with p_w = 1 - p_ignore and only the final read", task="haystack"),
)


@dataclass(frozen=True)
class GroupSpec:
    """An fflm group: its member tasks (all of one scoring kind) and what it is for."""

    name: str
    tasks: tuple[str, ...]
    about: tuple[str, ...]  # comment lines at the top of the group's YAML file
    version: float


# Log-likelihood and generation tasks never share a group: a base model cannot answer the
# generation tasks, and their zeros would drag its score down.
GROUPS: tuple[GroupSpec, ...] = (
    GroupSpec("fflm", ("fflm_symbolic", "fflm_lightswitch"),
              ("The default: final-read accuracy by log-likelihood (multiple choice), for any model that",
               "gives log-probabilities, base models included."),
              version=2.0),  # 2.0: the generation tasks left the default group
    GroupSpec("fflm_gen", ("fflm_symbolic_gen", "fflm_lightswitch_gen"),
              ("The generation tasks: for chat and API models that give no log-probabilities",
               "(run with --apply_chat_template)."),
              version=1.0),
)
TASK_VERSION = 1.0
INVALID_METRIC = "invalid"
TASK_FOLDER = "fflm"
GENERATED = "# Generated by `python -m ffbench.lmeval --write-tasks` from ffbench/lmeval.py: edit there, not here.\n"

_COMMON_YAML = """\
# Shared by every fflm task (included; not a task itself because the name does not end in .yaml).
# The documents are generated by ffbench (tasks/fflm/utils.py -> ffbench.lmeval.dataset), never
# downloaded: parameters come from lm-eval's task metadata, e.g.
#   --metadata '@METADATA@'
# One document = the final read of one flip-flop sequence, preceded by the rendered demonstration.
custom_dataset: !function utils.dataset
test_split: test
doc_to_text: context
num_fewshot: 0  # the paper's demonstration is already part of every context (metadata fewshot_length)
metadata:
  version: @VERSION@
"""

_CHOICE_YAML = """\
# Multiple choice between the rendering's answer strings at the final read, scored like ffbench's
# "choice" scoring: right only when the target's log-probability is strictly the highest.
include: _fflm_common_yaml
output_type: multiple_choice
doc_to_choice: choices
doc_to_target: gold
target_delimiter: ""  # the answer strings carry their own leading space where the rendering has one
process_results: !function utils.process_choice
# acc over all final reads, then per length (acc_T<L>) and per p_ignore (acc_p<P>). Only the keys of
# the requested lengths / p_ignore values appear in the results; values outside this list are
# reported too (as lm-eval's default mean) but are not aggregated in the groups.
metric_list:
@METRICS@"""

_GEN_YAML = """\
# Generation (for chat and API models without log-probabilities): the model's greedy reply is
# parsed by the rendering's own answer_pattern (ffbench.render.Template.parse_answer); a reply that
# names no answer counts as wrong and as invalid.
include: _fflm_common_yaml
output_type: generate_until
doc_to_target: answer
process_results: !function utils.process_generation
generation_kwargs:
  until:
    - "\\n\\n"
  max_gen_toks: 32
  do_sample: false
  temperature: 0.0
# Named "none" (lm-eval's default filter name) so that every fflm task and group reports its
# metrics under the same keys (acc,none); it is the answer extraction, then take_first.
filter_list:
  - name: none
    filter:
      - function: custom
        filter_fn: !function utils.parse_generations
      - function: take_first
metric_list:
@METRICS@"""


def task_metrics(generate: bool) -> list[str]:
    """The metrics a task declares: the accuracy catalogue, plus ``invalid`` for generation."""
    return catalog_metrics() + ([INVALID_METRIC] if generate else [])


def _metric_list(names: list[str], group: bool) -> str:
    lines = []
    for name in names:
        lines.append(f"  - metric: {name}")
        lines.append("    aggregation: mean")
        if group:  # an unweighted mean over the tasks (each task's metric covers only its own documents)
            lines.append("    weight_by_size: false")
        else:
            lines.append(f"    higher_is_better: {'false' if name == INVALID_METRIC else 'true'}")
    return "\n".join(lines) + "\n"


def _group_yaml(group: GroupSpec) -> str:
    generate = {t.name: t.generate for t in TASKS}
    kinds = {generate[m] for m in group.tasks}
    if len(kinds) != 1:
        raise ValueError(f"group {group.name!r} mixes log-likelihood and generation tasks")
    about = "".join(f"# {line}\n" for line in group.about)
    tasks = "".join(f"  - {m}\n" for m in group.tasks)
    return (f"{GENERATED}{about}# Each metric is the unweighted mean over the tasks; acc_T<L> / acc_p<P> exist for\n"
            f"# the lengths and p_ignore values requested.\ngroup: {group.name}\ntask:\n{tasks}"
            f"aggregate_metric_list:\n{_metric_list(task_metrics(kinds.pop()), group=True)}"
            f"metadata:\n  version: {group.version}\n")


def _task_yaml(spec: TaskSpec) -> str:
    base = "_fflm_gen_yaml" if spec.generate else "_fflm_choice_yaml"
    kwargs = f"  rendering: {spec.rendering}\n" + ("  generate: true\n" if spec.generate else "") + \
        (f"  task: {spec.task}\n" if spec.task != tasks.DEFAULT else "")
    return f"{GENERATED}# {spec.about}\ninclude: {base}\ntask: {spec.name}\ndataset_kwargs:\n{kwargs}"


def task_files() -> dict[str, str]:
    """Every YAML file of ``tasks/fflm/`` (file name -> text), generated from this module."""
    files = {
        "_fflm_common_yaml": GENERATED + _COMMON_YAML.replace("@VERSION@", str(TASK_VERSION)).replace(
            "@METADATA@", json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in DEFAULTS.items()
                                      if k not in NOT_IN_COMMENT})),
        "_fflm_choice_yaml": GENERATED + _CHOICE_YAML.replace("@METRICS@", _metric_list(task_metrics(False), False)),
        "_fflm_gen_yaml": GENERATED + _GEN_YAML.replace("@METRICS@", _metric_list(task_metrics(True), False)),
    }
    files.update({f"{g.name}.yaml": _group_yaml(g) for g in GROUPS})
    files.update({f"{spec.name}.yaml": _task_yaml(spec) for spec in TASKS})
    files.update({f"{spec.name}.yaml": _stress_task_yaml(spec) for spec in STRESS_TASKS})
    return files


def _is_generated(path: Path) -> bool:
    return path.name.endswith("yaml")  # *.yaml tasks and groups, _fflm_*_yaml includes


def stale_task_files(folder: str | Path | None = None) -> list[str]:
    """Names of files in the task folder that differ from :func:`task_files` (missing, changed or
    left over); empty when the committed YAML is exactly what this module generates."""
    folder = Path(folder) if folder is not None else tasks_path() / TASK_FOLDER
    wanted = task_files()
    present = {p.name for p in folder.iterdir() if p.is_file() and _is_generated(p)} if folder.is_dir() else set()
    stale = [name for name, text in wanted.items()
             if name not in present or (folder / name).read_text(encoding="utf-8") != text]
    return sorted(stale + [name for name in present if name not in wanted])


def write_task_files(folder: str | Path | None = None) -> list[str]:
    """(Re)write the task folder's YAML files; returns the names that changed (leftovers are deleted)."""
    folder = Path(folder) if folder is not None else tasks_path() / TASK_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    changed = stale_task_files(folder)
    wanted = task_files()
    for name in changed:
        if name in wanted:
            (folder / name).write_text(wanted[name], encoding="utf-8")
        else:
            (folder / name).unlink()
    return changed


# ----------------------------------------------------------------------------- the stress task
# fflm_stress scores the final read of every sequence of ffbench's stress grid (``ffbench run
# --suite stress``): deliberately hard, legal sequences (distractor runs, decoy writes, long write
# distances, dense interference), with metrics per family and per value of each family's axis
# parameter. Its own metadata keys say how big the grid is, because the grid has its own seed and
# per-point sizes; ``lengths`` and ``fewshot_length`` are shared with the other fflm tasks.
STRESS_DEFAULTS: dict[str, Any] = {
    "stress_num": None,  # sequences per grid point; None: each point's own number (ffbench run --suite stress)
    "stress_seed": stress.STRESS_SEED,  # the grid's seed (ffbench run --suite stress --seed)
}


@dataclass(frozen=True)
class StressParams:
    """The fflm_stress parameters, validated: the stress grid at each length, its final reads."""

    lengths: tuple[int, ...]
    per_point: int | None
    seed: int
    fewshot_length: int

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None = None) -> StressParams:
        metadata = dict(metadata or {})
        shared = Params.from_metadata({k: v for k, v in metadata.items() if k in ("lengths", "fewshot_length")})
        _warn_near_misses(metadata)
        for length in shared.lengths:
            _check("lengths", lambda length=length: stress.grid(length))
        num = metadata.get("stress_num", STRESS_DEFAULTS["stress_num"])
        if num is not None:
            num = _int(num, "stress_num")
            if num <= 0:
                raise FFBenchError(f"fflm metadata 'stress_num': must be a positive integer, got {num}")
        seed = _int(metadata.get("stress_seed", STRESS_DEFAULTS["stress_seed"]), "stress_seed")
        if seed < 0:
            raise FFBenchError(f"fflm metadata 'stress_seed': must be a non-negative integer, got {seed}")
        return cls(shared.lengths, num, seed, shared.fewshot_length)


def _value_text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def stress_metric(family: str, value=None) -> str:
    """``acc_<family>`` over a family's final reads, ``acc_<family>_<value>`` at one axis value."""
    return f"acc_{family}" if value is None else f"acc_{family}_{_value_text(value)}"


def stress_catalog_metrics() -> list[str]:
    """Every metric fflm_stress declares: ``acc``, ``acc_T<L>``, then per family ``acc_<family>`` and
    ``acc_<family>_<value>`` for every axis value the grid has at some catalogue length."""
    names = ["acc", *map(length_metric, CATALOG_LENGTHS)]
    for name, family in stress.FAMILIES.items():
        values = sorted({p[family.axis] for length in CATALOG_LENGTHS for p in family.points(length)})
        names += [stress_metric(name), *(stress_metric(name, v) for v in values)]
    return names


def build_stress_docs(rendering: str, params: StressParams) -> list[dict]:
    """One document per stress sequence (its final read), at every length of ``params``.

    Documents are interleaved across the (length, point) pairs: row ``j`` of every point that has
    one, for j = 0, 1, ...; the first rows of a point do not depend on how many it has, so
    ``--limit n_pairs * m`` scores the sequences of ``ffbench run --suite stress --num m``.
    ``seq_index`` is the row in the grid at that length, as in ffbench run's samples.
    """
    template = render.load_template(rendering)
    demo = render.demo_sequence(length=params.fewshot_length) if params.fewshot_length else None
    groups = []
    for length in params.lengths:
        offset = 0
        for point, arr in stress.iter_suite(length, params.seed, params.per_point):
            axis = stress.FAMILIES[point.family].axis
            cell = {"length": int(length), "suite": "stress", "family": point.family, "point": point.id,
                    "axis": axis, "value": _value_text(point.params[axis]), "seed": params.seed}
            docs = final_read_docs(arr, template, demo, "", cell, first_index=offset)
            offset += arr.shape[0]
            groups.append(docs)
    return [g[j] for j in range(max(map(len, groups), default=0)) for g in groups if j < len(g)]


def stress_dataset(rendering: str, **metadata) -> dict:
    """fflm_stress's ``custom_dataset``: ``{"test": datasets.Dataset}`` of final-read documents."""
    return _dataset("fflm_stress", StressParams.from_metadata, lambda params: build_stress_docs(rendering, params),
                    rendering, metadata)


def process_stress_choice(doc: Mapping, results: list) -> dict[str, float]:
    """Multiple choice under the strict rule, counted under ``acc``, the document's length, its
    family and its family's axis value."""
    lls = np.array([[float(r[0]) for r in results]])
    value = float(bool(choice_correct(lls, np.array([int(doc["gold"])]))[0]))
    return {"acc": value, length_metric(doc["length"]): value, stress_metric(doc["family"]): value,
            stress_metric(doc["family"], doc["value"]): value}


@dataclass(frozen=True)
class StressTaskSpec:
    name: str
    rendering: str
    about: str


STRESS_TASKS: tuple[StressTaskSpec, ...] = (
    StressTaskSpec("fflm_stress", "symbolic",
                   "the stress grid (ffbench run --suite stress), compact strings, final reads by log-likelihood"),
)


def _stress_task_yaml(spec: StressTaskSpec) -> str:
    return (f"{GENERATED}# {spec.about}.\n"
            "# Metadata: lengths and fewshot_length as for every fflm task; stress_num (sequences per grid point,\n"
            "# default: each point's own) and stress_seed (default the grid's seed). acc, acc_T<L>, then per\n"
            "# family acc_<family> and acc_<family>_<value> for its axis parameter (distractor_run: k, decoy_writes:\n"
            "# decoys, write_distance: distance, dense_interference: gap, run_blocks: k, reads_in_run: gap, decoy_run:\n"
            "# run); only values on the requested grid appear. run_blocks, reads_in_run and dense_interference read\n"
            "# several times per sequence: fflm_stress asks only their final read.\n"
            f"include: _fflm_choice_yaml\ntask: {spec.name}\ncustom_dataset: !function utils.stress_dataset\n"
            f"dataset_kwargs:\n  rendering: {spec.rendering}\nprocess_results: !function utils.process_stress_choice\n"
            f"metric_list:\n{_metric_list(stress_catalog_metrics(), group=False)}")



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ffbench.lmeval",
                                     description="Generate the fflm lm-eval task YAML files from ffbench/lmeval.py.")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write-tasks", action="store_true", help="rewrite tasks/fflm/*yaml")
    action.add_argument("--check", action="store_true", help="exit 1 when tasks/fflm/*yaml differ from the generator")
    parser.add_argument("--folder", help="task folder (default: ffbench's own tasks/fflm)")
    args = parser.parse_args(argv)
    if args.write_tasks:
        changed = write_task_files(args.folder)
        print(f"updated {len(changed)} file{'' if len(changed) == 1 else 's'}" + (f": {', '.join(changed)}" if changed else ""))
        return 0
    stale = stale_task_files(args.folder)
    if stale:
        print(f"out of date: {', '.join(stale)} (run: python -m ffbench.lmeval --write-tasks)", file=sys.stderr)
        return 1
    print("tasks/fflm is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
