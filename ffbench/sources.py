"""Where a run's sequences come from: a preset suite, an FFL(p) set, the stress grid, or a data file.

A :class:`SourceSpec` is plain data that names a set of sequences completely, so it can be recorded
per cell in results.json and turned back into the same sequences later: :func:`load_sequences` is
the one way to do that (the runner scores what it returns; the report redraws a failing read's
sequence with it). :func:`plan_sources` turns the user's choices (suites, FFL sets, data files,
lengths, overrides) into specs, and every bad choice is a :class:`~ffbench.errors.UsageError`
found here, before any model loads.

A data file whose content is exactly a preset suite (what ``ffbench generate --suite paper``
writes) is recognised as that suite: its cells carry the suite's name and p_ignore, so they are
comparable with ``--suite`` runs and the shipped references. Recognition compares the sequences
themselves, never a label. The same holds for a file of the stress grid (``generate --suite stress``).

Sources may carry per-row columns besides the sequences: the stress grid's ``family``, ``point`` and
parameters (:data:`ffbench.stress.COLUMNS`), also when they come back from a data file (a stress
file, or the glitches ``ffbench hunt`` found). :meth:`SequenceStore.columns` returns them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from ffbench import datafiles, language, registers, tasks, undo
from ffbench.errors import FFBenchError, UsageError

DEFAULT_NUM = 1000  # sequences of an FFL(p) set unless --num says otherwise
DEFAULT_SEED = 0  # seed of an FFL(p) set unless --seed says otherwise


@dataclass(frozen=True)
class SourceSpec:
    """One set of sequences. ``kind``: suite (a preset, regenerated from its seed), ffl (FFL(p_ignore)
    from ``seed``), stress (the stress grid at this length) or file (rows of a data file). ``label``
    is how summaries name it."""

    kind: str
    label: str
    length: int
    num: int
    p_ignore: float | None = None
    seed: int | None = None
    alphabet: int = 2
    path: str | None = None  # the data file (absolute), also for a file recognised as a suite
    part: str | None = None  # the value of the file's 'suite' column this source selects
    per_point: int | None = None  # stress grid: sequences per point (None: each point's own number)
    task: str | None = None  # the task's language (ffbench.tasks); None: ffl, so ffl specs are as before
    registers: int | None = None  # --task registers: the number of registers k

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, raw: dict) -> "SourceSpec":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def describe(self) -> str:
        """Names the source without its size: the key of its content hash in a run's identity."""
        if self.kind == "file":
            return (f"{self.task}: " if self.task else "") + f"{self.path}" + (f" [{self.part}]" if self.part else "")
        what = (f"{self.task} " if self.task else "") + f"{self.label} T={self.length} seed {self.seed}"
        return what + (f" = {self.path}" + (f" [{self.part}]" if self.part else "") if self.path else "")


# ----------------------------------------------------------------------------- loading
class SequenceStore:
    """Sequences, reads and content hash of every source, produced once and shared by the cells."""

    def __init__(self) -> None:
        self._files: dict[tuple[str, int, str | None], datafiles.Dataset] = {}
        self._cache: dict[SourceSpec, tuple[np.ndarray, language.Reads, str]] = {}
        self._columns: dict[SourceSpec, dict[str, list]] = {}

    def file(self, path: str, alphabet: int, task: str | None = None) -> datafiles.Dataset:
        key = (str(path), alphabet, task)
        if key not in self._files:
            self._files[key] = datafiles.read_sequences(path, alphabet=alphabet, task=task)
        return self._files[key]

    def sequences(self, spec: SourceSpec) -> np.ndarray:
        return self.get(spec)[0]

    def get(self, spec: SourceSpec) -> tuple[np.ndarray, language.Reads, str]:
        """(sequences, reads, content sha256) of a source."""
        if spec not in self._cache:
            arr = self._load(spec)
            self._cache[spec] = (arr, tasks.get(spec.task).extract_reads(arr), datafiles.content_sha256(arr))
        return self._cache[spec]

    def columns(self, spec: SourceSpec) -> dict[str, list]:
        """Per-row columns of a source besides its sequences (stress family, point, parameters), if any."""
        self.get(spec)
        return self._columns.get(spec, {})

    def _load(self, spec: SourceSpec) -> np.ndarray:
        from ffbench import stress

        if spec.kind == "file":
            ds = self.file(spec.path, spec.alphabet, spec.task)
            mask = _part_mask(ds, spec.part)
            cols = {k: [v for v, keep in zip(ds.columns[k], mask) if keep][: spec.num]
                    for k in stress.COLUMNS if k in ds.columns}
            if cols:
                self._columns[spec] = cols
            return ds.sequences[mask][: spec.num]
        if spec.kind == "stress":
            arr, self._columns[spec] = stress.sample_suite(spec.length, spec.seed, spec.per_point)
            return arr
        if spec.kind == "stale":
            arr, self._columns[spec] = registers.stale_suite(spec.length, spec.registers, spec.per_point, spec.seed)
            return arr
        if spec.kind == "retraction":
            arr, depths = undo.retraction_suite(spec.length, spec.per_point, spec.seed)
            self._columns[spec] = {"family": ["retraction_chain"] * arr.shape[0], "k": depths}
            return arr
        if spec.kind in ("suite", "ffl"):
            task = tasks.get(spec.task)
            dist = task.suite_dist(spec.label, spec.p_ignore, spec.length, spec.alphabet, spec.registers) \
                if spec.kind == "suite" else task.dist(spec.p_ignore, spec.length, spec.alphabet, spec.registers)
            return task.sample(dist, spec.num, spec.seed)
        raise FFBenchError(f"unknown source kind {spec.kind!r}")


