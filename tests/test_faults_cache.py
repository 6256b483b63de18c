"""The response cache keeps only answers that parse into scores (issue 23): an OpenAI-compatible
server whose echo logprobs lack ``top_logprobs`` fails the run in one line with nothing cached, and
once the server is fixed a rerun of the same command works; a cache poisoned by an older ffbench is
read, found unreadable, and asked again."""

from __future__ import annotations

import importlib.util
import sqlite3

import pyarrow.parquet as pq
import pytest

from ffbench import runner
from ffbench.errors import FFBenchError
from tests.fault_server import FaultServer
from tests.test_openai_faults import FAST, _cfg, _ref

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openai") is None, reason="openai not installed")

ARGS = {**FAST, "max_retries": 2}


def no_top_logprobs(body: dict) -> dict:
    for choice in body.get("choices", []):
        if choice.get("logprobs"):
            choice["logprobs"]["top_logprobs"] = None
    return body


def _choice_cfg(url):
    return _cfg(url, num=16, scorings=["choice"], model_args=ARGS)


def _go(url, out, lines=None):
    echo = lines.append if lines is not None else (lambda m: None)
    return runner.run(_choice_cfg(url), str(out), _ref(url, str(out), **ARGS), progress=False, echo=echo)


def _cached(out) -> int:
    path = out / "requests.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "clean"
    with FaultServer(faults=False) as srv:
        res = _go(srv.url, out)
    return res, pq.read_table(out / "samples.parquet").drop_columns(["cell"])


def test_an_unreadable_echo_is_never_cached_and_a_rerun_after_the_fix_works(tmp_path, clean):
    out = tmp_path / "r"
    with FaultServer(faults=False, mutate=no_top_logprobs) as srv:
        with pytest.raises(FFBenchError, match=r"request failed after 3 tries, last: malformed response "
                                               r"\(unreadable: TypeError"):
            _go(srv.url, out)
        assert not out.exists()  # nothing was kept: no directory is left behind
        srv.mutate = None  # the server is fixed
        res = _go(srv.url, out)
    assert [c.reads for c in res.results] == [c.reads for c in clean[0].results]
    assert [c.errors for c in res.results] == [c.errors for c in clean[0].results]
    assert pq.read_table(out / "samples.parquet").drop_columns(["cell"]).equals(clean[1])


def test_a_cache_poisoned_by_an_older_ffbench_is_asked_again(tmp_path, clean, capfd, monkeypatch):
    from ffbench.backends.transport import Transport

    out = tmp_path / "r"
    with FaultServer(faults=False, mutate=no_top_logprobs) as srv:
        # an older ffbench: answers were kept without being read, then the dense pass crashed on them
        with monkeypatch.context() as old:
            old.setattr(Transport, "_check_parse", lambda self, key, body: None)
            with pytest.raises(TypeError):
                _go(srv.url, out)
        assert _cached(out) == 8 and (out / "identity.json").exists()
        srv.mutate = None
        capfd.readouterr()
        res = _go(srv.url, out)
    notes = [m for m in capfd.readouterr().err.splitlines() if "cached openai responses cannot be read" in m]
    assert notes == [("ffbench: 8 cached openai responses cannot be read (unreadable: TypeError: 'NoneType' object "
                      "is not subscriptable): asking again")]  # the first shard's; the second was never sent
    assert [c.errors for c in res.results] == [c.errors for c in clean[0].results]
    assert pq.read_table(out / "samples.parquet").drop_columns(["cell"]).equals(clean[1])



def test_connections_opening_one_new_cache_at_once_all_get_it(tmp_path):
    """Ray actors share a hunt's or run's response cache: several connections open the same new SQLite
    file at once. Two of them switching it to WAL deadlock, and SQLite answers "database is locked" to one
    without waiting (seen in CI on a Ray hunt of an API model); every opener must still get the file and
    every write must land. 300 rounds of 16 threads: the code before the fix failed about 4 rounds in 300
    (so this test catches it about 98% of the time); 5 s."""
    import threading

    from ffbench.backends.transport import Store

    failed = []
    for trial in range(300):
        path = tmp_path / f"c{trial}.sqlite"
        barrier = threading.Barrier(16)

        def open_and_write(k: int) -> None:
            barrier.wait()  # every connection opens the fresh file at the same moment
            try:
                store = Store(path)
                store.put_many({f"key-{k}": {"body": k}})
                store.close()
            except Exception as exc:  # noqa: BLE001 - what a worker would die of
                failed.append((trial, repr(exc)))

        threads = [threading.Thread(target=open_and_write, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        store = Store(path)
        assert failed or all(store.get(f"key-{k}") == {"body": k} for k in range(16))
        store.close()
    assert failed == []
