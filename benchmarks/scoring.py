"""Dense scoring vs one request per read, on the same tiny HF model, in one process.

Three ways to score every read of FFL(0.8) sequences at T = 512 (choice scoring):
  dense     ffbench: one forward pass per sequence, every answer read from it;
  per-read  ffbench --per-read: one prompt per read, ending just before the answer;
  lm-eval   lm-eval's HFLM.loglikelihood on (context, continuation) pairs, the per-read
            equivalent a user of lm-eval would run (both answers of every read).
Predictions must be identical; the script prints tokens processed per read against the floor
T / (reads per sequence) and the wall-time ratios.

    python benchmarks/scoring.py --num 40
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffbench import language, render, scoring  # noqa: E402
from ffbench.backends import load_backend  # noqa: E402
from tests.models import build_tiny_model  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def lm_eval_predictions(model_dir: Path, rendered, batch_size: int):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=str(model_dir), device="cpu", dtype="float32", batch_size=batch_size)
    requests, owners = [], []
    for r in rendered:
        for k in range(len(r.targets)):
            for c, choice in enumerate(r.choices):
                requests.append(Instance("loglikelihood", {}, (r.prompt(k), choice), len(requests)))
                owners.append(c)
    t0 = time.perf_counter()
    results = lm.loglikelihood(requests, disable_tqdm=True)
    seconds = time.perf_counter() - t0
    lp = np.array([ll for ll, _ in results]).reshape(-1, len(rendered[0].choices))
    tokens = sum(len(lm.tok_encode(inst.args[0] + inst.args[1])) for inst in requests)
    return lp.argmax(axis=1), seconds, tokens, len(requests)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num", type=int, default=40, help="sequences of FFL(0.8), T=512")
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--max-batch-tokens", type=int, default=16384)
    ap.add_argument("--width", type=int, default=64, help="hidden size of the random GPT-2 (tests use 64)")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--skip-lm-eval", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "tiny-gpt2", "gpt2", width=args.width, layers=args.layers)
        backend = load_backend(f"hf/{model_dir}", {"dtype": "float32", "device": "cpu",
                                                   "max_batch_tokens": args.max_batch_tokens})
        arr = language.sample(language.FFL.from_p_ignore(0.8, args.length), args.num, seed=0)
        template = render.load_template("symbolic")
        rendered = [render.render(s, template) for s in arr]
        targets = np.concatenate([r.targets for r in rendered])
        reads = targets.size
        floor = args.length * args.num / reads

        scoring.score(backend, rendered[:2], template, "choice")  # warm-up
        backend.usage.prompt_tokens = 0
        dense, t_dense = timed(lambda: scoring.score(backend, rendered, template, "choice"))
        tok_dense = backend.usage.prompt_tokens
        backend.usage.prompt_tokens = 0
        per_read, t_per = timed(lambda: scoring.score(backend, rendered, template, "choice", per_read=True))
        tok_per = backend.usage.prompt_tokens
        assert np.array_equal(dense.prediction, per_read.prediction), "dense and per-read disagree"

        print(f"random GPT-2, {args.layers} layers, width {args.width}, float32 CPU")
        print(f"FFL(0.8), T={args.length}: {args.num} sequences, {reads:,} reads "
              f"({reads / args.num:.1f} per sequence); floor T/(reads per sequence) = {floor:.1f} tokens per read")
        print(f"dense     : {t_dense:8.2f} s  {tok_dense / reads:8.1f} tokens/read ({tok_dense / reads / floor:.3f}x floor)")
        print(f"per-read  : {t_per:8.2f} s  {tok_per / reads:8.1f} tokens/read  -> dense is {t_per / t_dense:.1f}x faster")
        print(f"accuracy (random model): {(dense.prediction == targets).mean():.4f}; predictions identical: True")

        if not args.skip_lm_eval:
            pred, t_lm, tok_lm, n_req = lm_eval_predictions(model_dir, rendered, batch_size=16)
            same = np.array_equal(pred, dense.prediction)
            print(f"lm-eval   : {t_lm:8.2f} s  {tok_lm / reads:8.1f} tokens/read ({n_req:,} loglikelihood requests)"
                  f"  -> dense is {t_lm / t_dense:.1f}x faster; predictions identical: {same}")


if __name__ == "__main__":
    main()
