"""The ``ffbench`` command line. It only parses and delegates; every import of real work is lazy
so that ``ffbench --help`` and ``ffbench generate`` start fast.

Errors print as one line (``ffbench: error: ...``) with a non-zero exit: 2 when the command as given
cannot succeed (a bad flag value, an unknown name, a missing or illegal file, a directory holding
another run), 1 when its work failed or its verdict is negative (docs/architecture.md, "Exit status").
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from ffbench import __version__, redact
from ffbench.errors import CouldNotJudge, FFBenchError, Interrupted, UsageError


def _probabilities(ctx, param, value):
    if value is None:
        return None
    try:
        parts = tuple(float(x) for x in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected three numbers W,R,I, got {value!r} (four, W,R,I,U, with --task undo)") from None
    if len(parts) not in (3, 4):
        raise click.BadParameter(f"expected three numbers W,R,I, got {value!r} (four, W,R,I,U, with --task undo)")
    return parts


TASK_HELP = ("Task: ffl (the flip-flop language, default), undo (UNDO flip-flop: 'u' restores the value before "
             "the last write not yet undone), registers (k named registers: wa1 wb0 rb0) or haystack (flip-flops "
             "hidden in a long story). See docs/tasks.md.")


def _task_option(f):
    return click.option("--task", default="ffl", show_default=True, metavar="ffl|undo|registers|haystack", help=TASK_HELP)(f)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="ffbench")
def cli():
    """Measure attention glitches: exact flip-flop read accuracy and glitch rates of language models.

    \b
    Quick start:
      ffbench run --model ffbench/transformer-ref --suite in_dist,dense --num 1000   # score a shipped model
      ffbench generate --suite paper --out paper.parquet   # the paper's three evaluation sets
      ffbench validate paper.parquet                        # check every row, print its hash
      ffbench render --length 16 --render lightswitch       # see what a model reads
    """


def _registry_option(f):
    return click.option("--registry", metavar="PATH", envvar="FFBENCH_REGISTRY", show_envvar=True,
                        help="Results registry (SQLite). Default: the user's data directory, "
                             "e.g. ~/.local/share/ffbench/registry.sqlite.")(f)


def price_options(f):
    """--price-in / --price-out / --price-cached-in (USD per million tokens): one definition for every
    command that prices tokens."""
    f = click.option("--price-cached-in", type=float, metavar="USD_PER_MTOK",
                     help="Price of prompt tokens served by the provider's prompt cache, USD per million (default: "
                          "--price-in); Anthropic's cache writes cost 1.25 x --price-in.")(f)
    f = click.option("--price-out", type=float, metavar="USD_PER_MTOK",
                     help="Price of completion (generated) tokens, USD per million; for --max-cost, the run's cost "
                          "figure and the dry run's estimate.")(f)
    return click.option("--price-in", type=float, metavar="USD_PER_MTOK",
                        help="Price of prompt tokens, USD per million (a price not given counts as zero).")(f)


def _stopping_options(f):
    for option in reversed([
        click.option("--stop-at-first-error", is_flag=True,
                     help="Stop once a scored shard holds a wrong read; what was scored is kept and results.json says "
                          "stop_reason first_error. Rerun without the flag to score the rest."),
        click.option("--certify", type=float, metavar="EPS",
                     help="Score each cell until an anytime-valid 95% bound settles its glitch rate: below EPS "
                          "(certified) or above it (refuted), else to the end of its data. The bound stays valid "
                          "although scoring stops on it."),
        click.option("--max-cost", type=float, metavar="USD",
                     help="Stop before a shard whose estimated cost (prompt tokens and generation budget at "
                          "--price-in/--price-out) would take the run's total over USD; rerun with more to continue."),
    ]):
        f = option(f)
    return f


# ----------------------------------------------------------------------------- generate
@cli.command()
@click.option("--suite", metavar="NAME", help="Preset: in_dist FFL(0.8), sparse FFL(0.98), dense FFL(0.1) at T=512 "
              "with the paper's sizes and fixed seeds, paper = all three (a 'suite' column labels rows), or stress "
              "= the stress grid (family, point and parameter columns; --num sets sequences per point). With --task: "
              "that task's presets (undo: retraction; registers: stale; haystack: final, every).")
@click.option("--length", "-T", type=int, metavar="T", help="Sequence length T (even, >= 4). Default 512.")
@click.option("--p-ignore", type=float, metavar="P", help="FFL(P): p_i = P and p_w = p_r = (1-P)/2. Default 0.8.")
@click.option("--p", "p", callback=_probabilities, metavar="W,R,I",
              help="Explicit instruction probabilities p_w,p_r,p_i (must sum to 1).")
@click.option("--num", "-n", type=click.IntRange(min=1), metavar="N", help="Number of sequences (required without --suite).")
@click.option("--seed", type=click.IntRange(min=0), metavar="S", help="Random seed (default 0, or the suite's fixed seed).")
@click.option("--alphabet", type=int, default=2, show_default=True, metavar="M",
              help="Number of data values (digits 0..M-1, M <= 10).")
@click.option("--out", "-o", required=True, metavar="FILE", help="Output .parquet or .jsonl (column 'text').")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@_task_option
@click.option("--registers", "registers_k", type=int, metavar="K", help="--task registers: number of registers "
              "(1..8, default 2).")
def generate(suite, length, p_ignore, p, num, seed, alphabet, out, progress, task, registers_k):
    """Sample flip-flop sequences to a data file, deterministically.

    \b
    Examples:
      ffbench generate --suite sparse --out sparse.parquet
      ffbench generate --length 64 --p-ignore 0.5 --num 1000 --seed 7 --out ffl.jsonl
      ffbench generate --length 512 --p 0.2,0.1,0.7 --num 1600000 --out train.parquet
      ffbench generate --suite stress --length 128 --out stress.parquet
      ffbench generate --task undo --suite paper --length 64 --out undo.parquet
      ffbench generate --task undo --suite retraction --length 64 --out retraction.parquet
      ffbench generate --task registers --registers 4 --suite stale --length 96 --out regs.parquet
    """
    from ffbench import datafiles
    from ffbench import generate as gen
    from ffbench.resources import available_memory

    datafiles.file_format(out)
    job = gen.plan(suite, length, p_ignore, p, num, seed, alphabet, task=task, registers_k=registers_k)
    job.check_fits(out, available_memory(), gen.free_space(out))
    t0 = time.perf_counter()
    chunks = job.chunks()
    if progress or (progress is None and sys.stderr.isatty()):
        chunks = _progress(chunks, job.rows(), "generating")
    rows, sha = datafiles.write_sequences(out, chunks)
    seconds = time.perf_counter() - t0
    tokens = job.tokens()
    click.echo(f"wrote {_count(rows, 'sequence')} to {out}: {job.describe()}")
    click.echo(f"{_count(tokens, 'token')} in {seconds:.2f} s ({_rate(tokens, seconds)}); sha256 {sha}")


def _count(n: int, noun: str) -> str:
    """'1 sequence', '1,000 sequences'."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _either(choices) -> str:
    """"'0' or '1'", "'0', '1' or '2'": the answers a read may take, as alternatives."""
    shown = [repr(c) for c in choices]
    return " or ".join([", ".join(shown[:-1]), shown[-1]] if len(shown) > 1 else shown)


