"""``ffbench sweep CONFIG.yaml``: a grid of training configurations x replicates, each trained and
evaluated on the tails, resumable, on a local process pool (default) or Ray (``--executor ray``).

Config (YAML)::

    name: r2-lstm
    base: {model: {arch: lstm, n_layer: 1, hidden: 128}, length: 512, steps: 500}
    grid: {model.hidden: [64, 128]}      # optional; dotted keys reach into model
    replicates: 20                      # data_seed = init_seed = 0..19 unless given:
    data_seeds: [0, 1]                  # optional, crossed with init_seeds
    init_seeds: [0]
    eval: {suites: [in_dist, sparse, dense], length: 512}   # num: optional override

Each run lives in ``<out>/runs/<run id>/`` (checkpoint plus one ``eval-<suite>.json`` per suite,
written atomically). A rerun skips every checkpoint and evaluation already on disk, so adding a
suite or more replicates later costs only the new work. ``table.csv`` aggregates every finished
run: config, data seed, init seed, and reads / errors per suite (for the report's replicate plots).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ffbench.errors import FFBenchError, UsageError


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    train: dict  # TrainConfig as a dict
    data_seed: int
    init_seed: int
    suites: tuple[str, ...]
    eval_length: int
    eval_num: int | None


SWEEP_KEYS = ("name", "base", "grid", "replicates", "data_seeds", "init_seeds", "eval")
EVAL_KEYS = ("suites", "length", "num")


def load_config(path: str) -> dict:
    """The sweep file as a mapping, every setting of every grid point checked (:func:`expand`)."""
    from ffbench.train.config import load_yaml

    raw = load_yaml(path, "sweep config")
    expand(raw, f"sweep config {path!r}")
    return raw


def check_structure(raw: dict, where: str) -> None:
    """Keys, types and ranges of the sweep-level settings (the training settings are the recipe's)."""
    from dataclasses import fields

    from ffbench.train.config import ModelConfig, TrainConfig, check_keys

    check_keys(raw, SWEEP_KEYS, where)
    if not isinstance(raw.get("base"), dict) or not isinstance(raw["base"].get("model", {}), dict):
        raise UsageError(f"{where} needs 'base', a mapping of training settings (model: a mapping of model settings)")
    if "name" in raw and not isinstance(raw["name"], (str, int)):
        raise UsageError(f"{where}: name must be a string, got {raw['name']!r}")
    grid = raw.get("grid") or {}
    if not isinstance(grid, dict):
        raise UsageError(f"{where}: grid must map settings (model.hidden, steps, ...) to lists of values, got {grid!r}")
    settings = [f.name for f in fields(TrainConfig) if f.name != "model"]
    settings += [f"model.{f.name}" for f in fields(ModelConfig)]
    check_keys(grid, settings, f"{where}: grid")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise UsageError(f"{where}: grid.{key} must be a non-empty list of values, got {values!r}")
    if "replicates" in raw and not (_is_int(raw["replicates"]) and raw["replicates"] >= 1):
        raise UsageError(f"{where}: replicates must be an integer >= 1, got {raw['replicates']!r}")
    for key in ("data_seeds", "init_seeds"):
        seeds = raw.get(key)
        if seeds is not None and not (isinstance(seeds, list) and seeds and all(_is_int(x) and x >= 0 for x in seeds)):
            raise UsageError(f"{where}: {key} must be a non-empty list of integers >= 0, got {seeds!r}")
    ev = raw.get("eval") or {}
    if not isinstance(ev, dict):
        raise UsageError(f"{where}: eval must be a mapping (suites, length, num), got {ev!r}")
    check_keys(ev, EVAL_KEYS, f"{where}: eval")
    suites = ev.get("suites", [])
    if not isinstance(suites, list) or not all(isinstance(x, str) for x in suites):
        raise UsageError(f"{where}: eval.suites must be a list of suite names, got {suites!r}")
    if "length" in ev and not (_is_int(ev["length"]) and ev["length"] >= 4 and ev["length"] % 2 == 0):
        raise UsageError(f"{where}: eval.length must be an even integer >= 4, got {ev['length']!r}")
    if ev.get("num") is not None and not (_is_int(ev["num"]) and ev["num"] >= 1):
        raise UsageError(f"{where}: eval.num must be an integer >= 1, got {ev['num']!r}")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _set(d: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def expand(raw: dict, where: str = "sweep config") -> list[RunSpec]:
    """One :class:`RunSpec` per grid point x seed pair; every grid point's config is validated."""
    from ffbench import language
    from ffbench.train.config import from_mapping, validate

    check_structure(raw, where)
    grid = raw.get("grid") or {}
    keys = sorted(grid)
    n = int(raw.get("replicates", 1))
    data_seeds = raw.get("data_seeds")
    init_seeds = raw.get("init_seeds")
    if data_seeds is None and init_seeds is None:
        seed_pairs = [(k, k) for k in range(n)]
    else:
        seed_pairs = list(itertools.product(data_seeds or [0], init_seeds or [0]))
    ev = raw.get("eval") or {}
    suites = tuple(ev.get("suites", ["in_dist", "sparse", "dense"]))
    for s in suites:
        try:
            language.resolve_suites(s)
        except FFBenchError as exc:
            raise UsageError(f"{where}: eval.suites: {exc}") from None
    specs = []
    for values in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
        cfg = json.loads(json.dumps(raw["base"]))
        point = ", ".join(f"{k}={v!r}" for k, v in zip(keys, values))
        for k, v in zip(keys, values):
            _set(cfg, k, v)
        label = f"{where}: base" + (f" at grid point {point}" if point else "")
        try:
            base_cfg = from_mapping(cfg, label)
            validate(base_cfg)
        except UsageError as exc:
            raise UsageError(str(exc) if str(exc).startswith(label) else f"{label}: {exc}") from None
        config_id = hashlib.sha256(json.dumps(base_cfg.as_dict(), sort_keys=True).encode()).hexdigest()[:10]
        for d, i in seed_pairs:
            train = {**base_cfg.as_dict(), "data_seed": int(d), "init_seed": int(i), "device": "cpu"}
            specs.append(RunSpec(f"{config_id}-d{d}-i{i}", train, int(d), int(i), suites,
                                 int(ev.get("length", base_cfg.length)), ev.get("num")))
    return specs


def run_one(spec: RunSpec, root: str, threads: int = 1) -> dict:
    """Train (unless a checkpoint exists) and evaluate every missing suite of one run."""
    import torch

    from ffbench import language
    from ffbench.io import write_json
    from ffbench.train.checkpoint import load_checkpoint
    from ffbench.train.config import TrainConfig
    from ffbench.train.trainer import evaluate_suite, train

    torch.set_num_threads(threads)
    run_dir = Path(root) / "runs" / spec.run_id
    ckpt = run_dir / "checkpoint"
    if not (ckpt / "model.safetensors").is_file():
        # Trained in a fixed partial directory, so that a sweep killed mid-run resumes that run
        # from its last saved step; moved into place once complete.
        partial = run_dir / "checkpoint.partial"
        train(TrainConfig.from_dict(spec.train), out=str(partial), progress=False, log=lambda m: None,
              keep_state=False)
        os.replace(partial, ckpt)
    model, _ = load_checkpoint(ckpt)
    out = {"run_id": spec.run_id}
    for name in spec.suites:
        path = run_dir / f"eval-{name}.json"
        if not path.is_file():
            (suite,) = language.resolve_suites(name)
            result = evaluate_suite(model, suite, spec.eval_length, spec.eval_num)
            write_json(path, result)
        out[name] = json.loads(path.read_text())
    return out


def run_sweep(raw: dict, root: str, executor: str = "local", workers: int | None = None, progress: bool = True,
              echo=print, ray_address: str | None = None) -> list[dict]:
    """Train and evaluate every unfinished run of the sweep on the executor (:mod:`ffbench.executors`)."""
    from functools import partial

    from ffbench.executors import run_tasks

    specs = expand(raw)
    Path(root, "runs").mkdir(parents=True, exist_ok=True)
    (Path(root) / "sweep.json").write_text(json.dumps(raw, indent=2) + "\n")
    todo = [s for s in specs if not all((Path(root) / "runs" / s.run_id / f"eval-{n}.json").is_file() for n in s.suites)]
    echo(f"sweep: {len(specs)} runs, {len(specs) - len(todo)} already finished, {len(todo)} to do")
    bar = None
    if progress and todo:
        import sys

        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="sweep", unit="run", file=sys.stderr)
    for _ in run_tasks(partial(run_one, root=root), todo, executor, workers, ray_address):
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return write_table(specs, root)


def write_table(specs: list[RunSpec], root: str) -> list[dict]:
    """One row per finished run: config, seeds, and reads/errors per suite."""
    rows = []
    for spec in specs:
        run_dir = Path(root) / "runs" / spec.run_id
        row = {"run_id": spec.run_id, "config": json.dumps(spec.train, sort_keys=True),
               "arch": spec.train["model"]["arch"], "data_seed": spec.data_seed, "init_seed": spec.init_seed}
        complete = True
        for name in spec.suites:
            path = run_dir / f"eval-{name}.json"
            if path.is_file():
                res = json.loads(path.read_text())
                row[f"{name}_reads"], row[f"{name}_errors"] = res["reads"], res["errors"]
            else:
                complete = False
        if complete:
            rows.append(row)
    if rows:
        fields = list(dict.fromkeys(k for r in rows for k in r))
        with open(Path(root) / "table.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    return rows


def format_table(rows: list[dict], suites: tuple[str, ...]) -> str:
    if not rows:
        return "no finished runs"
    head = ["run_id", "data_seed", "init_seed"] + [f"{s} errors/reads" for s in suites]
    lines = ["  ".join(head)]
    for r in rows:
        cells = [r["run_id"], str(r["data_seed"]), str(r["init_seed"])]
        cells += [f"{r.get(f'{s}_errors', '-')}/{r.get(f'{s}_reads', '-')}" for s in suites]
        lines.append("  ".join(cells))
    zero = sum(all(r.get(f"{s}_errors", 1) == 0 for s in suites) for r in rows)
    lines.append(f"{zero} of {len(rows)} runs have 0 errors on every suite ({', '.join(suites)})")
    return "\n".join(lines)
