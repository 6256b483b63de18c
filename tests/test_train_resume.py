"""Resumable training: a run killed (SIGKILL) or stopped (Ctrl-C) midway and resumed ends with bitwise
the weights of an uninterrupted run; a directory of another configuration is refused; inference
never imports the trainer."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import needs_torch

pytestmark = [needs_torch, pytest.mark.usefixtures("one_thread")]


ROOT = Path(__file__).resolve().parents[1]
STEPS = 150
# A tiny Transformer with every dropout on, so that resuming must restore the random number
# generator as well as the weights and the optimiser's moments.
ARGS = ["train", "--arch", "transformer", "--layers", "1", "--width", "32", "--heads", "2", "--length", "32",
        "--steps", str(STEPS), "--batch-size", "8", "--lr", "3e-3", "--attn-dropout", "0.1", "--mlp-dropout", "0.1",
        "--embd-dropout", "0.1", "--save-every", "5", "--no-progress", "--device", "cpu"]



@pytest.fixture(scope="module")
def uninterrupted(one_thread, tmp_path_factory):
    from ffbench.cli import main

    out = tmp_path_factory.mktemp("whole") / "run"
    main([*ARGS, "--out", str(out)])
    return out


def _saved_step(out: Path) -> int:
    import torch

    return int(torch.load(out / "train_state.pt", weights_only=True)["step"])


def test_sigkill_midway_then_rerun_gives_bitwise_the_uninterrupted_weights(tmp_path, uninterrupted):
    from ffbench.cli import main

    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "ffbench", *ARGS, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    try:
        while not (out / "train_state.pt").is_file() or _saved_step(out) < 50:
            assert proc.poll() is None, f"training ended before it could be killed: {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = _saved_step(out)
    assert 50 <= killed_at < STEPS and not (out / "model.safetensors").exists()
    main([*ARGS, "--out", str(out)])  # the same command resumes
    assert (out / "model.safetensors").read_bytes() == (uninterrupted / "model.safetensors").read_bytes()
    import json

    assert json.loads((out / "metrics.json").read_text())["resumed_at_steps"] == [killed_at]


def test_ctrl_c_saves_a_whole_step_and_exits_130_then_resumes(tmp_path, uninterrupted, monkeypatch, capsys):
    from ffbench.cli import main
    from ffbench.train import trainer

    real_lr_at = trainer.lr_at

    def lr_at(cfg, step):  # Ctrl-C arrives during step 40 (the signal, not an exception)
        if step == 40:
            signal.raise_signal(signal.SIGINT)
        return real_lr_at(cfg, step)

    out = tmp_path / "run"
    monkeypatch.setattr(trainer, "lr_at", lr_at)
    with pytest.raises(SystemExit) as exc:
        main([*ARGS, "--out", str(out)])
    assert exc.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ffbench: interrupted after step 41 of {STEPS}; the training state is saved in {out}: "
                   "rerun the same command to resume"]
    assert _saved_step(out) == 41  # the step under way was finished, not torn
    monkeypatch.setattr(trainer, "lr_at", real_lr_at)
    main([*ARGS, "--out", str(out)])
    assert (out / "model.safetensors").read_bytes() == (uninterrupted / "model.safetensors").read_bytes()


def test_a_directory_of_another_configuration_is_refused_and_a_finished_one_is_left_alone(uninterrupted, capsys):
    from ffbench.cli import main

    before = {p.name: p.stat().st_mtime_ns for p in uninterrupted.iterdir()}
    with pytest.raises(SystemExit) as exc:
        main([*ARGS, "--steps", "200", "--lr", "1e-3", "--out", str(uninterrupted)])  # the last value wins
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a run of another configuration (differs in lr, steps)" in err[0]
    main([*ARGS, "--out", str(uninterrupted)])
    assert "already trained" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in uninterrupted.iterdir()} == before


def test_a_finished_checkpoint_carries_the_state_to_continue_from(uninterrupted):
    import torch

    state = torch.load(uninterrupted / "train_state.pt", weights_only=True)
    assert state["step"] == STEPS and state["config"]["steps"] == STEPS
    assert {"model", "optimizer", "rng", "history"} <= set(state)
    assert len(state["optimizer"]["state"]) == len(state["model"]) - 1  # every parameter (the head is tied)


def _imports(module: str) -> set[str]:
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.is_file():
        path = ROOT / module.replace(".", "/") / "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.startswith("ffbench.") and ((ROOT / (m.replace(".", "/") + ".py")).is_file()
                                                              or (ROOT / m.replace(".", "/")).is_dir())}


def test_inference_never_imports_the_trainer():
    """Every ffbench module reachable by import from the native backend (lazy imports included)."""
    seen, todo = set(), ["ffbench.backends.native"]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(_imports(module))
            parts = module.split(".")
            todo.extend(".".join(parts[:k]) for k in range(2, len(parts)))  # packages run their __init__
    assert "ffbench.train.checkpoint" in seen and "ffbench.train.ssm" in seen
    assert not {"ffbench.train.trainer", "ffbench.train.sweep", "ffbench.train.sharpen"} & seen
