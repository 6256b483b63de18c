"""One scoring engine under ``ffbench run`` and ``ffbench hunt``: a *scorer* takes units of work and
returns each unit's scored rows and the usage they cost, here (one loaded backend) or on Ray actors.

Run and hunt once carried two copies of this loop, and the copies drifted. Now each is a strategy
that only chooses units: a run sends a fixed plan of shards (cell, first sequence, last sequence),
a hunt an adaptive stream of candidate sequences, round after round. What a unit means is the
strategy's *job* (:class:`Job`): an object that scores one unit with a backend, and says how a
worker rebuilds it (:meth:`Job.recipe`, a picklable factory and its arguments), so a Ray actor can
hold the same job beside its own backend. This module knows nothing of either strategy; it loads
the model, runs the job's units one after another or on ``workers`` actors
(:class:`ffbench.executors.ActorPool`) and hands back ``(unit, (rows, usage))`` as they finish.

The driver stays the only writer: workers return rows, never write them. Units are deterministic
(sampling is seeded, each unit scored as one call), so a strategy that cuts its work into the same
units gets the same rows on any executor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from ffbench.backends import ModelRef


class Job(Protocol):
    """What a strategy's workers do: score one unit with a backend, and be rebuilt on a worker."""

    def recipe(self) -> tuple[Callable, tuple]:
        """(factory, args): ``factory(*args)`` builds an equal job in another process (picklable)."""

    def score(self, backend, *unit):
        """The rows of one unit of work."""


def scored(job: Job, backend, unit: tuple):
    """(rows, usage) of one unit: the backend's usage counters across scoring it."""
    before = backend.usage.as_dict()
    rows = job.score(backend, *unit)
    usage = {k: v - before.get(k, 0) for k, v in backend.usage.as_dict().items() if isinstance(v, (int, float))}
    return rows, usage


def start(model: ModelRef, job: Job, executor: str = "local", workers: int | None = None,
          address: str | None = None, echo: Callable[[str], None] = print):
    """Load ``model`` and return a scorer for ``job``'s units: :class:`LocalScorer` or, with
    ``executor`` "ray", :class:`RayScorer` on ``workers`` actors (default 2)."""
    if executor == "ray":
        echo(f"loading {model.spec} on {workers or 2} Ray workers ...")
        return RayScorer(model, job, workers or 2, address)
    echo(f"loading {model.spec} ...")
    return LocalScorer(model.load(), job)


class LocalScorer:
    """The units scored here, one after another, by one loaded backend: the interface of
    :class:`RayScorer` (fingerprint, describe, call, imap, close), so a strategy has one loop
    whatever executes it."""

    workers = 1

    def __init__(self, backend, job: Job):
        self.backend, self.job = backend, job

    def fingerprint(self) -> dict:
        return self.backend.fingerprint()

    def describe(self) -> dict:
        return self.backend.describe()

    def call(self, method: str, *args):
        """``job.method(backend, *args)``: a question only a loaded model answers (a context check,
        token counts)."""
        return getattr(self.job, method)(self.backend, *args)

    def imap(self, units: Iterable[tuple], go_on=lambda unit: True) -> Iterator:
        """(unit, (rows, usage)) of every unit that ``go_on`` lets through, in order."""
        for unit in units:
            if go_on(unit):
                yield unit, scored(self.job, self.backend, unit)

    def close(self) -> None:
        self.backend.close()


class ShardWorker:
    """A Ray actor: one backend and the strategy's job, rebuilt from its recipe; scores units on
    request (:class:`ffbench.executors.ActorPool` runs it)."""

    def __init__(self, spec: str, args: dict, options: dict, recipe: tuple[Callable, tuple]):
        from ffbench import backends

        factory, factory_args = recipe
        self.job = factory(*factory_args)  # the job's usage errors before a model loads
        self.backend = backends.resolve(spec, args, **options).load()

    def pid(self) -> int:
        import os

        return os.getpid()

    def fingerprint(self) -> dict:
        return self.backend.fingerprint()

    def describe(self) -> dict:
        return self.backend.describe()

    def call(self, method: str, *args):
        return getattr(self.job, method)(self.backend, *args)

    def score(self, *unit):
        return scored(self.job, self.backend, unit)

    def close(self) -> None:
        self.backend.close()


class RayScorer:
    """The units scored on ``workers`` Ray actors (``--executor ray``), at most one in flight per
    actor; a killed actor is restarted and its unit in flight scored again."""

    def __init__(self, model: ModelRef, job: Job, workers: int, address: str | None = None):
        from ffbench.executors import ActorPool

        gpus = 1 if str(model.args.get("device", "")).startswith("cuda") else 0
        options = {k: v for k, v in model.options.items() if k != "notify"}  # callbacks stay with the driver
        self.workers = workers
        self.pool = ActorPool(ShardWorker, (model.spec, model.args, options, job.recipe()), workers, gpus, address)
        self.pool.call_all("pid")  # every model loaded (or the first failure raised)
        self._describe = {**self.pool.call_first("describe"), "executor": "ray", "workers": workers}

    def fingerprint(self) -> dict:
        return self.pool.call_first("fingerprint")

    def describe(self) -> dict:
        return dict(self._describe)

    def call(self, method: str, *args):
        return self.pool.call_first("call", method, *args)

    def imap(self, units: Iterable[tuple], go_on=lambda unit: True) -> Iterator:
        """(unit, (rows, usage)) of every unit that ``go_on`` lets through, as the actors finish them."""
        return self.pool.imap("score", list(units), go_on=go_on)

    def close(self) -> None:
        self.pool.close()
