"""Hugging Face hub ids for ``hf/`` and ``vllm/``: a model that cannot be had fails at once, in one line.

Left alone, the hub client retries a model that is neither cached nor reachable five times with
back-off (about a minute), printing a warning per try, and transformers or vLLM then end in a
traceback. :func:`require_hub_model` answers first, before any heavy import: a local directory or a
cached model passes; otherwise, offline (``HF_HUB_OFFLINE=1``) fails at once, and online one HEAD
request without retries tells "no network", "no such model" and "gated" apart. Anything else
(the model exists, or the hub answered something unexpected) is left to the loader.
"""

from __future__ import annotations

import os

from ffbench.errors import FFBenchError

PROBE_FILE = "config.json"  # every transformers and vLLM model has one
PROBE_TIMEOUT = 10.0  # seconds; the hub client's own default for this request


def require_hub_model(model: str, path: str, revision: str | None = None) -> None:
    """Raise a one-line :class:`FFBenchError` when hub id ``model`` is neither a local directory
    (``path``), nor cached, nor downloadable. Returns quietly when loading can proceed."""
    if os.path.isdir(path):
        return
    try:
        from huggingface_hub import constants, try_to_load_from_cache
        from huggingface_hub.errors import HFValidationError
    except ImportError:
        return  # the loader reports the missing package itself
    try:
        cached = try_to_load_from_cache(model, PROBE_FILE, revision=revision)
    except HFValidationError:
        raise FFBenchError(f"model {model!r} is neither a local directory nor a valid Hugging Face hub id") from None
    if isinstance(cached, str):
        return
    where = f"{model!r}" + (f" at revision {revision!r}" if revision else "")
    if constants.HF_HUB_OFFLINE:
        raise FFBenchError(f"model {where} is not a local directory and not in the Hugging Face cache, and the hub is "
                           "offline (HF_HUB_OFFLINE); download it first, or pass a local model directory")
    _probe(model, where, revision)


def _probe(model: str, where: str, revision: str | None) -> None:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        get_hf_file_metadata(hf_hub_url(model, PROBE_FILE, revision=revision), timeout=PROBE_TIMEOUT)
    except GatedRepoError:
        raise FFBenchError(f"model {where} is gated on the Hugging Face hub: accept its terms on the model page and "
                           "log in (hf auth login or HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise FFBenchError(f"model {where} is not a local directory and not a model on the Hugging Face hub "
                           "(private? log in with hf auth login or HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise FFBenchError(f"model {model!r} has no revision {revision!r} on the Hugging Face hub") from None
    except (EntryNotFoundError, HfHubHTTPError):
        return  # the hub answered: let the loader name what is missing or retry what is transient
    except Exception as exc:  # noqa: BLE001 - transport errors: their classes depend on the hub client's HTTP library
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FFBenchError(f"cannot reach the Hugging Face hub to download model {where} ({reason}), and it is not "
                           "in the local cache; pass a local model directory, or download it where there is "
                           "network") from None
