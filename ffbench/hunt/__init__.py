"""``ffbench hunt``: find attention glitches with far fewer reads than i.i.d. tails, and estimate rare
glitch rates by importance sampling.

Modules: :mod:`~ffbench.hunt.descriptors` (exact descriptors of every read: the map's axes),
:mod:`~ffbench.hunt.atlas` (the map search: a MAP-Elites archive and targeted generators),
:mod:`~ffbench.hunt.shrink` (minimal failing shapes), :mod:`~ffbench.hunt.parts` with
:mod:`~ffbench.hunt.taskmap`, :mod:`~ffbench.hunt.task_undo` and :mod:`~ffbench.hunt.task_registers` (the map's
parts of ``--task undo|registers``), :mod:`~ffbench.hunt.families` (generators of legal sequences with readable parameters: the
priors), :mod:`~ffbench.hunt.bandit` (where to spend the next read), :mod:`~ffbench.hunt.mutations`
(local search from near misses), :mod:`~ffbench.hunt.estimator` (importance sampling with a
cross-entropy-adapted proposal), :mod:`~ffbench.hunt.driver` (the resumable loop),
:mod:`~ffbench.hunt.job` (how the engine's workers score candidates, here or on Ray),
:mod:`~ffbench.hunt.huntdir` (the directory's files) and :mod:`~ffbench.hunt.outputs`
(glitches.parquet and hunt.json).

Library use::

    from ffbench import backends
    from ffbench.hunt import HuntConfig, hunt
    summary = hunt(HuntConfig(model="ffbench/transformer-mix", budget=20_000, length=128), "hunts/mix",
                   backends.resolve("ffbench/transformer-mix"))

or, resolving the model as ``ffbench hunt`` does (API models included: ``base_url``/``api_key`` default
to the provider's environment variables, and the hunt directory keeps the response cache)::

    from ffbench.hunt import hunt_model
    summary, out = hunt_model("openai/my-base-model", 5000, "hunts/api", base_url="http://127.0.0.1:8000/v1")
"""

from ffbench.hunt.driver import HuntConfig, hunt, hunt_model, plan

__all__ = ["HuntConfig", "hunt", "hunt_model", "plan"]