def _rate(tokens: int, seconds: float) -> str:
    """Throughput with a unit that keeps three significant digits: '850 tokens/s', '12.5 k tokens/s',
    '312 M tokens/s', '1.20 G tokens/s'."""
    rate = tokens / max(seconds, 1e-9)
    for scale, unit in ((1e9, "G "), (1e6, "M "), (1e3, "k ")):
        if rate >= scale:
            value = rate / scale
            return f"{value:.3g} {unit}tokens/s" if value < 1000 else f"{value:,.0f} {unit}tokens/s"
    return f"{rate:.3g} tokens/s" if rate < 100 else f"{rate:.0f} tokens/s"


def _progress(chunks, total, desc):
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit="seq", unit_scale=True, file=sys.stderr) as bar:
        for chunk in chunks:
            yield chunk
            bar.update(chunk.sequences.shape[0])


# ----------------------------------------------------------------------------- validate
@cli.command()
@click.argument("file", metavar="FILE")
@click.option("--alphabet", type=int, default=2, show_default=True, metavar="M",
              help="Largest legal data alphabet (digits 0..M-1), as in 'ffbench run --alphabet'.")
@_task_option
def validate(file, alphabet, task):
    """Check every row of a data file against the rules of the language (of --task).

    Prints the row count, length, reads and content hash; on the first illegal row prints its row,
    position and the rule it breaks, and exits 2 (as 'ffbench run --data' does with the same file).
    Reads the synthseq/flipflop parquet layout as is.

    \b
    Examples:
      ffbench validate paper.parquet
      ffbench validate --task undo undo.parquet
    """
    from ffbench import datafiles, language, tasks

    if not 2 <= alphabet <= language.MAX_ALPHABET:
        raise click.BadParameter(f"must be between 2 and {language.MAX_ALPHABET}, got {alphabet}", param_hint="--alphabet")
    chosen = tasks.get(task)
    chosen.check_alphabet(alphabet)
    data = datafiles.read_sequences(file, alphabet=alphabet, task=chosen.name)
    reads = chosen.extract_reads(data.sequences)
    click.echo(
        f"ok: {data.num:,} sequences of length {data.length}, {len(reads):,} reads "
        f"({len(reads) / data.num:.2f} per sequence); sha256 {data.sha256}"
    )


# ----------------------------------------------------------------------------- render
def _prompt_options(f):
    """Flags deciding the text a model receives and how long it may reply (run and render)."""
    for option in reversed([
        click.option("--chat-template", default="auto", show_default=True, metavar="auto|none|PATH",
                     help="Chat renderings (chat, lightswitch_chat) reach hf/ and vllm/ models inside a chat "
                          "template: auto = the tokenizer's own when it has one, none = raw text, PATH = this Jinja "
                          "file. Other renderings are always raw text."),
        click.option("--system-prompt", metavar="TEXT", help="System message before each chat rendering's text "
                     "(in the chat template, or to a chat API)."),
        click.option("--max-new-tokens", type=int, metavar="N", help="Tokens a greedy reply may take for its answer "
                     "(default 32 for a question, the answer's length for a base model's continuation); a reply cut "
                     "by it before naming an answer counts as truncated."),
        click.option("--reasoning-budget", type=int, metavar="N", help="Further tokens a reasoning model may spend "
                     "thinking before it answers (added to --max-new-tokens; chat APIs with a separate thinking "
                     "budget get N)."),
        click.option("--reasoning-end", metavar="MARKER", help="The marker that ends a reply's reasoning; the answer "
                     "is read after it (default </think>; an API's separate reasoning field needs none)."),
    ]):
        f = option(f)
    return f


def _sampling_options(f):
    """Flags of sampled greedy reads (ffbench.sampling)."""
    for option in reversed([
        click.option("--repeats", type=int, metavar="K", help="Ask every greedy read K times; cells report the mean "
                     "per-read error probability (cluster-robust interval over sequences), reads wrong in at least "
                     "one and in all K, and the majority answer's error rate. Without --temperature, K > 1 uses the "
                     "provider's default sampling."),
        click.option("--temperature", type=float, metavar="X", help="Sampling temperature sent to openai/ and "
                     "anthropic/ models (default: 0 for one answer per read, the provider's default with --repeats)."),
        click.option("--top-p", "top_p", type=float, metavar="P", help="Nucleus sampling sent to openai/ and "
                     "anthropic/ models."),
        click.option("--sampling-seed", type=int, metavar="S", help="Sampling seed sent to openai/ models (repeat k "
                     "gets S+k); --seed is the data's seed."),
    ]):
        f = option(f)
    return f


@cli.command()
@click.option("--render", "rendering", metavar="NAME",
              help="Rendering name (a template in prompts/) or path to a template .yaml. Default: the task's own "
                   "(symbolic; symbolic_undo with --task undo).")
@click.option("--length", "-T", type=int, default=16, show_default=True, metavar="T", help="Sequence length.")
@click.option("--p-ignore", type=float, default=0.5, show_default=True, metavar="P", help="FFL(P) for the example.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, metavar="S", help="Seed of the example.")
@click.option("--data", metavar="FILE", help="Render a row of this data file instead of sampling.")
@click.option("--row", type=int, default=0, show_default=True, metavar="K", help="Row of --data to render.")
@click.option("--fewshot/--no-fewshot", default=False, show_default=True,
              help="Prepend the paper's length-16 demonstration, rendered the same way.")
@click.option("--mark/--no-mark", default=True, show_default=True,
              help="Bracket every scored answer [like this] (not with --model, which prints the exact text).")
@click.option("--list", "list_only", is_flag=True, help="List the available renderings and exit.")
@click.option("--model", "-m", metavar="SPEC", help="Print the exact text this model receives (chat template, system "
              "prompt and question included) and its token count; loads the tokenizer only.")
@click.option("--scoring", type=click.Choice(["choice", "greedy"]), default="choice", show_default=True,
              help="With --model: choice shows the dense pass over the whole sequence, greedy the final read's "
                   "question.")
@click.option("--model-arg", "model_args", multiple=True, metavar="KEY=VALUE", help="With --model: backend option "
              "(revision=..., trust_remote_code=true, api=chat, ...).")
@_prompt_options
@_task_option
@click.option("--registers", "registers_k", type=int, metavar="K", help="--task registers: number of registers "
              "of the example (default 2).")
def render(rendering, length, p_ignore, seed, data, row, fewshot, mark, list_only, model, scoring, model_args,
           chat_template, system_prompt, max_new_tokens, reasoning_budget, reasoning_end, task, registers_k):
    """Show what a model reads: one sequence rendered, with every scored answer marked.

    With --model, the exact text that model receives and its token count (counted with its own
    tokenizer, BOS and chat template included; an estimate for API models).

    \b
    Examples:
      ffbench render --length 16 --render lightswitch
      ffbench render --render chat --fewshot
      ffbench render --data paper.parquet --row 3 --render symbolic_spaced
      ffbench render --model hf/Qwen/Qwen2.5-0.5B-Instruct --render chat --scoring greedy
      ffbench render --task undo --render lightswitch_undo
    """
    from ffbench import api, language, tasks
    from ffbench import render as rnd

    chosen = tasks.get(task)
    rendering = rendering or chosen.default_render

    if list_only:
        for name in rnd.available():
            template = rnd.load_template(name)
            click.echo(f"{name:16s} {template.description}{' [chat]' if template.chat else ''}")
        return
    template = rnd.load_template(rendering)
    rnd.check_task(template, chosen)
    seq = api.example_sequence(chosen, data, row, length, p_ignore, seed, registers_k)
    demo = (rnd.demo_sequence() if chosen.name == tasks.DEFAULT else chosen.demo()) if fewshot else None
    out = rnd.render(seq, template, demo=demo)
    click.echo(f"# sequence: {language.to_strings(seq[None])[0]}")
    click.echo(f"# rendering {template.name!r}: {_count(len(out.targets), 'scored read')}, each answered with "
               f"{_either(out.choices)}")
    if model is not None:
        _show_model_text(model, out, template, scoring, model_args, chat_template, system_prompt, max_new_tokens,
                         reasoning_budget, reasoning_end)
        return
    text = out.text
    if mark:
        for start, end in out.spans[::-1].tolist():
            text = text[:start] + "[" + text[start:end] + "]" + text[end:]
    click.echo(text)


def _show_model_text(model, rendered, template, scoring, model_args, chat_template, system_prompt, max_new_tokens,
                     reasoning_budget, reasoning_end) -> None:
    from ffbench import model_handle, preflight, prompting

    handle = model_handle.resolve(model, _model_args(model_args))
    template_value, sha = prompting.resolve_chat_template(chat_template)
    handle.check_chat_template(template_value, chat_template)
    ref = handle.connect()
    options = prompting.PromptOptions(template_value, system_prompt or None, max_new_tokens, reasoning_budget,
                                      reasoning_end, sha)
    prompting.check_options(options)
    ref.check([template], [scoring])
    shown = preflight.show(ref, rendered, template, scoring, options)
    count = f"{shown.tokens:,} tokens" if shown.exact else f"about {shown.tokens:,} tokens (estimate)"
    click.echo(f"# {ref.spec} receives {shown.what}: {count}")
    for line in shown.answers:
        click.echo(f"# answers in context: {line}")
    if system_prompt and not shown.text.count(system_prompt):
        click.echo(f"# system message: {system_prompt}")
    click.echo("# ---- exact text below this line ----")
    click.echo(shown.text, nl=False)
    click.echo("\n# ---- end ----")


# ----------------------------------------------------------------------------- run
def _scoring_executor_options(f):
    """Where a model scores (run and hunt): here, or on Ray actors through the engine (:mod:`ffbench.engine`)."""
    for option in reversed([
        click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="local: score in this process; ray: on Ray actors, each holding one model (a run's shards, "
                          "a hunt round's candidates split among them; identical results; pip install 'ffbench[ray]')."),
        click.option("--workers", type=click.IntRange(min=1), metavar="N", help="Ray actors (default 2); each loads "
                     "the model once (one GPU each with --model-arg device=cuda)."),
        click.option("--ray-address", metavar="ADDR", help="An existing Ray cluster (e.g. ray://head:10001 or auto); "
                     "default: start a local Ray instance."),
    ]):
        f = option(f)
    return f


