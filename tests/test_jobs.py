"""Durable jobs: queued once per id, claimed by one worker at a time, finished exactly once
(also when a worker whose claim ran out comes back late), retried with backoff, given up when
their attempts or deadline are spent, and found again after a restart (they live in the store).
Every test runs against each store implementation."""

from __future__ import annotations

import time

import pytest

from backend.postcall import jobs
from tests.postgres import configured_store

FAST = jobs.Policy(max_attempts=3, first_delay=0.0, max_delay=0.0)


def test_a_job_is_queued_once_and_claimed_by_one_worker(store):
    assert jobs.enqueue(store, "summary:s1", "summary", {"session_id": "s1"})
    assert not jobs.enqueue(store, "summary:s1", "summary", {"session_id": "s1"})  # idempotent
    first = jobs.claim(store, worker="a")
    assert (first["id"], first["kind"], first["payload"], first["worker"]) == (
        "summary:s1",
        "summary",
        {"session_id": "s1"},
        "a",
    )
    assert jobs.claim(store, worker="b") is None  # claimed: nobody else gets it


def test_a_dead_workers_claim_runs_out_and_the_result_is_written_once(store, monkeypatch):
    jobs.enqueue(store, "j1", "summary", {})
    jobs.claim(store, worker="dies")
    assert jobs.claim(store, worker="b") is None  # the first claim is still valid
    later = time.time() + jobs.CLAIM_SECONDS + 1  # the worker died: its claim runs out
    monkeypatch.setattr(jobs.time, "time", lambda: later)
    again = jobs.claim(store, worker="b")
    assert again is not None and again["worker"] == "b"
    assert jobs.finish(store, "j1", {"summary": "from b"})
    assert not jobs.finish(store, "j1", {"summary": "from the late worker"})  # exactly one result
    assert store.job("j1")["result"] == {"summary": "from b"}
    assert store.job("j1")["state"] == "done"
    assert jobs.claim(store) is None


def test_failures_retry_with_backoff_then_give_up(store):
    jobs.enqueue(store, "j2", "webhook", {})
    for attempt in (1, 2):
        assert jobs.claim(store)["id"] == "j2"
        state = jobs.fail(store, "j2", f"HTTP 500 #{attempt}", FAST)
        assert (state["state"], state["attempts"], state["error"]) == ("retrying", attempt, f"HTTP 500 #{attempt}")
    assert jobs.claim(store)["id"] == "j2"
    assert jobs.fail(store, "j2", "HTTP 500 #3", FAST)["state"] == "gave_up"
    assert jobs.claim(store) is None
    history = [e["data"]["state"] for e in store.events("job", "j2")]
    assert history == ["queued", "claimed", "retrying", "claimed", "retrying", "claimed", "gave_up"]


def test_backoff_doubles_and_is_capped():
    policy = jobs.Policy(first_delay=10.0, max_delay=60.0)
    assert [round(policy.delay(n) / b, 1) <= 1.2 for n, b in ((1, 10), (2, 20), (3, 40))] == [True] * 3
    assert all(policy.delay(n) <= 72.0 for n in range(1, 30))
    assert policy.delay(1) >= 8.0


def test_a_retry_waits_for_its_time(store):
    jobs.enqueue(store, "j3", "summary", {})
    jobs.claim(store)
    jobs.fail(store, "j3", "timeout", jobs.Policy(first_delay=3600.0))
    assert jobs.claim(store) is None  # not due for an hour


def test_skip_records_why(store):
    jobs.enqueue(store, "j4", "summary", {})
    assert jobs.skip(store, "j4", "skipped: no key")
    assert (store.job("j4")["state"], store.job("j4")["reason"]) == ("skipped", "skipped: no key")
    assert not jobs.finish(store, "j4", {})


def test_jobs_outlive_the_process(data_dir):

    first = configured_store(data_dir)
    jobs.enqueue(first, "j5", "summary", {"session_id": "s5"})
    first.close()
    again = configured_store(data_dir)  # a restart: the job is still due
    assert jobs.claim(again)["payload"] == {"session_id": "s5"}


@pytest.mark.parametrize("n", [3])
def test_due_jobs_come_oldest_first(store, n):
    for i in range(n):
        jobs.enqueue(store, f"k{i}", "summary", {})
    assert [jobs.claim(store)["id"] for _ in range(n)] == ["k0", "k1", "k2"]


@pytest.mark.json_store_only  # the JSON store's index
def test_a_jobs_payload_stays_in_the_journal_not_in_every_processs_index(store):
    event = {"call": {"session_id": "s9", "information_count": 7}, "session": {"caller_id": "+15551234567"}}
    jobs.enqueue(store, "webhook:call.ended:s9", "webhook", {"event": event})
    assert "payload" not in store._read().jobs["webhook:call.ended:s9"]  # only its offset is indexed
    assert store.job("webhook:call.ended:s9")["payload"] == {"event": event}
    assert jobs.claim(store)["payload"] == {"event": event}
