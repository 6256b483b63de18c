"""Identity that cannot go stale (issue 23): weights changed in place with the same size and mtime
(``cp -p``, ``rsync -t``, image builds) get a new fingerprint; ``FFBENCH_REHASH=1`` hashes in full."""

from __future__ import annotations

import hashlib
import os
import sqlite3

import pytest

from ffbench import identity


@pytest.fixture
def model_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FFBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(identity.HashCache, "SMALL_FILE", 0)  # every file goes through the cache
    d = tmp_path / "m"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"A" * 4096)
    (d / "config.json").write_text('{"n": 1}')
    return d


def _same_size_and_mtime(path, content: bytes, replace: bool) -> None:
    st = path.stat()
    if replace:  # a new file renamed over the old one (rsync -t)
        tmp = path.with_name(".tmp")
        tmp.write_bytes(content)
        os.replace(tmp, path)
    else:  # rewritten in place (cp -p over it)
        with open(path, "r+b") as fh:
            fh.write(content)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)


@pytest.mark.parametrize("replace", [False, True])
def test_weights_changed_with_the_same_size_and_mtime_get_a_new_fingerprint(model_dir, replace):
    before = identity.directory_fingerprint(model_dir)
    assert before == identity.directory_fingerprint(model_dir)  # cached, unchanged
    _same_size_and_mtime(model_dir / "model.safetensors", b"B" * 4096, replace)
    after = identity.directory_fingerprint(model_dir)
    assert after["files"]["model.safetensors"] == hashlib.sha256(b"B" * 4096).hexdigest()
    assert after["id"] != before["id"]


def test_the_cache_answers_for_an_unchanged_file_and_rehash_bypasses_it(model_dir, monkeypatch):
    true = identity.directory_fingerprint(model_dir)["files"]["model.safetensors"]
    with sqlite3.connect(os.environ["FFBENCH_CACHE_DIR"] + "/file-hashes.sqlite") as db:
        db.execute("UPDATE file_hashes SET sha256 = 'planted' WHERE path LIKE '%model.safetensors'")
    assert identity.directory_fingerprint(model_dir)["files"]["model.safetensors"] == "planted"
    monkeypatch.setenv("FFBENCH_REHASH", "1")
    assert identity.directory_fingerprint(model_dir)["files"]["model.safetensors"] == true