def _connection_options(f):
    """Where an API model is served (run and hunt); the defaults are the provider's own environment
    variables, read when the model is resolved (:mod:`ffbench.model_handle`)."""
    f = click.option("--api-key", metavar="KEY", help="API key (default from OPENAI_API_KEY or ANTHROPIC_API_KEY by "
                     "provider); never written anywhere.")(f)
    return click.option("--base-url", metavar="URL", help="Server for API models: an OpenAI-compatible server for "
                        "openai/ (default env OPENAI_BASE_URL), an Anthropic-compatible one for anthropic/ (default env "
                        "ANTHROPIC_BASE_URL).")(f)


def _csv(cast, name):
    def parse(ctx, param, value):
        if value is None:
            return []
        items = []
        for part in (x for v in (value if isinstance(value, tuple) else (value,)) for x in v.split(",")):
            if not part.strip():
                continue
            try:
                items.append(cast(part.strip()))
            except ValueError:
                raise click.BadParameter(f"expected a comma-separated list of {name}, got {part!r}") from None
        return items
    return parse


@cli.command()
@click.option("--model", "-m", required=True, metavar="SPEC",
              help="provider/model: hf/<hub id or dir>, vllm/<hub id or dir>, openai/<name>, anthropic/<name>, "
                   "ffbench/<name or dir>.")
@click.option("--suite", multiple=True, callback=_csv(str, "suite names"), metavar="NAMES",
              help="Preset suites: in_dist, sparse, dense, paper (all three), stress (the stress grid; --num sets "
                   "sequences per point). Default: paper, unless --data or --p-ignore. Other tasks have their own: "
                   "undo in_dist, sparse, dense, paper, retraction; registers the same and stale; haystack final, "
                   "every, paper (docs/tasks.md).")
@click.option("--data", multiple=True, metavar="FILE", help="Score a data file (.parquet/.jsonl, column 'text'); repeatable.")
@click.option("--length", "-T", "lengths", callback=_csv(int, "lengths"), metavar="L1,L2",
              help="Sequence lengths to sweep: --suite and --p-ignore sets are generated at each length; "
              "--data files keep their own. Default: hf/, vllm/ and openai/ models at the suites' 512; ffbench/ "
              "checkpoints at their training length (transformer-ref and transformer-mix: 128, lstm-ref: 512).")
@click.option("--p-ignore", "p_ignore", callback=_csv(float, "probabilities"), metavar="P1,P2",
              help="Also score FFL(P) sets (p_w = p_r = (1-P)/2) of --num sequences at each length.")
@click.option("--num", "-n", type=click.IntRange(min=1), metavar="N", help="Sequences per set: overrides the suites' sizes (FFL sets default 1000); with --data, scores the first N rows of each part of the file.")
@click.option("--seed", type=click.IntRange(min=0), metavar="S", help="Seed (overrides the suites' fixed seeds; FFL sets default 0).")
@click.option("--render", "renders", callback=_csv(str, "renderings"), metavar="R1,R2",
              help="Renderings (see 'ffbench render --list') or template .yaml paths. Default: the task's own "
                   "(symbolic; symbolic_undo with --task undo).")
@click.option("--scoring", "scorings", default="choice", show_default=True, callback=_csv(str, "scorings"),
              metavar="choice|greedy", help="choice: target answer has the higher log-probability; "
              "greedy: the model's own greedy continuation must be the target. Comma-separate for both.")
@click.option("--fewshot/--no-fewshot", default=False, show_default=True,
              help="Prepend the paper's length-16 demonstration (unscored) to every sequence.")
@click.option("--per-read", is_flag=True, help="One request per read (prompt ends before the answer) instead of "
              "dense scoring of every read from one pass; for checking, or servers without prompt log-probabilities.")
@click.option("--model-arg", "model_args", multiple=True, metavar="KEY=VALUE",
              help="Backend option, repeatable: dtype=float32, device=cuda, tensor_parallel_size=2, ...")
@_connection_options
@click.option("--batch-size", type=int, metavar="N", help="Sequences per scoring call and per resumable shard "
              "(default: about 32k tokens' worth).")
@click.option("--max-batch-tokens", type=int, metavar="N", help="Padded tokens per forward pass (hf, ffbench backends).")
@click.option("--alphabet", type=int, default=2, show_default=True, metavar="M", help="Data values 0..M-1.")
@click.option("--output-dir", "-o", metavar="DIR",
              help="Run directory (default runs/<provider>_<model name>-<config hash>); "
              "rerunning with the same arguments resumes it.")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: on a terminal).")
@click.option("--revision", default="", metavar="REV", help="Release label recorded in the registry "
              "(e.g. v1.2 or a commit); later 'ffbench check --baseline registry:MODEL@REV' finds this run.")
@_registry_option
@click.option("--record/--no-record", default=True, show_default=True,
              help="Record the finished run in the registry.")