def load_sequences(spec: SourceSpec, store: SequenceStore | None = None) -> np.ndarray:
    """The (num, T) sequences a spec names (deterministic; a file source reads its file)."""
    return (store or SequenceStore()).sequences(spec)


def _part_mask(ds: datafiles.Dataset, part: str | None) -> np.ndarray:
    if part is None:
        return np.ones(ds.num, dtype=bool)
    return np.asarray(ds.columns["suite"], dtype=object) == part


def _part_rows(ds: datafiles.Dataset, part: str | None) -> np.ndarray:
    return ds.sequences[_part_mask(ds, part)]


# ----------------------------------------------------------------------------- planning
def plan_sources(suites: list[str], data: list[str], lengths: list[int], p_ignore: list[float],
                 num: int | None, seed: int | None, alphabet: int = 2,
                 store: SequenceStore | None = None, task: str | None = None,
                 registers_k: list[int] | None = None) -> list[SourceSpec]:
    """Every set of sequences a run scores, validated. Without suites, files or FFL sets: the paper suites
    (of ``task``'s language, :mod:`ffbench.tasks`; None: ffl)."""
    store = store or SequenceStore()
    chosen = tasks.get(task)
    if registers_k and chosen.default_registers is None:
        raise UsageError(f"--registers applies to --task registers only, not --task {chosen.name}")
    if chosen.name != tasks.DEFAULT:
        specs = []
        for n, k in enumerate(registers_k or [chosen.default_registers]):  # data files once: they hold their own k
            specs += _task_sources(chosen, suites, data if n == 0 else [], lengths, p_ignore, num, seed, alphabet,
                                   store, k, len(registers_k or []) > 1)
        return specs
    if num is not None and (isinstance(num, bool) or num <= 0):
        raise UsageError(f"--num must be a positive integer, got {num}")
    if seed is not None and seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, got {seed}")
    for length in lengths:
        _usage(lambda length=length: language.FFL.from_p_ignore(0.5, length, alphabet))
    for p in p_ignore:
        _usage(lambda p=p: language.FFL.from_p_ignore(p, 16, alphabet))
    specs: list[SourceSpec] = []
    for name in (suites or ([] if (data or p_ignore) else ["paper"])):
        if name == "stress":
            specs += [stress_source(length, num, seed, alphabet) for length in lengths or [512]]
            continue
        for suite in _usage(lambda name=name: language.resolve_suites(name)):
            for length in lengths or [suite.length]:
                specs.append(SourceSpec("suite", suite.name, length, num or suite.num, suite.p_ignore,
                                        suite.seed if seed is None else seed, alphabet))
    for p in p_ignore:
        for length in lengths or [512]:
            specs.append(SourceSpec("ffl", f"ffl{p:g}", length, num or DEFAULT_NUM, p,
                                    DEFAULT_SEED if seed is None else seed, alphabet))
    for path in data:
        specs.extend(file_sources(path, num, alphabet, store))
    return specs


