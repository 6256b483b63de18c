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

from ffbench.errors import FFBenchError


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    train: dict  # TrainConfig as a dict
    data_seed: int
    init_seed: int
    suites: tuple[str, ...]
    eval_length: int
    eval_num: int | None


def load_config(path: str) -> dict:
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise FFBenchError(f"sweep config {path!r} does not exist") from None
    except yaml.YAMLError as exc:
        raise FFBenchError(f"sweep config {path!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict) or "base" not in raw:
        raise FFBenchError(f"sweep config {path!r} needs at least a 'base' training configuration")
    unknown = set(raw) - {"name", "base", "grid", "replicates", "data_seeds", "init_seeds", "eval"}
    if unknown:
        raise FFBenchError(f"sweep config {path!r}: unknown key(s) {', '.join(sorted(unknown))}")
    return raw


def _set(d: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def expand(raw: dict) -> list[RunSpec]:
    from ffbench.train.trainer import TrainConfig, validate_config

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
    from ffbench import language

    for s in suites:
        language.resolve_suites(s)
    specs = []
    for values in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
        cfg = json.loads(json.dumps(raw["base"]))
        for k, v in zip(keys, values):
            _set(cfg, k, v)
        base_cfg = TrainConfig.from_dict(cfg)
        validate_config(base_cfg)
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
    from ffbench.rundir import write_json
    from ffbench.train.trainer import TrainConfig, evaluate_suite, load_checkpoint, train

    torch.set_num_threads(threads)
    run_dir = Path(root) / "runs" / spec.run_id
    ckpt = run_dir / "checkpoint"
    if not (ckpt / "model.safetensors").is_file():
        tmp = run_dir / f"checkpoint.partial-{os.getpid()}"
        train(TrainConfig.from_dict(spec.train), out=str(tmp), progress=False)
        os.replace(tmp, ckpt)
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
              echo=print) -> list[dict]:
    specs = expand(raw)
    Path(root, "runs").mkdir(parents=True, exist_ok=True)
    (Path(root) / "sweep.json").write_text(json.dumps(raw, indent=2) + "\n")
    todo = [s for s in specs if not all((Path(root) / "runs" / s.run_id / f"eval-{n}.json").is_file() for n in s.suites)]
    echo(f"sweep: {len(specs)} runs, {len(specs) - len(todo)} already finished, {len(todo)} to do")
    if todo:
        if executor == "ray":
            _run_ray(todo, root)
        elif executor == "local":
            _run_local(todo, root, workers or max(1, os.cpu_count() or 1), progress)
        else:
            raise FFBenchError(f"executor must be local or ray, got {executor!r}")
    return write_table(specs, root)


def _run_local(todo: list[RunSpec], root: str, workers: int, progress: bool) -> None:
    bar = None
    if progress:
        import sys

        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="sweep", unit="run", file=sys.stderr)
    if workers == 1:
        for spec in todo:
            run_one(spec, root)
            if bar is not None:
                bar.update(1)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            for fut in as_completed([pool.submit(run_one, spec, root) for spec in todo]):
                fut.result()
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()


def _run_ray(todo: list[RunSpec], root: str) -> None:
    try:
        import ray
    except ImportError:
        raise FFBenchError("--executor ray needs Ray: pip install 'ffbench[ray]'") from None
    ray.init(ignore_reinit_error=True)
    remote = ray.remote(num_cpus=1)(run_one)
    ray.get([remote.remote(spec, root) for spec in todo])


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
