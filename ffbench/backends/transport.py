"""One transport under every API provider: retries, the response cache, usage, adaptive concurrency.

A provider only states its policy (a :class:`Policy`): how to send one request, how to tell a
usable response from a malformed one, which failures are worth retrying, and how to read token
usage. The :class:`Transport` does the rest the same way for every provider:

* **Retries** on 429, 408/409, 5xx (including Anthropic's 529 overload), timeouts, dropped
  connections and malformed responses, with exponential backoff and full jitter, honouring the
  server's ``retry-after-ms`` / ``Retry-After`` (said in a line when it is long, and capped at
  ``max_wait``, the model arg ``max_retry_wait``, 60 s by default). Any other refusal (400, 401, 404, ...) stops the
  run at once with the server's message: retrying it would fail the same way.
* **Capped replies**: a reply may hold at most :meth:`Policy.reply_limit` bytes (the model arg
  ``max_reply_bytes``, 1 MiB by default, plus room for what the request asks back: its token
  budget and, for an echoed prompt, its log-probabilities). Reading stops at the cap (the HTTP
  client's response hook, :func:`http_client`), and an over-long reply is a fault of that request,
  retried like a server error and never cached.
* **A response cache** in one SQLite file (``cache_path``): every answer is committed as it
  arrives, so a run killed at any point (even SIGKILL) keeps everything it was answered, and a
  rerun never re-sends an answered request. Identical requests within a call are sent once. Only
  usable answers are kept: a backend passes ``parse`` (the very code that reads the answer into
  scores) and an answer it cannot read is malformed (retried, never cached); a cached answer is
  parsed again when read, and asked again when it no longer parses (a cache filled by an older
  ffbench, or damaged), so a server's bad answer never poisons a directory.
* **Usage**: requests answered by the server, prompt and completion tokens, requests served from
  the cache, throttled responses (429 / overload) and retried attempts.
* **Adaptive concurrency** (AIMD): the number of requests in flight starts at the
  ``concurrency`` ceiling, is halved when the server throttles (429 or overload, at most once per
  round of requests sent at the old level), and rises by one after each full window of successes
  (as many successes as the current level), never above the ceiling.

The same SQLite file records batch jobs, so a batch run resumes by polling the job it submitted
(see :mod:`ffbench.backends.batch`). API keys belong to the provider's client only: requests are
cached by their body, which never holds a key.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import queue
import random
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ffbench.backends.base import Usage
from ffbench.errors import FFBenchError
from ffbench.io import disk_full, is_disk_full

JITTER_CAP = 60.0  # longest backoff drawn when the server gives no Retry-After (seconds)
MAX_RETRY_WAIT = 60.0  # longest wait a server's Retry-After gets (seconds; model arg max_retry_wait)
LONG_WAIT = 5.0  # a Retry-After this long (seconds) is said, not waited in silence
MAX_REPLY_BYTES = 1 << 20  # a reply's bytes beyond what its request asks back (model arg max_reply_bytes)
REPLY_BYTES_PER_TOKEN = 64  # room per token of a request's budget (a token's text and log-probability, JSON-escaped)

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batch_jobs (
    key TEXT PRIMARY KEY,      -- hash of the request set the job answers
    provider TEXT NOT NULL,
    job_id TEXT,               -- NULL while the job is being created
    state TEXT NOT NULL,       -- creating | submitted | done
    requests INTEGER NOT NULL,
    updated REAL NOT NULL
);
"""


class Malformed(Exception):
    """A response without what ffbench reads; retried like a server error."""


class Ambiguous(FFBenchError):
    """A call that must not be repeated failed in a way that leaves open whether the server acted."""


class ReplyTooLarge(Exception):
    """A reply longer than its request's cap: reading stopped there; retried, never cached."""

    def __init__(self, limit: int):
        super().__init__(f"reply over {limit} bytes (model arg max_reply_bytes)")


class Stopped(Exception):
    """Raised in worker threads when the call they serve was abandoned (another request failed)."""


@dataclass(frozen=True)
class Failure:
    """What went wrong with one attempt, as the provider's policy judges it."""

    reason: str  # one line, e.g. "HTTP 529: Overloaded"
    retry: bool = True
    overload: bool = False  # the server asks for less load: the in-flight level backs off
    retry_after: float | None = None  # seconds the server asked us to wait
    status: int | None = None  # the HTTP status the server answered with, if it answered


