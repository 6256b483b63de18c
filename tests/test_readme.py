"""The README's and the docs' examples are true and cannot drift from the code.

* The README's examples run: every fenced ``bash`` and ``python`` block, in order, in one empty
  directory, except blocks marked ``<!-- readme-test: skip (REASON) -->`` (GPU, network, keys, or
  the test suite itself); ``pip install`` commands are left to CI (``.ci/run`` runs the README test
  command verbatim, ``scripts/check_wheel.sh`` the main job from the wheel). Key printed lines are
  checked: the main job's counts, the validated file, the tiny model's scoring, lm-eval's table, the
  Python API's cells, the gate's verdict, the stress profile and the hunt.
* Every ``ffbench ...`` line of the README's and the docs' shell examples, and of the docs'
  workflows, parses with the real click CLI (``ffbench.cli.cli.make_context``), so flags cannot drift.
* The step-by-step GitHub Actions gate (docs/ci.md) names only official actions and installs ffbench
  the way a user really can (from its git repository at a pinned ref); the examples that use the
  Action pass only inputs ``action.yml`` declares, and every required one.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from ffbench import cli as ffcli
from tests.conftest import HAS_TORCH

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
CI_DOC = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
DOCS = {p: p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").rglob("*.md"))
        if p.parent.name != "reference"}  # the reference pages are generated from the code
WORKFLOW_MARKER = "# .github/workflows/glitch-gate-steps.yml"
OFFICIAL_ACTIONS = {"actions/checkout@v4", "actions/setup-python@v5", "actions/cache@v4", "actions/upload-artifact@v4"}
SETUP_COMMANDS = [("pip install -e '.[native]' torch==2.13.0 && ffbench run --model ffbench/transformer-ref "
                   "--suite in_dist,dense --num 1000"),
                  "pip install -e '.[test]' && python -m pytest -q"]


def _fenced(lang: str, text: str = README) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.DOTALL)


def _blocks(text: str = README) -> list[tuple[str, str, str | None]]:
    """Every fenced block in order: (language, code, why it is skipped or None)."""
    return [(m.group(2), m.group(3), m.group(1))
            for m in re.finditer(r"(?:<!-- readme-test: skip \((.+?)\) -->\n)?```(\w*)\n(.*?)```", text, re.DOTALL)]


def _workflow(marker: str = WORKFLOW_MARKER) -> dict:
    (block,) = [b for b in _fenced("yaml", CI_DOC) if b.startswith(marker)]
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


def test_every_ffbench_command_in_the_workflows_parses():
    commands = [argv for step in _steps(_workflow()) for argv in _commands(step.get("run", ""))]
    assert [argv[0] for argv in commands] == ["run", "check", "record", "report"]
    for block in _fenced("yaml", CI_DOC):
        for step in _steps(yaml.safe_load(block)) if "jobs:" in block else []:
            commands += _commands(step.get("run", ""))
    for argv in commands:
        _parse(argv)


def _action_uses(text: str) -> list[dict]:
    steps = []
    for block in _fenced("yaml", text):
        doc = yaml.safe_load(block)
        steps += _steps(doc) if isinstance(doc, dict) else doc
    return [step for step in steps if step.get("uses", "").endswith("/ffbench@v1")]


def test_action_examples_pass_only_declared_inputs():
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    declared = set(action["inputs"])
    required = {name for name, spec in action["inputs"].items() if spec.get("required")}
    examples = _action_uses(CI_DOC) + _action_uses(README)
    assert len(examples) == 3  # docs/ci.md: the cloud and the GPU runner; the README
    for step in examples:
        assert required <= set(step["with"]) <= declared, set(step["with"]) - declared
        _parse(["run", "--model", step["with"]["model"], *shlex.split(step["with"].get("run-args", ""))])


def test_every_ffbench_command_in_the_readme_and_docs_shell_examples_parses():
    commands = [argv for text in [README, *DOCS.values()] for block in _fenced("bash", text)
                for argv in _commands(block)]
    assert len(commands) >= 40
    for argv in commands:
        _parse(argv)


def test_parsing_catches_a_drifted_flag():
    with pytest.raises(click.NoSuchOption):
        _parse(["run", "--model", "hf/x", "--no-such-flag"])
    with pytest.raises(click.BadParameter):
        _parse(["run", "--model", "hf/x", "--length", "sixty-four"])


# ----------------------------------------------------------------------------- the README runs
def test_readme_keeps_the_two_setup_commands_and_says_why_it_skips():
    bash = [code.strip() for lang, code, _ in _blocks() if lang == "bash"]
    assert bash[:2] == SETUP_COMMANDS
    skipped = [(lang, why) for lang, _, why in _blocks() if why]
    assert [why for _, why in skipped] == ["the test suite itself", "downloads models; GPU",
                                           "needs a server or an API key", "needs an API key", "output of the command above",
                                           "GitHub Actions YAML", "needs inspect-ai, a model and its logs",
                                           "minutes of training"]
    assert all(lang in ("bash", "python") for lang, _, why in _blocks() if not why)
    assert len(README.encode()) <= 12 * 1024


def _shape(line: str) -> str:
    """A printed line with its numbers (which vary with the sampled answers) and spacing blanked."""
    return " ".join(re.sub(r"\$?[\d][\d.,e+%-]*", "N", line).split())


def test_the_reasoning_models_run_prints_what_the_readme_shows(tmp_path):
    """The README's reasoning-model command, run against the fake reasoning server (answers wrong
    with a known probability per read; it refuses what OpenAI's reasoning models refuse), prints
    the lines the README shows: the cell, its sampled figures and the cost."""
    pytest.importorskip("openai")
    from tests.fault_server import FaultServer

    [command] = [code for lang, code, why in _blocks() if why == "needs an API key"]
    [shown] = [code for lang, code, why in _blocks() if why == "output of the command above"]
    argv = shlex.split(command.replace("\\\n", " "), comments=True)
    assert argv[:4] == ["ffbench", "run", "--model", "openai/o4-mini"] and "--repeats" in argv
    with FaultServer(faults=False, model="o4-mini", reasoning=True, sampled=0.02, sample_seed=7) as srv:
        res = subprocess.run([sys.executable, "-m", "ffbench", *argv[1:], "--base-url", srv.url, "-o", str(tmp_path / "r"),
                              "--no-record", "--no-progress"], capture_output=True, text=True, timeout=300, check=False,
                             env={**os.environ, "OPENAI_API_KEY": "sk-test", "PYTHONPATH": str(ROOT)})
        assert res.returncode == 0, res.stderr
        assert srv.refused == 0  # the request was built the way the provider requires
    printed = [_shape(line) for line in res.stdout.splitlines()]
    for line in shown.strip().splitlines():
        assert _shape(line) in printed, (line, res.stdout)


def _without_installs(code: str) -> str:
    """The block minus its ``pip install ... &&`` prefixes: installing is CI's part (.ci/run)."""
    return re.sub(r"^pip install [^\n]*?&& ", "", code, flags=re.MULTILINE)


