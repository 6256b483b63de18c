"""Generation jobs: which distributions, how many rows, which seeds -> a data file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ffbench import datafiles, language


@dataclass(frozen=True)
class Part:
    """One block of a data file: ``num`` rows of ``dist`` from ``seed``, labelled ``suite``."""

    suite: str
    dist: language.FFL
    num: int
    seed: int


def suite_parts(name: str, length: int | None = None, num: int | None = None, seed: int | None = None,
                alphabet: int = 2) -> list[Part]:
    """The parts of a preset (or group), with the user's overrides applied to every part."""
    parts = []
    for s in language.resolve_suites(name):
        parts.append(Part(s.name, s.distribution(length, alphabet), num or s.num, s.seed if seed is None else seed))
    return parts


def iter_chunks(parts: list[Part], chunk_rows: int = 32_768, label_suite: bool = True) -> Iterator[datafiles.Chunk]:
    """Sampled chunks, with a ``suite`` column unless ``label_suite`` is off (custom sets)."""
    for part in parts:
        for arr in language.iter_sample(part.dist, part.num, part.seed, chunk_rows):
            yield datafiles.Chunk(arr, {"suite": [part.suite] * arr.shape[0]} if label_suite else {})


def generate_file(parts: list[Part], out: str, label_suite: bool = True) -> tuple[int, str]:
    """Write every part to ``out`` (atomically); return (rows, sha256)."""
    return datafiles.write_sequences(out, iter_chunks(parts, label_suite=label_suite))