def _task_sources(task: tasks.Task, suites: list[str], data: list[str], lengths: list[int], p_ignore: list[float],
                  num: int | None, seed: int | None, alphabet: int, store: SequenceStore, k: int | None = None,
                  name_k: bool = False) -> list[SourceSpec]:
    """The sources of a task other than ffl: its presets, its structured families, i.i.d. sets of its
    language, data files. ``k``: registers of the register task (labels end in ``_k<K>`` when ``name_k``
    or k is not the default, so the cells of a sweep over k never share a key)."""
    task.check_alphabet(alphabet)
    suffix = f"_k{k}" if k is not None and (name_k or k != task.default_registers) else ""
    if k is not None and (isinstance(k, bool) or not 1 <= k <= registers.MAX_REGISTERS):
        raise UsageError(f"--registers must be between 1 and {registers.MAX_REGISTERS}, got {k}")
    if num is not None and (isinstance(num, bool) or num <= 0):
        raise UsageError(f"--num must be a positive integer, got {num}")
    for length in lengths:
        _usage(lambda length=length: task.dist(0.5, length, alphabet, k))
    for p in p_ignore:
        _usage(lambda p=p: task.dist(p, task.default_length, alphabet, k))
    specs: list[SourceSpec] = []
    for name in (suites or ([] if (data or p_ignore) else ["paper"])):
        if name == "stress":
            raise UsageError(f"the stress grid is the flip-flop language's: with --task {task.name} use "
                             f"--suite {', '.join(task.structured) or ', '.join(task.suites)}")
        if name in task.structured:
            for length in lengths or [task.default_length]:
                if name == "retraction":
                    _usage(lambda length=length: undo.retraction_suite(length, 1))
                    rows, default_seed = len(undo.retraction_depths(length)) * (num or undo.RETRACTION_NUM), \
                        undo.RETRACTION_SEED
                else:
                    rows = _usage(lambda length=length: registers.stale_suite(length, k, 1))[0].shape[0] * \
                        (num or registers.STALE_NUM)
                    default_seed = registers.STALE_SEED
                specs.append(SourceSpec(name, name + suffix, length, rows, None,
                                        default_seed if seed is None else seed, alphabet, per_point=num,
                                        task=task.name, registers=k))
            continue
        for suite in task.resolve_suites(name):
            for length in lengths or [suite.length]:
                specs.append(SourceSpec("suite", suite.name + suffix, length, num or suite.num, suite.p_ignore,
                                        suite.seed if seed is None else seed, alphabet, task=task.name, registers=k))
    for p in p_ignore:
        for length in lengths or [task.default_length]:
            specs.append(SourceSpec("ffl", f"{task.name}{p:g}{suffix}", length, num or DEFAULT_NUM, p,
                                    DEFAULT_SEED if seed is None else seed, alphabet, task=task.name, registers=k))
    for path in data:
        try:
            ds = store.file(str(Path(path).resolve()), alphabet, task.name)
        except FFBenchError as exc:
            raise UsageError(str(exc)) from None
        labels = ds.columns.get("suite")
        for part in ([None] if labels is None else list(dict.fromkeys(labels))):
            rows = _part_rows(ds, part)
            if num is not None and num > rows.shape[0]:
                raise UsageError(f"--num {num} exceeds the {rows.shape[0]:,} sequences of {path}"
                                 + (f" (part {part!r})" if part is not None else ""))
            n = num or rows.shape[0]
            preset = _recognise_task_preset(task, rows[:n], part, alphabet, k, suffix, store)
            if preset is not None:
                specs.append(SourceSpec(**{**preset.as_dict(), "path": ds.path, "part": part}))
                continue
            label = Path(path).stem if part is None else str(part)
            specs.append(SourceSpec("file", label, ds.length, n, None, None, alphabet,
                                    path=ds.path, part=part, task=task.name))
    return specs


def _recognise_task_preset(task: tasks.Task, arr: np.ndarray, label: str | None, alphabet: int, k: int | None,
                           suffix: str, store: SequenceStore) -> SourceSpec | None:
    """The preset or structured family of ``task`` (at its default seed) whose sequences are exactly
    ``arr`` (what ``ffbench generate --task`` or ``export dataset --task`` wrote), as ``--suite`` plans it,
    so a file of a preset scores the preset's own cell, as for ffl (:func:`recognise_suite`)."""
    n, length = arr.shape
    candidates = []
    if label in task.suites:
        suite = task.suites[label]
        candidates.append(SourceSpec("suite", label + suffix, length, n, suite.p_ignore, suite.seed, alphabet,
                                     task=task.name, registers=k))
    elif label in task.structured:
        def planned(per_point: int | None) -> SourceSpec:  # as --suite LABEL [--num PER_POINT] plans it
            return _task_sources(task, [label], [], [length], [], per_point, None, alphabet, store, k)[0]

        try:
            points, default = planned(1).num, planned(None)  # one row per point; the preset's own size
        except UsageError:
            return None
        per_point, rest = divmod(n, points)
        if rest == 0 and per_point > 0:
            candidates.append(default if n == default.num else planned(per_point))
    for spec in candidates:
        try:
            expected = store.get(spec)[0]
        except FFBenchError:
            continue
        if expected.shape == arr.shape and np.array_equal(expected, arr):
            return spec
    return None


READ_BYTES = 48  # the arrays kept per read (language.Reads: six int64 columns)


