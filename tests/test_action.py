"""The GitHub Action (action.yml) gates a model as a workflow would, run here step by step.

The test is a small composite-action runner: it evaluates each step's ``if:`` (``always()``,
``success()`` by default, ``==`` on inputs, step outputs and outcomes), substitutes the ``${{ }}``
expressions the action uses (inputs with their defaults, ``github.action_path``, ``runner.temp``,
step outputs) into ``env:``, runs ``run:`` steps with bash as GitHub does (``-eo pipefail``), gives
each step a fresh ``$GITHUB_OUTPUT`` file and the job one ``$GITHUB_STEP_SUMMARY``, and resolves the
action's outputs. ``uses:`` steps (the artifact upload) are GitHub's own and are only recorded.

The job's Python is a fresh venv that sees this environment's packages (as a runner with torch
already installed would); the install step installs ffbench from the action's directory into it,
not editable. On the shipped ``ffbench/transformer-ref`` with ``--num 200`` (seconds):

* gated against itself: verdict pass, two p-values equal to ``ffbench check --json``'s, the report
  written, the summary holding check's Markdown table;
* against ``ffbench/transformer-mix`` (75 vs 4 dense errors): verdict fail, one failed test, and the
  job fails in the last step, after the report and the upload;
* against ``ffbench/lstm-ref`` (scored at T = 512, no common cell): verdict error, exit 1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import needs_torch

ROOT = Path(__file__).resolve().parent.parent
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


class Job:
    """One job running the action once: the step outputs, outcomes and files GitHub would keep."""

    def __init__(self, inputs: dict, workspace: Path, venv: Path):
        declared = ACTION["inputs"]
        assert set(inputs) <= set(declared), set(inputs) - set(declared)
        self.inputs = {name: str(inputs.get(name, spec.get("default", ""))) for name, spec in declared.items()}
        assert all(self.inputs[name] for name, spec in declared.items() if spec.get("required"))
        self.workspace, self.temp = workspace, Path(tempfile.mkdtemp(prefix="runner-temp-", dir=workspace.parent))
        self.summary = self.temp / "step_summary.md"
        self.outputs: dict[str, dict[str, str]] = {}
        self.outcomes: dict[str, str] = {}
        self.uses: list[str] = []
        self.log: list[tuple[str, int, str]] = []  # (step name, exit status, stdout + stderr)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "GITHUB_STEP_SUMMARY")}
        self.env = {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}", "GITHUB_ACTIONS": "true",
                    "GITHUB_ACTION_PATH": str(ROOT), "GITHUB_WORKSPACE": str(workspace), "RUNNER_TEMP": str(self.temp),
                    "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
                    "GITHUB_STEP_SUMMARY": str(self.summary), "FFBENCH_REGISTRY": str(self.temp / "registry.sqlite")}

    def value(self, ref: str) -> str:
        parts = ref.split(".")
        if parts[0] == "inputs":
            return self.inputs[parts[1]]
        if ref == "github.action_path":
            return str(ROOT)
        if ref == "runner.temp":
            return str(self.temp)
        if parts[0] == "steps" and parts[2] == "outputs":
            return self.outputs.get(parts[1], {}).get(parts[3], "")
        if parts[0] == "steps" and parts[2] == "outcome":
            return self.outcomes.get(parts[1], "")
        raise AssertionError(f"expression the test runner does not know: {ref}")

    def substitute(self, text: str) -> str:
        return EXPR.sub(lambda m: self.value(m.group(1)), text)

    def condition(self, expr: str | None, failed_before: bool) -> bool:
        expr = EXPR.sub(lambda m: m.group(1), expr or "success()")
        terms = [t.strip() for t in expr.split("&&")]
        if "always()" not in terms and failed_before:
            return False  # GitHub's implicit success()
        for term in terms:
            if term in ("always()", "success()"):
                continue
            ref, literal = re.fullmatch(r"([\w.-]+) == '([^']*)'", term).groups()
            if self.value(ref) != literal:
                return False
        return True

    def run(self) -> int:
        failed = False
        for n, step in enumerate(ACTION["runs"]["steps"]):
            name = step.get("id", f"step{n}")
            if not self.condition(step.get("if"), failed):
                self.outcomes[name] = "skipped"
                continue
            if "uses" in step:
                self.uses.append(self.substitute(step["uses"]))
                continue
            assert "${{" not in step["run"], f"{name}: expressions belong in env:, not in the script"
            output_file = self.temp / f"output-{n}"
            output_file.write_text("")
            env = {**self.env, "GITHUB_OUTPUT": str(output_file),
                   **{k: self.substitute(str(v)) for k, v in step.get("env", {}).items()}}
            res = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                                 cwd=self.workspace, env=env, capture_output=True, text=True, timeout=900, check=False)
            self.log.append((step["name"], res.returncode, res.stdout + res.stderr))
            self.outputs[name] = dict(line.split("=", 1) for line in output_file.read_text().splitlines() if line)
            self.outcomes[name] = "success" if res.returncode == 0 else "failure"
            failed = failed or res.returncode != 0
        return 1 if failed else 0

    def action_outputs(self) -> dict[str, str]:
        return {name: self.substitute(spec["value"]) for name, spec in ACTION["outputs"].items()}


@pytest.fixture(scope="module")
def job_venv(tmp_path_factory):
    """A fresh venv whose python also sees this environment's site-packages through a path file (the
    runner's preinstalled torch and friends), so installing ffbench into it downloads nothing."""
    venv = tmp_path_factory.mktemp("action") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "outer-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return tmp_path_factory.mktemp("workspace")


