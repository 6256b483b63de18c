"""The task dimension (``--task``): the one place that maps a task name to its parts.

Every task is a language over the compact-string layout (instruction at even positions, data at odd
ones) whose reads have one right answer. The engine (sources, rendering, dense scoring, the run
directory, check, report) is the same for all; a task differs only in the parts below, so adding a
task means adding one entry here. What a task does not support is refused here in one line, before
anything is generated or loaded.

``ffl`` is the paper's flip-flop language and the default: a run without ``--task`` (or with
``--task ffl``) is exactly what it was before tasks existed, with the same config hash, cell keys and
run directory. Any other task enters the config (``task``) and every cell's variant (``task=NAME``),
so its cells never match an ``ffl`` cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from ffbench import language, registers, undo
from ffbench.errors import UsageError

DEFAULT = "ffl"
DEMO_LENGTH, DEMO_SEED = 16, 16_016  # the few-shot demonstration (as ffbench.render's for ffl)


@dataclass(frozen=True)
class TaskSuite:
    """A named evaluation set of a task: i.i.d. from ``p_ignore`` or, with ``build``, a structured family."""

    name: str
    p_ignore: float | None
    num: int
    seed: int
    length: int = 512
    description: str = ""
    p: tuple | None = None  # explicit instruction probabilities (then p_ignore is their ignore share)


@dataclass(frozen=True)
class Task:
    """One task: its language (sampling, validation, reads), presets, renderings and answer rule."""

    name: str
    description: str
    instructions: str  # instruction symbols of the compact string
    piece: str | None  # the rendering field its extra instruction needs (None: w, r, i only)
    default_render: str
    distribution: Callable  # (p_ignore, length, alphabet) -> distribution
    distribution_of_p: Callable  # (tuple of probabilities, length, alphabet) -> distribution
    iter_sample: Callable  # (dist, num, seed, chunk_rows) -> chunks
    first_violation: Callable  # (arr, alphabet, row_offset) -> InvalidSequence | None
    validate: Callable  # (arr, alphabet, row_offset) -> None, raises InvalidSequence
    extract_reads: Callable  # arr -> language.Reads (a read's answer: ``answer_rule``)
    answer_rule: str
    suites: dict[str, TaskSuite] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    structured: dict[str, str] = field(default_factory=dict)  # suite name -> description (built, not i.i.d.)
    binary: bool = False  # data alphabet fixed at 2
    supports: frozenset = frozenset()  # features beyond the plain run: "stress", "hunt", "lmeval", "inspect"
    unit: int = 2  # characters per instruction in the compact string (its last one is the data symbol)
    default_length: int = 512
    heuristic: tuple[str, Callable] | None = None  # (samples column, arr -> per-read answers) of a reference heuristic
    default_registers: int | None = None  # --registers K: the tasks that name registers

    def slot(self, position: np.ndarray) -> np.ndarray:
        """Instruction index of a read's answer position."""
        return (np.asarray(position) - (self.unit - 1)) // self.unit
    def sample(self, dist, num: int, seed: int) -> np.ndarray:
        return np.concatenate(list(self.iter_sample(dist, num, seed)))

    def check_alphabet(self, alphabet: int) -> None:
        if self.binary and alphabet != 2:
            raise UsageError(f"--task {self.name} is binary: drop --alphabet {alphabet}")

    def requires(self, feature: str, what: str) -> None:
        """Refuse in one line a feature this task is not wired into."""
        if feature not in self.supports:
            raise UsageError(f"{what} is not available with --task {self.name} (it supports --task "
                             f"{' or '.join(t.name for t in TASKS.values() if feature in t.supports)})")

    def resolve_suites(self, name: str) -> list[TaskSuite]:
        if name in self.suites:
            return [self.suites[name]]
        if name in self.groups:
            return [self.suites[n] for n in self.groups[name]]
        known = ", ".join([*self.suites, *self.groups, *self.structured])
        raise UsageError(f"unknown suite {name!r} for --task {self.name} (known: {known})")

    def suite_dist(self, label: str, p_ignore: float, length: int, alphabet: int = 2, registers_k: int | None = None):
        """The distribution of a source: its preset's explicit probabilities where it has them."""
        suite = self.suites.get(label)
        if suite is not None and suite.p is not None:
            return self.distribution_of_p(suite.p, length, alphabet)
        return self.dist(p_ignore, length, alphabet, registers_k)

    def dist(self, p_ignore: float, length: int, alphabet: int = 2, registers_k: int | None = None):
        """The task's distribution at p_ignore (``registers_k`` only for the tasks that name registers)."""
        if self.default_registers is not None:
            return self.distribution(p_ignore, length, alphabet, registers_k or self.default_registers)
        return self.distribution(p_ignore, length, alphabet)

    def demo(self, alphabet: int = 2, length: int = DEMO_LENGTH) -> np.ndarray:
        """The fixed few-shot demonstration: a sequence of ``length`` // 2 instructions, every one equally
        likely, the first of a seeded draw that shows every instruction (ffl's is ``ffbench.render.demo_sequence``)."""
        k = len(self.instructions)
        length = length if self.unit == 2 else 3 * (length // 2)
        dist = self.distribution_of_p((1 / k,) * k, length, alphabet)
        rows = self.sample(dist, 64, DEMO_SEED)
        shows_all = [all((row[0 :: self.unit] == ord(c)).any() for c in self.instructions) for row in rows]
        return rows[shows_all.index(True) if True in shows_all else 0]


def _ffl_suites() -> dict[str, TaskSuite]:
    return {s.name: TaskSuite(s.name, s.p_ignore, s.num, s.seed, s.length, s.description)
            for s in language.SUITES.values()}


def _ffl_of_p(p: tuple, length: int, alphabet: int):
    if len(p) != 3:
        raise UsageError(f"--p takes three probabilities W,R,I with --task ffl (four, W,R,I,U, with --task undo), "
                         f"got {len(p)}")
    return language.FFL(length, *p, alphabet=alphabet)


def _undo_of_p(p: tuple, length: int, alphabet: int):
    if len(p) != 4:
        raise UsageError(f"--p takes four probabilities W,R,I,U with --task undo, got {len(p)}")
    return undo.UndoFFL(length, *p)


def _undo_iter(dist, num, seed, chunk_rows=8 * language.BLOCK_ROWS) -> Iterator[np.ndarray]:
    return undo.iter_sample(dist, num, seed, chunk_rows)


def _haystack_final(p_ignore: float, length: int):
    """Haystack(P): p_w = 1 - P, no reads before the final one (only the final read is scored)."""
    if not (0.0 <= p_ignore < 1.0):
        raise UsageError(f"p_ignore must lie in [0, 1) for --task haystack (writes are 1 - p_ignore), got {p_ignore!r}")
    return language.FFL(length, 1.0 - p_ignore, 0.0, p_ignore)


def _registers_of_p(p: tuple, length: int, alphabet: int, k: int = 2):
    if len(p) != 3:
        raise UsageError(f"--p takes three probabilities W,R,I with --task registers, got {len(p)}")
    return registers.Registers(length, k, *p)


def _registers_iter(dist, num, seed, chunk_rows=8 * language.BLOCK_ROWS) -> Iterator[np.ndarray]:
    return registers.iter_sample(dist, num, seed, chunk_rows)


TASKS: dict[str, Task] = {
    "ffl": Task(
        name="ffl", description="the flip-flop language (Liu et al. 2023): a read returns the most recent write",
        instructions="wri", piece=None, default_render="symbolic",
        distribution=lambda p, length, alphabet=2: language.FFL.from_p_ignore(p, length, alphabet),
        distribution_of_p=_ffl_of_p, iter_sample=language.iter_sample,
        first_violation=language.first_violation, validate=language.validate, extract_reads=language.extract_reads,
        answer_rule="the data of the most recent write",
        suites=_ffl_suites(), groups=dict(language.SUITE_GROUPS), structured={"stress": "the stress grid"},
        supports=frozenset({"stress", "hunt", "lmeval", "inspect", "alphabet"}),
    ),
    "undo": Task(
        name="undo", description="UNDO flip-flop (Zhou 2026): u restores the value before the last write not yet undone",
        instructions="wriu", piece="undo", default_render="symbolic_undo",
        distribution=lambda p, length, alphabet=2: undo.UndoFFL.from_p_ignore(p, length),
        distribution_of_p=_undo_of_p, iter_sample=_undo_iter,
        first_violation=undo.first_violation, validate=undo.validate, extract_reads=undo.extract_reads,
        answer_rule="the value on top of the undo stack (the most recent write not undone)",
        suites={
            "in_dist": TaskSuite("in_dist", 0.7, 1_000, seed=1_000, description="in-distribution UNDO(0.7): p_w = p_r = p_u = 0.1"),
            "sparse": TaskSuite("sparse", 0.97, 10_000, seed=2_000, description="sparse tail UNDO(0.97)"),
            "dense": TaskSuite("dense", 0.1, 3_000, seed=3_000, description="dense tail UNDO(0.1)"),
        },
        groups={"paper": ("in_dist", "sparse", "dense")},
        structured={"retraction": "deep retraction chains on which the toggle heuristic is always wrong"},
        binary=True, supports=frozenset({"hunt"}), heuristic=("toggle", undo.toggle_predictions),
    ),
    "registers": Task(
        name="registers", description="k named registers: a read returns the most recent write to its register",
        instructions="wri", piece="registers", default_render="symbolic_registers",
        distribution=lambda p, length, alphabet=2, k=2: registers.Registers.from_p_ignore(p, length, k),
        distribution_of_p=_registers_of_p, iter_sample=_registers_iter,
        first_violation=registers.first_violation, validate=registers.validate,
        extract_reads=registers.extract_reads,
        answer_rule="the bit of the most recent write to the read's register",
        suites={
            "in_dist": TaskSuite("in_dist", 0.8, 1_000, seed=1_000, length=384,
                                 description="in-distribution Registers(0.8): p_w = p_r = 0.1"),
            "sparse": TaskSuite("sparse", 0.98, 10_000, seed=2_000, length=384, description="sparse tail Registers(0.98)"),
            "dense": TaskSuite("dense", 0.1, 3_000, seed=3_000, length=384, description="dense tail Registers(0.1)"),
        },
        groups={"paper": ("in_dist", "sparse", "dense")},
        structured={"stale": "reads of a register not written for a long time, past interleaved writes"},
        binary=True, supports=frozenset({"hunt"}), unit=3, default_length=384,
        heuristic=("one_variable", registers.one_variable_predictions), default_registers=2,
    ),
    "haystack": Task(
        name="haystack", description="flip-flops hidden in a long story: the ignores are filler sentences",
        instructions="wri", piece="filler", default_render="haystack",
        distribution=lambda p, length, alphabet=2: _haystack_final(p, length),
        distribution_of_p=_ffl_of_p, iter_sample=language.iter_sample,
        first_violation=language.first_violation, validate=language.validate, extract_reads=language.extract_reads,
        answer_rule="the data of the most recent write (as ffl)",
        suites={
            "final": TaskSuite("final", 0.98, 100, seed=7_000,
                               description="writes with p_w = 0.02 among filler, only the final read is scored"),
            "every": TaskSuite("every", 0.96, 100, seed=7_100, p=(0.02, 0.02, 0.96),
                               description="p = (0.02, 0.02, 0.96): every read is scored"),
        },
        groups={"paper": ("final", "every")},
        binary=True, supports=frozenset({"context_tokens", "hunt"}),
    ),
}


def get(name: str | None) -> Task:
    """The task of a name (None: the default, ffl); an unknown name is a UsageError listing the known."""
    name = name or DEFAULT
    if name not in TASKS:
        raise UsageError(f"unknown task {name!r} (known: {', '.join(TASKS)})")
    return TASKS[name]


def config_value(name: str | None) -> str | None:
    """What a run's config records: None for the default task (so its config hash is unchanged)."""
    task = get(name)
    return None if task.name == DEFAULT else task.name
