"""``ffbench run --dry-run``: what a run would send, before anything is spent.

Per cell and in total: requests, prompt tokens, the generation budget (tokens the requests may
generate at most), the longest prompt against the model's context, and the cost at the given
prices. It follows the scorer's own decisions (:mod:`ffbench.scoring`): which cells are scored
by one teacher-forced pass per sequence, which reads are asked one by one, and the exact prompts,
chat template and BOS included (:mod:`ffbench.prompting`, :func:`~ffbench.backends.tokenized.encode`).

For models ffbench tokenizes (``hf/``, ``vllm/``) the counts come from the model's own tokenizer,
loaded without weights, and equal what the backend sends, except for reads the dense pass can
only decide by looking at the model's log-probabilities (a rival answer outside vLLM's top-k, a
greedy path that stops inside a multi-token answer): those are re-asked one by one at run time
and are not counted here (the table says where that can happen). For API models the server's
tokenizer is unknown, so counts are an estimate and are marked as such: about one token per word,
digit or run of punctuation, plus a few tokens per chat message.

Nothing is loaded but a tokenizer and no run directory is written.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from ffbench import render
from ffbench.cost import Prices, TokenEstimate
from ffbench.errors import UsageError
from ffbench.prompting import PromptFormat, PromptOptions, per_read_prompts, shift
from ffbench.sampling import Sampling
from ffbench.scoring import is_asking, questions, uses_dense

WORD = re.compile(r" ?[^\W\d_]+| ?\d| ?[^\w\s]+|\s+")  # about one BPE token each (digits one by one)
CHAT_MESSAGE_TOKENS = 4  # role markers and separators a chat API adds around each message (estimate)
CHUNK = 256  # texts per tokenizer call
MIN_CACHED = 1024  # the shortest prefix OpenAI's and Anthropic's prompt caches keep (tokens)


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate of a text's tokens: one per word, digit or run of punctuation."""
    return len(WORD.findall(text))


@dataclass
class CellEstimate:
    """What one cell would send."""

    cell: str  # the cell key, described
    prompt: str  # raw | chat template | user message (an API's server applies its template)
    mode: str  # dense | per read | generation
    sequences: int
    reads: int
    requests: int
    prompt_tokens: int
    generation_budget: int  # tokens the cell's requests may generate, at most
    longest: int  # tokens the longest request needs in context: its prompt, plus its budget when it generates
    context: int | None
    may_reask: bool = False  # the dense pass may leave reads to re-ask that no tokenizer can predict
    cached_tokens: int = 0  # of prompt_tokens, those a provider's prompt cache is expected to serve

    @property
    def fits(self) -> bool:
        return self.context is None or self.longest <= self.context


