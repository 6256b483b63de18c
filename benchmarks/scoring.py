"""Scoring speed, side by side in one process: dense vs per read, and each backend vs a plain forward.

**Dense vs per read** (the default). Three ways to score every read of FFL(0.8) sequences at
T = 512 (choice scoring) on the same tiny HF model:
  dense     ffbench: one forward pass per sequence, every answer read from it;
  per-read  ffbench --per-read: one prompt per read, ending just before the answer;
  lm-eval   lm-eval's HFLM.loglikelihood on (context, continuation) pairs, the per-read
            equivalent a user of lm-eval would run (both answers of every read).
Predictions must be identical; the script prints tokens processed per read against the floor
T / (reads per sequence) and the wall-time ratios.

    python benchmarks/scoring.py --num 40

**Each local backend vs a plain forward** (``--vs-forward``): how close ``ffbench run``'s scoring
comes to the hardware limit. For each backend (``--backends hf,vllm,ffbench``) the same model
scores the same FFL(p) sequences shard by shard exactly as ``ffbench run`` does (render, tokenize,
align, one dense pass, every read's verdict and the shard's Arrow table: ``runner.score_shard``),
interleaved with a plain forward pass of that model over the same token ids in the same batches
(``model(ids).logits`` under ``torch.inference_mode``, nothing kept). ``hf`` and ``vllm`` share one
random Llama (or GPT-2) over ffbench's character tokenizer; ``ffbench`` scores a random Transformer
of the same size built with ``ffbench.train.model`` and saved as a checkpoint. For vLLM two more
timings separate its parts: the engine's own prefill of the same prompts without prompt
log-probabilities (its forward limit), and the same prompts with the prompt log-probabilities
ffbench asks for, without ffbench (vLLM's own cost of returning them). Each repetition runs every
timing once, in alternating order; the script prints per-repetition ratios, their median and
spread, and ``--profile N`` prints where one scoring pass spends its time.

    taskset -c 0 env OMP_NUM_THREADS=1 python benchmarks/scoring.py --vs-forward --repeats 5
    python benchmarks/scoring.py --vs-forward --device cuda --dtype bfloat16 --num 2048   # on a GPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffbench import language, render, scoring
from ffbench.backends import load_backend
from tests.models import build_tiny_model


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
    ap.add_argument("--num", type=int, default=None, help="sequences (default 40; --vs-forward: 128)")
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--max-batch-tokens", type=int, default=16384)
    ap.add_argument("--width", type=int, default=None, help="hidden size (default 64, as the tests; --vs-forward: 256)")
    ap.add_argument("--layers", type=int, default=None, help="layers (default 2; --vs-forward: 4)")
    ap.add_argument("--skip-lm-eval", action="store_true")
    ap.add_argument("--vs-forward", action="store_true",
                    help="compare each local backend's scoring with a plain forward pass (see above)")
    ap.add_argument("--backends", default="hf,vllm,ffbench", help="--vs-forward: backends to measure")
    ap.add_argument("--arch", default="llama", choices=["llama", "gpt2"], help="--vs-forward: the hf/vllm model")
    ap.add_argument("--p-ignore", type=float, default=0.8, help="--vs-forward: FFL(p_ignore) sequences")
    ap.add_argument("--repeats", type=int, default=3, help="--vs-forward: repetitions of every timing")
    ap.add_argument("--device", default="cpu", help="--vs-forward: cpu or cuda")
    ap.add_argument("--dtype", default="float32", help="--vs-forward: float32, bfloat16 or float16")
    ap.add_argument("--top-logprobs", type=int, default=None, help="--vs-forward: vllm's top_logprobs (default 20)")
    ap.add_argument("--also-k", default="", metavar="K,K",
                    help="--vs-forward: also time vLLM's prefill with prompt log-probabilities at these top-k "
                         "(vLLM alone, to show how its cost grows with k; at most vLLM's max_logprobs, 20)")
    ap.add_argument("--vocab", type=int, default=None,
                    help="--vs-forward: pad the hf/vllm model's vocabulary to this size with unused characters "
                         "(a real model's output layer; default: ffbench's character tokenizer alone, 18 tokens)")
    ap.add_argument("--family", default=None,
                    help="--vs-forward: give the hf/vllm Llama a real tokenizer family of tests/tokenizer_families.py "
                         "(sp: 32K SentencePiece, tekken: 131K BPE, gpt2, cl100k) instead of the character one")
    ap.add_argument("--native-arch", default="transformer", choices=["transformer", "lstm"],
                    help="--vs-forward: the ffbench/ model (lstm: the paper's 1 x 128, --width/--layers unused)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="--vs-forward: profile one scoring pass per backend and print its N costliest functions")
    args = ap.parse_args()
    defaults = (128, 256, 4) if args.vs_forward else (40, 64, 2)
    for name, value in zip(("num", "width", "layers"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.vs_forward:
        vs_forward(args)
        return

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


# ----------------------------------------------------------------------------- --vs-forward
class Timings:
    """Seconds per timing and repetition, and the tokens each pass processes."""

    def __init__(self, name: str, tokens: int, reads: int):
        self.name, self.tokens, self.reads = name, tokens, reads
        self.seconds: dict[str, list[float]] = {}

    def add(self, label: str, seconds: float) -> None:
        self.seconds.setdefault(label, []).append(seconds)

    def ratios(self, num: str, den: str) -> list[float]:
        """Per repetition: tokens/s of ``den``'s timing over ``num``'s, i.e. num seconds / den seconds."""
        return [a / b for a, b in zip(self.seconds[num], self.seconds[den])]


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}x (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _shards(p, cell):
    from ffbench import runner

    n = p.store.sequences(cell.source).shape[0]
    size = runner.shard_size(cell.source.length, p.config.batch_size)
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def _plan(spec: str, args):
    from ffbench import runner

    cfg = runner.RunConfig(model=spec, lengths=[args.length], p_ignore=[args.p_ignore], num=args.num, seed=0)
    p = runner.plan(cfg)
    return p, p.cells[0]


def _score_all(backend, p, cell) -> None:
    """What ``ffbench run`` does per shard, minus writing it: render, score, build the Arrow table."""
    from ffbench import runner

    for start, stop in _shards(p, cell):
        runner.score_shard(backend, p, cell, start, stop)


def _shard_ids(p, cell, encode_texts) -> list[list[list[int]]]:
    """Per shard, the token ids the backend's dense pass reads (BOS included where the tokenizer adds it)."""
    from ffbench import render

    template = p.templates[cell.render]
    arr = p.store.sequences(cell.source)
    return [encode_texts([render.render(arr[i], template).text for i in range(start, stop)])
            for start, stop in _shards(p, cell)]


