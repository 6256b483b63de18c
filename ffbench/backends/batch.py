"""Batch APIs: the requests of one call sent as one discounted batch job, resumable, never billed twice.

With ``--model-arg batch=true`` a backend's transport hands every set of uncached requests (one
scoring call: a shard of work) to a :class:`Batcher` instead of sending them one by one. The
batcher:

1. keys the request set by a hash of its request keys and looks the key up in the cache file;
   a job recorded there (by an earlier, interrupted run) is polled, never resubmitted;
2. otherwise records that a job is being created, creates it (each request's ``custom_id`` is its
   cache key, so results map back to requests whatever order they come in), and records the job
   id before the first poll;
3. polls until the job ends, downloads its results, stores every answer in the response cache
   (so a later run, batched or not, never asks again) and marks the job done;
4. resubmits only the requests that came back without an answer (the job expired, results are
   missing, or a request failed in a way worth retrying), saying so, up to ``max_rounds`` jobs.
   A request refused outright (e.g. invalid) stops the run with the provider's message, after the
   other answers are stored.

A provider states how to do each step with a :class:`BatchAPI`. Creating a job is retried only when
a retry cannot create a second job: either the provider can find the job an earlier attempt
created (``find``: OpenAI jobs carry the request-set hash in their metadata), or the server
refused the attempt before acting on it (429, 408, overload). A run killed in the instant
between creating a job and recording its id finds the job by its tag where the provider allows
it; where it does not (Anthropic), the rerun says so and submits again.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from ffbench.backends.transport import Ambiguous, Failure, Transport
from ffbench.errors import FFBenchError


@dataclass(frozen=True)
class JobStatus:
    ended: bool
    status: str  # the provider's word for it: completed, expired, ended, ...
    fatal: str | None = None  # the job failed as a whole ("was cancelled"): stop after storing answers


@dataclass(frozen=True)
class Result:
    """One line of a job's results: the response body, or why there is none."""

    custom_id: str
    body: dict | None = None
    failure: Failure | None = None


class BatchAPI:
    """One provider's batch endpoints. ``items`` are (custom_id, request payload) pairs."""

    provider = "api"
    findable = False  # True when find() can tell whether a job for a request set already exists

    def create(self, endpoint: str, items: list[tuple[str, dict]], tag: str) -> str:
        """Submit a job; return its id. ``tag`` names the request set (for :meth:`find`)."""
        raise NotImplementedError

    def find(self, tag: str) -> str | None:
        """The id of a job created for ``tag`` by an earlier attempt, if the provider can tell."""
        return None

    def status(self, job_id: str) -> JobStatus:
        raise NotImplementedError

    def results(self, job_id: str) -> Iterable[Result]:
        """Every result line the provider returns for an ended job (complete or not)."""
        raise NotImplementedError