@dataclass
class Preflight:
    """A dry run's answer: per-cell estimates, totals and cost (``str()`` is the printed report)."""

    model: str
    exact: bool  # counted with the model's own tokenizer (else estimated)
    context: int | None
    cells: list[CellEstimate] = field(default_factory=list)
    prices: Prices | None = None

    @property
    def requests(self) -> int:
        return sum(c.requests for c in self.cells)

    @property
    def prompt_tokens(self) -> int:
        return sum(c.prompt_tokens for c in self.cells)

    @property
    def generation_budget(self) -> int:
        return sum(c.generation_budget for c in self.cells)

    @property
    def cached_tokens(self) -> int:
        return sum(c.cached_tokens for c in self.cells)

    @property
    def longest(self) -> int:
        return max((c.longest for c in self.cells), default=0)

    @property
    def fits(self) -> bool:
        return all(c.fits for c in self.cells)

    def cost(self, cell: CellEstimate | None = None) -> float | None:
        if self.prices is None:
            return None
        if cell is None:
            return self.prices.cost(self.prompt_tokens, self.generation_budget, self.cached_tokens)
        return self.prices.cost(cell.prompt_tokens, cell.generation_budget, cell.cached_tokens)

    def __str__(self) -> str:
        how = ("tokens counted with the model's own tokenizer, chat template and BOS included" if self.exact else
               "tokens ESTIMATED (the server's tokenizer is unknown here): about one per word, digit or punctuation "
               "run, plus a few per chat message")
        ctx = _context(self.context, " tokens")
        head = ["cell", "prompt", "mode", "requests", "prompt tokens", "generation budget", "longest / context"]
        if self.prices is not None:
            head.append("cost (USD)")
        rows = [self._row(c.cell, c.prompt, c.mode, c.requests, c.prompt_tokens, c.generation_budget, c.longest,
                          c.context, self.cost(c), c.fits) for c in self.cells]
        rows.append(self._row("total", "", "", self.requests, self.prompt_tokens, self.generation_budget, self.longest,
                              self.context, self.cost(), self.fits))
        widths = [max(len(h), *(len(r[k]) for r in rows)) for k, h in enumerate(head)]
        left = {0, 1, 2}
        line = lambda r: "  ".join(v.ljust(w) if k in left else v.rjust(w)
                                   for k, (v, w) in enumerate(zip(r, widths))).rstrip()
        out = [f"dry run of {self.model}: nothing loaded but its tokenizer, no run directory written",
               f"{how}; context {ctx}", "", line(head), line(["-" * w for w in widths])]
        out += [line(r) for r in rows[:-1]] + [line(["-" * w for w in widths]), line(rows[-1])]
        if self.prices is not None:
            out.append(f"\ncost at ${self.prices.price_in or 0:g} / ${self.prices.price_out or 0:g} per million prompt / "
                       "generated "
                       "tokens, with every request using its whole generation budget (an upper bound)")
        if self.cached_tokens:
            price = self.prices.price_cached_in if self.prices is not None else None
            out.append(f"about {self.cached_tokens:,} of the prompt tokens are expected from the provider's prompt cache "
                       f"(a sequence's reads are asked in prefix order; counted where the shared prefix reaches "
                       f"{MIN_CACHED:,} tokens)" + ("" if price is None else f", priced at ${price:g} per million"))
        if any(c.may_reask for c in self.cells):
            out.append("* reads the dense pass cannot decide without the model's log-probabilities (a rival answer "
                       "outside the top-k, a greedy path that stops inside a multi-token answer) are re-asked one by "
                       "one at run time and are not counted")
        bad = [c for c in self.cells if not c.fits]
        if bad:
            out.append(f"! {len(bad)} cell(s) hold a prompt that does not fit the context: the run would refuse "
                       "them (use a shorter --length, another rendering or a smaller --max-new-tokens)")
        return "\n".join(out)

    @staticmethod
    def _row(cell, prompt, mode, requests, tokens, budget, longest, context, cost, fits) -> list[str]:
        limit = _context(context)
        row = [cell, prompt, mode, f"{requests:,}", f"{tokens:,}", f"{budget:,}",
               f"{longest:,} / {limit}" + ("" if fits else " !")]
        if cost is not None:
            row.append(f"{cost:,.4f}" if cost < 100 else f"{cost:,.2f}")
        return row


def _context(context: float | None, unit: str = "") -> str:
    """A context in words: its size, "any" for a model without a position table (``math.inf``, it runs at
    any length), "?" or "unknown" when the dry run cannot tell."""
    if context == math.inf:
        return "any" if not unit else "none (no position table: any length)"
    if not context:
        return "unknown" if unit else "?"
    return f"{context:,}{unit}"