GATE = {"model": "ffbench/transformer-ref", "suites": "in_dist,dense", "run-args": "--num 200"}


@needs_torch
@pytest.mark.integration
def test_a_passing_gate_installs_ffbench_and_sets_outputs(job_venv, workspace):
    job = Job({**GATE, "baseline": "ffbench/transformer-ref"}, workspace, job_venv)
    assert job.run() == 0, job.log
    install_log = job.log[0][2]
    assert "installing ffbench[native] from" in install_log and "ffbench, version" in install_log
    ffbench_file = subprocess.run([str(job_venv / "bin" / "python"), "-c", "import ffbench; print(ffbench.__file__)"],
                                  capture_output=True, text=True, check=True, cwd=workspace, env=job.env).stdout
    assert ffbench_file.startswith(str(job_venv))  # the action's ffbench, installed, not this checkout
    out = job.action_outputs()
    assert out["verdict"] == "pass" and out["failed-tests"] == "0"
    p_values = json.loads(out["p-values"])
    assert set(p_values) == {"in_dist T=128 p=0.8 symbolic choice [regression]",
                             "dense T=128 p=0.1 symbolic choice [regression]"}
    verdict = json.loads((job.temp / "ffbench-verdict.json").read_text())
    assert p_values == {t["name"]: t["p_value"] for t in verdict["tests"]}
    assert float(out["min-p-value"]) == pytest.approx(min(p_values.values()), rel=1e-5)
    assert out["report"] == "ffbench-report.html" and (workspace / out["report"]).stat().st_size > 10_000
    assert out["run-dir"] == "ffbench-run" and (workspace / "ffbench-run" / "results.json").exists()
    assert (workspace / out["junit"]).read_text().count("<testcase") == 2
    summary = job.summary.read_text()
    assert summary.startswith("### ffbench check: PASS\n") and "| dense T=128 p=0.1 symbolic choice |" in summary
    assert "Report: `ffbench-report.html`" in summary
    assert job.uses == ["actions/upload-artifact@v4"]
    assert job.outcomes["gate"] == "success" and job.outcomes["report"] == "success"


@needs_torch
@pytest.mark.integration
def test_a_failing_gate_fails_the_job_after_report_and_upload(job_venv, workspace):
    job = Job({**GATE, "baseline": "ffbench/transformer-mix", "install": "false"}, workspace, job_venv)
    assert job.run() == 1
    out = job.action_outputs()
    assert out["verdict"] == "fail" and out["failed-tests"] == "1"
    assert json.loads(out["p-values"])["dense T=128 p=0.1 symbolic choice [regression]"] < 1e-50
    assert [name for name, code, _ in job.log if code] == ["Fail on a failing gate"]
    assert job.log[-1][2].strip() == "ffbench gate: fail (ffbench check exit 1)"
    assert job.outcomes["report"] == "success" and job.uses == ["actions/upload-artifact@v4"]
    assert job.summary.read_text().startswith("### ffbench check: FAIL (1 of 2 tests)\n")


@needs_torch
@pytest.mark.integration
def test_a_gate_that_cannot_compare_is_an_error(job_venv, workspace):
    job = Job({**GATE, "baseline": "ffbench/lstm-ref", "install": "false", "upload": "false"}, workspace, job_venv)
    assert job.run() == 1
    assert job.action_outputs()["verdict"] == "error"
    assert "nothing to compare" in {n: log for n, _, log in job.log}["Gate against the baseline (ffbench check)"]
    assert job.log[-1][2].strip() == "ffbench gate: error (ffbench check exit 2)"
    assert job.summary.read_text().startswith("### ffbench check: ERROR (exit 2; see the job log)")
    assert job.uses == []