def memory_needed(spec: SourceSpec) -> int:
    """Bytes a source's sequences and reads take in memory once generated: one byte per symbol, and
    per read its columns; reads are (1 - p_ignore) / 4 of the symbols of FFL(p) (a quarter for the
    stress grid). A data file is already in memory when planned: 0."""
    if spec.kind == "file":
        return 0
    p = spec.p_ignore if spec.p_ignore is not None else 0.0
    return int(spec.num * spec.length * (1 + READ_BYTES * (1 - p) / 4))


def check_fits(specs: list[SourceSpec], available: int | None) -> None:
    """Refuse, before generating a single sequence, data that cannot be held in memory (with the
    figure): the sequences of every source of a run are generated and kept together."""
    from ffbench.resources import gib

    need = sum(memory_needed(s) for s in specs)
    if available is None or need <= 0.8 * available:
        return
    big = max(specs, key=memory_needed)
    raise UsageError(f"the sequences of this run need about {gib(need)} of memory ({big.describe()}: "
                     f"{big.num:,} sequences of length {big.length:,}) and {gib(available)} is available: "
                     "use a smaller --num or --length")


def file_sources(path: str, num: int | None, alphabet: int, store: SequenceStore) -> list[SourceSpec]:
    """One source per part of a data file (its 'suite' column's values, or the whole file)."""
    try:
        ds = store.file(str(Path(path).resolve()), alphabet)
    except FFBenchError as exc:
        raise UsageError(str(exc)) from None
    labels = ds.columns.get("suite")
    parts = [None] if labels is None else list(dict.fromkeys(labels))
    out = []
    for part in parts:
        rows = _part_rows(ds, part)
        if num is not None and num > rows.shape[0]:
            where = f"{path}" + (f" (part {part!r})" if part is not None else "")
            raise UsageError(f"--num {num} exceeds the {rows.shape[0]:,} sequences of {where}")
        n = num or rows.shape[0]
        suite = recognise_suite(rows[:n], part, alphabet)
        as_stress = recognise_stress(rows[:n], part) if suite is None and alphabet == 2 else None
        if as_stress is not None:
            out.append(SourceSpec(**{**as_stress.as_dict(), "path": ds.path, "part": part}))
        elif suite is not None:
            out.append(SourceSpec("suite", suite.name, ds.length, n, suite.p_ignore, suite.seed, alphabet,
                                  path=ds.path, part=part))
        else:
            label = Path(path).stem if part is None else str(part)
            out.append(SourceSpec("file", label, ds.length, n, None, None, alphabet, path=ds.path, part=part))
    return out


def stress_source(length: int, per_point: int | None = None, seed: int | None = None, alphabet: int = 2) -> SourceSpec:
    """The stress grid at one length (``per_point`` sequences per point, else each point's own)."""
    from ffbench import stress

    if alphabet != 2:
        raise UsageError("the stress grid is binary: drop --alphabet or the stress suite")
    seed = stress.STRESS_SEED if seed is None else seed
    points = _usage(lambda: stress.grid(length, seed, per_point))
    return SourceSpec("stress", "stress", length, sum(p.num for p in points), None, seed, alphabet,
                      per_point=per_point)


def recognise_stress(arr: np.ndarray, label: str | None) -> SourceSpec | None:
    """The stress grid at this length, when ``arr`` is exactly its sequences (default seed and sizes)."""
    from ffbench import stress

    if label not in (None, "stress") or arr.shape[1] < stress.MIN_LENGTH or arr.shape[1] % 2:
        return None
    spec = stress_source(arr.shape[1])
    if spec.num != arr.shape[0]:
        return None
    expected, _ = stress.sample_suite(arr.shape[1], spec.seed)
    return spec if np.array_equal(expected, arr) else None


def recognise_suite(arr: np.ndarray, label: str | None, alphabet: int) -> language.Suite | None:
    """The preset suite whose first ``len(arr)`` sequences at this length are exactly ``arr``, if any."""
    candidates = [language.SUITES[label]] if label in language.SUITES else list(language.SUITES.values())
    for suite in candidates:
        dist = suite.distribution(arr.shape[1], alphabet)
        if not np.array_equal(language.sample(dist, 1, suite.seed)[0], arr[0]):
            continue  # cheap test first: one row
        if np.array_equal(language.sample(dist, arr.shape[0], suite.seed), arr):
            return suite
    return None


def _usage(build):
    try:
        return build()
    except UsageError as exc:
        if "unknown suite" in str(exc):
            raise UsageError(str(exc).replace(")", ", stress)", 1)) from None
        raise
    except FFBenchError as exc:
        raise UsageError(str(exc)) from None
