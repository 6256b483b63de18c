"""Inspect AI tasks: ``inspect eval ffbench/flipflop`` and ``inspect eval ffbench/stress``.

Inspect finds them through the ``inspect_ai`` entry point (``ffbench = ffbench.inspect_tasks._registry``
in pyproject.toml). One Inspect sample is one read: the rendered sequence up to that read's answer,
plus the rendering's question, sent as a user message; :mod:`.reads` builds them (no Inspect import
there, so ``ffbench import`` rebuilds the same reads from a log's task arguments), :mod:`.tasks`
holds the tasks, the per-read scorer and the metrics (glitch rate with its exact interval).
"""
