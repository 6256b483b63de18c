"""Generation jobs: which distributions (or the stress grid), how many rows, which seeds -> a data file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ffbench import datafiles, language, tasks
from ffbench.errors import UsageError


@dataclass(frozen=True)
class Part:
    """One block of a data file: ``num`` rows of ``dist`` (of ``task``'s language) from ``seed``, labelled ``suite``."""

    suite: str
    dist: language.FFL
    num: int
    seed: int
    task: str = tasks.DEFAULT


def suite_parts(name: str, length: int | None = None, num: int | None = None, seed: int | None = None,
                alphabet: int = 2) -> list[Part]:
    """The parts of a preset (or group), with the user's overrides applied to every part."""
    parts = []
    for s in language.resolve_suites(name):
        parts.append(Part(s.name, s.distribution(length, alphabet), num or s.num, s.seed if seed is None else seed))
    return parts


CHUNK_ROWS = 32_768
PARQUET_BYTES_PER_SYMBOL = 0.25  # measured 0.35-0.40 for FFL(0.1) and FFL(0.98) at T = 512 (snappy)


def iter_chunks(parts: list[Part], chunk_rows: int = CHUNK_ROWS, label_suite: bool = True) -> Iterator[datafiles.Chunk]:
    """Sampled chunks, with a ``suite`` column unless ``label_suite`` is off (custom sets)."""
    for part in parts:
        for arr in tasks.get(part.task).iter_sample(part.dist, part.num, part.seed, chunk_rows):
            yield datafiles.Chunk(arr, {"suite": [part.suite] * arr.shape[0]} if label_suite else {})


def stress_chunks(length: int, seed: int | None = None, per_point: int | None = None) -> Iterator[datafiles.Chunk]:
    """The stress grid at one length, a chunk per point, labelled ``suite`` = stress with the per-row
    family, point and parameter columns (so ``ffbench run --data`` reports it per family)."""
    from ffbench import stress

    for point, arr in stress.iter_suite(length, stress.STRESS_SEED if seed is None else seed, per_point):
        columns = stress.arrow_columns(stress.point_columns(point, arr.shape[0]))
        yield datafiles.Chunk(arr, {"suite": ["stress"] * arr.shape[0], **columns})


def structured_chunks(name: str, length: int, seed: int | None = None, per: int | None = None,
                      k: int | None = None) -> Iterator[datafiles.Chunk]:
    """A task's structured family at one length, labelled ``suite`` = its name, with its per-row stress
    columns: UNDO's ``retraction`` chains (``family`` retraction_chain, ``k`` = the depth), the
    register task's ``stale`` reads (``family`` stale_register, ``distance``, ``placement`` = the filler)."""
    from ffbench import registers, stress, undo

    if name == "retraction":
        arr, depths = undo.retraction_suite(length, per, undo.RETRACTION_SEED if seed is None else seed)
        columns = {"family": ["retraction_chain"] * arr.shape[0], "k": depths}
    else:
        arr, columns = registers.stale_suite(length, k, per, registers.STALE_SEED if seed is None else seed)
    yield datafiles.Chunk(arr, {"suite": [name] * arr.shape[0], **stress.arrow_columns(columns)})


@dataclass
class Job:
    """What ``ffbench generate`` writes: i.i.d. parts, the stress grid or UNDO's retraction chains at one length."""

    parts: list[Part]
    label_suite: bool
    stress: tuple[int, int | None, int | None] | None = None  # (length, seed, sequences per point)
    structured: tuple | None = None  # a task's structured family: (name, length, seed, sequences per point, k)

    def rows(self) -> int:
        if self.structured is not None:
            return sum(c.sequences.shape[0] for c in structured_chunks(*self.structured))
        if self.stress is not None:
            from ffbench import stress

            length, seed, per_point = self.stress
            return sum(p.num for p in stress.grid(length, stress.STRESS_SEED if seed is None else seed, per_point))
        return sum(part.num for part in self.parts)

    def tokens(self) -> int:
        if self.structured is not None:
            return self.rows() * self.structured[1]
        return self.rows() * self.stress[0] if self.stress is not None else \
            sum(part.num * part.dist.length for part in self.parts)

    def describe(self) -> str:
        if self.structured is not None:
            name, length, seed, per, k = self.structured
            return f"{name} at T={length}" + (f", {k} registers" if k else "") + \
                (f", seed {seed}" if seed is not None else "") + (f", {per} per point" if per else "")
        if self.stress is not None:
            from ffbench import stress

            length, seed, per_point = self.stress
            return f"stress grid at T={length} ({len(stress.grid(length))} points, seed " \
                   f"{stress.STRESS_SEED if seed is None else seed}" + (f", {per_point} per point)" if per_point else ")")
        return ", ".join(f"{part.suite} {part.dist.label()} x {part.num:,} (seed {part.seed})" for part in self.parts)

    def check_fits(self, out: str, available: int | None, free: int | None) -> None:
        """Refuse, before sampling a single sequence, a job whose chunk cannot be held in memory or
        whose file cannot fit on the disk (a lower bound of its size: what parquet takes of the most
        compressible sequences, a byte per symbol in JSON lines)."""
        from ffbench.resources import gib

        length = self.stress[0] if self.stress is not None else self.structured[1] if self.structured is not None \
            else max(part.dist.length for part in self.parts)
        chunk = min(self.rows(), CHUNK_ROWS) * length * 4  # the sampled block, its text and the writer's copy
        if available is not None and chunk > 0.8 * available:
            raise UsageError(f"a chunk of {min(self.rows(), CHUNK_ROWS):,} sequences of length {length:,} needs about "
                             f"{gib(chunk)} of memory and {gib(available)} is available: use a smaller --length")
        per_symbol = 1.0 if datafiles.file_format(out) == "jsonl" else PARQUET_BYTES_PER_SYMBOL
        size = self.tokens() * per_symbol
        if free is not None and size > free:
            raise UsageError(f"{self.rows():,} sequences of length {length:,} take at least {gib(size)} on disk and "
                             f"{gib(free)} is free where {out!r} goes: use a smaller --num or --length")

    def chunks(self) -> Iterator[datafiles.Chunk]:
        if self.structured is not None:
            return structured_chunks(*self.structured)
        if self.stress is not None:
            return stress_chunks(*self.stress)
        return iter_chunks(self.parts, label_suite=self.label_suite)


def free_space(out: str) -> int | None:
    """Bytes free on the file system ``out`` will be written to, or None when unknown."""
    import os
    import shutil

    try:
        return shutil.disk_usage(os.path.dirname(os.path.abspath(out))).free
    except OSError:
        return None


def plan(suite: str | None, length: int | None, p_ignore: float | None, p: tuple | None, num: int | None,
         seed: int | None, alphabet: int = 2, task: str | None = None, registers_k: int | None = None) -> Job:
    """The job for ``ffbench generate``'s options; every bad combination is a UsageError."""
    if p_ignore is not None and p is not None:
        raise UsageError("give either --p-ignore or --p, not both")
    chosen = tasks.get(task)
    if registers_k is not None and chosen.default_registers is None:
        raise UsageError(f"--registers applies to --task registers only, not --task {chosen.name}")
    if chosen.name != tasks.DEFAULT:
        return _task_plan(chosen, suite, length, p_ignore, p, num, seed, alphabet, registers_k)
    if suite is not None:
        if p_ignore is not None or p is not None:
            raise UsageError("--suite fixes the distribution; drop --p-ignore/--p or drop --suite")
        if suite == "stress":
            from ffbench import stress

            if alphabet != 2:
                raise UsageError("the stress grid is binary: drop --alphabet")
            stress.grid(512 if length is None else length, num=num)  # validates length and num
            return Job([], True, (512 if length is None else length, seed, num))
        return Job(suite_parts(suite, length, num, seed, alphabet), True)
    if num is None:
        raise UsageError("--num is required without --suite")
    length = 512 if length is None else length
    if p is not None:
        dist = chosen.distribution_of_p(p, length, alphabet)
    else:
        dist = language.FFL.from_p_ignore(0.8 if p_ignore is None else p_ignore, length, alphabet)
    return Job([Part("custom", dist, num, 0 if seed is None else seed)], False)


def _task_plan(task: tasks.Task, suite, length, p_ignore, p, num, seed, alphabet, k=None) -> Job:
    """``ffbench generate --task NAME`` for a task other than ffl: its presets, its structured
    families, or one i.i.d. set of its language."""
    task.check_alphabet(alphabet)
    k = k or task.default_registers
    if k is not None and (isinstance(k, bool) or not 1 <= k <= 8):
        raise UsageError(f"--registers must be between 1 and 8, got {k}")
    length = task.default_length if length is None else length
    task.dist(0.5, length, alphabet, k)  # validates the length
    if suite is not None:
        if p_ignore is not None or p is not None:
            raise UsageError("--suite fixes the distribution; drop --p-ignore/--p or drop --suite")
        if suite == "stress":
            raise UsageError(f"the stress grid is the flip-flop language's: with --task {task.name} use "
                             f"--suite {', '.join(task.structured) or ', '.join(task.suites)}")
        if suite in task.structured:
            job = Job([], True, structured=(suite, length, seed, num, k))
            try:
                next(structured_chunks(suite, length, seed, 1, k))  # what does not fit is refused before work
            except UsageError as exc:
                raise UsageError(f"--suite {suite}: {exc}") from None
            return job
        parts = [Part(s.name, task.suite_dist(s.name, s.p_ignore, length, alphabet, k), num or s.num,
                      s.seed if seed is None else seed, task.name) for s in task.resolve_suites(suite)]
        return Job(parts, True)
    if num is None:
        raise UsageError("--num is required without --suite")
    if p is not None:
        dist = task.distribution_of_p(p, length, alphabet, k) if k else task.distribution_of_p(p, length, alphabet)
    else:
        default = next(iter(task.suites.values())).p_ignore  # the first preset's (in_dist, or haystack's final)
        dist = task.dist(default if p_ignore is None else p_ignore, length, alphabet, k)
    return Job([Part("custom", dist, num, 0 if seed is None else seed, task.name)], False)


def generate_file(parts: list[Part], out: str, label_suite: bool = True) -> tuple[int, str]:
    """Write every part to ``out`` (atomically); return (rows, sha256)."""
    return datafiles.write_sequences(out, iter_chunks(parts, label_suite=label_suite))