# ----------------------------------------------------------------------------- counting
class _Counter:
    """Token counts of the texts a backend would send: exact with a tokenizer, else estimated."""

    def __init__(self, tokenizer, chat_api: bool, system_prompt: str | None):
        self.tokenizer = tokenizer
        self.overhead = 0
        if tokenizer is None and chat_api:
            self.overhead = CHAT_MESSAGE_TOKENS + (CHAT_MESSAGE_TOKENS + estimate_tokens(system_prompt)
                                                   if system_prompt else 0)

    def lengths(self, texts: list[str]) -> list[int]:
        if self.tokenizer is None:
            return [estimate_tokens(t) + self.overhead for t in texts]
        from ffbench.backends.tokenized import encode

        out: list[int] = []
        for start in range(0, len(texts), CHUNK):
            out += [len(ids) for ids, _ in encode(self.tokenizer, texts[start : start + CHUNK])]
        return out

    def answer_tokens(self, choices: tuple[str, ...], prompt: str = "") -> tuple[int, ...]:
        """Tokens of each answer after ``prompt``, tokenized together with it (the scoring rule of
        :mod:`ffbench.backends.incontext`); estimated without a tokenizer."""
        if self.tokenizer is None:
            return tuple(max(1, estimate_tokens(c)) for c in choices)
        return self.in_context([prompt], choices)[0]

    def in_context(self, prompts: list[str], choices: tuple[str, ...]) -> list[tuple[int, ...]]:
        """Per prompt, the tokens each answer takes in context (every answer one token when no
        split leaves them tokens of their own: the scorer refuses such a read)."""
        if self.tokenizer is None:
            return [self.answer_tokens(choices)] * len(prompts)
        from ffbench.backends.incontext import per_read_inputs
        from ffbench.backends.tokenized import encode

        out: list[tuple[int, ...]] = []
        for start in range(0, len(prompts), CHUNK):
            found = per_read_inputs(lambda t: encode(self.tokenizer, t, offsets=True), prompts[start : start + CHUNK],
                                    choices)
            out += [tuple(len(a) for a in x.answers) if x else (1,) * len(choices) for x in found]
        return out


def estimate(p, model, prices: Prices | None = None) -> Preflight:
    """The dry run of a validated plan (:func:`ffbench.runner.plan`) for a model reference."""
    counting = Estimator(p, model)
    report = Preflight(model.spec, counting.tokenizer is not None, counting.context,
                       prices=prices if prices is not None and prices.given else None)
    for cell in p.cells:
        arr = p.store.sequences(cell.source)
        template = p.templates[cell.render]
        rendered = [render.render(arr[i], template, p.config.alphabet, p.demo) for i in range(arr.shape[0])]
        report.cells.append(counting.cell(cell, rendered))
    return report


class Estimator:
    """What scoring some rendered sequences of a cell will send: the dry run's counting, also what
    ``--max-cost`` checks before every shard. Loads the model's tokenizer at most."""

    def __init__(self, p, model):
        self.p, self.cls = p, model.cls
        self.tokenizer = model.tokenizer()
        self.context = self.cls.context_before_load(model.name, model.args) or model.args.get("context_length")
        serving = self.cls.serving(model.name, model.args)
        self.dense_ok, self.chat_api = serving.dense, serving.chat
        self.options = PromptOptions.from_config(p.config)
        self.sampling = Sampling.from_config(p.config)
        self.counter = _Counter(self.tokenizer, self.chat_api, self.options.system_prompt)

    def cell(self, cell, rendered) -> CellEstimate:
        template = self.p.templates[cell.render]
        fmt = self.options.format(template, self.tokenizer)
        return _cell(cell, rendered, template, fmt, self.options, self.counter, self.cls, self.dense_ok, self.chat_api,
                     self.p.config.per_read, self.context, self.sampling)

    def shard(self, cell, rendered) -> TokenEstimate:
        est = self.cell(cell, rendered)
        return TokenEstimate(est.requests, est.prompt_tokens, est.generation_budget, self.tokenizer is not None,
                             est.cached_tokens)


