"""Thin glue for the fflm task YAML files: data generation, rendering and scoring live in ffbench
(ffbench/lmeval.py, which calls ffbench.language and ffbench.render); nothing is re-implemented here."""

from ffbench.lmeval import dataset, parse_generations, process_choice, process_generation

__all__ = ["dataset", "parse_generations", "process_choice", "process_generation"]
