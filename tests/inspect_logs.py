"""Real Inspect AI evaluations of the ffbench tasks, run once per test session and shared by the
task tests and the import tests (Inspect takes seconds to start). Offline throughout: a mockllm
model whose replies are computed from the prompt, and the fake OpenAI server through Inspect's
``openai-api`` provider, the task found by its registry name through the entry point."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.fault_server import MODEL, FaultServer, chat_sequence, oracle_bit

ROOT = Path(__file__).resolve().parents[1]
HAS_INSPECT = importlib.util.find_spec("inspect_ai") is not None
needs_inspect = pytest.mark.skipif(not HAS_INSPECT, reason="inspect-ai is not installed (pip install 'ffbench[inspect]')")
GLITCH_AFTER = 3  # the mock model is wrong exactly on reads whose write distance exceeds this
MOCK_ARGS = {"suite": "in_dist", "length": 24, "num": 6}
SERVED_ARGS = {"suite": "dense", "length": 16, "num": 8}
STRESS_ARGS = {"length": 16, "num": 1}


def glitching_reply(input, tools, tool_choice, config):
    """mockllm's reply: the last written bit, flipped when the read is more than GLITCH_AFTER
    instructions after its write; "no idea" when the sequence ends in a read right after a write."""
    from inspect_ai.model import ModelOutput, ModelUsage

    seq = chat_sequence(input[-1].text)
    distance = (len(seq) - seq.rfind("w")) // 2
    bit = int(oracle_bit(seq))
    text = "no idea" if distance == 1 and bit == 1 else f"The answer is {bit if distance <= GLITCH_AFTER else 1 - bit}."
    out = ModelOutput.from_content("mockllm", text)
    out.usage = ModelUsage(input_tokens=len(seq), output_tokens=5, total_tokens=len(seq) + 5)  # no tiktoken download
    return out


def oracle_reply(input, tools, tool_choice, config):
    """mockllm's reply when it never glitches: the last written bit."""
    from inspect_ai.model import ModelOutput, ModelUsage

    seq = chat_sequence(input[-1].text)
    out = ModelOutput.from_content("mockllm", f"The answer is {oracle_bit(seq)}.")
    out.usage = ModelUsage(input_tokens=len(seq), output_tokens=5, total_tokens=len(seq) + 5)
    return out


def _mock_eval(tmp_path_factory, reply, task="ffbench/flipflop", args=MOCK_ARGS):
    """An in-process ``inspect_ai.eval`` of ffbench/flipflop (by registry name) with mockllm/model."""
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import get_model

    import ffbench.inspect_tasks._registry  # noqa: F401  (what the entry point imports)

    (log,) = inspect_eval(task, task_args=args, display="none",
                          model=get_model("mockllm/model", custom_outputs=reply),
                          log_dir=str(tmp_path_factory.mktemp("inspect-mock")))
    assert log.status == "success", log.error
    return log


@pytest.fixture(scope="session")
def mock_log(tmp_path_factory):
    """mockllm glitching on reads far from their write (:func:`glitching_reply`)."""
    return _mock_eval(tmp_path_factory, glitching_reply)


@pytest.fixture(scope="session")
def stress_log(tmp_path_factory):
    """ffbench/stress with the glitching mockllm."""
    return _mock_eval(tmp_path_factory, glitching_reply, "ffbench/stress", STRESS_ARGS)


@pytest.fixture(scope="session")
def oracle_log(tmp_path_factory):
    """mockllm never glitching, on the same reads."""
    return _mock_eval(tmp_path_factory, oracle_reply)


def entry_point_site(tmp: Path) -> Path:
    """A site directory whose dist-info declares pyproject.toml's ``inspect_ai`` entry points, as pip
    would install them (the venv's ffbench may be an editable install of another checkout)."""
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["inspect_ai"]
    info = tmp / "site-packages" / "ffbench_entry_points-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ffbench-entry-points\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[inspect_ai]\n" + "".join(f"{k} = {v}\n" for k, v in table.items()))
    return info.parent


@pytest.fixture(scope="session")
def served_log(tmp_path_factory):
    """``inspect eval ffbench/flipflop`` on the command line, against the fake OpenAI server through
    Inspect's openai-api provider: returns (log, the prompts the server answered with no bit)."""
    from inspect_ai.log import list_eval_logs, read_eval_log

    tmp = tmp_path_factory.mktemp("inspect-served")
    site = entry_point_site(tmp)
    with FaultServer(faults=False, variants=True) as srv:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)]), "FAKE_BASE_URL": srv.url,
               "FAKE_API_KEY": "test", "INSPECT_LOG_DIR": str(tmp / "logs"), "HF_HUB_OFFLINE": "1"}
        args = [sys.executable, "-m", "inspect_ai", "eval", "ffbench/flipflop", "--model", f"openai-api/fake/{MODEL}",
                "--display", "none", "--max-retries", "2"]
        for k, v in SERVED_ARGS.items():
            args += ["-T", f"{k}={v}"]
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, cwd=tmp)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    (info,) = list_eval_logs(str(tmp / "logs"))
    return read_eval_log(info)