class Policy:
    """How one provider talks: subclasses implement ``send`` and may refine the rest.

    ``sdk`` is the provider's Stainless-generated SDK module (``openai``, ``anthropic``); both name
    their exceptions alike, so the default :meth:`classify` serves both.
    """

    provider = "api"
    sdk = None
    max_reply_bytes = MAX_REPLY_BYTES
    retry_statuses = frozenset({408, 409, 429})  # and every 5xx
    overload_statuses = frozenset({429, 503, 529})

    def send(self, endpoint: str, payload: dict) -> dict:
        """Send one request and return the response body as a JSON-ready dict."""
        raise NotImplementedError

    def validate(self, endpoint: str, payload: dict, body: dict) -> None:
        """Raise :class:`Malformed` when ``body`` lacks what the backend reads."""

    def usage(self, body: dict) -> tuple[int, int]:
        """(prompt tokens, completion tokens) the response reports."""
        return 0, 0

    def reply_limit(self, endpoint: str, payload: dict) -> int:
        """Bytes a reply to ``payload`` may hold: ``max_reply_bytes`` plus room for the tokens it may
        generate (``max_tokens`` / ``max_completion_tokens``). A provider whose request asks back
        more (OpenAI's echoed prompt log-probabilities) adds that."""
        budget = payload.get("max_completion_tokens") or payload.get("max_tokens") or 0
        return int(self.max_reply_bytes) + REPLY_BYTES_PER_TOKEN * int(budget)

    def cache_usage(self, body: dict) -> dict[str, int]:
        """Of the prompt tokens, those the provider's prompt cache served (``cached_tokens``, billed at
        the cached-input price) and wrote (``cache_write_tokens``), as the response reports them."""
        return {}

    def classify(self, exc: Exception) -> Failure | None:
        """How to treat an exception from ``send`` / ``validate``; None re-raises it (a bug)."""
        sdk = self.sdk
        cause = exc
        while cause is not None:  # an SDK may wrap the cap's exception as a connection error
            if isinstance(cause, ReplyTooLarge):
                return Failure(f"malformed response ({cause})")
            cause = cause.__cause__ or cause.__context__
        if isinstance(exc, Malformed):
            return Failure(f"malformed response ({exc})")
        if sdk is not None and isinstance(exc, sdk.APIStatusError):
            status = exc.status_code
            return Failure(f"HTTP {status}: {short(exc)}", retry=status in self.retry_statuses or status >= 500,
                           overload=status in self.overload_statuses,
                           retry_after=retry_after(getattr(exc.response, "headers", None)), status=status)
        if sdk is not None and isinstance(exc, sdk.APITimeoutError):
            return Failure("timeout")
        if sdk is not None and isinstance(exc, sdk.APIConnectionError):
            return Failure(f"connection error ({short(exc)})")
        if (sdk is not None and isinstance(exc, sdk.APIResponseValidationError)) or isinstance(
                exc, (ValueError, KeyError, TypeError, IndexError)):
            return Failure(f"malformed response ({type(exc).__name__})")
        return None