class Batcher:
    def __init__(self, api: BatchAPI, poll_interval: float = 30.0, max_rounds: int = 9):
        self.api = api
        self.poll_interval = float(poll_interval)
        self.max_rounds = max(1, int(max_rounds))

    def set_key(self, transport: Transport, endpoint: str, keys: Iterable[str]) -> str:
        blob = json.dumps([self.api.provider, transport.namespace, endpoint, sorted(keys)])
        return hashlib.sha256(blob.encode()).hexdigest()

    def run(self, transport: Transport, endpoint: str, todo: dict[str, dict], bodies: dict[str, dict]) -> None:
        """Answer every request in ``todo`` (cache key -> payload) into ``bodies``."""
        api, store = self.api, transport.store
        missing = dict(todo)
        rounds = 0
        while missing:
            tag = self.set_key(transport, endpoint, missing)
            job = store.job(tag)
            if job is not None and job["state"] == "submitted":
                job_id = job["job_id"]
                transport.notify(f"{api.provider} batch {job_id} for these {len(missing)} requests was submitted "
                                 "by an earlier run: polling it instead of resubmitting")
            else:
                if rounds >= self.max_rounds:
                    raise FFBenchError(f"{len(missing)} requests still unanswered after {rounds} {api.provider} "
                                       "batch jobs; rerun to try again")
                job_id = self._create(transport, endpoint, missing, tag, interrupted=job is not None
                                      and job["state"] == "creating")
            rounds += 1
            status = self._wait(transport, job_id)
            results = transport.call(lambda job_id=job_id: list(api.results(job_id)))
            answered, retry, refused = {}, Counter(), []
            for r in results:
                if r.custom_id not in missing or r.custom_id in answered:
                    continue
                if r.body is not None:
                    try:
                        transport.check(endpoint, r.custom_id, missing[r.custom_id], r.body)
                    except Exception as exc:  # classified like an online response
                        failure = transport.policy.classify(exc)
                        if failure is None:
                            raise
                        retry[failure.reason] += 1
                        continue
                    answered[r.custom_id] = r.body
                elif r.failure is not None and not r.failure.retry:
                    refused.append(r.failure.reason)
                else:
                    retry[r.failure.reason if r.failure else "no result"] += 1
            transport.record(answered, batched_requests=len(answered))
            bodies.update(answered)
            store.save_job(tag, api.provider, job_id, "done", len(missing))
            left = {k: v for k, v in missing.items() if k not in answered}
            if refused:
                raise FFBenchError(f"{api.provider} batch {job_id}: {len(refused)} of {len(missing)} requests were "
                                   f"refused ({refused[0]}); the {len(answered)} answers are kept")
            if status.fatal:
                raise FFBenchError(f"{api.provider} batch {job_id} {status.fatal}: {len(answered)} answers kept; "
                                   f"rerun to resubmit the other {len(left)} requests")
            if left:
                retry["no result"] += len(left) - sum(retry.values())
                why = ", ".join(f"{n} {reason}" for reason, n in retry.most_common() if n > 0)
                transport.notify(f"{api.provider} batch {job_id} ({status.status}) left {len(left)} of "
                                 f"{len(missing)} requests unanswered ({why}): resubmitting only those")
                transport.count(batch_resubmitted=len(left))
            missing = left

    def _create(self, transport: Transport, endpoint: str, missing: dict[str, dict], tag: str,
                interrupted: bool) -> str:
        api, store = self.api, transport.store
        items = sorted(missing.items())
        if interrupted:
            found = transport.call(lambda: api.find(tag)) if api.findable else None
            if found is not None:
                transport.notify(f"{api.provider} batch {found} was created by an interrupted run: polling it")
                store.save_job(tag, api.provider, found, "submitted", len(missing))
                return found
            if not api.findable:
                transport.notify(f"an earlier run was stopped while creating a {api.provider} batch for these "
                                 f"{len(missing)} requests, and {api.provider} cannot say whether it was created: "
                                 "submitting them again")
        store.save_job(tag, api.provider, None, "creating", len(missing))
        attempts = 0

        def create():
            nonlocal attempts
            attempts += 1
            found = api.find(tag) if api.findable and attempts > 1 else None
            return found or api.create(endpoint, items, tag)

        try:
            job_id = transport.call(create, repeatable=api.findable)
        except Ambiguous as exc:
            raise FFBenchError(f"creating an {api.provider} batch for {len(missing)} requests failed ({exc}); it may "
                               "exist anyway: look for it in the provider's console before rerunning, since a "
                               "rerun submits these requests again") from None
        except FFBenchError:
            store.save_job(tag, api.provider, None, "done", len(missing))  # refused: nothing was created
            raise
        store.save_job(tag, api.provider, job_id, "submitted", len(missing))
        transport.count(batch_jobs=1)
        return job_id

    def _wait(self, transport: Transport, job_id: str) -> JobStatus:
        while True:
            status = transport.call(lambda: self.api.status(job_id))
            if status.ended:
                return status
            transport.sleep(self.poll_interval)
