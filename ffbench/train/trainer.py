"""Training on fresh flip-flop batches with the paper's optimiser, and checkpoints.

Every step draws a new batch from ffbench's generator (FFL(p), or the equal-parts mixture of
several FFL(p) for the paper's long-tail remedy, ``--train-mix 0.9,0.98,0.1``). The data stream
depends only on ``data_seed`` and the initial weights only on ``init_seed``, so the two sources of
run-to-run variation the paper separates can be varied independently.

Optimiser (PAPER_NOTES.md): AdamW (0.9, 0.999), lr 3e-4, weight decay 0.1, 50 warm-up steps, then
linear decay reaching 0 at step ``steps + 1``. ``clean`` mode puts the loss only on the
deterministic tokens (the bit after each ``r``); ``generative`` on every next token.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ffbench import language
from ffbench.errors import FFBenchError
from ffbench.train import sharpen
from ffbench.train.model import STOI, ModelConfig, build, count_parameters, encode_array

R_ID, ZERO_ID = STOI["r"], STOI["0"]


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    length: int = 512
    train_mix: list[float] = field(default_factory=lambda: [0.8])  # p_ignore of each FFL component
    steps: int = 10_000
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    warmup: int = 50
    mode: str = "clean"
    sharpen: str = "none"
    sharpen_coef: float = 0.0
    sharpen_schedule: str = "constant"
    sharpen_start: int = 0
    data_seed: int = 0
    init_seed: int = 0
    device: str = "auto"
    bf16: bool = True  # autocast on CUDA only
    compile: bool = False
    eval_every: int = 250
    eval_num: int = 200

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["model"] = ModelConfig(**d.get("model", {}))
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)


# Paper defaults per architecture (PAPER_NOTES.md): the canonical 6 x 512 x 8 Transformer for
# 10,000 steps, the 1 x 128 LSTM for 500 steps.
PAPER_DEFAULTS = {
    "transformer": dict(model=dict(arch="transformer", n_layer=6, d_model=512, n_head=8), steps=10_000),
    "lstm": dict(model=dict(arch="lstm", n_layer=1, hidden=128), steps=500),
}


def paper_config(arch: str, **overrides) -> TrainConfig:
    if arch not in PAPER_DEFAULTS:
        raise FFBenchError(f"arch must be transformer or lstm, got {arch!r}")
    base = json.loads(json.dumps(PAPER_DEFAULTS[arch]))
    model_over = overrides.pop("model", {})
    base["model"].update(model_over)
    base.update(overrides)
    return TrainConfig.from_dict(base)


def validate_config(cfg: TrainConfig) -> None:
    if cfg.mode not in ("clean", "generative"):
        raise FFBenchError(f"mode must be clean or generative, got {cfg.mode!r}")
    if cfg.steps <= 0 or cfg.batch_size <= 0:
        raise FFBenchError(f"steps and batch size must be positive, got {cfg.steps} and {cfg.batch_size}")
    for p in cfg.train_mix:
        language.FFL.from_p_ignore(p, cfg.length)  # validates p and T
    if cfg.length > cfg.model.max_len and cfg.model.arch == "transformer":
        raise FFBenchError(f"length {cfg.length} exceeds the model's max_len {cfg.model.max_len}")
    if cfg.sharpen != "none" and cfg.model.arch != "transformer":
        raise FFBenchError("attention-sharpening losses need --arch transformer")
    sharpen.coefficient(0, cfg.steps, cfg.sharpen_coef, cfg.sharpen_schedule, cfg.sharpen_start)


def batch(cfg: TrainConfig, step: int) -> np.ndarray:
    """The fresh batch of ``step``: components of the mixture in equal parts, deterministic."""
    k = len(cfg.train_mix)
    parts = []
    for j, p in enumerate(cfg.train_mix):
        n = cfg.batch_size // k + (1 if j < cfg.batch_size % k else 0)
        if n:
            seed = (cfg.data_seed * 1_000_003 + step) * 16 + j
            parts.append(language.sample(language.FFL.from_p_ignore(p, cfg.length), n, seed))
    return np.concatenate(parts)


def lr_at(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    return cfg.lr * max(0.0, (cfg.steps + 1 - step) / (cfg.steps + 1 - cfg.warmup))


def loss_fn(logits: torch.Tensor, idx: torch.Tensor, mode: str) -> torch.Tensor:
    """Next-token cross-entropy; in clean mode only where the current token is ``r``."""
    pred, target = logits[:, :-1], idx[:, 1:]
    if mode == "clean":
        mask = idx[:, :-1] == R_ID
        return F.cross_entropy(pred[mask].float(), target[mask])
    return F.cross_entropy(pred.reshape(-1, pred.shape[-1]).float(), target.reshape(-1))


@torch.no_grad()
def read_predictions(model, idx: torch.Tensor, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Per read (row-major order): log p('0') - log p('1'), and the greedy (argmax) token id."""
    margins, greedy = [], []
    model.eval()
    device = next(model.parameters()).device
    for start in range(0, idx.shape[0], batch_size):
        chunk = idx[start : start + batch_size].to(device)
        logits, _ = model(chunk)
        mask = chunk == R_ID
        lp = logits[mask].float().log_softmax(-1)
        margins.append((lp[:, ZERO_ID] - lp[:, ZERO_ID + 1]).cpu().numpy())
        greedy.append(lp.argmax(-1).cpu().numpy())
    return np.concatenate(margins), np.concatenate(greedy)


