"""Where work runs: in this process or a local process pool (the default), or on Ray.

Two shapes of work share this module, which knows nothing of either: the scoring engine's units
(``ffbench run``'s shards, ``ffbench hunt``'s candidates) go to an :class:`ActorPool` of actors
built by :class:`ffbench.engine.ShardWorker` (each holds a model); ``ffbench sweep``'s training runs
are independent tasks for :func:`run_tasks`.

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


class ActorPool:
    """N Ray actors, each built once by ``worker(*args)`` (a class importable on every node) and kept
    for the pool's life; knows nothing of what the workers do. Actors are restarted when they die,
    and a call in flight on a dead actor is retried on its restart."""

    def __init__(self, worker: type, args: tuple, workers: int, gpus: int = 0, address: str | None = None):
        self._ray = ray = start_ray(address)
        actor = ray.remote(worker).options(num_cpus=1, num_gpus=gpus, max_restarts=-1, max_task_retries=-1)
        self.actors = [actor.remote(*args) for _ in range(workers)]

    def call_first(self, method: str, *args):
        """``method(*args)`` on the first actor, waited for."""
        return self._ray.get(getattr(self.actors[0], method).remote(*args))

    def call_all(self, method: str, *args) -> list:
        """``method(*args)`` on every actor, waited for (the first failure raised)."""
        return self._ray.get([getattr(a, method).remote(*args) for a in self.actors])

    def imap(self, method: str, units: list[tuple], go_on=lambda unit: True):
        """``method(*unit)`` for every unit of work, at most one in flight per actor; yield (unit,
        result) as each finishes. ``go_on(unit)`` is asked before a unit is sent (a stopping rule may
        end the work while other units are in flight)."""
        ray = self._ray
        queue, idle, flying = deque(units), list(self.actors), {}
        while queue or flying:
            while idle and queue:
                unit = queue.popleft()
                if not go_on(unit):
                    continue
                worker = idle.pop()
                flying[getattr(worker, method).remote(*unit)] = (unit, worker)
            if not flying:
                break
            done, _ = ray.wait(list(flying), num_returns=1)
            unit, worker = flying.pop(done[0])
            result = _get(ray, done[0])
            idle.append(worker)
            yield unit, result

    def close(self) -> None:
        for a in self.actors:
            self._ray.kill(a)
        self.actors = []


def _get(ray, ref):
    """``ray.get(ref)``, with a worker's own error raised as itself: an ffbench error keeps its one line and
    exit status, and any other failure inside a worker becomes one line naming it, not Ray's traceback."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, FFBenchError):
            raise cause from None
        what = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc).splitlines()[0]
        raise FFBenchError(f"a Ray worker failed: {what}") from None


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


def check(executor: str, workers: int | None) -> None:
    """UsageError for an executor the run cannot use."""
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor {executor!r} (use {' or '.join(EXECUTORS)})")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be a positive integer, got {workers}")
