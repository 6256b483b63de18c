"""Training on fresh flip-flop batches with the paper's optimiser, resumable at any step.

Every step draws a new batch from ffbench's generator (FFL(p), or the equal-parts mixture of
several FFL(p) for the paper's long-tail remedy, ``--train-mix 0.9,0.98,0.1``). The data stream
depends only on ``data_seed`` and the initial weights only on ``init_seed``, so the two sources of
run-to-run variation the paper separates can be varied independently.

Optimiser: AdamW (0.9, 0.999), lr 3e-4, weight decay 0.1 on matrices only, 50 warm-up steps, then
linear decay reaching 0 at step ``steps + 1``, gradients clipped at norm 1. ``clean`` mode puts the
loss only on the deterministic tokens (the bit after each ``r``); ``generative`` on every token.

With an output directory, the training state (weights, optimiser moments, step, random number
generators, history) is saved there atomically every ``save_every`` steps and when Ctrl-C stops
the run; running the same configuration into the same directory resumes from it and ends with
bitwise the same weights as an uninterrupted run. A directory holding another configuration is
refused. The loss is read back from the device only when it is logged.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ffbench import language, rules
from ffbench.errors import FFBenchError, UsageError
from ffbench.train import checkpoint, sharpen
from ffbench.train.config import PAPER_DEFAULTS, TrainConfig, differences, identity, paper_config, validate  # noqa: F401
from ffbench.train.model import STOI, build, count_parameters, encode_array, estimate_forward_bytes

R_ID, ZERO_ID, ONE_ID = STOI["r"], STOI["0"], STOI["1"]
EVAL_BYTES = 512 * 2**20  # memory budget of one evaluation forward pass


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


# ----------------------------------------------------------------------------- evaluation
def eval_batch_size(model, length: int, budget: int = EVAL_BYTES) -> int:
    """Sequences per evaluation forward pass that fit ``budget`` bytes (at least 1, at most 256)."""
    return max(1, min(256, budget // max(1, estimate_forward_bytes(model.cfg, 1, length))))


@torch.inference_mode()
def read_logprobs(model, idx: torch.Tensor, batch_size: int | None = None) -> np.ndarray:
    """(reads, 2): log p('0') and log p('1') after every ``r`` token, reads in row-major order."""
    model.eval()
    device = next(model.parameters()).device
    per = batch_size or eval_batch_size(model, idx.shape[1])
    out = []
    for start in range(0, idx.shape[0], per):
        chunk = idx[start : start + per].to(device)
        logits, _ = model(chunk)
        lp = logits[chunk == R_ID].float().log_softmax(-1)
        out.append(lp[:, [ZERO_ID, ONE_ID]].cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.float32)


def evaluate(model, arr: np.ndarray) -> dict:
    """Reads and errors (the strict choice between 0 and 1) on an (N, T) array of sequences."""
    reads = language.extract_reads(arr)
    correct = rules.choice_correct(read_logprobs(model, encode_array(arr)), reads.target)
    errors = int((~correct).sum())
    return {"reads": len(reads), "errors": errors, "accuracy": 1 - errors / max(1, len(reads))}


def evaluate_suite(model, suite: language.Suite, length: int | None = None, num: int | None = None,
                   chunk: int = 2048) -> dict:
    """Errors on a preset suite, streamed in chunks (the sparse suite is 51M tokens at T = 512)."""
    dist = suite.distribution(length)
    reads = errors = 0
    wrong_distances: list[int] = []
    for arr in language.iter_sample(dist, num or suite.num, suite.seed, chunk_rows=chunk):
        r = language.extract_reads(arr)
        wrong = ~rules.choice_correct(read_logprobs(model, encode_array(arr)), r.target)
        reads += len(r)
        errors += int(wrong.sum())
        wrong_distances += r.write_distance[wrong].tolist()
    return {"suite": suite.name, "length": dist.length, "num": num or suite.num, "reads": reads, "errors": errors,
            "error_write_distances": wrong_distances[:1000]}


# ----------------------------------------------------------------------------- training
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FFBenchError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def initial_model(cfg: TrainConfig, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The model before its first step: a function of the model config and ``init_seed`` only."""
    torch.manual_seed(cfg.init_seed)
    return build(cfg.model).to(device)


def optimizer(model, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases, norms, or parameters marked
    ``_no_weight_decay`` such as an SSM's decay rates)."""
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.dim() >= 2 and not getattr(p, "_no_weight_decay", False) else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=tuple(cfg.betas))


class _StopOnCtrlC:
    """Turns the first Ctrl-C into a request to stop after the current step (so the state saved is
    a whole step's); a second Ctrl-C interrupts at once. Only in the main thread."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped training after ``step`` steps; the state is saved in ``out`` (if any)."""

    def __init__(self, step: int, out: str | None):
        super().__init__(f"interrupted after step {step}")
        self.step, self.out = step, out


