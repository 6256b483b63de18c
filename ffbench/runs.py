"""Where finished runs come from, for the report, the CI gate and the library API.

A run reference is one of:
- a run directory written by ``ffbench run`` (``results.json`` and ``samples.parquet``);
- a shipped reference, ``ffbench/lstm-ref`` etc.: the full paper-suite results of our baselines,
  stored in the package beside each checkpoint (``baselines/<name>/run/``, with only the failing
  reads kept as samples, to stay small);
- ``registry:MODEL@REV`` (or ``registry:MODEL`` for the latest run): a run recorded in the registry.

Every reference resolves to a :class:`ffbench.schema.RunResults`.
"""

from __future__ import annotations

from pathlib import Path

from ffbench import tasks
from ffbench.errors import FFBenchError, UsageError
from ffbench.resources import BASELINES_DIR
from ffbench.rundir import RunDir
from ffbench.schema import CellKey, RunResults

DEFAULT_REFERENCES = ("lstm-ref", "transformer-ref")
# The shipped references of each task (``--task``, docs/tasks.md): what the report draws beside a run of
# that task, and what ``ffbench report --task X`` shows alone. A task's cells never compare with another
# task's, so a reference of another task beside a run would only add rows nothing matches. haystack's
# reads the story's text (a native checkpoint in the text vocabulary; its lengths are characters).
TASK_REFERENCES: dict[str, tuple[str, ...]] = {
    "ffl": DEFAULT_REFERENCES,
    "undo": ("undo-transformer", "undo-lstm", "undo-ssm"),
    "registers": ("registers-transformer", "registers-lstm", "registers-ssm"),
    "haystack": ("haystack-lstm",),
}


def default_references(tasks_shown: list[str]) -> list[str]:
    """The shipped references drawn beside runs of these tasks (in the order given, each once); no task
    (a report of references or sweeps only) means the flip-flop ones, as before tasks existed."""
    names = [tasks.get(t).name for t in tasks_shown] or [tasks.DEFAULT]
    return list(dict.fromkeys(ref for t in dict.fromkeys(names) for ref in TASK_REFERENCES[t]))


def shipped_references() -> list[str]:
    return sorted(p.parent.parent.name for p in BASELINES_DIR.glob("*/run/results.json"))


def reference_runs(name: str) -> list[RunResults]:
    """Every shipped run of a builtin: ``run/`` (the paper suites, what ``ffbench/NAME`` means as a
    baseline) first, then any others (e.g. ``lengths/``, in-distribution accuracy across lengths)."""
    name = name.removeprefix("ffbench/")
    out = [load(f"ffbench/{name}")]
    for extra in sorted(p.parent for p in (BASELINES_DIR / name).glob("*/results.json") if p.parent.name != "run"):
        out.append(RunDir(extra).load(f"ffbench/{name} ({extra.name})", reference=True))
    return out


def load(ref: str, registry_path: str | None = None, comparable_to: set[CellKey] | None = None) -> RunResults:
    """Resolve a run reference (see the module docstring); errors name the reference.

    ``comparable_to`` (registry references without ``@REV`` only): take the latest recorded run
    that shares at least one cell with these keys, rather than the latest run.
    """
    if ref.startswith("registry:"):
        from ffbench.registry import Registry

        return Registry(registry_path).resolve(ref.removeprefix("registry:"), comparable_to)
    path = Path(ref).expanduser()
    if path.is_dir():
        return RunDir(path).load(ref)
    name = ref.removeprefix("ffbench/")
    shipped = BASELINES_DIR / name / "run"
    if (shipped / RunDir.RESULTS).is_file():
        return RunDir(shipped).load(f"ffbench/{name}", reference=True)
    raise UsageError(f"no run {ref!r}: not a run directory, not a shipped reference "
                       f"(ffbench/{', ffbench/'.join(shipped_references())}) and not registry:MODEL@REV")


def ship_reference(run_dir: str, name: str, max_failures_per_cell: int = 200, kind: str = "run") -> Path:
    """Store a finished run of a builtin checkpoint as its shipped reference (maintainers only).

    Keeps the results whole (model renamed to ``ffbench/NAME``: the run must have scored exactly that
    checkpoint's weights, which its fingerprint proves) and, of the samples, only up to
    ``max_failures_per_cell`` failing reads per cell: what the report shows, at a few kB.
    """
    import pyarrow as pa

    from ffbench import identity

    src = load(run_dir)
    shipped = identity.directory_fingerprint(BASELINES_DIR / name)
    scored = (src.fingerprint.get("model") or {}).get("id")
    if scored != shipped["id"]:
        raise FFBenchError(f"{run_dir!r} did not score the shipped weights of {name} (fingerprint {scored} != "
                           f"{shipped['id']})")
    results = src.with_model(f"ffbench/{name}")
    results.extra = {**results.extra, "scored_as": src.model}
    keep = [t for t in (src.failing(c, max_failures_per_cell) for c in src.results) if t is not None]
    out = RunDir(BASELINES_DIR / name / kind)
    out.write_reference(results, pa.concat_tables(keep) if keep else _empty_samples(src))
    return out.path


def _empty_samples(run: RunResults):
    import pyarrow.parquet as pq

    return pq.read_table(run.samples_path).slice(0, 0)
