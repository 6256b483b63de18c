"""Which map parts a hunt uses: ``ffl``'s own modules, or a task's (:mod:`ffbench.hunt.taskmap`)."""

from __future__ import annotations

from ffbench import tasks
from ffbench.errors import UsageError
from ffbench.hunt import atlas, descriptors, shrink, task_registers, task_undo
from ffbench.hunt.taskmap import MapParts, UnitMoves

TASK_MODULES = {"undo": task_undo, "registers": task_registers}
# Why a task has no hunt, in the one line that refuses it.
REFUSED = {"haystack": "ffbench hunt --task haystack is not available: a haystack is ffl's flip-flops rendered as "
                       "story text, and the shipped ffbench/ models read only the symbolic rendering (hunt their "
                       "flip-flops with --task ffl; measure a language model on the haystack with 'ffbench run "
                       "--task haystack')"}


def for_task(name: str | None) -> MapParts:
    """The map parts of a task (None: ffl); a task the hunt is not wired into is refused in one line."""
    task = tasks.get(name)
    if task.name == "ffl":
        return MapParts(task, descriptors.MAP_DIMENSIONS, atlas.COVER_AXES, descriptors.describe, atlas.candidate,
                        None, shrink.contains, shrink.shape, lines=True)
    if task.name in REFUSED:
        raise UsageError(REFUSED[task.name])
    task.requires("hunt", "ffbench hunt")
    mod = TASK_MODULES[task.name]
    moves = UnitMoves(task, mod.repair)
    return MapParts(task, mod.MAP_DIMENSIONS, mod.COVER_AXES, mod.describe, mod.candidate, moves, moves.contains,
                    mod.shape)
