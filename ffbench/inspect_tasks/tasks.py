"""The Inspect AI tasks, scorer and metrics (imports ``inspect_ai``; install ``ffbench[inspect]``).

``inspect eval ffbench/flipflop --model M -T suite=sparse -T length=64 -T num=50 -T rendering=chat``,
``inspect eval ffbench/stress -T length=64 -T num=2`` and ``inspect eval ffbench/undo -T suite=retraction
-T length=64`` (UNDO flip-flops, docs/tasks.md), ``inspect eval ffbench/registers -T suite=stale -T registers=4
-T length=96`` (k registers), ``inspect eval ffbench/haystack -T length=256 -T num=20`` (flip-flops in a story). Every read is a sample; its reply is
judged by :func:`ffbench.inspect_tasks.reads.verdict` (ffbench's strict rule). The metrics are the
glitch rate (wrong reads / reads, invalid replies counted as wrong), its exact Clopper-Pearson 95%
interval (:func:`ffbench.metrics.clopper_pearson`), accuracy and the invalid rate.
"""

from __future__ import annotations

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import GenerateConfig, ModelOutput
from inspect_ai.scorer import (CORRECT, INCORRECT, Metric, SampleScore, Score, Target, accuracy, metric, scorer,
                               value_to_float)
from inspect_ai.solver import TaskState, generate

from ffbench import __version__, metrics, render
from ffbench.inspect_tasks import reads

TASK_VERSION = 1


# ----------------------------------------------------------------------------- tasks
@task
def flipflop(suite: str = "in_dist", length: int | None = None, num: int | None = None, seed: int | None = None,
             p_ignore: float | None = None, rendering: str = reads.DEFAULT_RENDERING, fewshot: bool = False,
             max_tokens: int = reads.MAX_TOKENS) -> Task:
    """Every read of a preset suite (in_dist, sparse, dense; the paper's sizes and seeds unless
    ``num``/``seed``), or of FFL(``p_ignore``), at ``length`` (default 512), as one sample each."""
    spec = reads.source("flipflop", suite, length, num, seed, p_ignore)
    return _task(spec, rendering, fewshot, max_tokens)


@task
def stress(length: int = 512, num: int | None = None, seed: int | None = None,
           rendering: str = reads.DEFAULT_RENDERING, fewshot: bool = False, max_tokens: int = reads.MAX_TOKENS) -> Task:
    """Every read of the stress grid at ``length`` (``num`` sequences per point, else each point's own)."""
    return _task(reads.source("stress", None, length, num, seed), rendering, fewshot, max_tokens)


@task
def undo(suite: str = "in_dist", length: int | None = None, num: int | None = None, seed: int | None = None,
         p_ignore: float | None = None, rendering: str = reads.UNDO_RENDERING, fewshot: bool = False,
         max_tokens: int = reads.MAX_TOKENS) -> Task:
    """Every read of an UNDO flip-flop set (``ffbench run --task undo``: in_dist, sparse, dense,
    retraction, or UNDO(``p_ignore``)) at ``length`` (default 512), as one sample each."""
    return _task(reads.source("undo", suite, length, num, seed, p_ignore), rendering, fewshot, max_tokens)


@task
def registers(suite: str = "in_dist", length: int | None = None, num: int | None = None, seed: int | None = None,
              p_ignore: float | None = None, registers: int = 2, rendering: str = reads.REGISTERS_RENDERING,
              fewshot: bool = False, max_tokens: int = reads.MAX_TOKENS) -> Task:
    """Every read of a k-register set (``ffbench run --task registers --registers K``: in_dist, sparse,
    dense, stale, or Registers(``p_ignore``)) at ``length`` (a multiple of 3, default 384), one sample each."""
    return _task(reads.source("registers", suite, length, num, seed, p_ignore, registers), rendering, fewshot,
                 max_tokens)


