"""Which map parts a hunt uses: ``ffl``'s own modules, or a task's (:mod:`ffbench.hunt.taskmap`)."""

from __future__ import annotations

from ffbench import tasks
from ffbench.hunt import atlas, descriptors, shrink, task_registers, task_undo
from ffbench.hunt.taskmap import MapParts, UnitMoves

TASK_MODULES = {"undo": task_undo, "registers": task_registers}
# Tasks whose language is the flip-flop language itself: their hunt is ffl's map, in the task's rendering
# (haystack: ffl's ignores told as story sentences, for a model that reads the story, ffbench/haystack-lstm).
FLIPFLOP_TASKS = ("ffl", "haystack")


def for_task(name: str | None) -> MapParts:
    """The map parts of a task (None: ffl); a task the hunt is not wired into is refused in one line."""
    task = tasks.get(name)
    if task.name in FLIPFLOP_TASKS:
        return MapParts(task, descriptors.MAP_DIMENSIONS, atlas.COVER_AXES, descriptors.describe, atlas.candidate,
                        None, shrink.contains, shrink.shape, lines=task.name == "ffl", flipflop=True)
    task.requires("hunt", "ffbench hunt")
    mod = TASK_MODULES[task.name]
    moves = UnitMoves(task, mod.repair)
    return MapParts(task, mod.MAP_DIMENSIONS, mod.COVER_AXES, mod.describe, mod.candidate, moves, moves.contains,
                    mod.shape)
