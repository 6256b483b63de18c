"""One model, resolved once, for every command that takes ``--model``.

``ffbench run``, its dry run, ``ffbench hunt``, ``ffbench render --model`` and the Python API
(``ffbench.evaluate``, ``ffbench.api.preflight``) all turn a ``provider/model`` spec and its flags
into a model the same way, here: the spec normalised, the model args parsed and checked
(``--max-batch-tokens``), the server and key of a remote provider taken from its flags or from the
provider's own environment variables (``connection_env``), what is safe to record, the default
sequence length (an ``ffbench/`` checkpoint's training length), whether it is a chat model (the
provider's own :meth:`~ffbench.backends.base.Backend.serving`, which knows ``api=chat``) and which
chat template it may take. The response cache is attached last (:meth:`ModelHandle.connect`),
once the command knows its directory. Two copies of this once drifted apart: ``ffbench hunt``
passed an option no backend takes and missed ``api=chat``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from ffbench import backends
from ffbench.backends import ModelRef
from ffbench.errors import UsageError


@dataclass
class ModelHandle:
    """A resolved model before anything loads. The provider's class is imported only when a question
    needs it, so the usage errors of a command's own flags come first (as one line each) even where
    the provider's packages are missing. ``api_key`` is never recorded anywhere."""

    ref: ModelRef
    given_base_url: str | None = None  # the flags; a remote provider's environment fills what is not given
    given_api_key: str | None = None

    spec = property(lambda self: self.ref.spec)
    provider = property(lambda self: self.ref.provider)
    name = property(lambda self: self.ref.name)
    args = property(lambda self: self.ref.args)
    cls = property(lambda self: self.ref.cls)
    tokenizer = property(lambda self: self.ref.tokenizer)  # the model's own, loaded once (ModelRef.tokenizer)

    need_key: bool = True  # a remote model with no key is a usage error (as a run would send requests)
    _connection: tuple | None = None

    def _connect_args(self) -> tuple[str | None, str | None]:
        """(base_url, api_key) of a remote provider however they were given (the flag, ``--model-arg
        base_url=/api_key=``, or the provider's environment variables; :func:`backends.connection`),
        worked out once; (None, None) for a local model."""
        if self._connection is None:
            self._connection = (backends.connection(self.ref, self.given_base_url, self.given_api_key,
                                                    need_key=self.need_key)
                                if self.cls.connection_env else (None, None))
        return self._connection

    @property
    def base_url(self) -> str | None:
        """A remote provider's server: the flag, a model arg, else the provider's environment variable."""
        return self._connect_args()[0]

    @property
    def api_key(self) -> str | None:
        return self._connect_args()[1]

    @property
    def remote(self) -> bool:
        """Whether the model is served by a remote provider (one that takes a URL, a key and a cache)."""
        return bool(self.cls.connection_env)

    @property
    def recorded_args(self) -> dict:
        """The model args a config records: anything that looks like a credential is dropped (and a
        remote provider's ``base_url``/``api_key`` args are moved to the connection first)."""
        self._connect_args()
        return backends.public_args(self.ref.args)

    @property
    def recorded_base_url(self) -> str | None:
        """The server a config records, credentials redacted (None for local models)."""
        from ffbench import redact

        return redact.url(self.base_url) if self.base_url else None

    @property
    def is_chat(self) -> bool:
        """Whether the model answers as a chat API (no log-probabilities of answers), as its
        provider says for these args (``openai/`` with ``api=chat`` is one)."""
        return self.ref.serving().chat

    def default_length(self) -> int | None:
        """The length a run or hunt uses when none is given: an ``ffbench/`` checkpoint's training
        length, else None (the caller's own default)."""
        if self.provider != "ffbench":
            return None
        from ffbench.backends.native import training_length

        return training_length(self.name)

    def check_chat_template(self, template: str | None, flag: str) -> None:
        """UsageError for a chat template (``--chat-template FLAG``) on a model ffbench does not tokenize."""
        from ffbench import prompting

        if template not in (None, prompting.NONE) and not self.cls.capabilities.tokenizes_prompts:
            raise UsageError(f"--chat-template {flag} applies to models ffbench tokenizes (hf/, vllm/); "
                             f"{self.provider}/ models get the rendered text as it is")

    def connect(self, cache_path: str | os.PathLike | None = None,
                notify: Callable[[str], None] | None = None) -> ModelRef:
        """The model reference to check, fingerprint and load: a remote provider receives its server,
        key, the directory's response cache and where to say that it waits."""
        if self.remote:
            self.ref.options = {"base_url": self.base_url, "api_key": self.api_key,
                                "cache_path": None if cache_path is None else str(cache_path),
                                "notify": notify or (lambda m: None)}
        return self.ref


def resolve(spec: str, model_args: dict | None = None, base_url: str | None = None, api_key: str | None = None,
            max_batch_tokens: int | None = None, need_key: bool = True) -> ModelHandle:
    """Resolve ``spec`` with its flags (usage errors of the spec and args raised here); imports nothing
    of the provider yet."""
    ref = backends.resolve(spec, dict(model_args or {}))
    if max_batch_tokens:
        if ref.provider not in ("hf", "ffbench"):
            raise UsageError(f"--max-batch-tokens applies to hf/ and ffbench/ models, not {ref.provider}/")
        ref.args["max_batch_tokens"] = max_batch_tokens
    return ModelHandle(ref, base_url, api_key, need_key)
