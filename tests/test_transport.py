"""The shared API transport's pieces that need no server: the AIMD in-flight limit, Retry-After
parsing, and the SQLite store surviving a killed process."""

from __future__ import annotations

import email.utils
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from ffbench.backends.transport import AdaptiveLimit, Store, retry_after


def test_aimd_halves_once_per_round_and_climbs_one_per_window():
    limit = AdaptiveLimit(8)
    stop = threading.Event()
    epochs = [limit.acquire(stop) for _ in range(8)]
    assert limit.in_flight == 8 and limit.peak == 8
    # Eight requests sent at level 8 are all throttled: the level halves once, not eight times.
    for e in epochs:
        limit.release(e, "overload")
    assert limit.level == 4 and limit.decreases == 1 and limit.in_flight == 0
    # A 429 for a request sent at the new level halves again.
    limit.release(limit.acquire(stop), "overload")
    assert limit.level == 2
    # Other failures leave the level alone; each full window of successes raises it by one.
    limit.release(limit.acquire(stop), "other")
    assert limit.level == 2
    for expected in (3, 4, 5, 6, 7, 8, 8):
        for _ in range(limit.level):
            limit.release(limit.acquire(stop), "ok")
        assert limit.level == expected  # never above the ceiling
    assert limit.history == [8, 4, 2, 3, 4, 5, 6, 7, 8]
    one = AdaptiveLimit(1)
    one.release(one.acquire(stop), "overload")
    assert one.level == 1  # never below one


def test_acquire_blocks_at_the_level():
    limit = AdaptiveLimit(2)
    stop = threading.Event()
    held = [limit.acquire(stop), limit.acquire(stop)]
    got = []
    t = threading.Thread(target=lambda: got.append(limit.acquire(stop)))
    t.start()
    time.sleep(0.3)
    assert got == [] and limit.in_flight == 2
    limit.release(held[0], "ok")
    t.join(5)
    assert len(got) == 1 and limit.in_flight == 2 and limit.peak == 2


def test_retry_after_headers():
    assert retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25  # the precise header wins
    assert retry_after({"retry-after": "3"}) == 3.0
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 27 <= retry_after({"retry-after": date}) <= 30
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None and retry_after(None) is None


CHILD = """
import sys, os
from ffbench.backends.transport import Store
store = Store(sys.argv[1])
for i in range(1000000):
    store.put_many({f"k{i}": {"i": i}})
    if i == 50:
        print("ready", flush=True)
"""


def test_store_keeps_every_committed_answer_after_sigkill(tmp_path):
    path = tmp_path / "cache.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = Store(path)
    n = store._conn().execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert n > 50
    # Every committed key is whole and readable, and the keys are exactly the first n written.
    assert all(store.get(f"k{i}") == {"i": i} for i in range(n))
    assert store.get(f"k{n}") is None
    store.save_job("set", "openai", "batch_1", "submitted", 3)
    assert store.job("set") == {"provider": "openai", "job_id": "batch_1", "state": "submitted", "requests": 3}
    store.close()


@pytest.mark.parametrize("ceiling", [0, -3])
def test_ceiling_is_at_least_one(ceiling):
    assert AdaptiveLimit(ceiling).level == 1


@pytest.mark.parametrize("provider,extra", [("openai", "api"), ("anthropic", "anthropic")])
def test_a_missing_sdk_gets_a_one_line_install_hint(provider, extra, monkeypatch):
    from ffbench.backends import load_backend
    from ffbench.errors import FFBenchError

    monkeypatch.setitem(sys.modules, provider, None)  # import of the SDK fails as if not installed
    monkeypatch.delitem(sys.modules, f"ffbench.backends.{provider}", raising=False)
    with pytest.raises(FFBenchError, match=rf"provider '{provider}' needs missing package '{provider}': "
                                           rf"pip install 'ffbench\[{extra}\]'"):
        load_backend(f"{provider}/some-model", {}, base_url="http://127.0.0.1:9", api_key="k")
