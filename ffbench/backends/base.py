"""The one small protocol every backend implements.

Backends know nothing about flip-flops. They receive a text, the character spans where answers
stand, and the answer strings ("choices"), and return log-probabilities or generations:

* ``score_dense(requests)``: one forward pass per text (teacher forcing) gives, for every span,
  the log-probability of each choice in that span and which choice the greedy continuation would
  produce. Exact for causal models. Entries a backend cannot know (a multi-token alternative
  that is not in the text, a token outside a server's top-k) are NaN, and the scorer re-asks
  those reads one by one, so nothing is dropped or guessed.
* ``score_per_read(prompts, choices)``: the log-probability of each choice after each prompt.
* ``generate(prompts, max_new_tokens)``: greedy continuations (chat backends wrap the prompt), each
  a :class:`Generation` that says whether the reply was cut by the token budget and carries any
  reasoning the API returned apart from the reply. ``max_new_tokens`` is the whole budget of a
  reply, reasoning included; a chat API whose reasoning has its own budget reads the part of it
  set aside for reasoning from :attr:`Backend.reasoning_budget`, and sends
  :attr:`Backend.system_prompt` as the system message (:meth:`Backend.messages`).

Local backends that tokenize (``hf``, ``vllm``) also give their tokenizer (:meth:`Backend.chat_tokenizer`
once loaded, :meth:`Backend.load_tokenizer` before, without weights): the scorer applies its chat
template to chat renderings (:mod:`ffbench.prompting`), and dry runs count tokens with it.

Token accounting (``usage``) lets benchmarks compare tokens processed per read.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np

NO_CHOICE = -1  # the greedy continuation is none of the choices (counts as invalid)
UNKNOWN = -2  # the backend cannot tell from the dense pass; ask per read


@dataclass
class ScoreRequest:
    """One rendered text with the answer spans to score; the text holds the true answers."""

    text: str
    spans: np.ndarray  # (n, 2) [start, end) character spans
    choices: tuple[str, ...]


@dataclass
class SpanScores:
    logprobs: np.ndarray  # (n, n_choices); NaN where unknown
    greedy: np.ndarray  # (n,) choice index of the greedy continuation, NO_CHOICE or UNKNOWN
    bound: np.ndarray | None = None  # (n, n_choices) True where logprobs holds only an upper bound
    # (n,) the greedy continuation's text, up to the token where it named an answer or left every
    # answer (None where not decoded); what a read decided by the dense pass "said"
    text: list | None = None

    def __post_init__(self) -> None:
        if self.bound is None:
            self.bound = np.zeros(self.logprobs.shape, dtype=bool)


@dataclass
class Generation:
    """A model's greedy reply to one prompt, as the backend received it.

    ``truncated`` is True when generation stopped because it hit the token budget (finish reason
    ``length`` / ``max_tokens``), not because the model ended its reply: a read whose reply was cut
    before it named an answer is counted as truncated, never silently as a plain error.
    ``reasoning`` is the separate reasoning field some APIs return beside the reply (None if none).
    """

    text: str
    truncated: bool = False
    reasoning: str | None = None


@dataclass
class Usage:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_requests: int = 0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"requests": self.requests, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "cached_requests": self.cached_requests, **self.extra}


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do, as one value (the scorer, the dry run and the plan read it; a backend
    whose answer depends on its model args gives it per instance, and :meth:`Backend.serving` before
    loading)."""

    dense: bool = False  # every read of a sequence scored from one forward pass (score_dense)
    chat: bool = False  # a chat API: prompts become messages, answers are generated, no answer log-probabilities
    full_logprobs: bool = True  # a dense pass sees every answer's log-probability (False: a top-k; some reads re-asked)
    tokenizes_prompts: bool = False  # ffbench tokenizes the prompts itself, so it applies chat templates
    sampling: bool = False  # sends temperature / top_p / seed (else decodes greedily)
    prefix_cache: bool = False  # a remote prompt cache: a sequence's reads are sent in prefix order, one wave per read
    answers_in_one_request: bool = False  # score_per_read reads every single-token answer from one request of the prompt
    hub_models: bool = False  # model names that are not local directories are Hugging Face hub ids


