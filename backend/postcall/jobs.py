"""Durable jobs on the store: each job is a series of store events (kind `job`, keyed by the
job's id), so a job outlives the process that queued it and any worker that was running it.

- `enqueue` is idempotent: a job id names one piece of work (`summary:<session>`), queued once.
- `claim` hands a due job to one worker, under the store's `jobs` exclusive section, for
  `CLAIM_SECONDS`; a worker that dies mid-job lets its claim run out, and the job is due again.
- `finish` records the result once: a second finish of the same job (a worker whose claim ran
  out came back late) writes nothing, so each job has exactly one result.
- `fail` records the error and when to try again (exponential backoff with jitter), or gives the
  job up once its attempts or its deadline are spent; `skip` records why it will not run.

The store's index keeps each job's latest state (`Index.jobs`), so finding due jobs reads no file.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from dataclasses import dataclass
from typing import Any

from backend.store.interface import Store
from backend.store.records import JOBS

log = logging.getLogger(__name__)

CLAIM_SECONDS = 120.0
OPEN = ("queued", "retrying")
ENDED = ("done", "skipped", "gave_up")


class Retry(Exception):
    """A job's attempt failed in a way worth trying again (the service is down, a timeout)."""


class Skip(Exception):
    """The job will not run, and why (e.g. `skipped: no key`)."""


@dataclass(frozen=True)
class Policy:
    """How often and how long a kind of job is tried."""

    max_attempts: int = 8
    first_delay: float = 5.0
    max_delay: float = 3600.0
    deadline_seconds: float = 24 * 3600.0

    def delay(self, attempt: int) -> float:
        """Seconds before attempt `attempt + 1`: doubling from `first_delay`, capped, with jitter."""
        base = min(self.max_delay, self.first_delay * 2 ** max(0, attempt - 1))
        return base * random.uniform(0.8, 1.2)


def worker_name() -> str:
    import os

    return f"{socket.gethostname()}:{os.getpid()}"


def enqueue(store: Store, job_id: str, kind: str, payload: dict[str, Any], *, delay: float = 0.0) -> bool:
    """Queue `job_id` unless it exists; True when queued now."""
    with store.exclusive(JOBS):
        if store.job(job_id) is not None:
            return False
        now = time.time()
        store.append_event(
            JOBS,
            job_id,
            {"state": "queued", "kind": kind, "payload": payload, "not_before": now + delay, "created": now},
        )
    return True


def claim(store: Store, kinds: tuple[str, ...] | None = None, *, worker: str | None = None) -> dict[str, Any] | None:
    """The oldest due job (of `kinds`), now claimed by `worker`; None when nothing is due."""
    now = time.time()
    with store.exclusive(JOBS):
        for job_id, job in store.due_jobs(now):
            if kinds is not None and job["kind"] not in kinds:
                continue
            store.append_event(
                JOBS, job_id, {"state": "claimed", "worker": worker or worker_name(), "until": now + CLAIM_SECONDS}
            )
            return {**store.job(job_id), "id": job_id}
    return None


def finish(store: Store, job_id: str, result: dict[str, Any]) -> bool:
    """Record the job's result, once; False (nothing written) when it already has one."""
    with store.exclusive(JOBS):
        job = store.job(job_id)
        if job is None or job["state"] in ENDED:
            return False
        store.append_event(JOBS, job_id, {"state": "done", "result": result, "at": time.time()})
    return True


def fail(store: Store, job_id: str, error: str, policy: Policy) -> dict[str, Any]:
    """Record a failed attempt: retry later, or give up when attempts or deadline are spent."""
    now = time.time()
    with store.exclusive(JOBS):
        job = store.job(job_id)
        if job is None or job["state"] in ENDED:
            return job or {}
        attempt = job.get("attempts", 0) + 1
        over = attempt >= policy.max_attempts or now - job["created"] >= policy.deadline_seconds
        data: dict[str, Any] = {"state": "gave_up" if over else "retrying", "error": error[:2000], "attempts": attempt}
        if not over:
            data["not_before"] = now + policy.delay(attempt)
        store.append_event(JOBS, job_id, data)
    (log.error if over else log.warning)("job %s attempt %d failed: %s", job_id, attempt, error[:300])
    return store.job(job_id) or {}


def skip(store: Store, job_id: str, reason: str) -> bool:
    """Record that the job will not run, and why (e.g. `skipped: no key`)."""
    with store.exclusive(JOBS):
        job = store.job(job_id)
        if job is None or job["state"] in ENDED:
            return False
        store.append_event(JOBS, job_id, {"state": "skipped", "reason": reason, "at": time.time()})
    log.info("job %s skipped: %s", job_id, reason)
    return True
