"""Where finished runs come from, for the report and the CI gate.

A run reference is one of:
- a run directory written by ``ffbench run`` (``results.json`` and ``samples.parquet``);
- a shipped reference, ``ffbench/lstm-ref`` etc.: the full paper-suite results of our baselines,
  stored in the package beside each checkpoint (``baselines/<name>/run/``, with only the failing
  reads kept as samples, to stay small);
- ``registry:MODEL@REV`` (or ``registry:MODEL`` for the latest run): a run recorded in the registry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ffbench.errors import FFBenchError

from ffbench.resources import BASELINES_DIR
DEFAULT_REFERENCES = ("lstm-ref", "transformer-ref")


@dataclass
class LoadedRun:
    label: str  # how the user named it
    results: dict  # the results.json payload
    samples: Path | None  # samples.parquet (all reads) or failures.parquet (failing reads only)
    reference: bool = False

    @property
    def model(self) -> str:
        return self.results["model"]


def cell_key(cell: dict) -> tuple:
    """What makes two cells comparable: the same set of sequences scored the same way."""
    p = cell.get("p_ignore")
    return (cell["suite"], int(cell["length"]), None if p is None else round(float(p), 6), cell["render"],
            cell["scoring"])


def describe_key(key: tuple) -> str:
    suite, length, p, render, scoring = key
    return f"{suite} T={length}" + ("" if p is None else f" p={p:g}") + f" {render} {scoring}"


def shipped_references() -> list[str]:
    return sorted(p.parent.parent.name for p in BASELINES_DIR.glob("*/run/results.json"))


def reference_runs(name: str) -> list[LoadedRun]:
    """Every shipped run of a builtin: ``run/`` (the paper suites, what ``ffbench/NAME`` means as a
    baseline) first, then any others (e.g. ``lengths/``, in-distribution accuracy across lengths)."""
    name = name[len("ffbench/"):] if name.startswith("ffbench/") else name
    out = [load(f"ffbench/{name}")]
    for extra in sorted(p.parent for p in (BASELINES_DIR / name).glob("*/results.json") if p.parent.name != "run"):
        out.append(_shipped(extra, f"ffbench/{name} ({extra.name})"))
    return out


def _shipped(folder: Path, label: str) -> LoadedRun:
    failures = folder / "failures.parquet"
    return LoadedRun(label, _read_results(folder / "results.json"), failures if failures.is_file() else None,
                     reference=True)


def load(ref: str, registry_path: str | None = None) -> LoadedRun:
    """Resolve a run reference (see module docstring); errors name the reference."""
    if ref.startswith("registry:"):
        from ffbench.registry import Registry

        return LoadedRun(ref, Registry(registry_path).resolve(ref[len("registry:"):]), None)
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "results.json").is_file():
            hint = " (the run is unfinished: rerun the same 'ffbench run' to complete it)" \
                if (path / "run_config.json").exists() else ""
            raise FFBenchError(f"{ref!r} is not a finished run directory: no results.json{hint}")
        samples = path / "samples.parquet"
        return LoadedRun(ref, _read_results(path / "results.json"), samples if samples.is_file() else None)
    name = ref[len("ffbench/"):] if ref.startswith("ffbench/") else ref
    shipped = BASELINES_DIR / name / "run"
    if (shipped / "results.json").is_file():
        return _shipped(shipped, f"ffbench/{name}")
    raise FFBenchError(f"no run {ref!r}: not a run directory, not a shipped reference "
                       f"(ffbench/{', ffbench/'.join(shipped_references())}) and not registry:MODEL@REV")


def failing_samples(run: LoadedRun, per_cell: int) -> list:
    """The first ``per_cell`` failing reads of each of the run's cells, one Arrow table per cell
    (filtered in Arrow: a bad model's failing rows can number hundreds of thousands)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(run.samples)
    failing = table.filter(pc.invert(table.column("correct")))
    out = []
    for cell in run.results["results"]:
        mask = pc.and_(pc.and_(pc.equal(failing.column("suite"), cell["suite"]),
                               pc.equal(failing.column("length"), cell["length"])),
                       pc.and_(pc.equal(failing.column("render"), cell["render"]),
                               pc.equal(failing.column("scoring"), cell["scoring"])))
        out.append(failing.filter(mask).slice(0, per_cell))
    return out


def _read_results(path: Path) -> dict:
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FFBenchError(f"cannot read {str(path)!r}: {exc}") from None
    if not isinstance(results, dict) or not isinstance(results.get("results"), list) or "model" not in results:
        raise FFBenchError(f"{str(path)!r} is not an ffbench results.json (needs 'model' and 'results')")
    return results


def ship_reference(run_dir: str, name: str, max_failures_per_cell: int = 200, kind: str = "run") -> Path:
    """Store a finished run of a builtin checkpoint as its shipped reference (maintainers only).

    Keeps results.json whole (model renamed to ``ffbench/NAME``: the run must have scored exactly
    that checkpoint's weights) and, of the samples, only up to ``max_failures_per_cell`` failing
    reads per cell: what the report shows, at a few kB instead of megabytes.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ffbench.datafiles import atomic_path
    from ffbench.rundir import write_json

    src = load(run_dir)
    out = BASELINES_DIR / name / kind
    out.mkdir(parents=True, exist_ok=True)
    results = dict(src.results)
    results["scored_as"] = results["model"]
    results["model"] = f"ffbench/{name}"
    results["config"] = dict(results["config"], model=f"ffbench/{name}")
    keep = failing_samples(src, max_failures_per_cell)
    with atomic_path(out / "failures.parquet") as tmp:
        pq.write_table(pa.concat_tables(keep), tmp, compression="zstd")
    write_json(out / "results.json", results)
    return out
