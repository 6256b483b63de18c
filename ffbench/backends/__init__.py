"""Model specs ``provider/model`` (as in inspect_ai) -> a backend, imported lazily.

``hf/<hub id or dir>``, ``vllm/<hub id or dir>``, ``openai/<model name>`` (any OpenAI-compatible
server via ``--base-url`` or ``OPENAI_BASE_URL``), ``ffbench/<builtin name or checkpoint dir>``.
Backend options arrive as ``--model-arg key=value`` strings and are coerced here.
"""

from __future__ import annotations

import importlib

from ffbench.backends.base import Backend
from ffbench.errors import FFBenchError

PROVIDERS = {
    "hf": ("ffbench.backends.hf", "HFBackend"),
    "vllm": ("ffbench.backends.vllm", "VLLMBackend"),
    "openai": ("ffbench.backends.openai", "OpenAIBackend"),
    "anthropic": ("ffbench.backends.anthropic", "AnthropicBackend"),
    "ffbench": ("ffbench.backends.native", "NativeBackend"),
}
SECRET_WORDS = ("key", "token", "secret", "password")


def parse_spec(spec: str) -> tuple[str, str]:
    provider, sep, model = spec.partition("/")
    if not sep or not model:
        raise FFBenchError(f"model spec {spec!r} must look like provider/model (providers: {', '.join(PROVIDERS)})")
    if provider not in PROVIDERS:
        raise FFBenchError(f"unknown provider {provider!r} in model spec {spec!r} (known: {', '.join(PROVIDERS)})")
    return provider, model


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
        if not sep or not key:
            raise FFBenchError(f"--model-arg must be key=value, got {pair!r}")
        out[key.strip()] = coerce(value.strip())
    return out


def public_args(args: dict) -> dict:
    """Model args safe to record: anything that looks like a credential is dropped."""
    return {k: v for k, v in args.items() if not any(w in k.lower() for w in SECRET_WORDS)}


def load_backend(spec: str, model_args: dict | None = None, **options) -> Backend:
    provider, model = parse_spec(spec)
    module_name, cls_name = PROVIDERS[provider]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name == module_name:
            raise FFBenchError(f"provider {provider!r} is not available in this version of ffbench") from None
        extra = {"hf": "hf", "vllm": "vllm", "openai": "api", "anthropic": "anthropic", "ffbench": "hf"}[provider]
        raise FFBenchError(f"provider {provider!r} needs missing package {exc.name!r}: "
                           f"pip install 'ffbench[{extra}]'") from None
    cls = getattr(module, cls_name)
    try:
        return cls(model, **(model_args or {}), **options)
    except TypeError as exc:
        if "unexpected keyword argument" in str(exc):
            bad = str(exc).split("'")[1] if "'" in str(exc) else str(exc)
            raise FFBenchError(f"{provider} backend does not take model arg {bad!r}") from None
        raise