@pytest.mark.integration
@pytest.mark.skipif(not HAS_TORCH, reason="the README's examples need torch and transformers (pip install "
                                           "'ffbench[hf]')")
def test_readme_examples_run_in_order(tmp_path):
    pytest.importorskip("lm_eval", reason="the lm-eval example needs lm-eval (pip install 'ffbench[lm-eval]')")
    import pyarrow.parquet as pq

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}  # and nothing may download anyway
    outputs = []
    for lang, code, why in _blocks():
        if why:
            continue
        cmd = (["bash", "-eo", "pipefail", "-c", _without_installs(code)] if lang == "bash"
               else [sys.executable, "-c", code])
        assert "pip install" not in cmd[-1], code
        res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200, check=False)
        assert res.returncode == 0, (code, res.stdout[-3000:], res.stderr[-3000:])
        outputs.append(res.stdout)
    main, data, _tiny, _tiny_run, lm_eval, python, gate, exported, doctor, research, _tasks = outputs
    # the main job: the counts the shipped checkpoint gives on CPU, as the docs quote them
    assert re.search(r"^in_dist +128 +0\.8 +symbolic +choice +1,000 +7,237 +1 ", main, re.MULTILINE), main
    assert re.search(r"^dense +128 +0\.1 +symbolic +choice +1,000 +28,987 +328 ", main, re.MULTILINE), main
    assert re.search(r"^ok: 1,000 sequences of length 64, [\d,]+ reads \([\d.]+ per sequence\); sha256 [0-9a-f]{64}$",
                     data, re.MULTILINE), data
    files = {p.name for p in (tmp_path / "tiny-gpt2").iterdir()}
    assert files >= {"config.json", "model.safetensors", "tokenizer.json"}
    samples = pq.read_table(tmp_path / "runs" / "tiny" / "samples.parquet").to_pandas()
    assert set(samples.render) == {"symbolic", "symbolic_spaced"}
    assert not samples.per_read.any()  # "scored from the one pass", both renderings
    assert 0.3 < samples.correct.mean() < 0.7  # "right on about half the reads" (426 reads: > 5 sd)
    assert re.search(r"^\|fflm_symbolic\|", lm_eval, re.MULTILINE) and "acc_T32" in lm_eval, lm_eval
    assert python.splitlines() == ["  suite  length  reads  errors  glitch_rate",
                                   "in_dist     128   1482       0     0.000000",
                                   "  dense     128   5773      75     0.012992"], python
    assert "PASS: 0 of 2 tests failed at family-wise alpha 0.05 (Holm)" in gate.splitlines(), gate
    assert (tmp_path / "ffbench-junit.xml").exists() and (tmp_path / "report.html").stat().st_size > 10_000
    card = (tmp_path / "ffbench-data" / "README.md").read_text()
    assert "configs:" in card and "in_dist_T64" in card and "stress_T64" in card, card  # the dataset folder
    assert (tmp_path / "ffbench-data" / "data" / "in_dist_T64" / "test.parquet").exists(), exported
    assert "run directory ok" in doctor, doctor  # nothing damaged in the run the Python block wrote
    assert ("distractor_run (density=1.0, write_at=start): at T = 64, reads at position 63 (late): right on every read "
            "up to k = 24 ") in research, research
    assert re.search(r"^hunt of ffbench/transformer-mix at T=128: [\d,]+ distinct glitching sequences", research,
                     re.MULTILINE), research
    # one run per task, each beside its own task's shipped references (none for haystack), never the ffl ones
    page = (tmp_path / "tasks.html").read_text(encoding="utf-8")
    assert 'id="breaks-undo"' in page and 'id="breaks-registers"' in page and 'id="breaks-haystack"' in page
    assert "ffbench/undo-ssm (reference)" in page and "ffbench/registers-ssm (reference)" in page
    assert "ffbench/lstm-ref (reference)" not in page
