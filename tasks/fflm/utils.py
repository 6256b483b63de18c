"""Thin glue for the fflm task YAML files: data generation, rendering and scoring live in ffbench
(ffbench/lmeval.py, which calls ffbench.language, ffbench.stress and ffbench.render); nothing is
re-implemented here.

lm-eval imports this file only when it resolves an fflm task's YAML, i.e. when an fflm task is
about to be built, which is the moment to install fflm's log filter: lm-eval logs its generic
``custom_dataset`` hint before it calls :func:`dataset`. Importing ``ffbench.lmeval`` alone
installs nothing.
"""

from ffbench.lmeval import (
    dataset,
    install_task_hooks,
    parse_generations,
    process_choice,
    process_generation,
    process_stress_choice,
    stress_dataset,
)

install_task_hooks()

__all__ = ["dataset", "parse_generations", "process_choice", "process_generation", "process_stress_choice",
           "stress_dataset"]
