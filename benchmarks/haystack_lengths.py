"""Haystack lengths in a real tokenizer's tokens (``--task haystack --context-tokens``, issue 28).

For each tokenizer family (GPT-2's byte-level BPE from ``openai-whisper``, the Llama-2 / Mistral 32K
SentencePiece vocabulary from ``mistral_common``; built as tests/tokenizer_families.py builds them,
no downloads) and each token budget N, this measures what ``ffbench run --task haystack
--context-tokens N`` does before any model runs:

* the T that ``ffbench.preflight.lengths_for_tokens`` chooses (the probe, the first preset's seed-0
  sequence, takes at most N tokens and at T + 2 more than N), and the time to choose it;
* the probe's count checked by an independent tokenizer (``tiktoken`` on whisper's ``gpt2.tiktoken``;
  ``sentencepiece`` on the ``.model`` file), not through transformers;
* for the run's own sequences (preset ``final``: seed 7000, ``--num`` of them): the time to generate,
  validate, render and count them, and the spread of their token counts (whole text, and the prompt
  of the final read up to its answer) around the budget.

Usage: ``nice python benchmarks/haystack_lengths.py --budgets 1000,4000,16000,32000,64000,128000 --num 20``

``--curves RUN_DIR`` instead prints a haystack run's RULER-style curves from its ``results.json``:
accuracy by length (T and the token budget it was chosen for) per preset, and accuracy by distance
from the last write (``by_write_distance``) at each length.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from ffbench import model_handle, preflight, render, tasks


def independent_counter(family: str, folder: Path):
    """Token counts of raw text by a library other than transformers."""
    if family == "gpt2":
        from whisper.tokenizer import get_encoding

        enc = get_encoding("gpt2")
        return lambda text: len(enc.encode(text))
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    return lambda text: len(sp.encode(text))


def measure(family: str, budgets: list[int], num: int, folder: Path) -> list[dict]:
    from tests.tokenizer_families import build_tokenizer

    build_tokenizer(family, folder)
    handle = model_handle.resolve(f"hf/{folder}", {})
    tokenizer = handle.cls.load_tokenizer(handle.name, handle.args)
    count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
    other = independent_counter(family, folder)
    task, template = tasks.get("haystack"), render.load_template("haystack")
    probe_suite = task.suites["final"]
    rows = []
    for n in budgets:
        t0 = time.perf_counter()
        (length,) = preflight.lengths_for_tokens(handle, template, task, [n])
        choose = time.perf_counter() - t0
        probe = render.render(task.sample(task.suite_dist("final", probe_suite.p_ignore, length), 1, 0)[0], template).text
        longer = render.render(task.sample(task.suite_dist("final", probe_suite.p_ignore, length + 2), 1, 0)[0],
                               template).text
        t0 = time.perf_counter()
        arr = task.sample(task.suite_dist("final", probe_suite.p_ignore, length), num, probe_suite.seed)
        generate = time.perf_counter() - t0
        t0 = time.perf_counter()
        task.validate(arr)
        validate = time.perf_counter() - t0
        t0 = time.perf_counter()
        rendered = [render.render(row, template) for row in arr]
        texts = [count(r.text) for r in rendered]
        prompts = [count(r.prompt(len(r.targets) - 1)) for r in rendered]
        counting = time.perf_counter() - t0
        rows.append({"family": family, "budget": n, "length": length, "choose_s": round(choose, 2),
                     "probe_tokens": count(probe), "probe_tokens_independent": other(probe),
                     "probe_tokens_at_T_plus_2": count(longer), "sequences": num,
                     "text_tokens": [min(texts), int(np.median(texts)), max(texts)],
                     "prompt_tokens": [min(prompts), int(np.median(prompts)), max(prompts)],
                     "within_budget": sum(t <= n for t in texts), "generate_s": round(generate, 3),
                     "validate_s": round(validate, 3), "render_count_s": round(counting, 2)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    out = ["| tokenizer | budget N | T chosen | probe tokens (transformers / independent) | at T+2 | run's texts min / median / max | final-read prompts min / median / max | texts within N | choose T s | generate + validate s | render + count s |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['family']} | {r['budget']:,} | {r['length']:,} | {r['probe_tokens']:,} / "
                   f"{r['probe_tokens_independent']:,} | {r['probe_tokens_at_T_plus_2']:,} | "
                   f"{' / '.join(f'{x:,}' for x in r['text_tokens'])} | {' / '.join(f'{x:,}' for x in r['prompt_tokens'])} | "
                   f"{r['within_budget']}/{r['sequences']} | {r['choose_s']} | {r['generate_s'] + r['validate_s']:.2f} | "
                   f"{r['render_count_s']} |")
    return "\n".join(out)


def curves(run_dir: str) -> str:
    """Markdown tables: accuracy by length, and by write distance at each length, of a haystack run."""
    results = json.loads((Path(run_dir) / "results.json").read_text())
    cfg = results["config"]
    budget = dict(zip(cfg.get("lengths") or [], cfg.get("context_tokens") or []))
    cells = sorted(results["results"], key=lambda c: (c["suite"], c["length"]))
    out = ["| preset | T | token budget | reads | accuracy |", "|---|---|---|---|---|"]
    out += [f"| {c['suite']} | {c['length']:,} | {budget.get(c['length'], '')} | {c['reads']:,} | {c['accuracy']:.3f} |"
            for c in cells]
    buckets = sorted({b["bucket"] for c in cells for b in c["by_write_distance"]}, key=lambda b: int(b.split("-")[0]))
    out += ["", "| preset | T | " + " | ".join(f"distance {b}" for b in buckets) + " |", "|---|---|" + "---|" * len(buckets)]
    for c in cells:
        got = {b["bucket"]: b for b in c["by_write_distance"]}
        row = [f"{1 - got[b]['glitch_rate']:.2f} ({got[b]['reads']})" if b in got else "" for b in buckets]
        out.append(f"| {c['suite']} | {c['length']:,} | " + " | ".join(row) + " |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default="1000,4000,16000,32000,64000,128000")
    ap.add_argument("--families", default="gpt2,sp")
    ap.add_argument("--num", type=int, default=20, help="sequences of the final preset counted per budget")
    ap.add_argument("--out", help="write the rows as JSON here")
    ap.add_argument("--curves", metavar="RUN_DIR", help="print a haystack run's curves by length and write distance")
    args = ap.parse_args()
    if args.curves:
        print(curves(args.curves))
        return
    budgets = [int(x) for x in args.budgets.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families.split(","):
            rows += measure(family, budgets, args.num, Path(tmp) / family)
    print(table(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