@click.option("--rescore", is_flag=True, help="Discard what --output-dir holds (results of other data, weights or "
              "config) and score again. Without it such a directory is refused.")
@_scoring_executor_options
@_prompt_options
@click.option("--dry-run", is_flag=True, help="Print, per cell and in total, the requests, prompt tokens (the model's "
              "own tokenizer, chat template included; an estimate for API models), generation budget, longest prompt "
              "against the context and cost (with --price-in/--price-out), then exit 0. Loads a tokenizer at most; "
              "writes nothing.")
@_sampling_options
@_stopping_options
@price_options
@_task_option
@click.option("--registers", "registers_k", callback=_csv(int, "register counts"), metavar="K1,K2",
              help="--task registers: numbers of registers to sweep (default 2); each K is its own set of cells.")
@click.option("--context-tokens", "context_tokens", callback=_csv(int, "token counts"), metavar="N1,N2",
              help="--task haystack: lengths as token budgets (e.g. 1000,4000,16000): each becomes the longest T "
                   "whose rendering takes at most N tokens of the model's own tokenizer (instead of --length).")
def run(model, suite, data, lengths, p_ignore, num, seed, renders, scorings, fewshot, per_read, model_args,
        base_url, api_key, batch_size, max_batch_tokens, alphabet, output_dir, progress, revision, registry, record,
        rescore, executor, workers, ray_address, chat_template, system_prompt, max_new_tokens, reasoning_budget,
        reasoning_end, dry_run, repeats, temperature, top_p, sampling_seed, stop_at_first_error, certify, max_cost,
        price_in, price_out, price_cached_in, task, registers_k, context_tokens):
    """Measure a model's flip-flop read accuracy and glitch rate, with exact 95% intervals.

    Every read of every sequence is scored and kept (samples.parquet); dense scoring reads all
    answers of a sequence from one forward pass. Interrupt at any time: rerunning the same command
    resumes without rescoring, but only when the config, the data's content and the model's weights
    are all unchanged (otherwise the directory is refused; --rescore starts over).
    Exit status: 0 done, 1 runtime failure, 2 usage error, 130 interrupted (rerun to resume).

    \b
    Examples:
      ffbench run --model hf/gpt2 --suite in_dist --render symbolic_spaced,lightswitch --fewshot
      ffbench run --model vllm/meta-llama/Llama-3.1-8B --model-arg tensor_parallel_size=2 --suite paper
      ffbench run --model openai/my-model --base-url http://127.0.0.1:8000/v1 --length 64,256 --num 500
      ffbench run --model hf/./my-checkpoint --data val_sparse.parquet --output-dir runs/mine
      ffbench run --model ffbench/transformer-mix --suite sparse --certify 1e-4
      ffbench run --model openai/my-model --suite in_dist --max-cost 2 --price-in 0.5 --price-out 1.5
      ffbench run --model hf/Qwen/Qwen3-0.6B --render chat,lightswitch_chat --scoring greedy \\
        --max-new-tokens 16 --reasoning-budget 2048 --length 64 --num 100 --dry-run
      ffbench run --model hf/./my-undo-model --task undo --suite in_dist,retraction --length 64
      ffbench run --model hf/Qwen/Qwen2.5-0.5B --task haystack --context-tokens 1000,4000,16000 --num 50

    --stop-at-first-error, --certify and --max-cost may stop the run before every sequence is scored
    (stop_reason in results.json and the summary say why); rerunning with the same flags returns the
    stopped run, with other flags (or none) it scores on from what was kept.
    """
    from ffbench import api, summary
    from ffbench.options import RunOptions

    opts = RunOptions(model, suite=list(suite), data=list(data), lengths=lengths, p_ignore=p_ignore, num=num,
                      seed=seed, render=renders or None, scoring=scorings, fewshot=fewshot, per_read=per_read,
                      model_args=_model_args(model_args), alphabet=alphabet, chat_template=chat_template,
                      system_prompt=system_prompt, max_new_tokens=max_new_tokens, reasoning_budget=reasoning_budget,
                      reasoning_end=reasoning_end, repeats=repeats, temperature=temperature, top_p=top_p,
                      sampling_seed=sampling_seed, batch_size=batch_size, max_batch_tokens=max_batch_tokens,
                      base_url=base_url, api_key=api_key, output_dir=output_dir,
                      progress=progress if progress is not None else sys.stderr.isatty(), rescore=rescore,
                      echo=lambda m: click.echo(m, err=True), executor=executor, workers=workers,
                      ray_address=ray_address, stop_at_first_error=stop_at_first_error, certify=certify,
                      max_cost=max_cost, price_in=price_in, price_out=price_out, price_cached_in=price_cached_in,
                      revision=revision, registry=registry, task=task, registers=registers_k or None,
                      context_tokens=context_tokens or None)
    if dry_run:
        click.echo(str(api.preflight_options(opts)))
        return
    results = api.evaluate_options(opts)  # opts.record is False: the run records below, and only warns
    out = results.label
    click.echo(summary.format_table(results.results))
    stopped = summary.format_stop(results)
    if stopped:
        click.echo("\n" + stopped)
    click.echo(f"\nrun directory: {out}")
    from ffbench.runs import TASK_REFERENCES

    beside = "   (beside the shipped references)" if TASK_REFERENCES.get(task or "ffl") else ""  # a task with none
    click.echo(f"next: ffbench report {out} --out {os.path.join(out, 'report.html')}{beside}")
    if record:
        line = api.record(results, revision, out, registry, strict=False)
        click.echo(line, err=line.startswith("ffbench: warning"))
    api.check_certified(results, opts)


def _model_args(pairs) -> dict:
    from ffbench import backends

    return backends.parse_model_args(pairs)


# ----------------------------------------------------------------------------- hunt
@cli.command()
@click.option("--model", "-m", required=True, metavar="SPEC",
              help="provider/model, as for 'ffbench run' (any backend that gives answer log-probabilities).")
@click.option("--budget", required=True, type=click.IntRange(min=1), metavar="N",
              help="Reads to score while searching (each reported glitch is re-scored once more on top; "
                   "hunt.json counts both). Rerun with a larger N to continue a finished hunt.")
