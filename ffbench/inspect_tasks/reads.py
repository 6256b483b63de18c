"""The reads of an Inspect task, and the verdict on a reply: ffbench's own sources, renderings and rules.

Kept free of Inspect imports: the tasks build their samples here, and ``ffbench import`` calls the
same functions with a log's task arguments to regenerate exactly the sequences the log scored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ffbench import prompting, render, sources, tasks
from ffbench.backends.base import Generation
from ffbench.errors import UsageError

DEFAULT_RENDERING = "chat"  # Inspect serves chat models: the rendering that states the rules and asks
UNDO_RENDERING = "chat_undo"  # the same for ffbench/undo (--task undo)
REGISTERS_RENDERING = "chat_registers"  # and for ffbench/registers (--task registers)
HAYSTACK_RENDERING = "haystack_chat"  # and for ffbench/haystack (--task haystack)
MAX_TOKENS = prompting.ASKED_BUDGET  # ffbench's reply budget for a question
RENDERINGS = {"flipflop": DEFAULT_RENDERING, "stress": DEFAULT_RENDERING, "undo": UNDO_RENDERING,
              "registers": REGISTERS_RENDERING, "haystack": HAYSTACK_RENDERING}  # each task's default


@dataclass(frozen=True)
class Question:
    """One read as an Inspect sample: id, the user message, the target answer and the read's identity."""

    id: str
    input: str
    target: str
    metadata: dict


def source(task: str, suite: str | None = None, length: int | None = None, num: int | None = None,
           seed: int | None = None, p_ignore: float | None = None, registers: int | None = None) -> sources.SourceSpec:
    """The sequences a task's parameters name, exactly as ``ffbench run`` plans them
    (``flipflop``: a preset suite, or FFL(p_ignore) when given; ``stress``: the stress grid; ``undo``:
    as ``ffbench run --task undo``, a preset, ``retraction`` or UNDO(p_ignore); ``registers``: as
    ``ffbench run --task registers --registers K``, a preset, ``stale`` or Registers(p_ignore); ``haystack``:
    as ``ffbench run --task haystack``, ``final``, ``every`` or Haystack(p_ignore))."""
    lengths = [] if length is None else [int(length)]
    if task == "stress":
        return sources.stress_source(int(length or 512), None if num is None else int(num), seed)
    if task not in ("flipflop", "undo", "registers", "haystack"):
        raise UsageError(f"unknown ffbench Inspect task {task!r} (flipflop, stress, undo, registers, haystack)")
    suites = [] if p_ignore is not None else [suite or "in_dist"]
    specs = sources.plan_sources(suites, [], lengths, [] if p_ignore is None else [float(p_ignore)],
                                 None if num is None else int(num), None if seed is None else int(seed),
                                 task=None if task == "flipflop" else task,
                                 registers_k=None if registers is None else [int(registers)])
    if len(specs) != 1:
        raise UsageError(f"suite {suite!r} names {len(specs)} sets; an Inspect task scores one (in_dist, sparse, dense)")
    return specs[0]


def questions(spec: sources.SourceSpec, rendering: str = DEFAULT_RENDERING, fewshot: bool = False,
              store: sources.SequenceStore | None = None) -> list[Question]:
    """Every read of every sequence of ``spec``, in ``samples.parquet`` order."""
    store = store or sources.SequenceStore()
    arr, reads, _ = store.get(spec)
    template = render.load_template(rendering)
    render.check_task(template, tasks.get(spec.task))
    demo = (render.demo_sequence() if spec.task is None else tasks.get(spec.task).demo()) if fewshot else None
    columns = store.columns(spec)
    out, k = [], 0
    for i in range(arr.shape[0]):
        rendered = render.render(arr[i], template, demo=demo)
        for j, value in enumerate(rendered.targets.tolist()):
            meta = {"seq_index": i, "read_index": int(reads.read_index[k]), "position": int(reads.position[k]),
                    "target": int(value), "write_distance": int(reads.write_distance[k]),
                    "evidence_distance": int(reads.evidence_distance[k])}
            if columns:
                meta.update(family=columns["family"][i], point=columns.get("point", [None] * (i + 1))[i])
            out.append(Question(f"s{i}r{j}", rendered.prompt(j) + template.ask, rendered.choices[value].strip(), meta))
            k += 1
    assert k == len(reads.target) and np.array_equal(reads.target, [q.metadata["target"] for q in out])
    return out


def verdict(text: str, truncated: bool, reasoning: str | None, template: render.Template) -> tuple[int, bool, bool]:
    """(prediction or -1, invalid, truncated) of a reply, by ffbench's rule for a question: read after
    the reasoning, parsed by the rendering's own answer pattern; naming no answer is wrong and invalid."""
    from ffbench import scoring

    value, cut = scoring.interpret(Generation(text, truncated, reasoning), template, template.choices(),
                                   asking=True, end_marker=prompting.DEFAULT_REASONING_END)
    invalid = value == scoring.NO_CHOICE
    return (-1 if invalid else int(value)), bool(invalid), bool(cut)
