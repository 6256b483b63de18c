"""Checkpoints on disk: what inference loads, and what a training run resumes from.

A checkpoint directory holds

- ``model.safetensors``: the weights in float32 (a tied output head is stored once, as the
  embedding);
- ``config.json``: ``{"ffbench_model": ModelConfig}``, all that is needed to rebuild the model;
- ``train_config.json`` and ``metrics.json``: the recipe that trained it and what it measured;
- ``train_state.pt`` (while training, and after it unless removed): the training state, i.e. the
  weights, the optimiser's moments, the step reached, the random number generators' states and
  the history so far. ``ffbench train`` rewrites it atomically every few steps and on Ctrl-C, and
  resumes from it, which is why the resumed run ends bitwise equal to an uninterrupted one.

Inference (the native backend, the report) imports this module and the model, never the trainer.
Every file is written to a temporary name and renamed into place, so a process killed at any
moment leaves either the previous complete file or the new one.
"""

from __future__ import annotations

import json
from pathlib import Path

from ffbench.io import atomic_path
from ffbench.errors import FFBenchError
from ffbench.io import write_json
from ffbench.train.model import ModelConfig, build

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TRAIN_CONFIG_FILE = "train_config.json"
METRICS_FILE = "metrics.json"
STATE_FILE = "train_state.pt"


def _tied_head(model) -> bool:
    head, emb = getattr(model, "lm_head", None), getattr(model, "wte", None)
    return head is not None and emb is not None and head.weight is emb.weight


def save_checkpoint(model, model_cfg: ModelConfig, out: str | Path, train_config: dict | None = None,
                    metrics: dict | None = None) -> Path:
    """Write the weights, ``config.json`` and, when given, ``train_config.json`` and ``metrics.json``."""
    import torch
    from safetensors.torch import save_file

    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    skip = {"lm_head.weight"} if _tied_head(model) else set()
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()
             if k not in skip}
    with atomic_path(path / MODEL_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "ffbench"})
    write_json(path / CONFIG_FILE, {"ffbench_model": model_cfg.as_dict()})
    if train_config is not None:
        write_json(path / TRAIN_CONFIG_FILE, train_config)
    if metrics is not None:
        write_json(path / METRICS_FILE, metrics)
    return path


def read_model_config(path: str | Path) -> ModelConfig:
    """The :class:`ModelConfig` of a checkpoint directory (no torch needed)."""
    path = Path(path)
    cfg_file = path / CONFIG_FILE
    if not cfg_file.is_file() or not (path / MODEL_FILE).is_file():
        raise FFBenchError(f"{str(path)!r} is not an ffbench checkpoint (needs {CONFIG_FILE} and {MODEL_FILE})")
    raw = json.loads(cfg_file.read_text())
    if "ffbench_model" not in raw:
        raise FFBenchError(f"{str(path)!r} holds no ffbench model config (for Hugging Face models use hf/)")
    fields = set(ModelConfig.__dataclass_fields__)
    unknown = sorted(set(raw["ffbench_model"]) - fields)
    if unknown:
        raise FFBenchError(f"{str(path)!r} has model settings this ffbench does not know: {', '.join(unknown)} "
                           "(written by a newer version?)")
    return ModelConfig(**raw["ffbench_model"])


def load_checkpoint(path: str | Path, device: str = "cpu"):
    """(model in eval mode on ``device``, its :class:`ModelConfig`) from a checkpoint directory."""
    from safetensors.torch import load_file

    mcfg = read_model_config(path)
    model = build(mcfg)
    state = load_file(str(Path(path) / MODEL_FILE))
    if _tied_head(model):
        state["lm_head.weight"] = state["wte.weight"]
    model.load_state_dict(state)
    return model.to(device).eval(), mcfg


def save_train_state(out: str | Path, state: dict) -> None:
    """Atomically (re)write the training state of the run in ``out``."""
    import torch

    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    with atomic_path(path / STATE_FILE) as tmp:
        torch.save(state, tmp)


def load_train_state(out: str | Path) -> dict | None:
    """The training state saved in ``out``, or None when there is none."""
    import torch

    path = Path(out) / STATE_FILE
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise FFBenchError(f"cannot read the training state {str(path)!r} ({type(exc).__name__}); "
                           "delete it to start the run again") from None