@click.option("--budget-tokens", type=click.IntRange(min=1), metavar="N", help="Also stop after N scored tokens.")
@click.option("--length", "-T", type=int, metavar="T", help="Sequence length (default: an ffbench/ checkpoint's "
              "training length, else the task's: 512, 384 for registers); beyond the training length the hunt "
              "measures length generalisation.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, metavar="S", help="Random seed.")
@click.option("--render", "rendering", default=None, metavar="R",
              help="Rendering (see 'ffbench render --list') or a template .yaml path (default: the task's, "
                   "symbolic for ffl).")
@click.option("--estimate", metavar="TARGET", help="Instead of searching, estimate the glitch rate under TARGET "
              "(in_dist, sparse, dense, FFL(P) or FFL(W,R,I)) by importance sampling, with a 95% interval beside "
              "the i.i.d. one; samples.parquet keeps every read's weight.")
@click.option("--estimator", "estimator_name", type=click.Choice(["importance", "surrogate"]), default="importance",
              show_default=True,
              help="With --estimate: importance (cross-entropy importance sampling, one scored read per sample: for "
                   "rare rates) or surrogate (whole i.i.d. sequences of TARGET, every read scored; a small torch "
                   "network fitted on exact prefix counts, cross-fitted on 5 folds, guesses each read's verdict and "
                   "serves as control variate over many unscored draws: unbiased, and about 12x fewer reads than "
                   "i.i.d. for transformer-ref on sparse; needs torch, a deterministic model and at least a few "
                   "hundred wrong reads to learn from). samples.parquet keeps each read's verdict, fold and guess.")
@click.option("--search", type=click.Choice(["map", "bandit"]), default=None,
              help="map (default): cover the map of read descriptors (opposite run since the write and since "
                   "the previous read, decoys, ignores right before the write, reads in between, write distance, "
                   "position, write density) cell by "
                   "cell, and shrink each cell's first glitch to a minimal shape; bandit: Thompson sampling over "
                   "family points (the default when --family is given).")
@click.option("--family", "families", callback=_csv(str, "family names"), metavar="F1,F2",
              help="With --search bandit: search only these families (distractor_run, decoy_writes, write_distance, "
                   "dense_interference, run_blocks, reads_in_run, decoy_run, ffl, planted; default all).")
@click.option("--per-read", is_flag=True, help="One request per read instead of dense scoring.")
@click.option("--model-arg", "model_args", multiple=True, metavar="KEY=VALUE", help="Backend option, repeatable.")
@_connection_options
@click.option("--iid", metavar="RUN", help="A finished 'ffbench run' of this model on the i.i.d. suites to compare "
              "yields with (default: the shipped run of an ffbench/ builtin).")
@click.option("--lines", metavar="RUN_DIR", help="A finished 'ffbench run --suite stress' of this model at the hunt's "
              "--length: the map checks its tolerance lines against every read it scores and reports the reads "
              "that contradict one (default: the shipped stress run of an ffbench/ builtin).")
@click.option("--out", "-o", metavar="DIR",
              help="Hunt directory (default hunts/<provider>_<model name>-<config hash>); rerunning "
              "the same command resumes it.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@click.option("--task", default="ffl", show_default=True, metavar="ffl|undo|registers|haystack",
              help="Task (docs/tasks.md): undo and registers map their own read descriptors (undo: undos "
                   "retracted since the answering write, the chain since the last write, stack depth, whether "
                   "the toggle heuristic is wrong; registers: staleness, writes to other registers since, "
                   "own opposite ignores, whether one variable is wrong, K), seed with their structured preset "
                   "(retraction, stale) and take their default rendering and length; the map search only. "
                   "haystack hunts ffl's map in the story rendering (for a model that reads text, e.g. "
                   "ffbench/haystack-lstm).")
@_scoring_executor_options
def hunt(model, budget, budget_tokens, length, seed, rendering, estimate, estimator_name, search, families, per_read,
         model_args, base_url, api_key, iid, lines, out, progress, task, executor, workers, ray_address):
    """Search for attention glitches adaptively, or estimate a rare glitch rate by importance sampling.

    The default search maps the failure surface: every read falls in a cell of binned descriptors
    (opposite-bit run since its write and since the previous read, decoy writes, ignores right before
    the write, reads in between, write distance, position, write density); candidates are built to fill empty cells, refine
    uncertain ones and mutate each cell's lowest-margin sequence, and the first glitch of each cell is
    shrunk to a minimal failing shape. hunt.json holds the map (reads, errors and a 95% interval per
    cell), the shapes, and the reads that contradict the model's stress tolerance lines (--lines). --search bandit spends the budget over families of legal sequences instead
    (the stress families, FFL(T, p), planted reads) with a local search from near misses. Every
    glitch is re-scored before it is kept.
    Writes glitches.parquet (replay it with 'ffbench run --data') and hunt.json. Resumable:
    rerunning the same command continues; another model or config in the directory is refused.
    Exit status: 0 done, 1 runtime failure, 2 usage error, 130 interrupted (rerun to resume).

    \b
    Examples:
      ffbench hunt --model ffbench/transformer-mix --budget 20000 --out hunts/mix
      ffbench hunt --model ffbench/transformer-ref --budget 50000 --estimate in_dist --out hunts/ref-in_dist
      ffbench hunt --model ffbench/transformer-ref --budget 40000 --length 128 --estimate sparse --estimator surrogate
      ffbench hunt --model hf/./my-checkpoint --budget 5000 --length 256 --family planted,decoy_writes
      ffbench hunt --model ffbench/undo-ssm --task undo --budget 5000 --out hunts/undo-ssm
      ffbench hunt --model ffbench/registers-lstm --task registers --budget 5000 --out hunts/registers-lstm
      ffbench hunt --model ffbench/haystack-lstm --task haystack --budget 2000 --out hunts/haystack-lstm
    """
    from ffbench.hunt import driver, outputs

    show = progress if progress is not None else sys.stderr.isatty()
    summary, out_dir = driver.hunt_model(model, budget, out, length=length, seed=seed, render_name=rendering,
                                         budget_tokens=budget_tokens, estimate=estimate, families=families,
                                         per_read=per_read, model_args=_model_args(model_args), base_url=base_url,
                                         api_key=api_key, iid=iid, search=search, lines=lines, progress=show,
                                         echo=lambda m: click.echo(m, err=True), executor=executor, workers=workers,
                                         ray_address=ray_address, task=task, estimator_name=estimator_name)
    click.echo(outputs.format_summary(summary, out_dir))


# ----------------------------------------------------------------------------- train
# The flags the README, the docs and the tests use, each a name for one ``--set`` key (typed by its
# field, as --set is); every other setting is reached by --set alone.
TRAIN_ALIASES = (("--length", "-T", "length"), ("--train-mix", None, "train_mix"), ("--steps", None, "steps"),
                 ("--batch-size", None, "batch_size"), ("--lr", None, "lr"), ("--layers", None, "model.n_layer"),
                 ("--width", None, "model.d_model"), ("--heads", None, "model.n_head"), ("--hidden", None, "model.hidden"),
                 ("--d-state", None, "model.d_state"), ("--positions", None, "model.positions"),
                 ("--attn-dropout", None, "model.attn_dropout"), ("--mlp-dropout", None, "model.mlp_dropout"),
                 ("--embd-dropout", None, "model.embd_dropout"), ("--device", None, "device"))


def _train_aliases(f):
    from ffbench.train.config import CHOICES, KINDS, settable

    kinds = settable()
    for flag, short, key in reversed(TRAIN_ALIASES):
        names = [flag, short] if short else [flag]
        shape = "|".join(CHOICES[key]) if key in CHOICES else KINDS[kinds[key]]
        f = click.option(*names, f"alias__{key.replace('.', '__')}", metavar=shape,
                         help=f"= --set {key}=VALUE")(f)
    return f


def _train_epilog() -> str:
    from ffbench.train.config import defaults_help

    return ("\b\nSettable keys (--set KEY=VALUE; the default, and where --arch's paper configuration differs, "
            "that):\n" + defaults_help())


@cli.command(epilog=_train_epilog())
@click.option("--arch", type=click.Choice(["transformer", "lstm", "ssm"]), help="Architecture (= --set model.arch); "
              "its paper defaults apply (transformer: 6 x 512 x 8, 10,000 steps; lstm: 1 x 128, 500 steps; "
              "ssm: a Mamba-style selective SSM, 2 x 64, state 16, the LSTM's protocol at lr 3e-3).")
@click.option("--recipe", metavar="FILE", help="YAML training config (as in ffbench/baselines/recipes/); flags and "
              "--set override it.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Any training or model setting, repeatable, e.g. --set model.n_layer=2 --set lr=3e-4 "
                   "--set train_mix=0.9,0.98,0.1 (the keys and their defaults are listed below).")
@_train_aliases
@click.option("--out", "-o", required=True, metavar="DIR", help="Checkpoint directory (evaluate with --model ffbench/DIR). "
              "Rerunning the same command resumes the run saved there.")
@click.option("--save-every", type=click.IntRange(min=0), default=100, show_default=True, metavar="N",
              help="Save the training state to DIR every N steps (0: only on Ctrl-C and at the end).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
def train(arch, recipe, sets, out, save_every, progress, **aliases):
    """Train a reference Transformer, LSTM or selective SSM on fresh flip-flop batches (the paper's optimiser).

    Settings come from the architecture's paper defaults, then --recipe, then the flags, then
    --set (nanoGPT's configurator: every field of the training and model configuration is a key,
    typed by its field; a bad key or value is one line, exit 2).

    The training state is saved in DIR every --save-every steps and on Ctrl-C; rerunning the same
    command resumes and ends with the same weights as an uninterrupted run. A DIR holding another
    configuration is refused.

    \b
    Examples:
      ffbench train --arch lstm --out runs/lstm                     # the paper's LSTM (R2)
      ffbench train --arch transformer --layers 2 --width 128 --heads 4 --length 128 --steps 3000 --out tf
      ffbench train --arch transformer --set model.n_layer=2 --set model.positions=alibi --set lr=1e-3 --out tf
      ffbench train --arch ssm --out runs/ssm                       # a Mamba-style selective SSM
      ffbench train --recipe ffbench/baselines/recipes/transformer-mix.yaml --out tf-mix
      ffbench run --model ffbench/tf --length 128 --suite paper
    """
    from ffbench.train import config

    kinds = config.settable()
    pairs = [(key, config.parse_value(key, kinds[key], raw, f"{flag} {raw}"))
             for flag, _, key in TRAIN_ALIASES
             if (raw := aliases[f"alias__{key.replace('.', '__')}"]) is not None]
    pairs += [config.parse_set(text) for text in sets]
    cfg = config.layered(arch, recipe, pairs)

    from ffbench.train import trainer

    show = progress if progress is not None else sys.stderr.isatty()
    try:
        _, metrics = trainer.train(cfg, out=out, progress=show, log=lambda m: click.echo(m, err=True),
                                   save_every=save_every)
    except trainer.Interrupted as exc:
        click.echo(f"ffbench: interrupted after step {exc.step} of {cfg.steps}; the training state is saved in "
                   f"{out}: rerun the same command to resume", err=True)
        sys.exit(130)
    fin = metrics["final_in_dist"]
    click.echo(f"trained {cfg.model.arch} ({metrics['parameters']:,} parameters) in {metrics['train_seconds']:.0f} s "
               f"({metrics['tokens_per_second']:,} tokens/s); in-distribution: {fin['errors']} "
               f"error{'' if fin['errors'] == 1 else 's'} in "
               f"{fin['reads']:,} reads; checkpoint: {out}")
    click.echo(f"next: ffbench run --model ffbench/{out} --suite paper   (scored at its training length, "
               f"T = {cfg.length})")


# ----------------------------------------------------------------------------- sweep
@cli.command()
@click.argument("config", metavar="CONFIG.yaml")
@click.option("--out", "-o", metavar="DIR", help="Sweep directory (default sweeps/<name>).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: a process pool on this machine; ray: a Ray cluster (pip install 'ffbench[ray]').")
@click.option("--workers", type=click.IntRange(min=1), metavar="N", help="Local processes (default: one per CPU).")
@click.option("--ray-address", metavar="ADDR", help="An existing Ray cluster (default: a local Ray instance).")
@click.option("--suites", callback=_csv(str, "suite names"), metavar="NAMES",
              help="Evaluate only these suites this time (overrides the config's eval.suites).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
def sweep(config, out, executor, workers, ray_address, suites, progress):
    """Train and evaluate a grid of configurations x replicates; resumable; prints the table.

    See ffbench/baselines/recipes/r2-lstm-sweep.yaml for the paper's LSTM replicate study (R2).
    A malformed file, an unknown key or a bad value is refused before anything runs.
    """
    from ffbench.train import sweep as sw

    raw = sw.load_config(config)
    if suites:
        raw.setdefault("eval", {})["suites"] = suites
    sw.expand(raw, where=f"sweep config {config!r}")  # every grid point valid before anything runs
    root = out or str(Path("sweeps") / str(raw.get("name", Path(config).stem)))
    show = progress if progress is not None else sys.stderr.isatty()
    rows = sw.run_sweep(raw, root, executor=executor, workers=workers, progress=show,
                        echo=lambda m: click.echo(m, err=True), ray_address=ray_address)
    suites = tuple((raw.get("eval") or {}).get("suites", ["in_dist", "sparse", "dense"]))
    click.echo(sw.format_table(rows, suites))
    click.echo(f"table: {Path(root) / 'table.csv'}")


# ----------------------------------------------------------------------------- export
class _ExportGroup(click.Group):
    """``ffbench export CHECKPOINT --out DIR`` (no subcommand) still exports a model: it means ``export model``."""

    def parse_args(self, ctx, args):
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["model", *args]
        return super().parse_args(ctx, args)


@cli.group(cls=_ExportGroup)
def export():
    """Export a checkpoint (model), suites as a Hugging Face dataset (dataset), or a run's results (results)."""


@export.command("model")
@click.argument("checkpoint", metavar="CHECKPOINT")
@click.option("--out", "-o", required=True, metavar="DIR", help="Hugging Face model directory to write.")
def export_model(checkpoint, out):
    """Export a Transformer checkpoint to Hugging Face, with a character tokenizer.

    GPT-2 style with learned positions -> GPT2LMHeadModel; --style llama with RoPE and SwiGLU ->
    LlamaForCausalLM. The result loads with hf/DIR and vllm/DIR and in lm-eval.
    (``ffbench export CHECKPOINT --out DIR`` means the same.)
    """
    from ffbench.backends.native import resolve
    from ffbench.train.export import export as export_checkpoint

    export_checkpoint(resolve(checkpoint), out)
    click.echo(f"exported to {out}")


@export.command("dataset")
@click.option("--suite", "suites", multiple=True, callback=_csv(str, "suite names"), metavar="NAMES",
              help="Presets to export (paper, in_dist, sparse, dense, stress), comma-separated or repeated.")
@click.option("--length", "-T", "lengths", callback=_csv(int, "lengths"), metavar="L1,L2",
              help="Lengths (default: each suite's 512); one config per suite and length.")
@click.option("--num", "-n", type=click.IntRange(min=1), metavar="N",
              help="Sequences per suite (default: the suite's size); for stress, per point.")
@click.option("--seed", type=click.IntRange(min=0), metavar="S", help="Seed (default: each suite's fixed seed).")
@click.option("--hunt", "hunts", multiple=True, metavar="DIR", help="A hunt directory: its glitches become a config.")
@click.option("--title", metavar="TEXT", help="The dataset card's title.")
@click.option("--out", "-o", required=True, metavar="FOLDER", help="The dataset folder to write (new or empty).")
@_task_option
@click.option("--registers", "registers_k", type=int, metavar="K", help="--task registers: number of registers "
              "(default 2).")
def export_dataset(suites, lengths, num, seed, hunts, title, out, task, registers_k):
    """Write suites, the stress grid or a hunt's glitches as a Hugging Face dataset folder.

    One parquet file per config (data/<suite>_T<length>/test.parquet) and a dataset card README.md
    whose YAML lists the configs, the generation parameters and each file's SHA-256. Loads with
    datasets.load_dataset(FOLDER, CONFIG); publish with 'hf upload USER/NAME FOLDER --repo-type dataset'.

    \b
    Examples:
      ffbench export dataset --suite paper,stress --out ffbench-data
      ffbench export dataset --task undo --suite paper,retraction --length 128 --out ffbench-undo
    """
    from ffbench.export import dataset

    configs = dataset.plan(list(suites), list(lengths or []), num, seed, list(hunts), task, registers_k)
    meta = dataset.export(configs, out, title)
    for name, m in meta.items():
        click.echo(f"{name}: {_count(m['rows'], 'row')} -> {m['path']} (sha256 {m['file_sha256'][:16]}...)")
    click.echo(f"wrote {out}/{dataset.CARD}; load with datasets.load_dataset({out!r}, {next(iter(meta))!r})")


@export.command("results")
@click.argument("run_ref", metavar="RUN")
@click.option("--out", "-o", required=True, metavar="DIR", help="Folder to write the files into.")
@click.option("--dataset", metavar="USER/NAME", help="The Hub dataset holding 'ffbench export dataset' (its configs "
              "are the tasks); needed for .eval_results/ffbench.yaml.")
@click.option("--source-url", metavar="URL", help="Where the results come from (a report, logs), cited in the files.")
@click.option("--relationship", type=click.Choice(["first_party", "third_party", "collaborative", "other"]),
              default="third_party", show_default=True, help="Every Eval Ever: who evaluated, relative to the model.")
def export_results(run_ref, out, dataset, source_url, relationship):
    """Write a run's results for model cards, the Hub and Every Eval Ever.

    RUN: a run directory, a shipped reference (ffbench/NAME) or registry:MODEL@REV. Writes
    model-index.yaml (a model card's metadata), .eval_results/ffbench.yaml (with --dataset) and
    every_eval_ever.json, each with the glitch rate and its exact interval (and stress tolerances).
    """
    from ffbench import runs
    from ffbench.export import results

    for path in results.export(runs.load(run_ref), out, dataset, source_url, relationship):
        click.echo(f"wrote {path}")


# ----------------------------------------------------------------------------- import
@cli.command("import")
@click.argument("log", metavar="LOG")
@click.option("--out", "-o", required=True, metavar="RUNDIR", help="The run directory to write (new or empty).")
@click.option("--model", "-m", metavar="SPEC", help="The model's name in results and the registry (default: what the "
              "log says, e.g. hf/gpt2 from lm-eval's model arguments).")
def import_(log, out, model):
    """Turn an Inspect AI log or lm-eval --log_samples output into an ffbench run directory.

    LOG: an Inspect log (.eval/.json) of ffbench/flipflop or ffbench/stress, or lm-eval's
    samples_<task>_<date>.jsonl of an fflm task (or the folder holding them). The sequences are
    regenerated and checked; the result is what 'ffbench run' writes, for check, report and record.

    \b
    Example:
      ffbench import logs/2025-01-01T00-00-00_flipflop_abc.eval --out runs/inspect-a
      ffbench check --candidate runs/inspect-b --baseline runs/inspect-a
    """
    from ffbench.imports import import_log
    from ffbench.summary import format_table

    results = import_log(log, out, model)
    click.echo(format_table(results.results))
    click.echo(f"wrote {out}: ffbench check / report / record read it as a run")


# ----------------------------------------------------------------------------- tasks-path
@cli.command("tasks-path")
def tasks_path():
    """Print the folder of ffbench's lm-evaluation-harness tasks, for lm_eval --include_path.

    \b
    Example:
      lm_eval --model hf --model_args pretrained=gpt2 --include_path "$(ffbench tasks-path)" --tasks fflm
    """
    from ffbench.resources import resource_dir

    click.echo(str(resource_dir("tasks")))


# ----------------------------------------------------------------------------- report
@cli.command()
@click.argument("inputs", nargs=-1, metavar="RUN...")
@click.option("--out", "-o", required=True, metavar="FILE.html", help="The HTML file to write.")
@click.option("--ref", "references", multiple=True, metavar="NAME",
              help="Shipped reference shown beside your models (repeatable; default: the shipped references of "
                   "the tasks your runs are of: lstm-ref and transformer-ref for ffl, undo-* for undo, registers-* "
                   "for registers).")
@click.option("--no-refs", is_flag=True, help="Show only the given runs.")
@click.option("--task", metavar="TASK", help="Draw this task's shipped references (ffl, undo or registers; no RUN "
              "needed): '--task undo' shows undo-transformer, undo-lstm and undo-ssm side by side, with where each "
              "breaks.")
@click.option("--history/--no-history", default=False, show_default=True,
              help="Draw each model's glitch rate across the revisions recorded in the registry.")
@_registry_option
@click.option("--failing", type=click.IntRange(min=0), default=5, show_default=True, metavar="N",
              help="Example failing reads shown per cell, and glitches per family of a hunt.")
@click.option("--attention", type=click.IntRange(min=0), default=3, show_default=True, metavar="N",
              help="Failing reads per native Transformer whose attention maps are drawn (needs torch).")
@click.option("--title", default="ffbench report", show_default=True, help="Page title.")
def report(inputs, out, references, no_refs, history, registry, failing, attention, title, task):
    """Write one self-contained HTML report (opens offline) of runs, references, sweeps and hunts.

    RUN is a run directory, a shipped reference (ffbench/transformer-ref), registry:MODEL@REV, a
    sweep directory / table.csv (replicate plots), or a hunt directory ('ffbench hunt --out': yields
    per family, the shortest glitch, examples, and an --estimate hunt's interval beside i.i.d.). The
    shipped references of your runs' tasks are drawn beside your models unless --no-refs (an undo
    run beside the undo references); runs of a task other than ffl get a table of where each
    model breaks, with the task's reference heuristic (docs/tasks.md).

    \b
    Examples:
      ffbench report runs/my-model --out report.html
      ffbench report --task undo --out undo.html
      ffbench report runs/v1 runs/v2 sweeps/r2-lstm --out report.html --history
      ffbench report hunts/mix --no-refs --out hunt.html
    """
    from ffbench.report import build_report, check_task, write_report

    if Path(out).is_dir():
        raise click.BadParameter(f"{out!r} is a directory; give a file name such as "
                                 f"{str(Path(out) / 'report.html')!r}", param_hint="--out")
    refs = [] if no_refs else (list(references) if references else None)
    if task is not None:
        check_task(task, bool(inputs), no_refs, bool(references))
    if not inputs and refs == []:
        raise click.UsageError("nothing to report: give RUN directories or drop --no-refs")
    html = build_report(list(inputs), refs, registry, with_history=history, failing_per_cell=failing,
                        attention_reads=attention, title=title, echo=lambda m: click.echo(m, err=True), task=task)
    path = write_report(out, html)
    click.echo(f"report: {path} ({path.stat().st_size / 1024:.0f} kB)")


# ----------------------------------------------------------------------------- check
def _rate_in_unit(ctx, param, value):
    if value is not None and not 0.0 < value < 1.0:
        raise click.BadParameter(f"must be a rate between 0 and 1 (exclusive), got {value:g}")
    return value


def _ceiling(ctx, param, value):
    if value is not None and not 0.0 <= value < 1.0:
        raise click.BadParameter(f"must be a rate in [0, 1) (0: any error fails), got {value:g}")
    return value


@cli.command()
@click.option("--candidate", "-c", required=True, metavar="RUN", help="Run directory of the model under test.")
@click.option("--baseline", "-b", metavar="RUN|REF", help="What it must not be worse than: a run directory, a "
              "shipped reference (ffbench/transformer-ref) or registry:MODEL@REV (registry:MODEL = latest).")
@click.option("--max-glitch-rate", type=float, callback=_ceiling, metavar="X",
              help="Also fail a cell whose glitch rate is significantly above X (exact binomial test); "
                   "0 = zero tolerance, any wrong read fails its cell (the paper's objective).")
@click.option("--alpha", type=float, default=0.05, show_default=True, callback=_rate_in_unit, metavar="A",
              help="Family-wise false-alarm rate over all cells (Holm).")
@click.option("--allow-missing-baseline", is_flag=True, help="If the baseline does not exist yet (a first release, "
              "an empty registry), apply only --max-glitch-rate instead of failing with exit 2.")
@click.option("--junit", metavar="FILE", help="Write a JUnit XML report (one test case per cell and test).")
@click.option("--json", "json_path", metavar="FILE", help="Write the verdict as JSON (passed, each test's p-value).")
@click.option("--summary", "summary_path", metavar="FILE", envvar="GITHUB_STEP_SUMMARY", show_envvar=True,
              help="Append a Markdown summary to FILE.")
@_registry_option
def check(candidate, baseline, max_glitch_rate, alpha, allow_missing_baseline, junit, json_path, summary_path,
          registry):
    """Gate a release: exit 1 if the candidate glitches significantly more than the baseline.

    Cells are matched on suite, length, p_ignore, rendering, scoring and run variant (e.g. few-shot).
    Each is tested exactly, so a rise within noise passes and a real one fails: when both runs
    scored the very same sequences, the paired exact McNemar test on the reads only one of them got
    wrong; otherwise Fisher's one-sided test on error counts. With --max-glitch-rate, a cell shown
    to be above the ceiling fails too. registry:MODEL takes the latest recorded run that shares a
    cell with the candidate (and says which). Exit status: 0 pass, 1 regression, 2 usage error,
    3 could not judge (a run that cannot be read, e.g. a damaged file).

    \b
    Examples:
      ffbench check --candidate runs/new --baseline runs/old --junit ffbench-junit.xml
      ffbench check --candidate runs/new --baseline registry:my-org/model@v1.2 --max-glitch-rate 1e-3
    """
    from ffbench import api
    from ffbench import check as gate

    verdict = api.gate(candidate, baseline, max_glitch_rate, alpha, allow_missing_baseline, registry,
                       notify=lambda m: click.echo(m, err=True))
    click.echo(gate.text_summary(verdict))
    if junit:
        Path(junit).write_bytes(gate.junit_xml(verdict))
    if json_path:
        import json

        Path(json_path).write_text(json.dumps(gate.verdict_json(verdict), indent=1) + "\n", encoding="utf-8")
    if summary_path:
        with open(summary_path, "a", encoding="utf-8") as fh:
            fh.write(gate.markdown(verdict) + "\n")
    sys.exit(0 if verdict.passed else 1)


# ----------------------------------------------------------------------------- doctor
@cli.command()
@click.argument("directory", metavar="DIR")
@click.option("--repair", is_flag=True, help="Remove what is damaged, so that rerunning the same command scores "
              "exactly that again.")
def doctor(directory, repair):
    """Verify a run or hunt directory: one line per problem (exit 1 when there is one).

    Checks every shard against the rows it states (checksums, cell, sequence range, read count),
    results.json and samples.parquet against each other, the response cache, and leftover partial
    files. --repair only ever removes; the next run scores again what was removed.
    """
    from ffbench import doctor as checkup

    sys.exit(1 if checkup.doctor(directory, repair, echo=click.echo) else 0)


# ----------------------------------------------------------------------------- registry
@cli.command()
@click.option("--model", "-m", metavar="SPEC", help="Only this model (as given to 'ffbench run --model').")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON lines.")
@_registry_option
def history(model, as_json, registry):
    """Show recorded runs: a model's glitch rate across revisions."""
    import json

    from ffbench import metrics
    from ffbench.registry import Registry

    found = Registry(registry).runs(model)
    if not found:
        raise FFBenchError(f"no recorded run{f' of {model!r}' if model else ''} in the registry")
    for entry in found:
        results = entry["results"]
        fp = (results.fingerprint.get("model") or {}).get("id", "")[:12] or "-"
        if as_json:
            click.echo(json.dumps({k: entry[k] for k in ("id", "model", "revision", "created", "run_dir")}
                                  | {"fingerprint": results.fingerprint,
                                     "results": [c.to_dict() for c in results.results]}))
            continue
        click.echo(f"#{entry['id']}  {entry['model']}  revision {entry['revision'] or '-'}  {entry['created']}  "
                   f"weights {fp}")
        for c in results.results:
            click.echo(f"    {c.key.describe()}: {metrics.describe_rate(c.errors, c.reads)}")


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN...")
@click.option("--revision", default="", metavar="REV", help="Release label of these runs.")
@_registry_option
def record(run_dirs, revision, registry):
    """Record finished run directories in the registry (ffbench run does this itself).

    Exits 1 when a run cannot be recorded (an unusable registry, a revision already filed with other
    weights), so a release pipeline's "record" step cannot pass without recording.
    """
    from ffbench import api, runs

    loaded = [runs.load(ref) for ref in run_dirs]  # every reference resolves before anything is written
    for ref, results in zip(run_dirs, loaded):
        click.echo(api.record(results, revision, ref, registry, strict=True))


# ----------------------------------------------------------------------------- entry point
def _stopping(signum, frame):
    """Ctrl-C and SIGTERM (a scheduler, ``kill``, ``timeout``): say so at once, then stop like
    Ctrl-C everywhere (requests in flight abandoned, partial files removed, what was kept said),
    rather than going silent or vanishing mid-write."""
    print("ffbench: stopping...", file=sys.stderr, flush=True)
    raise KeyboardInterrupt


def main(argv=None) -> None:
    import signal
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _stopping), signal.signal(signal.SIGINT, _stopping)
    try:
        _main(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous[0])
            signal.signal(signal.SIGINT, previous[1])


def _main(argv) -> None:
    try:
        cli.main(args=argv, prog_name="ffbench", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("ffbench: aborted", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as exc:  # bare 'ffbench': the help, not an error
        click.echo(exc.ctx.get_help())
        sys.exit(0)
    except click.UsageError as exc:
        hint = f" (see 'ffbench {exc.ctx.info_name} --help')" if exc.ctx is not None and exc.ctx.parent else ""
        click.echo(redact.text(f"ffbench: error: {exc.format_message()}{hint}"), err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(redact.text(f"ffbench: error: {exc.format_message()}"), err=True)
        sys.exit(exc.exit_code)
    except Interrupted as exc:
        click.echo(redact.text(f"ffbench: {exc}"), err=True)
        sys.exit(130)
    except CouldNotJudge as exc:
        click.echo(redact.text(f"ffbench: error: could not judge: {exc}"), err=True)
        sys.exit(3)
    except UsageError as exc:
        click.echo(redact.text(f"ffbench: error: {exc}"), err=True)
        sys.exit(2)
    except FFBenchError as exc:
        click.echo(redact.text(f"ffbench: error: {exc}"), err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("ffbench: interrupted; rerun the same command to resume what was saved", err=True)
        sys.exit(130)