def _cell(cell, rendered, template, fmt: PromptFormat, options: PromptOptions, counter: _Counter, cls,
          dense_ok: bool, chat_api: bool, per_read: bool, context, sampling: Sampling | None = None) -> CellEstimate:
    """A cell's requests, as :func:`ffbench.scoring.score` sends them: sampled greedy reads are asked
    one by one (no dense pass), ``--repeats`` times each."""
    sampling = sampling or Sampling()
    if cell.scoring == "greedy" and sampling.sampled:
        per_read = True
    reads = sum(len(r.targets) for r in rendered)
    choices = rendered[0].choices if rendered else ()
    prompt = "chat template" if fmt.chat else ("user message" if chat_api else "raw")
    base = dict(cell=cell.key.describe(), prompt=prompt, sequences=len(rendered), reads=reads, context=context)
    forced = shift(rendered, fmt)
    if uses_dense(dense_ok, cell.scoring, fmt.chat, per_read):
        lengths, undecided = _dense_pass(forced, counter, cell.scoring)
        echo_token = 1 if cls.connection_env else 0  # an API's echo request asks for (and bills) one token
        est = CellEstimate(mode="dense", requests=len(rendered), prompt_tokens=sum(lengths),
                           generation_budget=echo_token * len(rendered), longest=max(lengths, default=0) + echo_token,
                           **base)
        answer_tokens = counter.answer_tokens(choices, rendered[0].prompt(0) if rendered and len(rendered[0].targets)
                                              else "")
        est.may_reask = counter.tokenizer is None or not cls.capabilities.full_logprobs or (
            cell.scoring == "greedy" and max(answer_tokens, default=1) > 1)
        if undecided.size:
            _add_reasked(est, rendered, forced, undecided, template, fmt, options, counter, cls, chat_api, cell.scoring)
        return est
    all_reads = np.arange(reads)
    if cell.scoring == "choice":
        est = CellEstimate(mode="per read", requests=0, prompt_tokens=0, generation_budget=0, longest=0, **base)
        _add_reasked(est, rendered, forced, all_reads, template, fmt, options, counter, cls, chat_api, "choice")
        return est
    est = CellEstimate(mode="generation", requests=0, prompt_tokens=0, generation_budget=0, longest=0, **base)
    _add_reasked(est, rendered, forced, all_reads, template, fmt, options, counter, cls, chat_api, "greedy",
                 sampling.repeats)
    return est


def _add_reasked(est: CellEstimate, rendered, forced, reads: np.ndarray, template, fmt, options, counter, cls,
                 chat_api: bool, scoring: str, repeats: int = 1) -> None:
    """Add the requests that score ``reads`` one by one, as the scorer sends them (greedy reads
    ``repeats`` times each)."""
    choices = rendered[0].choices
    if scoring == "choice":
        prompts = per_read_prompts(forced, reads)
        for n, answer_tokens in zip(counter.lengths(prompts), counter.in_context(prompts, choices)):
            requests, tokens = cls.per_read_cost(n, answer_tokens)
            est.requests += requests
            est.prompt_tokens += tokens
            est.longest = max(est.longest, n + (0 if requests == 1 else max(answer_tokens)))
        return
    asking = is_asking(template, chat_api, fmt.chat)
    budget = options.budget(choices, asking)
    lengths = counter.lengths(questions(rendered, reads, template, fmt, asking)) * repeats
    if cls.capabilities.prefix_cache and not fmt.chat:
        est.cached_tokens += cached_estimate(rendered, reads, counter, repeats)
    est.requests += len(lengths)
    est.prompt_tokens += sum(lengths)
    est.generation_budget += budget * len(lengths)
    est.longest = max(est.longest, max(lengths, default=0) + budget)


