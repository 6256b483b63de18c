"""The README's examples are true and cannot drift from the code.

* The GitHub Actions release gate names only official actions, installs ffbench the way a user
  really can (from its git repository at a pinned ref: ffbench is not on PyPI), and every
  ``ffbench ...`` command in it, like every ``ffbench ...`` line of the README's shell examples,
  parses with the real click CLI (``ffbench.cli.cli.make_context``), so flags cannot drift.
* The "What an ``hf/`` model needs" example builds its tiny model and scores it as printed.
* The data example validates the file it just generated.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from ffbench import cli as ffcli
from tests.conftest import needs_torch

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
WORKFLOW_MARKER = "# .github/workflows/glitch-gate.yml"
OFFICIAL_ACTIONS = {"actions/checkout@v4", "actions/setup-python@v5", "actions/cache@v4", "actions/upload-artifact@v4"}


def _fenced(lang: str, text: str = README) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.DOTALL)


def _section(heading: str) -> str:
    start = README.index(heading)
    end = README.find("\n## ", start + len(heading))
    return README[start:] if end < 0 else README[start:end]


def _workflow() -> dict:
    (block,) = [b for b in _fenced("yaml") if b.startswith(WORKFLOW_MARKER)]
    return yaml.safe_load(block)


def _steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def _commands(script: str) -> list[list[str]]:
    """Every ``ffbench ...`` command of a shell script, as argv after ``ffbench`` (GitHub
    expressions ``${{ ... }}`` stand in as a plain word)."""
    script = re.sub(r"\$\{\{.*?\}\}", "EXPR", script.replace("\\\n", " "))
    out = []
    for line in script.splitlines():
        for part in re.split(r"&&|\|\||;", line):
            words = shlex.split(part, comments=True)
            if words and words[0] == "ffbench":
                out.append(words[1:])
    return out


def _parse(argv: list[str]) -> click.Context:
    """Parse like ``ffbench ARGV`` would, running option callbacks but not the command."""
    ctx = ffcli.cli.make_context("ffbench", list(argv))
    name, command, rest = ffcli.cli.resolve_command(ctx, list(argv))
    assert command is not None, argv
    return command.make_context(name, rest, parent=ctx)


# ----------------------------------------------------------------------------- the CI workflow
def test_workflow_is_a_github_workflow_of_official_actions():
    workflow = _workflow()
    assert set(workflow) == {"name", True, "jobs"}  # PyYAML reads the key `on` as True
    for job in workflow["jobs"].values():
        assert job["runs-on"] == "ubuntu-latest" and job["steps"]
    steps = _steps(workflow)
    for step in steps:
        assert ("run" in step) != ("uses" in step), step  # exactly one of the two
    used = {step["uses"] for step in steps if "uses" in step}
    assert used <= OFFICIAL_ACTIONS, used - OFFICIAL_ACTIONS
    assert "actions/checkout@v4" in used


def test_workflow_installs_ffbench_from_a_pinned_git_ref():
    from packaging.requirements import Requirement

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    workflow = _workflow()
    env = {k: str(v) for job in workflow["jobs"].values() for k, v in job.get("env", {}).items()}
    installs = [line for step in _steps(workflow) for line in step.get("run", "").splitlines()
                if line.startswith("pip install")]
    ours = [line for line in installs if "ffbench" in line]
    assert len(ours) == 1, installs
    (spec,) = shlex.split(ours[0])[2:]
    spec = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], spec)
    req = Requirement(spec)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert req.name == "ffbench" and req.extras <= set(extras), spec
    assert req.url, f"{spec}: from the package index, where ffbench is not published"
    url, _, ref = req.url.rpartition("@")
    assert url.startswith("git+https://") and ref == env["FFBENCH_REF"] and ref, spec  # pinned, never the index


def test_every_ffbench_command_in_the_workflow_parses():
    commands = [argv for step in _steps(_workflow()) for argv in _commands(step.get("run", ""))]
    assert [argv[0] for argv in commands] == ["run", "check", "record", "report"]
    for argv in commands:
        _parse(argv)


def test_every_ffbench_command_in_the_readme_shell_examples_parses():
    commands = [argv for block in _fenced("bash") for argv in _commands(block)]
    assert len(commands) >= 15
    for argv in commands:
        _parse(argv)


def test_parsing_catches_a_drifted_flag():
    with pytest.raises(click.NoSuchOption):
        _parse(["run", "--model", "hf/x", "--no-such-flag"])
    with pytest.raises(click.BadParameter):
        _parse(["run", "--model", "hf/x", "--length", "sixty-four"])


# ----------------------------------------------------------------------------- worked examples
@needs_torch
def test_hf_worked_example_builds_and_scores_a_tiny_model(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    section = _section("### What an `hf/` model needs")
    (code,) = _fenced("python", section)
    (script,) = _fenced("bash", section)
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=False, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert {p.name for p in (tmp_path / "tiny-gpt2").iterdir()} >= {"config.json", "model.safetensors",
                                                                   "tokenizer.json"}
    monkeypatch.chdir(tmp_path)
    ((*argv,),) = _commands(script)
    ffcli.main([*argv, "--no-record", "--no-progress"])
    samples = pq.read_table(tmp_path / "runs" / "tiny" / "samples.parquet").to_pandas()
    assert set(samples.render) == {"symbolic", "symbolic_spaced"}
    assert not samples.per_read.any()  # "scored from the one pass", both renderings
    assert 0.3 < samples.correct.mean() < 0.7  # "right on about half the reads" (426 reads: > 5 sd)


def test_data_example_validates_the_file_it_just_made(tmp_path, monkeypatch, capsys):
    section = _section("## Data")
    script = _fenced("bash", section)[0]
    monkeypatch.chdir(tmp_path)
    commands = _commands(script)
    assert [argv[0] for argv in commands] == ["generate", "validate"]
    for argv in commands:
        ffcli.main(argv)
    last = capsys.readouterr().out.splitlines()[-1]
    assert re.fullmatch(r"ok: 1,000 sequences of length 64, [\d,]+ reads \([\d.]+ per sequence\); sha256 [0-9a-f]{64}",
                        last), last