def _plain_forward(forward, shards: list[list[list[int]]], per_batch: int, device: str) -> None:
    """The limit: the model's forward over the same ids, in the backend's batches, nothing kept."""
    import torch

    with torch.inference_mode():
        for ids in shards:
            for lo in range(0, len(ids), per_batch):
                forward(torch.tensor(ids[lo : lo + per_batch], device=device))
    _sync(device)


def _profile(label: str, fn, top: int) -> None:
    """One pass under cProfile: where the time goes, and how much of it is ffbench's own Python."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof)
    total = max(stats.total_tt, 1e-9)
    own = sum(tt for (file, _, _), (_, _, tt, _, _) in stats.stats.items()
              if "/ffbench/" in file.replace("\\", "/") and "/ffbench/train/" not in file.replace("\\", "/"))
    vllm_py = sum(tt for (file, _, _), (_, _, tt, _, _) in stats.stats.items()
                  if "/vllm/" in file.replace("\\", "/"))
    print(f"  profile of one {label} pass: {total:.2f} s; ffbench's own Python (the model's excluded) {own:.3f} s "
          f"({own / total:.1%}); "
          f"vLLM's Python in this process {vllm_py:.3f} s ({vllm_py / total:.1%})")
    stats.sort_stats("tottime").print_stats(top)


def _native_checkpoint(out: Path, args) -> Path:
    """A random ffbench Transformer of the benchmark's size, saved as ``ffbench train`` saves one."""
    import torch

    from ffbench.train.checkpoint import save_checkpoint
    from ffbench.train.config import TrainConfig
    from ffbench.train.model import ModelConfig, build

    if args.native_arch == "lstm":
        cfg = ModelConfig(arch="lstm", n_layer=1, hidden=128)
    else:
        cfg = ModelConfig(arch="transformer", n_layer=args.layers, d_model=args.width, n_head=max(1, args.width // 64),
                          max_len=max(1024, args.length))
    torch.manual_seed(0)
    save_checkpoint(build(cfg), cfg, out, train_config=TrainConfig(model=cfg, length=args.length).as_dict())
    return out


def _measure(t: Timings, steps: list, repeats: int) -> None:
    """Warm every timing up once, then run them all ``repeats`` times, alternating the order."""
    for _, fn in steps:
        fn()
    for rep in range(repeats):
        for label, fn in steps if rep % 2 == 0 else steps[::-1]:
            _, seconds = timed(fn)
            t.add(label, seconds)


def _local(backend, forward, shards, args, p, cell, label: str, t: Timings) -> Timings:
    """The hf/ and ffbench/ measurement: the backend's scoring vs the plain forward, then profile."""
    per_batch = max(1, backend.max_batch_tokens // max(len(shards[0][0]), 1))
    _measure(t, [("plain forward", lambda: _plain_forward(forward, shards, per_batch, args.device)),
                 ("ffbench", lambda: _score_all(backend, p, cell))], args.repeats)
    if args.profile:
        _profile(label, lambda: _score_all(backend, p, cell), args.profile)
    backend.close()
    return t


def bench_hf(model_dir: Path, args) -> Timings:
    from ffbench import backends
    from ffbench.backends.tokenized import encode

    spec = f"hf/{model_dir}"
    backend = backends.resolve(spec, {"dtype": args.dtype, "device": args.device}).load()
    p, cell = _plan(spec, args)
    shards = _shard_ids(p, cell, lambda texts: [ids for ids, _ in encode(backend.tokenizer, texts)])

    def forward(ids):
        return backend.lm(input_ids=ids, use_cache=False).logits

    t = Timings(f"hf/ {args.arch}", sum(len(s) for ids in shards for s in ids), len(p.store.get(cell.source)[1].target))
    return _local(backend, forward, shards, args, p, cell, "hf/ scoring", t)


def bench_native(ckpt: Path, args) -> Timings:
    from ffbench import backends
    from ffbench.train.model import STOI

    spec = f"ffbench/{ckpt}"
    backend = backends.resolve(spec, {"device": args.device}).load()
    p, cell = _plan(spec, args)
    shards = _shard_ids(p, cell, lambda texts: [[STOI[c] for c in text] for text in texts])

    def forward(ids):
        return backend.net(ids)[0]

    t = Timings(f"ffbench/ {args.native_arch}", sum(len(s) for ids in shards for s in ids),
                len(p.store.get(cell.source)[1].target))
    return _local(backend, forward, shards, args, p, cell, "ffbench/ scoring", t)


def bench_vllm(model_dir: Path, args) -> Timings:
    """vLLM's scoring against the same weights' plain transformers forward, and against vLLM's own
    prefill with and without the prompt log-probabilities ffbench asks for."""
    import torch
    from transformers import AutoModelForCausalLM

    from ffbench import backends
    from ffbench.backends.tokenized import encode

    spec = f"vllm/{model_dir}"
    margs = {"dtype": args.dtype, "max_model_len": max(1024, args.length + 8)}
    if args.top_logprobs is not None:
        margs["top_logprobs"] = args.top_logprobs
    backend = backends.resolve(spec, margs).load()
    p, cell = _plan(spec, args)
    shards = _shard_ids(p, cell, lambda texts: [ids for ids, _ in encode(backend.tokenizer, texts)])
    lm = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, args.dtype)).to(args.device).eval()
    per_batch = max(1, 16384 // max(len(shards[0][0]), 1))  # the hf backend's default batches

    def forward(ids):
        return lm(input_ids=ids, use_cache=False).logits

    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    # Requests with prompt log-probabilities never read vLLM's prefix cache; neither may the baselines.
    bare = SamplingParams(max_tokens=1, temperature=0.0, detokenize=False, skip_reading_prefix_cache=True)
    asked = backend._scoring_params(backend.top_logprobs)
    extra_k = [int(k) for k in args.also_k.split(",") if k.strip()]
    if any(k > 20 for k in extra_k):
        raise SystemExit(f"--also-k {args.also_k}: vLLM refuses prompt log-probabilities above max_logprobs (20)")

    def engine(params):
        for ids in shards:
            backend.llm.generate([TokensPrompt(prompt_token_ids=s) for s in ids], params, use_tqdm=False)

    t = Timings(f"vllm/ {args.arch} (top_logprobs={backend.top_logprobs})", sum(len(s) for ids in shards for s in ids),
                len(p.store.get(cell.source)[1].target))
    steps = [("plain forward", lambda: _plain_forward(forward, shards, per_batch, args.device)),
             ("vllm prefill", lambda: engine(bare)),
             ("vllm prefill + prompt logprobs", lambda: engine(asked)),
             ("ffbench", lambda: _score_all(backend, p, cell))]
    steps += [(f"vllm prefill + prompt logprobs k={k}", lambda k=k: engine(backend._scoring_params(k)))
              for k in extra_k]
    _measure(t, steps, args.repeats)
    if args.profile:
        _profile("vllm/ scoring", lambda: _score_all(backend, p, cell), args.profile)
    backend.close()
    return t


def vs_forward(args) -> None:
    import torch

    from ffbench.tokenizer import DEFAULT_CHARS

    wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(wanted) - {"hf", "vllm", "ffbench"}
    if unknown:
        raise SystemExit(f"unknown backend(s) {', '.join(sorted(unknown))} (use hf, vllm, ffbench)")
    print(f"FFL({args.p_ignore}) at T={args.length}, {args.num} sequences; {args.layers} layers, width {args.width}, "
          f"{args.dtype} on {args.device}; torch threads {torch.get_num_threads()}"
          + (f"; hf/vllm vocabulary {args.vocab}" if args.vocab else "")
          + (f"; hf/vllm tokenizer family {args.family}" if args.family else ""))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = None
        if {"hf", "vllm"} & set(wanted):
            chars = DEFAULT_CHARS
            if args.vocab:  # CJK ideographs the texts never use: only the output layer grows
                chars += "".join(chr(0x4E00 + i) for i in range(max(0, args.vocab - 3 - len(DEFAULT_CHARS))))
            if args.family:  # a real vocabulary with its real tokenizer (answers scored in context)
                from tests.tokenizer_families import build_model

                model_dir = build_model(args.family, Path(tmp) / f"random-{args.family}", width=args.width,
                                        layers=args.layers, max_positions=max(1024, 4 * args.length + 8))
            else:
                model_dir = build_tiny_model(Path(tmp) / f"random-{args.arch}", args.arch, width=args.width,
                                             layers=args.layers, chars=chars, max_positions=max(1024, args.length + 8))
        for name in wanted:
            if name == "hf":
                results.append(bench_hf(model_dir, args))
            elif name == "vllm":
                results.append(bench_vllm(model_dir, args))
            else:
                results.append(bench_native(_native_checkpoint(Path(tmp) / "native", args), args))
            _print_timings(results[-1])
    print("\nsummary (scored tokens/s of ffbench over the plain forward's, median of the repetitions):")
    for t in results:
        print(f"  {t.name:<40} {_spread(t.ratios('plain forward', 'ffbench'))}")


def _print_timings(t: Timings) -> None:
    print(f"\n{t.name}: {t.tokens:,} tokens, {t.reads:,} reads per pass")
    for label, seconds in t.seconds.items():
        rates = [t.tokens / s for s in seconds]
        print(f"  {label:<32} {statistics.median(seconds):7.2f} s  {statistics.median(rates):>10,.0f} tokens/s  "
              f"(runs: {', '.join(f'{s:.2f}' for s in seconds)})")
    print(f"  ffbench / plain forward          {_spread(t.ratios('plain forward', 'ffbench'))}")
    if "vllm prefill" in t.seconds:
        print(f"  ffbench / vllm prefill           {_spread(t.ratios('vllm prefill', 'ffbench'))}")
        print(f"  ffbench / vllm prefill+logprobs  {_spread(t.ratios('vllm prefill + prompt logprobs', 'ffbench'))}")
        print(f"  vllm prefill+logprobs / prefill  {_spread(t.ratios('vllm prefill', 'vllm prefill + prompt logprobs'))}")
        print(f"  vllm prefill / plain forward     {_spread(t.ratios('plain forward', 'vllm prefill'))}")
        for label in t.seconds:
            if label.startswith("vllm prefill + prompt logprobs k="):
                k = label.rsplit("=", 1)[1]
                print(f"  {'vllm prefill+logprobs k=' + k + ' / prefill':<32} {_spread(t.ratios('vllm prefill', label))}")


if __name__ == "__main__":
    main()
