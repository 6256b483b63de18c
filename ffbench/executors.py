"""Where work runs: in this process or a local process pool (the default), or on Ray.

Two shapes of work share this module. ``ffbench run``'s shards go to :class:`RayPool` actors that
each hold a model; ``ffbench sweep``'s training runs are independent tasks for :func:`run_tasks`.

``--executor ray [--workers N] [--ray-address ADDR]`` spreads a run's shards over N Ray actors, each
holding one backend (one HF model or vLLM engine per GPU, or API clients), on a local Ray instance
or an existing cluster. The driver stays the only writer of the run directory: an actor scores a
shard and returns its rows, the driver writes them atomically exactly as a local run does, and the
merged run is identical, read for read, to a local run (shards are deterministic units, merged in
order). Shards stay the unit of resume: a killed worker is restarted by Ray and its shard in flight
re-scored; a killed driver loses only the shards in flight, and rerunning the same command resumes.

Each actor rebuilds the run's plan from its config (sampling is deterministic), so data files and
local model directories must be readable at the same paths on every node (a shared filesystem).
A model args ``device=cuda...`` gives every actor one GPU.
"""

from __future__ import annotations

import os
from collections import deque

from ffbench.errors import FFBenchError, UsageError

EXECUTORS = ("local", "ray")


class _ShardWorker:
    """A Ray actor: one backend and the run's plan; scores shards on request."""

    def __init__(self, spec: str, args: dict, options: dict, config: dict):
        from ffbench import backends, runner

        self.plan = runner.plan(runner.RunConfig(**config))
        self.backend = backends.resolve(spec, args, **options).load()

    def pid(self) -> int:
        return os.getpid()

    def fingerprint(self) -> dict:
        return self.backend.fingerprint()

    def describe(self) -> dict:
        return self.backend.describe()

    def check_context(self, cell_index: int) -> None:
        from ffbench import runner

        runner.check_context(self.backend, self.plan, self.plan.cells[cell_index])

    def score(self, cell_index: int, start: int, stop: int):
        from ffbench import runner

        before = self.backend.usage.as_dict()
        table = runner.score_shard(self.backend, self.plan, self.plan.cells[cell_index], start, stop)
        usage = {k: v - before.get(k, 0) for k, v in self.backend.usage.as_dict().items()
                 if isinstance(v, (int, float))}
        return table, usage

    def close(self) -> None:
        self.backend.close()


class RayPool:
    """N actors holding the model; the runner's backend stand-in for fingerprint, describe, close."""

    def __init__(self, model, config: dict, workers: int, address: str | None = None):
        self._ray = ray = start_ray(address)
        gpus = 1 if str(model.args.get("device", "")).startswith("cuda") else 0
        actor = ray.remote(_ShardWorker).options(num_cpus=1, num_gpus=gpus, max_restarts=-1, max_task_retries=-1)
        options = {k: v for k, v in model.options.items() if k != "notify"}  # callbacks stay with the driver
        self.actors = [actor.remote(model.spec, model.args, options, config) for _ in range(workers)]
        ray.get([a.pid.remote() for a in self.actors])  # every model loaded (or the first failure raised)
        self._describe = {**ray.get(self.actors[0].describe.remote()), "executor": "ray", "workers": workers}

    def fingerprint(self) -> dict:
        return self._ray.get(self.actors[0].fingerprint.remote())

    def describe(self) -> dict:
        return dict(self._describe)

    def check_contexts(self, cell_indices: list[int]) -> None:
        self._ray.get([self.actors[0].check_context.remote(i) for i in cell_indices])

    def pids(self) -> list[int]:
        return self._ray.get([a.pid.remote() for a in self.actors])

    def imap(self, shards: list[tuple[int, int, int]], go_on=lambda cell_index: True):
        """Score (cell index, start, stop) shards on the actors, at most one in flight per actor; yield
        ((cell index, start, stop), table, usage) as they finish. ``go_on(cell_index)`` is asked before a
        shard is sent (a stopping rule may close a cell or the run while others are in flight)."""
        ray = self._ray
        queue, idle, flying = deque(shards), list(self.actors), {}
        while queue or flying:
            while idle and queue:
                shard = queue.popleft()
                if not go_on(shard[0]):
                    continue
                worker = idle.pop()
                flying[worker.score.remote(*shard)] = (shard, worker)
            if not flying:
                break
            done, _ = ray.wait(list(flying), num_returns=1)
            shard, worker = flying.pop(done[0])
            table, usage = ray.get(done[0])
            idle.append(worker)
            yield shard, table, usage

    def close(self) -> None:
        for a in self.actors:
            self._ray.kill(a)
        self.actors = []


def start_ray(address: str | None = None):
    """The ray module, connected to ``address`` (a cluster) or to a local instance it starts."""
    try:
        import ray
    except ImportError:
        raise FFBenchError("--executor ray needs Ray: pip install 'ffbench[ray]'") from None
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    return ray


def _apply(fn, item):
    return fn(item)


def run_tasks(fn, items: list, executor: str = "local", workers: int | None = None, address: str | None = None):
    """Run ``fn(item)`` for every item; yield (item, result) as each finishes, in any order.

    ``local``: in this process when ``workers`` is 1, else a pool of ``workers`` spawned processes
    (default: one per CPU). ``ray``: one Ray task per item (one CPU each; a task whose worker dies is
    retried). ``fn`` must be importable (a module-level function) and each item picklable.
    """
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor {executor!r} (use {' or '.join(EXECUTORS)})")
    if executor == "ray":
        ray = start_ray(address)
        remote = ray.remote(num_cpus=1, max_retries=3)(_apply)  # any callable, partials included
        pending = {remote.remote(fn, item): item for item in items}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            yield pending.pop(done[0]), ray.get(done[0])
        return
    workers = workers or max(1, os.cpu_count() or 1)
    if workers == 1:
        for item in items:
            yield item, fn(item)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(fn, item): item for item in items}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()


def check(executor: str, workers: int | None, control) -> None:
    """UsageError for an executor the run cannot use."""
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor {executor!r} (use {' or '.join(EXECUTORS)})")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be a positive integer, got {workers}")
    if executor == "ray" and control is not None and control.max_cost is not None:
        raise UsageError("--max-cost needs --executor local: a budget checked before each shard cannot hold while "
                         "several shards are in flight")