# The class flags that Capabilities replaced, and its field for each: a plugin that still sets one
# is read (with a DeprecationWarning) so it keeps working.
FORMER_FLAGS = {"supports_dense": "dense", "is_chat": "chat", "full_logprobs": "full_logprobs",
                "applies_chat_templates": "tokenizes_prompts", "takes_sampling": "sampling",
                "caches_prefixes": "prefix_cache", "single_token_answers_in_one_request": "answers_in_one_request",
                "hub_models": "hub_models"}


def local_dir(model: str) -> str | None:
    """The absolute path of ``model`` when it names an existing local directory, else None."""
    import os

    path = os.path.expanduser(model)
    return os.path.abspath(path) if os.path.isdir(path) else None


class Backend:
    """Base class: subclasses set ``provider`` and implement what their engine can do.

    Class-level hooks run *before* a model is loaded, so a plan that cannot work fails in one line
    without loading weights or creating a run directory: :meth:`check_plan` (usage errors of this
    provider with these renderings and scorings), :meth:`fingerprint_before_load` (what the weights
    are) and :meth:`memory_per_sequence` (what one sequence will cost).
    """

    provider = "base"
    capabilities = Capabilities()
    requires: tuple[tuple[str, str], ...] = ()  # (distribution, minimum version), for plugins
    extra: str | None = None
    # Remote providers: the environment variables their ``base_url`` and ``api_key`` default to. Such a
    # backend also receives ``cache_path``, the run directory's response cache.
    connection_env: dict[str, str] = {}
    # Set by the scorer before generate(): the run's system prompt, and how many tokens of the
    # max_new_tokens it passes are set aside for reasoning (None: no reasoning budget given).
    system_prompt: str | None = None
    reasoning_budget: int | None = None
    # Also set by the scorer (ffbench.sampling): how greedy reads are sampled, and which of a read's
    # repeats this generate() call asks (None: one answer per read). Providers that take sampling
    # parameters (``capabilities.sampling``) send them; the others decode greedily.
    sampling = None
    repeat: int | None = None
    read_ids: list | None = None  # with ``repeat``: each prompt's read identity, in its request's cache key
    # Remote providers with a prompt cache (``capabilities.prefix_cache``) get a sequence's reads in
    # prefix order, one wave per read; ``prefix_breaks`` (per prompt, the offsets where the prompts of its
    # sequence's earlier reads end, then its own) lets a provider place cache breakpoints.
    prefix_breaks: list | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        former = {FORMER_FLAGS[k]: bool(v) for k, v in vars(cls).items() if k in FORMER_FLAGS}
        if former:
            warnings.warn(f"{cls.__name__}: the class flags {', '.join(k for k in vars(cls) if k in FORMER_FLAGS)} "
                          "are replaced by one value, capabilities = Capabilities(...)", DeprecationWarning,
                          stacklevel=2)
            cls.capabilities = replace(cls.capabilities, **former)

    def __init__(self, model: str):
        self.model = model
        self.usage = Usage()

    # ------------------------------------------------------------------ before loading
    @classmethod
    def check_plan(cls, model: str, args: dict, renders: list, scorings: list[str]) -> None:
        """Raise UsageError when this provider cannot score these renderings / scorings."""

    @classmethod
    def fingerprint_before_load(cls, model: str, args: dict, options: dict) -> dict | None:
        """The model's fingerprint without loading it, or None when only a loaded backend can tell."""
        from ffbench import identity

        path = local_dir(model)
        if path is not None:
            return identity.directory_fingerprint(path)
        if cls.capabilities.hub_models:
            return identity.hub_fingerprint(model, args.get("revision"))
        return None

    @classmethod
    def memory_per_sequence(cls, model: str, args: dict, tokens: int) -> int | None:
        """Peak bytes one sequence of ``tokens`` tokens needs in one forward pass (None: unknown)."""
        return None

    @classmethod
    def memory_per_batch(cls, model: str, args: dict, tokens: int, sequences: int) -> int | None:
        """Peak bytes of one forward call over ``sequences`` sequences of ``tokens`` tokens (None:
        ``sequences`` times :meth:`memory_per_sequence`)."""
        return None

    @classmethod
    def load_tokenizer(cls, model: str, args: dict):
        """The model's own tokenizer, loaded without weights (dry runs, ``ffbench render --model``),
        or None when the backend does not tokenize on this side (API models)."""
        return None

    @classmethod
    def context_before_load(cls, model: str, args: dict) -> int | None:
        """What :meth:`context_length` will say, read without loading weights (None: unknown)."""
        return None

    @classmethod
    def per_read_cost(cls, prompt_tokens: int, choice_tokens: tuple[int, ...]) -> tuple[int, int]:
        """(requests, prompt tokens) that :meth:`score_per_read` sends for one read whose prompt has
        ``prompt_tokens`` tokens: one request per answer, the prompt followed by it, unless the
        answers are single tokens and the backend reads them all from one request of the prompt."""
        if cls.capabilities.answers_in_one_request and all(n == 1 for n in choice_tokens):
            return 1, prompt_tokens
        return len(choice_tokens), len(choice_tokens) * prompt_tokens + sum(choice_tokens)

    @classmethod
    def serving(cls, model: str, args: dict) -> Capabilities:
        """The capabilities the loaded backend will have, before loading (whether it will score by
        dense passes, whether it is a chat API, ...); providers whose answer depends on model args
        override this."""
        return cls.capabilities

    # ------------------------------------------------------------------ loaded
    def fingerprint(self) -> dict:
        """The loaded model's fingerprint, asked only when :meth:`fingerprint_before_load` could not
        tell (providers that learn it by loading or by asking a server override this)."""
        from ffbench import identity

        return identity.name_fingerprint(f"{self.provider}/{self.model}")

    def context_length(self) -> int | None:
        """Longest input in tokens, or None when unknown."""
        return None

    def count_tokens(self, text: str) -> int | None:
        """Tokens of ``text`` as this model reads it, or None when the backend cannot tell."""
        return None

    def chat_tokenizer(self):
        """The Hugging Face tokenizer whose chat template and special tokens format this model's
        prompts, or None (the backend sends raw text, or a server applies its own template)."""
        return None

    def messages(self, prompt: str) -> list[dict]:
        """A chat API's messages for one prompt: the run's system prompt (if any), then the prompt."""
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + [{"role": "user", "content": prompt}]

    def score_dense(self, requests: list[ScoreRequest]) -> list[SpanScores]:
        raise NotImplementedError(f"{self.provider} backend has no dense scoring")

    def score_per_read(self, prompts: list[str], choices: tuple[str, ...]) -> np.ndarray:
        raise NotImplementedError(f"{self.provider} backend cannot score log-probabilities")

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[Generation]:
        raise NotImplementedError(f"{self.provider} backend cannot generate")

    def describe(self) -> dict:
        """Provenance for results.json: never secrets."""
        return {"provider": self.provider, "model": self.model}

    def close(self) -> None:
        pass