def cached_estimate(rendered, reads: np.ndarray, counter: _Counter, repeats: int) -> int:
    """Prompt tokens a provider's cache is expected to serve when a sequence's reads are asked in
    prefix order (:func:`ffbench.scoring.prefix_waves`): each read's first answer reuses the prompt
    of the sequence's previous asked read, its further repeats its own prompt up to the answer;
    prefixes shorter than ``MIN_CACHED`` tokens are not cached."""
    bare = counter.lengths(per_read_prompts(rendered, reads))
    counts = np.array([len(r.targets) for r in rendered])
    seq = np.searchsorted(np.concatenate(([0], np.cumsum(counts)[:-1])), reads, side="right") - 1
    total, previous = 0, {}
    for s, n in zip(seq.tolist(), bare):
        before = previous.get(s, 0)
        total += (before if before >= MIN_CACHED else 0) + (repeats - 1) * (n if n >= MIN_CACHED else 0)
        previous[s] = n
    return total


def _dense_pass(forced, counter: _Counter, scoring: str) -> tuple[list[int], np.ndarray]:
    """Tokens of each sequence's dense pass, and the flat indices of reads that pass cannot decide
    whatever the model says: the answer does not tokenize alone as in context, it is the very first
    token, or a rival answer is not one token away from it (choice scoring). Without a tokenizer
    the lengths are estimates and no such read is predicted."""
    if counter.tokenizer is None or not forced:
        return counter.lengths([r.text for r in forced]), np.zeros(0, dtype=np.int64)
    from ffbench.backends.base import UNKNOWN
    from ffbench.backends.incontext import plan_dense
    from ffbench.backends.tokenized import LogprobTable, encode

    def encoder(texts):
        return encode(counter.tokenizer, texts, offsets=True)

    lengths, out, offset = [], [], 0
    for start in range(0, len(forced), CHUNK):
        chunk = forced[start : start + CHUNK]
        encoded = encoder([r.text for r in chunk])
        plan = plan_dense(encoder, [r.text for r in chunk], encoded, [r.spans for r in chunk],
                          [r.choices for r in chunk])
        tokens = plan.tokens()
        # Every log-probability the pass reads is known; the greedy path follows the sequence's own tokens.
        tables = [LogprobTable(pos, tokens, np.zeros((len(pos), len(tokens))), np.ones((len(pos), len(tokens)), bool),
                               np.array([ids[p + 1] if p + 1 < len(ids) else -1 for p in pos.tolist()], dtype=np.int64))
                  for (ids, _), pos in zip(encoded, plan.positions(encoded))]
        for (ids, _), r, scores in zip(encoded, chunk, plan.score(encoded, tables, [len(r.choices) for r in chunk],
                                                                   counter.tokenizer.decode)):
            lengths.append(len(ids))
            unknown = np.isnan(scores.logprobs).any(axis=1) if scoring == "choice" else scores.greedy == UNKNOWN
            out.append(np.flatnonzero(unknown) + offset)
            offset += len(r.targets)
    return lengths, np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


# ----------------------------------------------------------------------------- one prompt
@dataclass
class Shown:
    """The exact text one request carries, for ``ffbench render --model``."""

    text: str
    tokens: int
    exact: bool
    what: str  # which request this is, in words
    # How the answers tokenize in context (with the model's tokenizer): one line per distinct way,
    # with the reads it holds for; and how many reads the dense pass cannot decide exactly.
    answers: list[str] = field(default_factory=list)
    reasked: int | None = None