@task
def haystack(suite: str = "final", length: int | None = None, num: int | None = None, seed: int | None = None,
             p_ignore: float | None = None, rendering: str = reads.HAYSTACK_RENDERING, fewshot: bool = False,
             max_tokens: int = reads.MAX_TOKENS) -> Task:
    """Every read of a haystack set (``ffbench run --task haystack``: final, every, or Haystack(``p_ignore``))
    at ``length`` (T, default 512; ``--context-tokens`` is ffbench run's), one sample each."""
    return _task(reads.source("haystack", suite, length, num, seed, p_ignore), rendering, fewshot, max_tokens)


def _task(spec, rendering: str, fewshot: bool, max_tokens: int) -> Task:
    qs = reads.questions(spec, rendering, bool(fewshot))
    samples = [Sample(input=q.input, target=q.target, id=q.id, metadata=q.metadata) for q in qs]
    name = f"{spec.label}_T{spec.length}_{render.load_template(rendering).name}"
    return Task(dataset=MemoryDataset(samples, name=name), solver=generate(), scorer=flipflop_read(rendering),
                config=GenerateConfig(temperature=0.0, max_tokens=int(max_tokens)), version=TASK_VERSION,
                metadata={"ffbench_version": __version__, "source": spec.as_dict()})


# ----------------------------------------------------------------------------- scoring
@metric
def glitch_rate() -> Metric:
    """Wrong reads / reads (a reply that names no answer is wrong)."""

    def compute(scores: list[SampleScore]) -> float:
        errors, n = _counts(scores)
        return errors / n if n else float("nan")

    return compute


@metric
def glitch_rate_ci_low() -> Metric:
    """Lower end of the exact Clopper-Pearson 95% interval on the glitch rate."""

    def compute(scores: list[SampleScore]) -> float:  # annotated: Inspect passes SampleScores by the signature
        return metrics.clopper_pearson(*_counts(scores))[0]

    return compute


@metric
def glitch_rate_ci_high() -> Metric:
    """Upper end of the exact Clopper-Pearson 95% interval (with no error: the one-sided bound is about 3/reads)."""

    def compute(scores: list[SampleScore]) -> float:
        return metrics.clopper_pearson(*_counts(scores))[1]

    return compute


@metric
def invalid_rate() -> Metric:
    """Replies that named no answer / reads."""

    def compute(scores: list[SampleScore]) -> float:
        flags = [bool((s.score.metadata or {}).get("invalid")) for s in scores]
        return sum(flags) / len(flags) if flags else float("nan")

    return compute


_to_float = value_to_float()


def _counts(scores: list[SampleScore]) -> tuple[int, int]:
    correct = sum(1 for s in scores if _to_float(s.score.value) == 1.0)
    return len(scores) - correct, len(scores)


@scorer(metrics=[glitch_rate(), glitch_rate_ci_low(), glitch_rate_ci_high(), accuracy(), invalid_rate()])
def flipflop_read(rendering: str = reads.DEFAULT_RENDERING):
    """One read: right only when the reply names the target answer (ffbench's strict rule)."""
    template = render.load_template(rendering)

    async def score(state: TaskState, target: Target) -> Score:
        output: ModelOutput = state.output
        prediction, invalid, truncated = reads.verdict(output.completion, output.stop_reason == "max_tokens",
                                                       _reasoning(output), template)
        right = prediction == int(state.metadata["target"])
        return Score(value=CORRECT if right else INCORRECT,
                     answer=None if invalid else template.choices()[prediction].strip(),
                     metadata={"prediction": prediction, "invalid": invalid, "truncated": truncated})

    return score


def _reasoning(output: ModelOutput) -> str | None:
    """The reply's separate reasoning part, if the provider returned one (the answer is then the text)."""
    if not output.choices or isinstance(output.message.content, str):
        return None
    parts = [c.reasoning for c in output.message.content if getattr(c, "type", "") == "reasoning"]
    return "\n".join(parts) if parts else None