def wrong_reads(margin: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Choice scoring from log p('0') - log p('1'): strict, a tie is wrong (as in ffbench run)."""
    return np.where(target == 0, margin <= 0, margin >= 0)


def evaluate(model, arr: np.ndarray) -> dict:
    """Read accuracy (choice between 0 and 1) on an (N, T) array of sequences."""
    reads = language.extract_reads(arr)
    margin, _ = read_predictions(model, encode_array(arr))
    errors = int(wrong_reads(margin, reads.target).sum())
    return {"reads": len(reads), "errors": errors, "accuracy": 1 - errors / max(1, len(reads))}


def evaluate_suite(model, suite: language.Suite, length: int | None = None, num: int | None = None,
                   chunk: int = 2048) -> dict:
    """Errors on a preset suite, streamed in chunks (the sparse suite is 51M tokens at T = 512)."""
    dist = suite.distribution(length)
    reads = errors = 0
    wrong_distances: list[int] = []
    for arr in language.iter_sample(dist, num or suite.num, suite.seed, chunk_rows=chunk):
        r = language.extract_reads(arr)
        margin, _ = read_predictions(model, encode_array(arr), batch_size=256)
        wrong = wrong_reads(margin, r.target)
        reads += len(r)
        errors += int(wrong.sum())
        wrong_distances += r.write_distance[wrong].tolist()
    return {"suite": suite.name, "length": dist.length, "num": num or suite.num, "reads": reads, "errors": errors,
            "error_write_distances": wrong_distances[:1000]}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FFBenchError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def train(cfg: TrainConfig, out: str | None = None, progress: bool = True, log=print) -> tuple[torch.nn.Module, dict]:
    """Train a model; write a checkpoint to ``out`` if given. Returns (model, final metrics)."""
    validate_config(cfg)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.init_seed)
    model = build(cfg.model).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=cfg.betas)
    step_model = torch.compile(model) if cfg.compile else model
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (device.type == "cuda" and cfg.bf16) else None
    s_in = language.SUITES["in_dist"]
    eval_arr = language.sample(s_in.distribution(cfg.length), cfg.eval_num, s_in.seed + 7)
    need_probs = cfg.sharpen != "none"

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, desc=f"train {cfg.model.arch}", unit="step", file=sys.stderr, dynamic_ncols=True)
    history, t0, acc = [], time.perf_counter(), float("nan")
    for step in range(cfg.steps):
        model.train()
        idx = encode_array(batch(cfg, step)).to(device)
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        with autocast if autocast is not None else contextlib.nullcontext():
            logits, probs = step_model(idx, need_probs=need_probs)
            loss = loss_fn(logits, idx, cfg.mode)
            coef = sharpen.coefficient(step, cfg.steps, cfg.sharpen_coef, cfg.sharpen_schedule, cfg.sharpen_start)
            if need_probs and coef:
                loss = loss + coef * sharpen.sharpening_loss(probs, cfg.sharpen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if not math.isfinite(loss.item()):
            raise FFBenchError(f"training diverged at step {step} (loss {loss.item()})")
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            acc = evaluate(model, eval_arr)["accuracy"]
            history.append({"step": step + 1, "loss": float(loss.item()), "in_dist_accuracy": acc})
        if bar is not None:
            bar.set_postfix(loss=f"{loss.item():.4f}", acc=f"{acc:.4f}", refresh=False)
            bar.update(1)
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    metrics = {"parameters": count_parameters(model), "train_seconds": round(seconds, 2),
               "tokens_per_second": round(cfg.steps * cfg.batch_size * cfg.length / seconds),
               "final_in_dist": evaluate(model, eval_arr), "history": history}
    if out is not None:
        save_checkpoint(model, cfg, out, metrics)
    return model, metrics


# ----------------------------------------------------------------------------- checkpoints
def save_checkpoint(model, cfg: TrainConfig, out: str, metrics: dict | None = None) -> None:
    """safetensors weights + config.json (the model) + train_config.json (the recipe) + metrics.json."""
    from safetensors.torch import save_file

    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()
             if k != "lm_head.weight"}  # tied to wte.weight
    save_file(state, str(path / "model.safetensors"), metadata={"format": "ffbench"})
    (path / "config.json").write_text(json.dumps({"ffbench_model": cfg.model.as_dict()}, indent=2) + "\n")
    (path / "train_config.json").write_text(json.dumps(cfg.as_dict(), indent=2) + "\n")
    if metrics is not None:
        (path / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def load_checkpoint(path: str | Path, device: str = "cpu"):
    from safetensors.torch import load_file

    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file() or not (path / "model.safetensors").is_file():
        raise FFBenchError(f"{str(path)!r} is not an ffbench checkpoint (needs config.json and model.safetensors)")
    raw = json.loads(cfg_file.read_text())
    if "ffbench_model" not in raw:
        raise FFBenchError(f"{str(path)!r} holds no ffbench model config (for Hugging Face models use hf/)")
    mcfg = ModelConfig(**raw["ffbench_model"])
    model = build(mcfg)
    state = load_file(str(path / "model.safetensors"))
    if mcfg.arch == "transformer":
        state["lm_head.weight"] = state["wte.weight"]
    model.load_state_dict(state)
    return model.to(device).eval(), mcfg