def show(model, rendered: render.Rendered, template: render.Template, scoring: str,
         options: PromptOptions) -> Shown:
    """What ``model`` receives for ``rendered`` under ``scoring``: the whole sequence for a dense
    pass, else the final read's request (its question, or its per-read prompt)."""
    cls = model.cls
    tokenizer = model.tokenizer()
    serving = cls.serving(model.name, model.args)
    dense_ok, chat_api = serving.dense, serving.chat
    fmt = options.format(template, tokenizer)
    counter = _Counter(tokenizer, chat_api, options.system_prompt)
    last = np.array([len(rendered.targets) - 1])
    wrap = "in the model's chat template" if fmt.chat else "raw text"
    if len(rendered.targets) == 0:
        raise UsageError("the sequence has no read to show")
    answers: list[str] = []
    reasked = None
    if tokenizer is not None:
        answers = _answers_in_context(tokenizer, per_read_prompts([fmt.teacher_forced(rendered)],
                                                                  np.arange(len(rendered.targets))), rendered.choices)
    if uses_dense(dense_ok, scoring, fmt.chat, False):
        text = fmt.teacher_forced(rendered).text
        if tokenizer is not None:
            reasked = int(_dense_pass([fmt.teacher_forced(rendered)], counter, scoring)[1].size)
            what = (f"one pass over the whole sequence ({wrap}), answers included; {reasked} of "
                    f"{len(rendered.targets)} reads need a request of their own after it")
        else:
            what = (f"one pass over the whole sequence ({wrap}), answers included, then a request of its own for "
                    "each read the server's top log-probabilities cannot decide (its tokenizer is unknown here)")
    elif scoring == "choice":
        text = per_read_prompts([fmt.teacher_forced(rendered)], last)[0]
        what = f"the final read's prompt, up to its answer ({wrap})"
    else:
        asking = is_asking(template, chat_api, fmt.chat)
        text = questions([rendered], last, template, fmt, asking)[0]
        what = ("the final read's question, sent as the user message (the server applies its chat template)"
                if chat_api else f"the final read's {'question' if asking else 'continuation prompt'} ({wrap})")
    return Shown(text, counter.lengths([text])[0], tokenizer is not None, what, answers, reasked)


def _answers_in_context(tokenizer, prompts: list[str], choices: tuple[str, ...]) -> list[str]:
    """One line per distinct way the answers tokenize after these prompts (the scoring rule of
    :mod:`ffbench.backends.incontext`), with how many reads it holds for."""
    from collections import Counter

    from ffbench.backends.incontext import per_read_inputs
    from ffbench.backends.tokenized import encode

    ways: Counter = Counter()
    for found in per_read_inputs(lambda t: encode(tokenizer, t, offsets=True), prompts, choices):
        if found is None:
            ways["no tokens of their own: these reads cannot be scored (ffbench refuses them)"] += 1
            continue
        ways["; ".join(f"{c!r} -> {tokenizer.convert_ids_to_tokens(list(a))}"
                       for c, a in zip(choices, found.answers))] += 1
    return [f"{way}  ({n} read{'s' if n != 1 else ''})" for way, n in ways.most_common()]


def lengths_for_tokens(model, template: render.Template, task, targets: list[int], alphabet: int = 2) -> list[int]:
    """``--context-tokens N1,N2`` (``--task haystack``): per N, the largest even T whose rendered probe
    sequence (the task's first preset at T, seed 0) takes at most N tokens of the model's own
    tokenizer (raw text, no chat template). Refused in one line where the model has no local tokenizer."""
    tokenizer = model.tokenizer()
    if tokenizer is None:
        raise UsageError(f"--context-tokens counts with the model's own tokenizer, and {model.spec} has none here: "
                         "give --length instead")
    suite = next(iter(task.suites.values()))

    def tokens(length: int) -> int:
        seq = task.sample(task.suite_dist(suite.name, suite.p_ignore, length, alphabet), 1, 0)[0]
        return len(tokenizer(render.render(seq, template, alphabet).text, add_special_tokens=False)["input_ids"])

    out = []
    for n in targets:
        if isinstance(n, bool) or n < 16:
            raise UsageError(f"--context-tokens must be at least 16, got {n}")
        lo, hi = 4, 8
        while tokens(hi) <= n:  # doubling, then bisection on even T
            lo, hi = hi, hi * 2
        while hi - lo > 2:
            mid = (lo + hi) // 4 * 2
            lo, hi = (mid, hi) if tokens(mid) <= n else (lo, mid)
        if tokens(lo) > n:
            raise UsageError(f"--context-tokens {n}: even the shortest sequence takes more tokens")
        out.append(lo)
    return out
