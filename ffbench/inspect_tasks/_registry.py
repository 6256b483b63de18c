"""Inspect's entry point (``[project.entry-points.inspect_ai] ffbench``): importing registers the tasks,
the scorer and the metrics under ``ffbench/``."""

from ffbench.inspect_tasks.tasks import (flipflop, flipflop_read, glitch_rate, glitch_rate_ci_high,  # noqa: F401
                                         glitch_rate_ci_low, haystack, invalid_rate, registers, stress, undo)