def _check_directory(cfg: TrainConfig, out: str) -> tuple[dict | None, dict | None]:
    """(saved training state, saved metrics of a finished run) in ``out``; refuses another config."""
    path = Path(out)
    state = checkpoint.load_train_state(path)
    if state is not None:
        theirs = state["config"]
    elif (path / checkpoint.TRAIN_CONFIG_FILE).is_file() and (path / checkpoint.MODEL_FILE).is_file():
        theirs = json.loads((path / checkpoint.TRAIN_CONFIG_FILE).read_text())
    else:
        return None, None
    try:
        theirs = identity(TrainConfig.from_dict(theirs))
    except TypeError:
        theirs = {"unreadable": True}
    diff = differences(theirs, identity(cfg))
    if diff:
        raise UsageError(f"{out!r} holds a run of another configuration (differs in {', '.join(diff[:5])}); "
                         "rerun with its configuration to resume, or choose another --out")
    metrics = None
    if (state is None or state["step"] >= cfg.steps) and (path / checkpoint.METRICS_FILE).is_file():
        metrics = json.loads((path / checkpoint.METRICS_FILE).read_text())
    return state, metrics


def train(cfg: TrainConfig, out: str | None = None, progress: bool = True, log=print, save_every: int = 100,
          keep_state: bool = True) -> tuple[torch.nn.Module, dict]:
    """Train a model; with ``out``, save and resume there. Returns (model, final metrics).

    ``save_every`` steps (0: only on Ctrl-C and at the end) the training state is rewritten in
    ``out``; ``keep_state=False`` removes it once the final checkpoint is written.
    """
    validate(cfg)
    device = resolve_device(cfg.device)
    state, finished = _check_directory(cfg, out) if out is not None else (None, None)
    if finished is not None:
        log(f"{out}: already trained ({cfg.steps} steps); nothing to do")
        model, _ = checkpoint.load_checkpoint(out, device)
        return model, finished
    model = initial_model(cfg, device)
    opt = optimizer(model, cfg)
    start, history, elapsed, resumed = 0, [], 0.0, []
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        start, history, elapsed = state["step"], state["history"], state["elapsed"]
        resumed = state.get("resumed", []) + [start]
        log(f"{out}: resuming at step {start} of {cfg.steps}")

    def save_state(done: int) -> None:
        rng = {"torch": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
        checkpoint.save_train_state(out, {"config": cfg.as_dict(), "step": done, "model": model.state_dict(),
                                          "optimizer": opt.state_dict(), "rng": rng, "history": history,
                                          "elapsed": elapsed + time.perf_counter() - t0, "resumed": resumed})

    step_model = torch.compile(model) if cfg.compile else model
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (device.type == "cuda" and cfg.bf16) else None
    s_in = language.SUITES["in_dist"]
    eval_arr = language.sample(s_in.distribution(cfg.length), cfg.eval_num, s_in.seed + 7)
    need_probs = cfg.sharpen != "none"
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc=f"train {cfg.model.arch}", unit="step", file=sys.stderr,
                   dynamic_ncols=True)
    t0 = time.perf_counter()
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)  # stays on the device until logged
    with _StopOnCtrlC() as ctrl_c:
        for step in range(start, cfg.steps):
            model.train()
            idx = encode_array(batch(cfg, step)).to(device)
            lr = lr_at(cfg, step)
            for g in opt.param_groups:
                g["lr"] = lr
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
            nonfinite |= ~torch.isfinite(loss.detach())
            done = step + 1
            if done % cfg.eval_every == 0 or done == cfg.steps:  # logging: the only host syncs
                if nonfinite.item():
                    raise FFBenchError(f"training diverged (a non-finite loss by step {done})")
                acc = evaluate(model, eval_arr)["accuracy"]
                history.append({"step": done, "loss": float(loss.item()), "in_dist_accuracy": acc})
                if bar is not None:
                    bar.set_postfix(loss=f"{history[-1]['loss']:.4f}", acc=f"{acc:.4f}", refresh=False)
            if bar is not None:
                bar.update(1)
            if out is not None and done < cfg.steps and (ctrl_c.requested or (save_every and done % save_every == 0)):
                save_state(done)
            if ctrl_c.requested and done < cfg.steps:
                if bar is not None:
                    bar.close()
                raise Interrupted(done, out)
    if bar is not None:
        bar.close()
    seconds = elapsed + time.perf_counter() - t0
    metrics = {"parameters": count_parameters(model), "train_seconds": round(seconds, 2),
               "tokens_per_second": round(cfg.steps * cfg.batch_size * cfg.length / max(seconds, 1e-9)),
               "final_in_dist": evaluate(model, eval_arr), "history": history}
    if resumed:
        metrics["resumed_at_steps"] = resumed
    if out is not None:
        checkpoint.save_checkpoint(model, cfg.model, out, cfg.as_dict(), metrics)
        if keep_state:
            save_state(cfg.steps)
        else:
            (Path(out) / checkpoint.STATE_FILE).unlink(missing_ok=True)
    return model, metrics

