"""The release is what a user installs, and the release workflow is tested before a tag needs it.

* One version source: ``ffbench/__init__.py`` feeds the build (hatch), ``ffbench --version`` and
  ``results.json``; CHANGELOG.md has an Unreleased section and one for that version.
* ``.github/workflows/release.yml`` runs on ``v*`` tags, publishes only after the build job and only
  through trusted publishing (an OIDC id-token, no stored password).
* The build job's ``run:`` steps run here, in order, in a copy of the checkout, with the GitHub
  variables they read emulated: they build the sdist and wheel, ``twine check`` them, install the
  wheel into a fresh venv (not editable, nothing shared with this environment) and run the README's
  main job from another directory. Only the ``uses:`` steps (checkout, upload, publish) are not run.
  This takes a minute or two, so it needs ``build`` and ``twine`` installed (CI installs them).
* The tag check fails a tag that does not name the package version.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import ffbench
from tests.conftest import HAS_TORCH

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
VERSION = re.search(r'__version__ = "([^"]+)"', (ROOT / "ffbench" / "__init__.py").read_text()).group(1)
HAS_BUILD_TOOLS = all(importlib.util.find_spec(m) is not None for m in ("build", "twine"))
# A copy of the checkout holds what a fresh clone holds (the build reads the working tree).
NOT_CHECKED_OUT = shutil.ignore_patterns(".git", "__pycache__", ".pytest_cache", ".hypothesis", "dist", "build",
                                         "runs", "site", "*.egg-info", ".venv", ".nox")


def test_one_version_source():
    assert ffbench.__version__ == VERSION
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'path = "ffbench/__init__.py"' in pyproject
    res = subprocess.run([sys.executable, "-m", "ffbench", "--version"], capture_output=True, text=True, timeout=60,
                         check=True)
    assert res.stdout.strip() == f"ffbench, version {VERSION}"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.findall(r"^## (\S+)", changelog, re.MULTILINE)[:2] == ["Unreleased", VERSION]


def test_release_workflow_publishes_tags_after_the_build_with_trusted_publishing():
    assert WORKFLOW[True]["push"]["tags"] == ["v*"]  # YAML 1.1 reads the key `on` as True
    build, publish = WORKFLOW["jobs"]["build"], WORKFLOW["jobs"]["publish"]
    assert publish["needs"] == "build" and publish["permissions"] == {"id-token": "write"}
    assert WORKFLOW["permissions"] == {"contents": "read"}  # only the publish job gets a token
    (upload,) = [s for s in publish["steps"] if s.get("uses", "").startswith("pypa/gh-action-pypi-publish@")]
    assert "with" not in upload  # no password or token: trusted publishing
    assert any(s.get("uses") == "actions/upload-artifact@v4" and s["with"]["path"] == "dist/" for s in build["steps"])
    assert any("scripts/check_wheel.sh dist" in s.get("run", "") for s in build["steps"])


def _run_step(step: dict, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-eo", "pipefail", "-c", step["run"]], cwd=cwd, env={**env, **step.get("env", {})},
                          capture_output=True, text=True, timeout=1200, check=False)


def _github_env(tmp_path: Path, ref_name: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # setup-python's `python`
    return {**env, "GITHUB_REF_NAME": ref_name, "GITHUB_REF": f"refs/tags/{ref_name}", "GITHUB_ACTIONS": "true",
            "RUNNER_TEMP": str(tmp_path)}


def test_the_tag_must_name_the_package_version(tmp_path):
    (check,) = [s for s in WORKFLOW["jobs"]["build"]["steps"] if s.get("name", "").startswith("The tag names")]
    res = _run_step(check, ROOT, _github_env(tmp_path, "v0.0.0-not-it"))
    assert res.returncode == 1
    assert res.stdout.strip() == f"tag v0.0.0-not-it is not v{VERSION} (ffbench/__init__.py)"
    assert _run_step(check, ROOT, _github_env(tmp_path, f"v{VERSION}")).returncode == 0


@pytest.mark.integration
@pytest.mark.skipif(not HAS_BUILD_TOOLS, reason="build and twine not installed (pip install build twine; CI does)")
@pytest.mark.skipif(not HAS_TORCH, reason="the main job needs torch (pip install torch)")
def test_release_build_job_runs_locally(tmp_path):
    import torch

    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT, checkout, ignore=NOT_CHECKED_OUT)
    env = _github_env(tmp_path, f"v{VERSION}")
    ran = []
    for step in WORKFLOW["jobs"]["build"]["steps"]:
        if "run" not in step:
            continue  # checkout, setup-python, upload-artifact: GitHub's own actions
        # the torch this environment has, from where pip finds it here (the runner uses PyTorch's CPU index)
        step = {**step, "env": {k: v for k, v in step.get("env", {}).items() if k != "PIP_EXTRA_INDEX_URL"}}
        if "TORCH_SPEC" in step["env"]:
            step["env"]["TORCH_SPEC"] = f"torch=={torch.__version__}"
        res = _run_step(step, checkout, env)
        assert res.returncode == 0, (step.get("name"), res.stdout[-3000:], res.stderr[-3000:])
        ran.append(res.stdout)
    assert len(ran) == 3
    out = ran[-1]
    assert "Checking" in out and "PASSED" in out and "FAILED" not in out  # twine check, both files
    assert f"ffbench, version {VERSION}" in out and f"results.json: ffbench_version {VERSION}" in out
    assert re.search(r"^in_dist +128 .* 1,000 ", out, re.MULTILINE) and re.search(r"^dense +128 ", out, re.MULTILINE)
    assert sorted(p.name for p in (checkout / "dist").iterdir()) == [f"ffbench-{VERSION}-py3-none-any.whl",
                                                                      f"ffbench-{VERSION}.tar.gz"]
