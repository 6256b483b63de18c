"""Secrets never kept: credentials inside URLs are masked wherever ffbench writes or prints one.

A base URL may carry a password (``http://user:pass@host/v1``) or a key in its query
(``?api_key=...``). Whatever is written (identity.json, results.json, hunt files, the report made
from them, the registry) or printed (error lines) passes through :func:`text` or :func:`value`,
which keep the URL recognisable (scheme, host, path, the user name) and replace the secret parts
with ``***``. Keys passed as keys (``--api-key``, ``--model-arg api_key=``, the environment) are
never written at all (:func:`ffbench.backends.public_args`).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
KEYLIKE = re.compile(r"key|token|secret|passw|pwd|auth|sig|credential|session", re.IGNORECASE)
URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")


def url(address: str | None) -> str | None:
    """``address`` with the password of its user info and the values of key-like query parameters
    masked (unchanged when it holds neither)."""
    if not address:
        return address
    try:
        parts = urlsplit(address)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
        query = "&".join(_mask_pair(pair) for pair in parts.query.split("&")) if parts.query else ""
        if (netloc, query) == (parts.netloc, parts.query):
            return address
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # not a URL after all (e.g. an invalid port): mask the whole of it
        return MASK


def _mask_pair(pair: str) -> str:
    name, sep, _ = pair.partition("=")
    return f"{name}={MASK}" if sep and KEYLIKE.search(name) else pair


def text(message: str) -> str:
    """Every URL inside ``message`` passed through :func:`url` (punctuation after it kept apart)."""
    if "://" not in message:
        return message

    def one(match) -> str:
        found = match.group()
        core = found.rstrip(".,:;)]}!?")
        return (url(core) or "") + found[len(core):]

    return URL.sub(one, message)


def value(obj):
    """A JSON-ready value with every string passed through :func:`text` (dict keys included)."""
    if isinstance(obj, str):
        return text(obj)
    if isinstance(obj, dict):
        return {text(k) if isinstance(k, str) else k: value(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [value(v) for v in obj]
    return obj
