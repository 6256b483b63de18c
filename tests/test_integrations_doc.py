"""docs/integrations.md cannot drift: every ``ffbench`` command in it parses with the real CLI, and
every ``-T`` task parameter of its ``inspect eval`` lines is a parameter of that task."""

from __future__ import annotations

import inspect
import re
import shlex

import pytest

from tests.inspect_logs import needs_inspect
from tests.test_readme import ROOT, _commands, _fenced, _parse

DOC = (ROOT / "docs" / "integrations.md").read_text(encoding="utf-8")


def test_every_ffbench_command_in_the_integrations_doc_parses():
    commands = [argv for block in _fenced("bash", DOC) for argv in _commands(block)]
    assert {argv[0] for argv in commands} == {"export", "import", "check", "report", "record"}
    for argv in commands:
        _parse(argv)


@needs_inspect
def test_inspect_task_parameters_in_the_doc_exist():
    from ffbench.inspect_tasks import tasks

    lines = [line for block in _fenced("bash", DOC) for line in block.splitlines() if line.startswith("inspect eval")]
    assert len(lines) == 5
    for line in lines:
        words = shlex.split(line)
        task = getattr(tasks, words[2].removeprefix("ffbench/"))
        params = [words[k + 1].split("=")[0] for k, w in enumerate(words) if w == "-T"]
        assert params and set(params) <= set(inspect.signature(task).parameters), line
    documented = re.findall(r"`(\w+)`", DOC.split("Task parameters (`-T`):")[1].split("Defaults are")[0])
    for name in documented:
        if name not in ("flipflop", "stress", "undo", "chat", "chat_undo", "chat_registers", "haystack_chat", "in_dist", "sparse", "dense",
                        "stale", "final", "every", "haystack"):
            assert any(name in inspect.signature(t).parameters for t in (tasks.flipflop, tasks.stress, tasks.undo,
                                                                         tasks.registers, tasks.haystack)), name


@pytest.mark.parametrize("group", ["export dataset", "export results", "import"])
def test_the_doc_shows_each_command(group):
    assert f"ffbench {group} " in DOC