def short(exc) -> str:
    """The server's own error message when it sent one (``{"error": {"message": ...}}``), else the
    exception's; one line."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error")
        message = inner.get("message") if isinstance(inner, dict) else body.get("message")
        if isinstance(message, str) and message.strip():
            return message.strip().splitlines()[0][:200]
    return (str(getattr(exc, "message", None) or exc).strip().splitlines() or [""])[0][:200]


def retry_after(headers) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


_cap = threading.local()  # .limit: the reply cap of the request this thread is sending (None: no cap)


def http_client(sdk):
    """The provider SDK's own HTTP client with the reply cap as a response hook: a reply whose
    ``Content-Length`` is over the cap is refused unread, and one without (chunked) is read only up
    to the cap. The cap is the current thread's request's (set by :class:`Transport`); listings and
    batch files are not capped (a batch's replies are checked one by one)."""
    return sdk.DefaultHttpxClient(event_hooks={"response": [_cap_reply]})


def _cap_reply(response) -> None:
    limit = getattr(_cap, "limit", None)
    if limit is None:
        return
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise ReplyTooLarge(limit)  # the client closes the response unread
    stream = response.stream
    byte_stream = sys.modules[type(response).__module__.split(".")[0]].SyncByteStream  # httpx or httpx2

    class Capped(byte_stream):
        def __iter__(self):
            read = 0
            for chunk in stream:
                read += len(chunk)
                if read > limit:
                    raise ReplyTooLarge(limit)
                yield chunk

        def close(self) -> None:
            stream.close()

    response.stream = Capped()


class Store:
    """Responses by request key and batch jobs by request-set key, in one SQLite file.

    Each write is its own committed transaction in WAL mode, which survives the process being
    killed. Without a path the store lives in memory (nothing survives the process).
    """

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    OPEN_TRIES = 200  # about 20 s of retries while another process opens the same file

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            if self.path is None:
                db = sqlite3.connect(":memory:", check_same_thread=False)
                db.executescript(SCHEMA)
                db.commit()
            else:
                db = self._open_shared()
            self._db = db
        return self._db

    def _open_shared(self) -> sqlite3.Connection:
        """Open the file, switch it to WAL and create the tables. Several processes may do this at once
        (Ray actors sharing a hunt's or run's cache): switching the journal mode takes an exclusive lock
        and SQLite answers "database is locked" at once rather than waiting, so the opening is retried."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(self.OPEN_TRIES):
            db = sqlite3.connect(self.path, check_same_thread=False, timeout=60)
            try:
                if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")  # durable across a killed process
                db.executescript(SCHEMA)
                db.commit()
                return db
            except sqlite3.OperationalError as exc:
                db.close()
                if "locked" not in str(exc) and "busy" not in str(exc) or attempt == self.OPEN_TRIES - 1:
                    raise
                time.sleep(0.05 + 0.05 * random.random())
        raise AssertionError("unreachable")

    def get(self, key: str) -> dict | None:
        with self._lock:
            row = self._conn().execute("SELECT body FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_many(self, bodies: dict[str, dict]) -> None:
        if not bodies:
            return
        with self._lock:
            db = self._conn()
            try:
                db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?)",
                               [(k, json.dumps(b)) for k, b in bodies.items()])
                db.commit()
            except sqlite3.Error as exc:
                if is_disk_full(exc):
                    raise disk_full(self.path) from None
                raise

    def job(self, key: str) -> dict | None:
        with self._lock:
            db = self._conn()
            row = db.execute("SELECT provider, job_id, state, requests FROM batch_jobs WHERE key = ?",
                             (key,)).fetchone()
        return dict(zip(("provider", "job_id", "state", "requests"), row)) if row else None

    def save_job(self, key: str, provider: str, job_id: str | None, state: str, requests: int) -> None:
        with self._lock:
            db = self._conn()
            db.execute("INSERT OR REPLACE INTO batch_jobs VALUES (?, ?, ?, ?, ?, ?)",
                       (key, provider, job_id, state, requests, time.time()))
            db.commit()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class AdaptiveLimit:
    """How many requests may be in flight: additive increase, multiplicative decrease.

    ``level`` starts at ``ceiling``. A throttled response halves it, but only when the request was
    sent at the current level (its ``epoch``): a burst of 429s answering one overload halves once.
    Each ``level`` successes in a row raise it by one, up to ``ceiling``.
    """

    def __init__(self, ceiling: int):
        self.ceiling = max(1, int(ceiling))
        self.level = self.ceiling
        self.in_flight = 0
        self.peak = 0  # most requests ever in flight together
        self.decreases = 0
        self.history: list[int] = [self.level]  # the level after every change
        self._epoch = 0
        self._successes = 0
        self._cond = threading.Condition()

    def acquire(self, stop: threading.Event) -> int:
        with self._cond:
            while self.in_flight >= self.level:
                if stop.is_set():
                    raise Stopped()
                self._cond.wait(0.2)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            return self._epoch

    def release(self, epoch: int, outcome: str) -> None:
        """``outcome``: "ok", "overload" (429 / overload) or "other" (any other failure)."""
        with self._cond:
            self.in_flight -= 1
            if outcome == "overload" and epoch == self._epoch:
                self.level = max(1, self.level // 2)
                self._epoch += 1
                self._successes = 0
                self.decreases += 1
                self.history.append(self.level)
            elif outcome == "ok":
                self._successes += 1
                if self._successes >= self.level:
                    self._successes = 0
                    if self.level < self.ceiling:
                        self.level += 1
                        self.history.append(self.level)
            self._cond.notify_all()


def _stderr(message: str) -> None:
    print(f"ffbench: {message}", file=sys.stderr, flush=True)


class Transport:
    """Cached, retried, counted and concurrency-limited requests for one provider's policy.

    ``namespace`` (provider and base URL) is part of every cache key, so one cache file never
    answers a request meant for another server. ``notify`` receives one-line notices (batch jobs
    resumed or resubmitted); the default prints them to stderr.
    """

    def __init__(self, policy: Policy, cache_path: str | Path | None = None, namespace: str = "",
                 concurrency: int = 8, max_retries: int = 8, retry_base: float = 1.0, max_wait: float = MAX_RETRY_WAIT,
                 notify: Callable[[str], None] | None = None):
        self.policy = policy
        self.store = Store(cache_path)
        self.namespace = namespace
        self.limit = AdaptiveLimit(concurrency)
        self.max_retries = int(max_retries)
        self.retry_base = float(retry_base)
        self.max_wait = float(max_wait)
        self.notify = notify or _stderr
        self.batcher = None  # a ffbench.backends.batch.Batcher sends requests as batch jobs instead
        self.usage = Usage(extra={"throttled": 0, "retries": 0})
        self._usage_lock = threading.Lock()
        self._stop = threading.Event()
        self._usable: Callable[[str, dict], None] | None = None  # the current map call's parse check

    # ------------------------------------------------------------------ public
    def key(self, endpoint: str, payload: dict) -> str:
        return hashlib.sha256(json.dumps([self.namespace, endpoint, payload], sort_keys=True).encode()).hexdigest()

    def map(self, endpoint: str, payloads: list[dict], parse: Callable[[int, dict], object] | None = None) -> list:
        """Response bodies for ``payloads`` in order: cached ones from the store, the rest sent
        (each distinct request once) online or, with a batcher, as batch jobs.

        With ``parse`` (``parse(i, body)`` reads the answer to ``payloads[i]``), what it returns for
        each payload instead, and only answers it can read are used or kept: one it cannot read is
        malformed (retried like a server error, never cached). Calls of one transport are made one
        at a time (the runner's scoring calls are), as the parse check is the current call's."""
        keys = [self.key(endpoint, p) for p in payloads]
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        self._usable = None if parse is None else (lambda k, body: parse(first[k], body))
        bodies: dict[str, dict] = {}
        todo: dict[str, dict] = {}
        stale: list[str] = []
        try:
            for k in first:
                cached = self.store.get(k)
                if cached is not None:
                    try:
                        self._check_parse(k, cached)
                        bodies[k] = cached
                        continue
                    except Malformed as exc:
                        stale.append(str(exc))
                todo[k] = payloads[first[k]]
            if stale:
                self.notify(f"{len(stale)} cached {self.policy.provider} responses cannot be read ({stale[0]}): "
                            "asking again")
            self.count(cached_requests=len(payloads) - len(todo))
            if todo:
                if self.batcher is not None:
                    self.batcher.run(self, endpoint, todo, bodies)
                else:
                    self._send_all(endpoint, todo, bodies)
        finally:
            self._usable = None
        if parse is None:
            return [bodies[k] for k in keys]
        return [parse(i, bodies[k]) for i, k in enumerate(keys)]

    def check(self, endpoint: str, key: str, payload: dict, body: dict) -> None:
        """Raise :class:`Malformed` unless ``body`` is a usable answer to ``payload``: within the
        reply cap as kept (a batch reply, or one decompressed past it), what the provider reads is
        there, and the current call's ``parse`` reads it."""
        limit = self.policy.reply_limit(endpoint, payload)
        if len(json.dumps(body)) > limit:
            raise Malformed(str(ReplyTooLarge(limit)))
        self.policy.validate(endpoint, payload, body)
        self._check_parse(key, body)

    def _check_parse(self, key: str, body: dict) -> None:
        if self._usable is None:
            return
        try:
            self._usable(key, body)
        except FFBenchError:
            raise  # the backend's own verdict on a readable answer (e.g. a tokenizer it cannot score with)
        except Exception as exc:  # noqa: BLE001 (any shape the parser cannot read is malformed)
            raise Malformed(f"unreadable: {type(exc).__name__}: {str(exc)[:80]}") from None

    def call(self, fn: Callable, tries: int | None = None, repeatable: bool = True):
        """``fn()`` retried like a request but outside the concurrency limit and the cache (model
        listings, batch jobs). ``repeatable=False`` (creating something that must not exist
        twice): only attempts the server refused before acting (429, 408, overload) are repeated;
        after a timeout, a dropped connection or a 500 it may have acted, so the call fails."""
        return self._retrying(fn, tries, limited=False, repeatable=repeatable)

    def sleep(self, seconds: float) -> None:
        if self._stop.wait(max(0.0, seconds)):
            raise Stopped()

    def count(self, **fields: int) -> None:
        with self._usage_lock:
            for name, value in fields.items():
                if hasattr(self.usage, name) and name != "extra":
                    setattr(self.usage, name, getattr(self.usage, name) + value)
                else:
                    self.usage.extra[name] = self.usage.extra.get(name, 0) + value

    def record(self, bodies: dict[str, dict], **fields: int) -> None:
        """Store answered requests and count them with their tokens."""
        self.store.put_many(bodies)
        prompt = completion = 0
        cache: dict[str, int] = {}
        for body in bodies.values():
            try:
                p, c = self.policy.usage(body)
                cached = self.policy.cache_usage(body)
            except (TypeError, ValueError, AttributeError, KeyError):  # a usage field of another shape
                p, c, cached = 0, 0, {}  # counts are informative only: the answer itself was read
            prompt, completion = prompt + p, completion + c
            for name, value in cached.items():
                if value:  # counted only where a cache answered, so other usage stays as it was
                    cache[name] = cache.get(name, 0) + int(value)
        self.count(requests=len(bodies), prompt_tokens=prompt, completion_tokens=completion, **cache, **fields)

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------------ internals
    def _send_all(self, endpoint: str, todo: dict[str, dict], bodies: dict[str, dict]) -> None:
        """Send ``todo`` on up to ``concurrency`` worker threads. The workers are daemon threads, so
        that Ctrl-C abandons requests in flight at once (an HTTP read cannot be interrupted, and a
        thread pool's workers are joined at exit): what was answered is already cached."""
        items = list(todo.items())
        if len(items) == 1 or self.limit.ceiling == 1:
            for k, p in items:
                bodies[k] = self._fetch(endpoint, k, p)
            return
        jobs: queue.SimpleQueue = queue.SimpleQueue()
        done: queue.SimpleQueue = queue.SimpleQueue()
        for item in items:
            jobs.put(item)

        def worker() -> None:
            while not self._stop.is_set():
                try:
                    k, p = jobs.get_nowait()
                except queue.Empty:
                    return
                try:
                    done.put((k, self._fetch(endpoint, k, p), None))
                except BaseException as exc:  # noqa: BLE001 (handed to the caller's thread)
                    done.put((k, None, exc))
                    return

        threads = [threading.Thread(target=worker, daemon=True, name="ffbench-request")
                   for _ in range(min(self.limit.ceiling, len(items)))]
        for t in threads:
            t.start()
        try:
            for _ in range(len(items)):
                while True:
                    try:
                        k, body, exc = done.get(timeout=0.2)
                        break
                    except queue.Empty:
                        continue
                if exc is not None:
                    raise exc
                bodies[k] = body
        except KeyboardInterrupt:
            self._stop.set()  # waiting workers give up; those in flight are abandoned with the process
            raise
        except BaseException:
            self._stop.set()  # queued requests are dropped, waiting ones give up; answered ones stay cached
            for t in threads:
                t.join()
            self._stop.clear()
            raise
        for t in threads:
            t.join()

    def _fetch(self, endpoint: str, key: str, payload: dict) -> dict:
        def attempt():
            _cap.limit = self.policy.reply_limit(endpoint, payload)
            try:
                body = self.policy.send(endpoint, payload)
            finally:
                _cap.limit = None
            self.check(endpoint, key, payload, body)
            return body

        body = self._retrying(attempt, None, limited=True, repeatable=True)
        self.record({key: body})
        return body

    def _retrying(self, fn: Callable, tries: int | None, limited: bool, repeatable: bool):
        tries = self.max_retries + 1 if tries is None else max(1, int(tries))
        last: Failure | None = None
        for attempt in range(tries):
            if self._stop.is_set():
                raise Stopped()
            epoch = self.limit.acquire(self._stop) if limited else 0
            try:
                result = fn()
            except Exception as exc:
                failure = self.policy.classify(exc)
                if limited:
                    self.limit.release(epoch, "overload" if failure is not None and failure.overload else "other")
                if failure is None:
                    raise
                if not failure.retry:
                    raise FFBenchError(f"{self.policy.provider} server refused the request: {failure.reason}") from None
                if not repeatable and not (failure.overload or failure.status in (408, 429)):
                    raise Ambiguous(f"{self.policy.provider} request failed ({failure.reason}) after the server "
                                    "may have acted on it; not repeated") from None
                last = failure
                self.count(throttled=int(failure.overload), retries=int(attempt + 1 < tries))
                if attempt + 1 < tries:
                    self.sleep(self._delay(attempt, failure))
                continue
            if limited:
                self.limit.release(epoch, "ok")
            return result
        raise FFBenchError(f"{self.policy.provider} request failed after {tries} tries, last: {last.reason}")

    def _delay(self, attempt: int, failure: Failure) -> float:
        if failure.retry_after is not None:
            wait = min(failure.retry_after, self.max_wait)
            if failure.retry_after >= LONG_WAIT:
                capped = f"; waiting {wait:g} s (max_retry_wait)" if wait < failure.retry_after else ""
                self.notify(f"{self.policy.provider} server asks to wait {failure.retry_after:g} s before retrying "
                            f"({failure.reason}){capped}")
            return wait
        return random.uniform(0, min(JITTER_CAP, self.max_wait, self.retry_base * 2 ** attempt))  # full jitter