def check_model_path(model: str) -> str:
    """The expanded path of a model given as a local directory; a one-line error when a name that
    is clearly a path (``./x``, ``/x``, ``~/x``, ``a/b/c``) does not exist. Hub ids pass through."""
    import os

    path = os.path.expanduser(model)
    looks_local = model.startswith((".", "/", "~")) or "/" in model.strip("/").split("/", 1)[-1]
    if looks_local and not os.path.isdir(path):
        from ffbench.errors import UsageError

        raise UsageError(f"model path {model!r} does not exist")
    return path


def check_fits(model: str, tokens: int, limit: int | None, new_tokens: int = 0) -> None:
    """Refuse a prompt of ``tokens`` tokens (plus ``new_tokens`` to generate) that exceeds the
    context ``limit``, in one line: ffbench never truncates a prompt."""
    if limit and tokens + new_tokens > limit:
        from ffbench.errors import FFBenchError

        extra = f" plus {new_tokens:,} tokens to generate" if new_tokens else ""
        smaller = ", a smaller --max-new-tokens" if new_tokens else ""
        raise FFBenchError(f"a prompt of {tokens:,} tokens{extra} does not fit the context of {model} ({limit:,} "
                           f"tokens), and ffbench never truncates: use a shorter --length{smaller} or another rendering")


def choice_from_continuation(continuation: str, choices: tuple[str, ...]) -> int:
    """Index of the choice a base model's finished continuation starts with (longest wins), else NO_CHOICE."""
    best, best_len = NO_CHOICE, -1
    for k, c in enumerate(choices):
        if continuation.startswith(c) and len(c) > best_len:
            best, best_len = k, len(c)
    return best


def choice_so_far(continuation: str, choices) -> int:
    """The same rule for a continuation that may still go on (a greedy path read from a dense pass):
    UNKNOWN while a longer answer could still follow, else :func:`choice_from_continuation`."""
    if any(c.startswith(continuation) and c != continuation for c in choices):
        return UNKNOWN
    return choice_from_continuation(continuation, tuple(choices))
