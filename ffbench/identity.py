"""What a result belongs to: the model's fingerprint, the data's content hashes, and the config.

A run's identity is its config *plus* the content hash of every data source *plus* a fingerprint
of the model. A run directory resumes only on an identical identity, and results.json, the
registry, ``ffbench check`` and the report all carry it, so a number can always be traced to the
weights and sequences that produced it. Model fingerprints:

* a local model directory (``hf/``, ``vllm/``, ``ffbench/`` checkpoints, builtins): the SHA-256 of
  its weight, config and tokenizer files. Hashes of large files are cached by (path, device,
  inode, size, mtime, ctime), so an 8B model is hashed once, not on every resume, and a file
  changed in place is always hashed again (:class:`HashCache`);
* a hub model: the commit its revision resolves to (from the local cache, else the hub);
* an API model: the base URL and what the server reports about the model id.

Each fingerprint has an ``id``: the digest of exactly the fields that identify the model, which is
what identities compare.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from ffbench import redact

# Files that decide what a local model computes: weights, configs, tokenizers, chat templates and
# remote code. Logs and documentation do not enter the fingerprint.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".msgpack", ".h5", ".npz")
OTHER_SUFFIXES = (".json", ".txt", ".model", ".jinja", ".tiktoken", ".py")
NOT_MODEL_FILES = ("metrics.json", "trainer_state.json", "training_args.bin", "results.json")


def digest(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_dir() -> Path:
    if env := os.environ.get("FFBENCH_CACHE_DIR"):
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ffbench"


# ----------------------------------------------------------------------------- file hashes
class HashCache:
    """SHA-256 of files, cached so that an 8B model is hashed once, not on every resume.

    An entry answers only for the very same file unchanged: same device, inode, size, mtime *and*
    ctime (nanoseconds). Copying with ``cp -p`` or ``rsync -t`` keeps size and mtime but never the
    ctime (the kernel sets it on every write) nor, for a replaced file, the inode. Files up to
    ``SMALL_FILE`` bytes (configs, tokenizers, small checkpoints) are always hashed in full, and
    ``FFBENCH_REHASH=1`` hashes every file in full (a file system that fakes ctimes). A stale entry
    is simply re-hashed; the cache is an optimisation only: if it cannot be opened or written,
    files are hashed anew.
    """

    SMALL_FILE = 64 << 20

    def __init__(self, path: Path | None = None, rehash: bool | None = None):
        self.path = path or cache_dir() / "file-hashes.sqlite"
        self.rehash = os.environ.get("FFBENCH_REHASH", "") not in ("", "0") if rehash is None else rehash
        self._db = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30)
            self._db.execute("CREATE TABLE IF NOT EXISTS file_hashes (path TEXT PRIMARY KEY, stat TEXT, "
                             "sha256 TEXT)")
        except (OSError, sqlite3.Error):
            self._db = None

    @staticmethod
    def _stat_key(st: os.stat_result) -> str:
        return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"

    def sha256(self, file: Path) -> str:
        st = file.stat()
        key, stat = str(file.resolve()), self._stat_key(st)
        cached = self._db is not None and not self.rehash and st.st_size > self.SMALL_FILE
        if cached:
            try:
                row = self._db.execute("SELECT stat, sha256 FROM file_hashes WHERE path = ?", (key,)).fetchone()
                if row and row[0] == stat:
                    return row[1]
            except sqlite3.Error:
                pass
        h = hashlib.sha256()
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
        value = h.hexdigest()
        if self._db is not None and st.st_size > self.SMALL_FILE and self._stat_key(file.stat()) == stat:
            try:  # kept only when the file did not change while it was read
                self._db.execute("INSERT OR REPLACE INTO file_hashes VALUES (?, ?, ?)", (key, stat, value))
                self._db.commit()
            except sqlite3.Error:
                pass
        return value

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def model_files(path: Path) -> list[Path]:
    """The files of a local model directory that decide what it computes (top level only)."""
    out = []
    for f in sorted(path.iterdir()):
        if not f.is_file() or f.name.startswith(".") or f.name in NOT_MODEL_FILES:
            continue
        if f.suffix in WEIGHT_SUFFIXES or f.suffix in OTHER_SUFFIXES:
            out.append(f)
    return out


def directory_fingerprint(path: str | os.PathLike) -> dict:
    """Fingerprint of a local model directory: per-file hashes and their combined digest."""
    root = Path(path).expanduser().resolve()
    cache = HashCache()
    try:
        files = {f.name: cache.sha256(f) for f in model_files(root)}
    finally:
        cache.close()
    return {"kind": "local", "path": str(root), "files": files, "id": digest({"files": files})}


def hub_fingerprint(repo_id: str, revision: str | None = None) -> dict | None:
    """The commit a hub model's revision resolves to: from the local cache, else the hub; None if
    neither can tell (offline and not cached: loading the model fails with its own line)."""
    commit = None
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo_id, "config.json", revision=revision)
        if isinstance(hit, str):
            commit = Path(hit).parent.name
    except Exception:  # noqa: BLE001 - not installed, a malformed id: fall through to the hub
        commit = None
    if commit is None and os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("1", "true", "yes"):
        try:
            from huggingface_hub import HfApi

            commit = HfApi().model_info(repo_id, revision=revision, timeout=10).sha
        except Exception:  # noqa: BLE001 - no network, unknown repo: the backend reports it when loading
            commit = None
    return None if commit is None else hub_commit(repo_id, revision, commit)


def hub_commit(repo_id: str, revision: str | None, commit: str) -> dict:
    return {"kind": "hub", "repo": repo_id, "revision": revision, "commit": commit,
            "id": digest({"repo": repo_id, "commit": commit})}


def api_fingerprint(base_url: str | None, model: str, served: dict | None = None) -> dict:
    """An API model: its base URL and what the server reports about it (e.g. vLLM's ``root``)."""
    served = {k: v for k, v in (served or {}).items() if k not in ("created", "object", "permission")}
    base_url = redact.url(base_url)  # a password in the URL is never part of what is kept
    return {"kind": "api", "base_url": base_url, "model": model, "served": served,
            "id": digest({"base_url": base_url, "model": model, "served": served})}


def name_fingerprint(spec: str) -> dict:
    """When nothing better is known (a third-party provider): the name alone, marked as such."""
    return {"kind": "name", "model": spec, "id": digest({"model": spec})}


# ----------------------------------------------------------------------------- run identity
@dataclass
class RunIdentity:
    """Config + data content hashes + model fingerprint: what a run directory holds results of."""

    config: dict
    data: dict[str, str] = field(default_factory=dict)  # source description -> content sha256
    model: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"config": self.config, "data": self.data, "model": self.model}

    @classmethod
    def from_dict(cls, raw: dict) -> "RunIdentity":
        return cls(raw.get("config") or {}, raw.get("data") or {}, raw.get("model") or {})

    def fingerprint(self) -> dict:
        """What results.json records as ``fingerprint``."""
        return {"config_sha256": digest(self.config), "data": self.data, "model": self.model}

    def differences(self, other: "RunIdentity", include_model: bool = True) -> list[str]:
        """What differs, in words (empty when identical); the model last, and only if asked."""
        out = []
        changed = sorted(k for k in set(self.config) | set(other.config) if self.config.get(k) != other.config.get(k))
        if changed:
            out.append(f"config ({', '.join(changed)})")
        changed = [src for src in sorted(set(self.data) | set(other.data)) if self.data.get(src) != other.data.get(src)]
        if changed:
            more = f" and {len(changed) - 2} more" if len(changed) > 2 else ""
            out.append(f"data of {', '.join(changed[:2])}{more}")
        if include_model and self.model.get("id") != other.model.get("id"):
            out.append(_model_change(self.model, other.model))
        return out


def _model_change(old: dict, new: dict) -> str:
    if old.get("kind") == new.get("kind") == "local":
        files = sorted(n for n in set(old.get("files", {})) | set(new.get("files", {}))
                       if old.get("files", {}).get(n) != new.get("files", {}).get(n))
        return f"model weights ({', '.join(files) or 'files'} changed)"
    if old.get("kind") == new.get("kind") == "hub":
        return f"model commit ({old.get('commit', '?')[:12]} -> {new.get('commit', '?')[:12]})"
    return f"model ({old.get('kind', '?')} {old.get('id', '?')[:12]} -> {new.get('kind', '?')} {new.get('id', '?')[:12]})"
