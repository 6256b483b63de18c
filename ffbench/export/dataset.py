"""``ffbench export dataset``: suites, the stress grid or a hunt's glitches as a Hugging Face dataset folder.

The folder is what ``hf upload USER/NAME FOLDER --repo-type dataset`` publishes as it stands and what
``datasets.load_dataset(FOLDER, CONFIG)`` reads offline::

    README.md                         the dataset card: YAML front matter (``configs:`` naming every
                                      parquet file, and ``ffbench:`` the generation parameters, row
                                      counts and SHA-256 of each file), then the same in prose
    data/<config>/test.parquet        one config per set: ``<suite>_T<length>`` (in_dist_T512,
                                      stress_T128, ...) or ``hunt_T<length>``; one split, ``test``

Each parquet file is an ffbench data file, written by the same code as ``ffbench generate`` (the
``text`` column, the ``suite`` label, and the stress columns where they apply), so ``ffbench run
--data`` on it recognises the preset and scores cells comparable with ``--suite`` runs. A hunt's
``glitches.parquet`` is copied with all its columns. Two digests travel per file: the SHA-256 of
the file's bytes (what a downloader checks) and ffbench's content hash of its sequences
(format-independent, the hash a run records in ``fingerprint.data``).

The folder is built beside its target and renamed into place, so an interrupted export leaves nothing.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ffbench import __version__, datafiles, generate, language
from ffbench.errors import UsageError

SPLIT = "test"
CARD = "README.md"
PAPER = "https://arxiv.org/abs/2306.00946"


@dataclass
class ExportConfig:
    """One config of the dataset: its name, how its rows are produced, and how they were generated."""

    name: str
    params: dict  # generation parameters, written to the card
    write: Callable[[Path], tuple[int, str]]  # writes the parquet file; returns (rows, content sha256)
    columns: list[str] | None = field(default_factory=list)  # None: the written file's own

    @property
    def path(self) -> str:
        return f"data/{self.name}/{SPLIT}.parquet"


# ----------------------------------------------------------------------------- planning
def plan(suites: list[str], lengths: list[int], num: int | None, seed: int | None,
         hunts: list[str], task: str | None = None, registers_k: int | None = None) -> list[ExportConfig]:
    """The configs to export; every bad choice is a UsageError found before anything is written.
    With ``task`` other than ffl, ``suites`` are that task's presets and structured families
    (``ffbench generate --task``'s), one config ``<task>_<suite>_T<length>`` each."""
    from ffbench import tasks

    chosen = tasks.get(task)
    if not suites and not hunts:
        raise UsageError("nothing to export: give --suite (paper, in_dist, sparse, dense, stress) and/or --hunt DIR")
    if chosen.name != tasks.DEFAULT:
        names = [member for name in suites for member in chosen.groups.get(name, (name,))]  # paper: its suites
        configs = [_task_config(chosen, name, length, num, seed, registers_k)
                   for name in names for length in lengths or [chosen.default_length]]
        return _unique(configs + [_hunt_config(path) for path in hunts])  # a hunt carries its own task
    if registers_k is not None:
        raise UsageError("--registers applies to --task registers only")
    configs: list[ExportConfig] = []
    for name in suites:
        if name == "stress":
            configs += [_stress_config(length, num, seed) for length in lengths or [512]]
            continue
        for suite in language.resolve_suites(name):
            for length in lengths or [suite.length]:
                configs.append(_suite_config(suite, length, num, seed))
    for path in hunts:
        configs.append(_hunt_config(path))
    return _unique(configs)


def _unique(configs: list[ExportConfig]) -> list[ExportConfig]:
    names = [c.name for c in configs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UsageError(f"two sets would share the config name {dupes[0]!r}: export them to separate folders")
    return configs


def _suite_config(suite: language.Suite, length: int, num: int | None, seed: int | None) -> ExportConfig:
    (part,) = generate.suite_parts(suite.name, length, num, seed)
    params = {"kind": "suite", "suite": suite.name, "length": part.dist.length, "p_ignore": suite.p_ignore,
              "probabilities": {"write": round(part.dist.p_write, 12), "read": round(part.dist.p_read, 12),
                                "ignore": round(part.dist.p_ignore, 12)},
              "num": part.num, "seed": part.seed, "alphabet": 2,
              "command": _command(f"--suite {suite.name} --length {part.dist.length}", num, seed)}
    return ExportConfig(f"{suite.name}_T{part.dist.length}", params,
                        lambda out: datafiles.write_sequences(out, generate.iter_chunks([part])), ["text", "suite"])


def _task_config(task, suite: str, length: int, num: int | None, seed: int | None, k: int | None) -> ExportConfig:
    """A preset or structured family of a task other than ffl, written by ``ffbench generate --task``'s code,
    so ``ffbench run --task NAME --data`` on the file recognises the preset."""
    job = generate.plan(suite, length, None, None, num, seed, 2, task=task.name, registers_k=k)
    k = k or task.default_registers
    flags = f"--task {task.name}" + (f" --registers {k}" if k is not None else "") + f" --suite {suite} --length {length}"
    params = {"kind": "task", "task": task.name, "suite": suite, "length": length, "num": job.rows(),
              "seed": seed, "registers": k, "alphabet": 2, "command": _command(flags, num, seed)}
    name = f"{task.name}_{suite}" + (f"_K{k}" if k is not None else "") + f"_T{length}"
    return ExportConfig(name, {key: v for key, v in params.items() if v is not None},
                        lambda out: datafiles.write_sequences(out, job.chunks()), None)


def _stress_config(length: int, per_point: int | None, seed: int | None) -> ExportConfig:
    from ffbench import stress

    job = generate.plan("stress", length, None, None, per_point, seed)
    seed = stress.STRESS_SEED if seed is None else seed
    params = {"kind": "stress", "suite": "stress", "length": length, "seed": seed, "per_point": per_point,
              "points": len(stress.grid(length, seed, per_point)), "num": job.rows(),
              "families": sorted(stress.FAMILIES), "alphabet": 2,
              "command": _command(f"--suite stress --length {length}", per_point, seed if seed != stress.STRESS_SEED
                                  else None)}
    return ExportConfig(f"stress_T{length}", params, lambda out: datafiles.write_sequences(out, job.chunks()),
                        ["text", "suite", *stress.COLUMNS])


def _hunt_config(directory: str) -> ExportConfig:
    import pyarrow.parquet as pq

    from ffbench.hunt.huntdir import HuntDir
    from ffbench.io import read_json

    hd = HuntDir(directory)
    if not hd.glitches.is_file():
        if hd.summary.is_file():
            raise UsageError(f"the hunt in {directory!r} found no glitches: nothing to export")
        raise UsageError(f"{directory!r} is not a hunt directory (no {HuntDir.SUMMARY})")
    summary = read_json(hd.summary, "hunt summary") if hd.summary.is_file() else {}
    config = summary.get("config") or {}
    task = config.get("task")  # a task hunt's language (absent: ffl)
    data = datafiles.read_sequences(hd.glitches, task=task)
    params = {"kind": "hunt", "suite": "hunt", "task": task, "length": data.length, "num": data.num,
              "model": summary.get("model"), "model_fingerprint": (summary.get("fingerprint") or {}).get("id"),
              "seed": config.get("seed"), "render": config.get("render"), "budget": config.get("budget"),
              "alphabet": 2, "command": f"ffbench hunt --model {summary.get('model', 'MODEL')}"
              + (f" --task {task}" if task else "") + " ..."}
    table = pq.read_table(hd.glitches)

    def write(out: Path) -> tuple[int, str]:
        from ffbench.io import atomic_path

        with atomic_path(out) as tmp:
            pq.write_table(table, tmp, compression="snappy")
        return data.num, data.sha256

    return ExportConfig(f"hunt_{task}_T{data.length}" if task else f"hunt_T{data.length}",
                        {k: v for k, v in params.items() if v is not None}, write,
                        table.column_names)


def _command(base: str, num: int | None, seed: int | None) -> str:
    return "ffbench generate " + base + (f" --num {num}" if num else "") + \
        (f" --seed {seed}" if seed is not None else "") + " --out FILE.parquet"


# ----------------------------------------------------------------------------- writing
def export(configs: list[ExportConfig], out: str, title: str | None = None) -> dict:
    """Write every config and the card into ``out`` (which must not exist, or be empty); return the
    card's ``ffbench`` metadata (per config: parameters, rows, content hash, file SHA-256)."""
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"--out {out!r} exists and is not empty: choose another folder or remove it")
    if not target.parent.exists():
        raise UsageError(f"the folder {str(target.parent)!r} of --out does not exist")
    staging = target.with_name(f".{target.name}.partial-export")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        meta = {}
        for config in configs:
            path = staging / config.path
            path.parent.mkdir(parents=True, exist_ok=True)
            rows, content = config.write(path)
            columns = config.columns if config.columns is not None else _columns(path)
            meta[config.name] = {**config.params, "rows": rows, "columns": columns, "split": SPLIT,
                                 "path": config.path, "content_sha256": content, "file_sha256": file_sha256(path)}
        (staging / CARD).write_text(card(meta, title), encoding="utf-8")
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return meta


def _columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- the card
def front_matter(meta: dict, title: str) -> dict:
    """The card's YAML metadata: what the Hub and ``datasets`` read (``configs``), plus ffbench's own."""
    configs = [{"config_name": name, "data_files": [{"split": SPLIT, "path": m["path"]}]} for name, m in meta.items()]
    configs[0]["default"] = True
    return {"pretty_name": title, "license": "mit", "task_categories": ["text-generation"],
            "tags": ["flip-flop", "attention-glitches", "synthetic", "ffbench"], "configs": configs,
            "ffbench": {"version": __version__, "paper": PAPER, "configs": meta}}


def card(meta: dict, title: str | None = None) -> str:
    import yaml

    title = title or "ffbench flip-flop sequences"
    head = yaml.safe_dump(front_matter(meta, title), sort_keys=False, allow_unicode=True, width=1000)
    first = next(iter(meta))
    lines = [f"---\n{head}---", f"# {title}", "",
             "Flip-flop language sequences for measuring *attention glitches* "
             f"([Liu et al., 2023]({PAPER})), generated by ffbench {__version__}. Each row's `text` is a "
             "compact sequence such as `w0i1r0`: instructions `w` (write), `r` (read), `i` (ignore) at even "
             "positions, a data bit after each; every read's bit equals the most recent write's. A model "
             "glitches when it gets a read wrong.", "",
             "```python", "from datasets import load_dataset", "",
             f'ds = load_dataset("USER/NAME", "{first}", split="{SPLIT}")  # or a local copy of this folder',
             "```", "",
             "Every file is also an ffbench data file: `ffbench run --model SPEC --data "
             f"{meta[first]['path']}` scores it (a preset suite's file is recognised as that suite).", "",
             "## Configs", "",
             "| config | kind | length | rows | parameters | regenerate |", "|---|---|---|---|---|---|"]
    for name, m in meta.items():
        lines.append(f"| `{name}` | {m['kind']} | {m['length']} | {m['rows']:,} | {_parameters(m)} | "
                     f"`{m['command']}` |")
    lines += ["", "## Files", "", "`file_sha256`: SHA-256 of the file's bytes. `content_sha256`: ffbench's content "
              "hash (SHA-256 of the sequences, each followed by a newline; what a run records).", "",
              "| file | file_sha256 | content_sha256 |", "|---|---|---|"]
    lines += [f"| `{m['path']}` | `{m['file_sha256']}` | `{m['content_sha256']}` |" for m in meta.values()]
    lines += ["", "## Columns", "", "`text`: the sequence. `suite`: the set it belongs to. Stress and hunt rows: "
              "`family`, `point` and the family's parameters (see ffbench's `stress` module); hunt rows also "
              "carry where each glitch failed (`failing_positions`, `margins`, ...).", "",
              "## Citation", "", "Liu, Ash, Goel, Krishnamurthy, Zhang. *Exposing Attention Glitches with Flip-Flop "
              f"Language Modeling.* NeurIPS 2023. {PAPER}", ""]
    return "\n".join(lines)


def _parameters(m: dict) -> str:
    if m["kind"] == "suite":
        return f"FFL({m['p_ignore']:g}), seed {m['seed']}"
    if m["kind"] == "stress":
        return f"{m['points']} points, seed {m['seed']}" + (f", {m['per_point']} per point" if m.get("per_point") else "")
    return f"glitches of {m.get('model', 'a model')}"
