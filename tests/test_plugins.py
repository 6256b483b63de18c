"""Third-party providers register through the ``ffbench.backends`` entry point group, without
editing ffbench: a package on the path with an entry point is a provider for ``ffbench run``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ffbench.backends.base import Backend

BACKEND = '''
import numpy as np
from ffbench.backends.base import Backend, Capabilities, SpanScores


class OracleBackend(Backend):
    """Knows the rule of the game: the answer is the last written bit before the span."""

    provider = "oracle"
    capabilities = Capabilities(dense=True)
    requires = REQUIRES

    def score_dense(self, requests):
        out = []
        for r in requests:
            lp = np.full((len(r.spans), len(r.choices)), -10.0)
            for k, (start, _) in enumerate(r.spans.tolist()):
                bit = int(r.text[r.text.rfind("w", 0, start) + 1])
                lp[k, bit] = 0.0
            out.append(SpanScores(lp, lp.argmax(axis=1)))
        return out
'''


def _plugin(root: Path, requires: str = "()") -> dict:
    """A package ``ffb_oracle`` with its distribution metadata and entry point, on PYTHONPATH."""
    pkg = root / "ffb_oracle"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(BACKEND).replace("REQUIRES", requires))
    info = root / "ffb_oracle-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ffb-oracle\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ffbench.backends]\noracle = ffb_oracle:OracleBackend\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}


def _ffbench(env, *args):
    return subprocess.run([sys.executable, "-m", "ffbench", *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=120)


def test_a_provider_from_an_entry_point_runs(tmp_path):
    env = _plugin(tmp_path / "site")
    res = _ffbench(env, "run", "--model", "oracle/any", "--suite", "in_dist,dense", "--length", 32, "--num", 20,
                   "--output-dir", tmp_path / "r", "--no-record")
    assert res.returncode == 0, res.stderr
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["model"] == "oracle/any" and results["backend"]["provider"] == "oracle"
    assert [c["errors"] for c in results["results"]] == [0, 0] and all(c["reads"] > 20 for c in results["results"])
    assert results["fingerprint"]["model"]["kind"] == "name"  # a plugin that says nothing is fingerprinted by name
    unknown = _ffbench(env, "run", "--model", "nope/any", "--output-dir", tmp_path / "x")
    assert unknown.returncode == 2 and "(known: hf, vllm, openai, anthropic, ffbench, oracle)" in unknown.stderr


def test_a_provider_missing_its_package_says_what_to_install(tmp_path):
    env = _plugin(tmp_path / "site", requires='(("ffb-nonexistent-sdk", "1.2"),)')
    res = _ffbench(env, "run", "--model", "oracle/any", "--suite", "in_dist", "--length", 32, "--num", 2,
                   "--output-dir", tmp_path / "r", "--no-record")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == ("ffbench: error: provider 'oracle' needs ffb-nonexistent-sdk>=1.2, "
                                                   "which is not installed")
    assert not (tmp_path / "r").exists()


def test_a_plugin_with_the_former_class_flags_still_works_and_is_warned():
    """Capabilities replaced eight class flags; a plugin written against them keeps its meaning."""
    from ffbench.backends.base import Capabilities

    with pytest.warns(DeprecationWarning, match=r"Old: the class flags supports_dense, takes_sampling are replaced"):
        class Old(Backend):
            provider = "old"
            supports_dense = True
            takes_sampling = True

    assert Old.capabilities == Capabilities(dense=True, sampling=True)
    assert Backend.capabilities == Capabilities()  # the base class is untouched
    assert Old.serving("m", {}).dense and not Old.serving("m", {}).chat
