"""What a model receives: a rendering's text as it is, or inside the model's chat template, and how
long its reply may be.

Renderings (:mod:`ffbench.render`) are pure text with answer spans. A *chat rendering* (``chat``,
``lightswitch_chat``, any template with ``chat: true``) is an instruction meant for a chat model,
so a local model (``hf/``, ``vllm/``) reads it inside its chat template: ``--chat-template auto``
(the default) uses the tokenizer's template when it has one, ``none`` sends raw text, and a path
names a Jinja file to use instead. Other renderings are always raw text. API chat models get the
rendered text as their user message, and their server applies its own template.

A templated prompt takes one of two shapes, and both are exact:

* **teacher forcing** (choice scoring, dense or per read): the whole rendered sequence, answers
  included, is the user message (after the system prompt, if any). The template's text around a
  message does not depend on the message, so every answer span moves by the offset where the
  message starts in the conversation, and the per-read prompt of a read is the conversation up to
  its answer: dense and per-read scoring read the very same tokens.
* **a question** (greedy scoring): the text up to a read's answer, plus the rendering's question
  (``ask``), is the user message, and the conversation ends with the assistant turn opened
  (``add_generation_prompt``), the way a chat model expects to reply. One request per read.

The beginning-of-sequence token is put in exactly once when the text is tokenized
(:func:`ffbench.backends.tokenized.encode`), whether the template writes it or the tokenizer adds it.

Reasoning models think before they answer: the answer is read after the end of the reasoning
(``</think>`` by default; ``--reasoning-end``), or from the reply alone when the API returns the
reasoning apart. A reply that is still reasoning when it reaches its token budget named no answer
and is counted as ``truncated``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ffbench.errors import FFBenchError, UsageError
from ffbench.render import Rendered, Template

AUTO, NONE = "auto", "none"
DEFAULT_REASONING_END = "</think>"
ASKED_BUDGET = 32  # tokens for a reply to a question when --max-new-tokens is not given


# ----------------------------------------------------------------------------- run options
def resolve_chat_template(value: str | None) -> tuple[str | None, str | None]:
    """``--chat-template`` as recorded in a run's config: (value, sha256 of the file's text).

    ``auto`` (the default) is recorded as None, ``none`` as ``"none"``, a Jinja file as its
    absolute path with the hash of its text, so that editing the file changes the run's identity.
    Raises UsageError for a file that does not exist or is not a Jinja template.
    """
    if value is None or value == AUTO:
        return None, None
    if value == NONE:
        return NONE, None
    path = Path(value).expanduser()
    if not path.is_file():
        raise UsageError(f"--chat-template must be auto, none or a Jinja file; {value!r} is no file")
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read chat template {value!r}: {exc}") from None
    check_jinja(source, value)
    return str(path.resolve()), hashlib.sha256(source.encode()).hexdigest()


def check_jinja(source: str, where: str) -> None:
    """UsageError, in one line, for a template that is not valid Jinja (compiled as transformers
    compiles chat templates, with its extensions)."""
    import jinja2

    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template as compile_template
    except ImportError:  # no transformers: the plain environment with the loop controls templates use
        compile_template = jinja2.Environment(extensions=["jinja2.ext.loopcontrols"]).from_string
    try:
        compile_template(source)
    except jinja2.TemplateSyntaxError as exc:
        raise UsageError(f"chat template {where!r} is not valid Jinja (line {exc.lineno}: {exc.message})") from None


def check_options(config) -> None:
    """UsageError for option values no run can use (before anything loads)."""
    options = PromptOptions.from_config(config)
    if options.max_new_tokens is not None and options.max_new_tokens <= 0:
        raise UsageError(f"--max-new-tokens must be a positive integer, got {options.max_new_tokens}")
    if options.reasoning_budget is not None and options.reasoning_budget < 0:
        raise UsageError(f"--reasoning-budget must be zero or more tokens, got {options.reasoning_budget}")
    if options.reasoning_end is not None and not options.reasoning_end.strip():
        raise UsageError("--reasoning-end must be a non-empty marker such as </think>")
    if options.chat_template not in (None, NONE) and not Path(options.chat_template).is_file():
        raise UsageError(f"chat template {options.chat_template!r} does not exist")


@dataclass(frozen=True)
class PromptOptions:
    """The run options that decide the text a model receives and how long it may reply."""

    chat_template: str | None = None  # None: auto; "none"; or the path of a Jinja file
    system_prompt: str | None = None
    max_new_tokens: int | None = None  # tokens for the answer (default: ASKED_BUDGET, or the answers' length)
    reasoning_budget: int | None = None  # further tokens a reply may spend reasoning before it answers
    reasoning_end: str | None = None  # the marker that ends the reasoning (default DEFAULT_REASONING_END)
    chat_template_sha256: str | None = None

    @classmethod
    def from_config(cls, config) -> PromptOptions:
        """The options of a run config (a RunConfig or its dict); missing fields take their defaults."""
        get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
        return cls(get("chat_template"), get("system_prompt"), get("max_new_tokens"), get("reasoning_budget"),
                   get("reasoning_end"), get("chat_template_sha256"))

    @property
    def end_marker(self) -> str:
        return self.reasoning_end or DEFAULT_REASONING_END

    def template_source(self, tokenizer) -> str | None:
        """The Jinja text to apply to chat renderings for a model with this tokenizer (None: raw)."""
        if self.chat_template == NONE or tokenizer is None:
            return None
        if self.chat_template is not None:
            source = Path(self.chat_template).read_text(encoding="utf-8")
            if self.chat_template_sha256 and hashlib.sha256(source.encode()).hexdigest() != self.chat_template_sha256:
                raise FFBenchError(f"chat template {self.chat_template!r} changed since the run was configured")
            return source
        own = getattr(tokenizer, "chat_template", None)
        if isinstance(own, dict):  # named templates: the default one
            own = own.get("default")
        return own or None

    def format(self, template: Template, tokenizer) -> PromptFormat:
        """How this rendering reaches a model with this tokenizer (raw unless a chat template applies)."""
        source = self.template_source(tokenizer) if template.chat else None
        return PromptFormat(source, self.system_prompt, tokenizer) if source else PromptFormat()

    def budget(self, choices: tuple[str, ...], asking: bool) -> int:
        """Tokens a reply may take: the answer's budget plus the reasoning budget.

        A question's reply gets ``max_new_tokens`` (default 32); a base model's continuation, which
        is matched against the answers character by character, gets the longest answer's length.
        """
        answer = self.max_new_tokens or (ASKED_BUDGET if asking else max(len(c) for c in choices))
        return answer + (self.reasoning_budget or 0)


# ----------------------------------------------------------------------------- formats
@dataclass(frozen=True)
class PromptFormat:
    """Raw text (``jinja`` None) or a chat conversation rendered by ``jinja`` with the tokenizer's
    special tokens; see the module docstring for the two shapes."""

    jinja: str | None = None
    system_prompt: str | None = None
    tokenizer: Any = field(default=None, compare=False, repr=False)

    @property
    def chat(self) -> bool:
        return self.jinja is not None

    def messages(self, content: str) -> list[dict]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + [{"role": "user", "content": content}]

    def conversation(self, content: str, reply: bool) -> tuple[str, int]:
        """The conversation's text with ``content`` as the user message, and where the message
        starts in it; ``reply`` opens the assistant turn."""
        try:
            text = self.tokenizer.apply_chat_template(self.messages(content), chat_template=self.jinja, tokenize=False,
                                                      add_generation_prompt=reply)
        except Exception as exc:  # noqa: BLE001 - any template error (e.g. "system role not supported") is one line
            raise FFBenchError(f"the chat template failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
        at = text.find(content)
        if at < 0:
            raise FFBenchError("the chat template changes the message text (it trims or rewrites it), so the answers "
                               "cannot be located in it: use --chat-template none or a template that keeps it")
        return text, at

    def teacher_forced(self, rendered: Rendered) -> Rendered:
        """The rendered sequence as the user message; spans moved to where the answers stand."""
        if not self.chat:
            return rendered
        text, at = self.conversation(rendered.text, reply=False)
        return Rendered(text, rendered.spans + at, rendered.targets, rendered.choices)

    def question(self, prompt: str) -> str:
        """A per-read question as the model receives it (assistant turn opened when templated)."""
        return self.conversation(prompt, reply=True)[0] if self.chat else prompt

    def reasoning_opened(self, prompt: str, end_marker: str) -> bool:
        """True when the templated question already opens the reasoning block (some reasoning
        models' templates end with ``<think>``), so the reply reasons until ``end_marker``."""
        start = opening_marker(end_marker)
        return bool(self.chat and start) and prompt.rstrip().endswith(start)


def opening_marker(end_marker: str) -> str | None:
    """``<think>`` for ``</think>``; None for a marker without an opening form."""
    return "<" + end_marker[2:] if end_marker.startswith("</") else None


def answer_after_reasoning(text: str, end_marker: str, opened: bool = False) -> str | None:
    """The part of a reply that answers: after the last ``end_marker``; the whole reply when it does
    not reason; None while it is still reasoning (it opened reasoning and never closed it)."""
    if end_marker and end_marker in text:
        return text.rsplit(end_marker, 1)[1]
    start = opening_marker(end_marker)
    if opened or (start and start in text):
        return None
    return text


def shift(rendered: list[Rendered], fmt: PromptFormat) -> list[Rendered]:
    return [fmt.teacher_forced(r) for r in rendered] if fmt.chat else rendered


def per_read_prompts(rendered: list[Rendered], reads: np.ndarray) -> list[str]:
    """Per-read prompts (text up to the answer) for flat read indices over the rendered sequences."""
    counts = np.array([len(r.targets) for r in rendered])
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    seq = np.searchsorted(starts, reads, side="right") - 1
    return [rendered[s].prompt(int(j - starts[s])) for s, j in zip(seq, reads)]
