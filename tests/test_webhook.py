"""The end-of-call webhook against real HTTP receivers on 127.0.0.1 (http.server in a thread)
that check every request with standardwebhooks' own `Webhook(secret).verify(body, headers)`:
delivered and verified; a receiver that fails the first attempts, one that is slow, one that
never answers, one that is down for a while, one that drops the connection or redirects; the
24 h deadline (the job queue's clock faked at its boundary); a restart between queueing and
delivery, and a worker that dies mid-attempt; the same `webhook-id` at every attempt; the secret
never in a log line or an error. Policies are shortened (no delay between attempts): no test
sleeps for a backoff."""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest
from standardwebhooks import Webhook

from backend import backend_agent
from backend.backend_agent import BackendAgent
from backend.postcall import jobs, webhook
from backend.settings import Settings
from tests.postgres import configured_store

CALLER = "+15551234567"
FAST = dataclasses.replace(webhook.POLICY, first_delay=0.0, max_delay=0.0)  # the real deadline, no waits


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


class Receiver:
    """A webhook receiver on 127.0.0.1. `script` says how each request is answered, in turn
    (then 200): a status, `"hang"` (never answers while the test runs), `("slow", seconds)`
    (then 200), `"drop"` (closes the connection without answering). Every request is kept with
    its headers, body and what `Webhook(secret).verify` said."""

    def __init__(self, secret: str, port: int = 0, script: list[Any] | None = None) -> None:
        self.secret = secret
        self.script = list(script or [])
        self.requests: list[dict[str, Any]] = []
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hooks/calls?token=not-in-logs"

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def verified(self) -> list[Any]:
        return [r["verified"] for r in self.requests]

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}  # HTTP names are case-blind
                try:
                    verified: Any = Webhook(receiver.secret).verify(body, headers)
                except Exception as exc:
                    verified = f"refused: {exc}"
                with receiver.lock:
                    receiver.requests.append({"headers": headers, "body": body, "verified": verified})
                    how = receiver.script.pop(0) if receiver.script else 200
                if how == "hang":
                    receiver.release.wait(30)
                    return
                if how == "drop":
                    self.close_connection = True
                    return
                if isinstance(how, tuple):
                    time.sleep(how[1])
                    how = 200
                self.send_response(how)
                if 300 <= how < 400:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def secret() -> str:
    return new_secret()


@pytest.fixture
def receiver(secret):
    r = Receiver(secret)
    yield r
    r.stop()


@pytest.fixture(autouse=True)
def _fast_policy(monkeypatch):
    monkeypatch.setitem(backend_agent.JOB_HANDLERS, webhook.KIND, (webhook.deliver, FAST))


def webhook_settings(data_dir, url: str | None, secret: str | None, timeout: str = "2") -> Settings:
    env = dict(os.environ, DATA_DIR=str(data_dir), WEBHOOK_TIMEOUT_SECONDS=timeout)
    env.update({"WEBHOOK_URL": url or "", "WEBHOOK_SECRET": secret or ""})
    return Settings.from_env(env, dotenv=False)


def end_a_call(backend: BackendAgent, session_id: str = "s1") -> dict:
    backend.start_session(session_id, CALLER, called_number="+15557654321")
    backend.share_information("Owes $12,000 on two cards", "debt_info", CALLER, session_id=session_id)
    result = backend.end_call("customer_qualified_transfer", CALLER, duration_seconds=61.5, session_id=session_id)
    assert result["success"]
    return result["call"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def wh(store, data_dir, receiver, secret):
    """A backend over `store` that sends webhooks to `receiver`."""
    return BackendAgent(store=store, settings=webhook_settings(data_dir, receiver.url, secret))


WEBHOOKS = ("webhook",)  # the summary jobs a call log also queues are not these tests' subject
JOB = "webhook:call.ended:s1"


# ---- events, ids and settings (no server) -------------------------------------------------------
def test_event_shapes_and_stable_ids():
    call = {"id": "c1", "session_id": "s1", "caller_id": CALLER, "ended_at": "2026-11-22T15:04:05.123Z"}
    event = webhook.event_for_call(call, {"session_id": "s1", "status": "completed"})
    assert event == {
        "id": "evt_call_s1",
        "type": "call.ended",
        "timestamp": "2026-11-22T15:04:05.123Z",
        "data": {"session_id": "s1", "call": call, "session": {"session_id": "s1", "status": "completed"}},
    }
    summary = webhook.event_for_summary("s1", {"summary": "Qualified; two cards."})
    assert (summary["id"], summary["type"], summary["data"]) == (
        "evt_summary_s1",
        "call.summary",
        {"session_id": "s1", "summary": {"summary": "Qualified; two cards."}},
    )
    assert webhook.job_id("call.ended", "s1") == JOB
    odd = "room/ü <1>\n" + "x" * 100  # not a header value, and too long for a store key
    assert webhook.event_id("call.ended", odd) == webhook.event_id("call.ended", odd)
    assert webhook.event_id("call.ended", odd).isascii() and len(webhook.job_id("call.summary", odd)) <= 128


def test_the_policy_retries_with_backoff_for_24_hours():
    policy = webhook.POLICY
    assert (policy.deadline_seconds, policy.max_delay) == (24 * 3600, 3600)
    assert 1 <= policy.first_delay <= 10
    # the deadline ends the retries, not the attempts: even the shortest delays outlast 24 h first
    delays = (min(policy.max_delay, policy.first_delay * 2 ** (n - 1)) for n in range(1, policy.max_attempts))
    shortest = sum(d * 0.8 for d in delays)
    assert shortest > policy.deadline_seconds
    assert webhook.MAX_TIMEOUT_SECONDS < jobs.CLAIM_SECONDS


def test_settings_problems_say_what_is_wrong_without_the_secret(data_dir):
    secret = new_secret()
    assert webhook.problems(webhook_settings(data_dir, None, None)) == []
    assert webhook.problems(webhook_settings(data_dir, "https://example.com/h", secret)) == []
    assert not webhook.enabled(webhook_settings(data_dir, "https://example.com/h", None))
    bad = webhook_settings(data_dir, "ftp://example.com/h", "whsec_not base64!", timeout="500")
    found = " ".join(webhook.problems(bad))
    assert "WEBHOOK_URL must be an http:// or https:// URL" in found
    assert "WEBHOOK_SECRET is not a Standard Webhooks secret" in found
    assert "WEBHOOK_TIMEOUT_SECONDS must be more than 0 and at most 60; 60 is used" in found
    assert "not base64" not in found
    assert "WEBHOOK_URL must be" in " ".join(webhook.problems(webhook_settings(data_dir, "http://h:port/x", secret)))
    short = webhook_settings(data_dir, "https://example.com/h", "whsec_" + base64.b64encode(b"short").decode())
    assert webhook.problems(short) == [
        "WEBHOOK_SECRET is 5 bytes once decoded; Standard Webhooks asks for 24 to 64 (it is used as it is)."
    ]
    assert Settings.from_env({}, dotenv=False).webhook_timeout_seconds == 10.0


def test_no_event_is_queued_without_both_settings(store, data_dir, secret):
    for url, key in (("http://127.0.0.1:9/", None), (None, secret), (None, None)):
        backend = BackendAgent(store=store, settings=webhook_settings(data_dir, url, key))
        end_a_call(backend, f"s-{url is None}-{key is None}")
        assert backend.webhook_deliveries() == []
        assert not backend.enqueue_webhook(webhook.event_for_summary("s1", {}))


# ---- delivery against real receivers --------------------------------------------------------------
@pytest.mark.slow
def test_an_ended_call_is_delivered_signed_and_verified(wh, receiver):
    call = end_a_call(wh)
    assert wh.job(JOB)["state"] == "queued"
    assert wh.run_jobs(kinds=WEBHOOKS) == 1
    (request,) = receiver.requests
    event = request["verified"]  # standardwebhooks accepted it: the parsed event
    assert isinstance(event, dict), event
    assert (event["id"], event["type"], event["timestamp"]) == ("evt_call_s1", "call.ended", call["ended_at"])
    assert event["data"]["call"] == call
    assert event["data"]["session"]["status"] == "completed"
    assert event["data"]["session"]["called_number"] == "+15557654321"
    assert request["headers"]["webhook-id"] == "evt_call_s1"
    assert abs(int(request["headers"]["webhook-timestamp"]) - time.time()) < 60
    assert request["headers"]["webhook-signature"].startswith("v1,")
    assert request["headers"]["content-type"] == "application/json"
    job = wh.job(JOB)
    assert job["state"] == "done"
    assert (job["result"]["status"], job["result"]["attempts"]) == (200, 1)
    assert job["result"]["response_ms"] >= 0
    assert wh.run_jobs(kinds=WEBHOOKS) == 0  # delivered once


@pytest.mark.slow
def test_a_forged_or_altered_request_does_not_verify(wh, receiver, secret):
    """The receiver's check is real: another secret, or a changed body, is refused."""
    end_a_call(wh)
    wh.run_jobs(kinds=WEBHOOKS)
    (request,) = receiver.requests
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(new_secret()).verify(request["body"], request["headers"])
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(secret).verify(request["body"].replace(b"qualified", b"QUALIFIED"), request["headers"])


@pytest.mark.slow
def test_a_receiver_failing_twice_gets_it_on_the_third_attempt_with_the_same_id(wh, receiver):
    receiver.script = [500, 503]
    end_a_call(wh)
    assert wh.run_jobs(kinds=WEBHOOKS, limit=1) == 1
    job = wh.job(JOB)
    assert (job["state"], job["attempts"], job["error"]) == ("retrying", 1, "HTTP 500 from receiver")
    assert wh.run_jobs(kinds=WEBHOOKS, limit=1) == 1
    assert wh.job(JOB)["error"] == "HTTP 503 from receiver"
    assert wh.run_jobs(kinds=WEBHOOKS) == 1
    assert wh.job(JOB)["state"] == "done" and wh.job(JOB)["result"]["attempts"] == 3
    assert len(receiver.requests) == 3
    assert all(isinstance(v, dict) for v in receiver.verified())  # each attempt signed afresh, and valid
    assert {r["headers"]["webhook-id"] for r in receiver.requests} == {"evt_call_s1"}
    assert len({r["body"] for r in receiver.requests}) == 1  # the same event each time
    (delivery,) = wh.webhook_deliveries()
    assert (delivery["state"], delivery["attempts"], delivery["response_status"]) == ("done", 3, 200)
    assert [(a["outcome"], a["error"]) for a in delivery["history"]] == [
        ("failed", "HTTP 500 from receiver"),
        ("failed", "HTTP 503 from receiver"),
        ("delivered", None),
    ]


@pytest.mark.slow
def test_a_slow_receiver_within_the_timeout_is_delivered(wh, receiver):
    receiver.script = [("slow", 0.3)]
    end_a_call(wh)
    assert wh.run_jobs(kinds=WEBHOOKS) == 1
    assert wh.job(JOB)["state"] == "done"
    assert wh.job(JOB)["result"]["response_ms"] >= 300


@pytest.mark.slow
def test_a_receiver_that_never_answers_times_out_and_is_retried(store, data_dir, receiver, secret):
    backend = BackendAgent(store=store, settings=webhook_settings(data_dir, receiver.url, secret, timeout="0.5"))
    receiver.script = ["hang"]
    end_a_call(backend)
    started = time.monotonic()
    assert backend.run_jobs(kinds=WEBHOOKS, limit=1) == 1
    assert time.monotonic() - started < 5
    job = backend.job(JOB)
    assert (job["state"], job["error"]) == ("retrying", "timed out after 0.5 s")
    assert backend.run_jobs(kinds=WEBHOOKS) == 1  # the receiver answers now
    assert backend.job(JOB)["state"] == "done"
    assert [r["headers"]["webhook-id"] for r in receiver.requests] == ["evt_call_s1"] * 2


@pytest.mark.slow
def test_a_receiver_that_is_down_for_a_while_gets_it_when_it_is_back(store, data_dir, secret):
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    backend = BackendAgent(store=store, settings=webhook_settings(data_dir, url, secret))
    end_a_call(backend)
    for _ in range(3):  # nothing listens
        assert backend.run_jobs(kinds=WEBHOOKS, limit=1) == 1
    job = backend.job(JOB)
    assert (job["state"], job["attempts"], job["error"]) == ("retrying", 3, "connection refused")
    back = Receiver(secret, port=port)
    try:
        assert backend.run_jobs(kinds=WEBHOOKS) == 1
        assert backend.job(JOB)["state"] == "done"
        assert len(back.requests) == 1 and isinstance(back.verified()[0], dict)
    finally:
        back.stop()
    assert [a["error"] for a in backend.webhook_deliveries()[0]["history"]] == ["connection refused"] * 3 + [None]


@pytest.mark.slow
def test_a_dropped_connection_and_a_redirect_are_failed_attempts(wh, receiver):
    receiver.script = ["drop", 302]
    end_a_call(wh)
    wh.run_jobs(kinds=WEBHOOKS, limit=1)
    assert wh.job(JOB)["error"] == "the receiver closed the connection without answering"
    wh.run_jobs(kinds=WEBHOOKS, limit=1)
    assert wh.job(JOB)["error"] == "HTTP 302 from receiver (redirects are not followed)"
    assert wh.run_jobs(kinds=WEBHOOKS) == 1 and wh.job(JOB)["state"] == "done"
    assert len(receiver.requests) == 3  # the redirect was not followed


@pytest.mark.slow
def test_after_24_hours_of_failures_it_gives_up(wh, receiver, monkeypatch):
    receiver.script = [500] * 5
    end_a_call(wh)
    assert wh.run_jobs(kinds=WEBHOOKS, limit=1) == 1
    assert wh.job(JOB)["state"] == "retrying"
    created = wh.job(JOB)["created"]
    monkeypatch.setattr(jobs, "time", SimpleNamespace(time=lambda: created + 24 * 3600 + 1))  # the queue's clock
    assert wh.run_jobs(kinds=WEBHOOKS, limit=5) == 1  # one more attempt, then nothing is due any more
    job = wh.job(JOB)
    assert (job["state"], job["attempts"], job["error"]) == ("gave_up", 2, "HTTP 500 from receiver")
    (delivery,) = wh.webhook_deliveries(state="gave_up")
    assert (delivery["attempts"], delivery["next_attempt_at"], delivery["delivered_at"]) == (2, None, None)
    assert wh.webhook_deliveries(state="retrying") == []
    assert len(receiver.requests) == 2


@pytest.mark.slow
def test_a_restart_between_queueing_and_delivery_delivers_once(data_dir, receiver, secret):
    settings = webhook_settings(data_dir, receiver.url, secret)
    first = BackendAgent(store=configured_store(data_dir), settings=settings)
    end_a_call(first)
    first.close()  # the process stops before any worker ran: nothing delivered
    assert receiver.requests == []
    second = BackendAgent(store=configured_store(data_dir), settings=settings)
    try:
        assert second.run_jobs(kinds=WEBHOOKS) == 1
        assert second.run_jobs(kinds=WEBHOOKS) == 0
    finally:
        second.close()
    third = BackendAgent(store=configured_store(data_dir), settings=settings)  # and again: nothing twice
    try:
        assert third.run_jobs(kinds=WEBHOOKS) == 0
        assert third.job(JOB)["state"] == "done"
    finally:
        third.close()
    assert len(receiver.requests) == 1 and isinstance(receiver.verified()[0], dict)


@pytest.mark.slow
def test_a_worker_that_dies_mid_attempt_leaves_it_to_the_next(data_dir, receiver, secret, monkeypatch):
    settings = webhook_settings(data_dir, receiver.url, secret)
    first = BackendAgent(store=configured_store(data_dir), settings=settings)
    end_a_call(first)
    assert jobs.claim(first.store, ("webhook",), worker="dying")["id"] == JOB  # claimed, then killed
    first.close()
    second = BackendAgent(store=configured_store(data_dir), settings=settings)
    try:
        assert second.run_jobs(kinds=WEBHOOKS) == 0  # its claim holds for a while
        later = time.time() + jobs.CLAIM_SECONDS + 1
        monkeypatch.setattr(jobs, "time", SimpleNamespace(time=lambda: later))
        assert second.run_jobs(kinds=WEBHOOKS) == 1
        (delivery,) = second.webhook_deliveries()
        assert delivery["state"] == "done"
        assert [(a["worker"], a["outcome"]) for a in delivery["history"]] == [
            ("dying", "abandoned"),
            (jobs.worker_name(), "delivered"),
        ]
    finally:
        second.close()
    assert len(receiver.requests) == 1


@pytest.mark.slow
def test_a_summary_event_is_delivered_through_the_hook(wh, receiver):
    end_a_call(wh)
    assert wh.enqueue_webhook(webhook.event_for_summary("s1", {"summary": "Qualified.", "lead_score": 80}))
    assert not wh.enqueue_webhook(webhook.event_for_summary("s1", {"summary": "again"}))  # once per call
    assert wh.run_jobs(kinds=WEBHOOKS) == 2
    types = sorted(r["verified"]["type"] for r in receiver.requests)
    assert types == ["call.ended", "call.summary"]
    summary = next(r for r in receiver.requests if r["verified"]["type"] == "call.summary")
    assert summary["headers"]["webhook-id"] == "evt_summary_s1"
    assert summary["verified"]["data"] == {"session_id": "s1", "summary": {"summary": "Qualified.", "lead_score": 80}}
    assert [d["type"] for d in wh.webhook_deliveries(session_id="s1")] == ["call.summary", "call.ended"]


@pytest.mark.slow
def test_a_call_is_queued_once_and_a_repeat_end_call_queues_a_missing_event(wh, receiver, store):
    end_a_call(wh)
    again = wh.end_call("caller_hung_up", CALLER, session_id="s1")
    assert again["already_ended"]
    assert [d["job_id"] for d in wh.webhook_deliveries()] == [JOB]
    # a process that died between the call log and the queue: the call log is there, no event
    store.start_session("s2", CALLER)
    store.end_session(reason="completed", caller_id=CALLER, session_id="s2", duration_seconds=3.0)
    assert wh.job("webhook:call.ended:s2") is None
    assert wh.end_call("agent_error", CALLER, session_id="s2")["already_ended"]  # the next start closes it
    assert wh.job("webhook:call.ended:s2")["state"] == "queued"
    assert wh.run_jobs(kinds=WEBHOOKS) == 2
    assert sorted(r["headers"]["webhook-id"] for r in receiver.requests) == ["evt_call_s1", "evt_call_s2"]


@pytest.mark.slow
def test_an_odd_session_id_is_delivered_under_a_hashed_id(wh, receiver):
    odd = "room/ü <script>"
    end_a_call(wh, odd)
    assert wh.run_jobs(kinds=WEBHOOKS) == 1
    (request,) = receiver.requests
    assert request["headers"]["webhook-id"] == webhook.event_id("call.ended", odd)
    assert request["verified"]["data"]["session_id"] == odd
    assert wh.webhook_deliveries(session_id=odd)[0]["session_id"] == odd


@pytest.mark.slow
def test_the_secret_is_in_no_log_line_and_no_error(store, data_dir, receiver, secret, caplog):
    caplog.set_level(logging.DEBUG)
    receiver.script = [500]
    backend = BackendAgent(store=store, settings=webhook_settings(data_dir, receiver.url, secret))
    end_a_call(backend)
    backend.run_jobs(kinds=WEBHOOKS)
    bad = BackendAgent(store=store, settings=webhook_settings(data_dir, receiver.url, secret + "!"))
    end_a_call(bad, "s2")
    bad.run_jobs(kinds=WEBHOOKS, limit=1)
    assert bad.job("webhook:call.ended:s2")["error"].startswith("WEBHOOK_SECRET is not set, or is not")
    shown = caplog.text + repr(backend.webhook_deliveries())
    for needle in (secret, secret.removeprefix("whsec_"), "not-in-logs"):
        assert needle not in shown
    assert len(receiver.requests) == 2  # the badly configured one sent nothing


# ---- the store's read, the API ------------------------------------------------------------------
def test_jobs_of_kind_reads_the_newest_first_with_their_results(store):
    for i in range(4):
        jobs.enqueue(store, f"webhook:t:{i}", "webhook", {"session_id": str(i)})
    jobs.enqueue(store, "summary:s", "summary", {})
    jobs.finish(store, "webhook:t:1", {"status": 200})
    assert [j for j, _ in store.jobs_of_kind("webhook")] == [f"webhook:t:{i}" for i in (3, 2, 1, 0)]
    assert [j for j, _ in store.jobs_of_kind("webhook", limit=2)] == ["webhook:t:3", "webhook:t:2"]
    ((job_id, job),) = store.jobs_of_kind("webhook", states=("done",))
    assert (job_id, job["result"], job["payload"]) == ("webhook:t:1", {"status": 200}, {"session_id": "1"})
    assert [j for j, _ in store.jobs_of_kind("summary")] == ["summary:s"]


@pytest.mark.json_store_only  # the JSON store's index snapshot
def test_jobs_of_kind_keeps_its_order_through_a_snapshot(data_dir):
    first = configured_store(data_dir)
    for i in range(3):
        jobs.enqueue(first, f"webhook:t:{i}", "webhook", {})
    first.write_snapshot()
    first.close()
    again = configured_store(data_dir)
    try:
        assert [j for j, _ in again.jobs_of_kind("webhook")] == ["webhook:t:2", "webhook:t:1", "webhook:t:0"]
    finally:
        again.close()


TOKEN = "webhook-test-token"


@pytest.fixture
def app(store, data_dir, receiver, secret):
    from backend.api_server import create_app

    settings = webhook_settings(data_dir, receiver.url, secret)
    config = {"DATA_DIR": str(data_dir), "API_TOKENS": [TOKEN], "TESTING": True, "STORE": store}
    return create_app({**config, "SETTINGS": settings})


def api_get(client, path: str):
    return client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})


def test_the_deliveries_need_the_token_while_the_twilio_callback_stays_public(app):
    client = app.test_client()
    response = client.get("/api/webhooks/deliveries")
    assert response.status_code == 401 and response.json["error"]["code"] == "unauthorized"
    assert client.post("/api/webhooks/twilio/status", data={"CallSid": "CA1"}).status_code == 403  # not 401
    assert api_get(client, "/api/webhooks/deliveries").json == {"deliveries": [], "count": 0, "more": False}


@pytest.mark.slow
def test_the_api_shows_each_attempt_with_its_error(app, receiver):
    backend, client = app.extensions["backend"], app.test_client()
    receiver.script = [500, 500]
    end_a_call(backend)
    (queued,) = api_get(client, "/api/webhooks/deliveries").json["deliveries"]
    assert (queued["state"], queued["attempts"], queued["history"]) == ("queued", 0, [])
    assert queued["next_attempt_at"] is not None
    backend.run_jobs(kinds=WEBHOOKS, limit=1)
    (retrying,) = api_get(client, "/api/webhooks/deliveries?state=retrying").json["deliveries"]
    assert (retrying["attempts"], retrying["last_error"]) == (1, "HTTP 500 from receiver")
    assert retrying["next_attempt_at"] is not None and retrying["delivered_at"] is None
    backend.run_jobs(kinds=WEBHOOKS)
    page = api_get(client, "/api/webhooks/deliveries").json
    (delivery,) = page["deliveries"]
    assert {k: delivery[k] for k in ("event_id", "type", "session_id", "state", "attempts", "response_status")} == {
        "event_id": "evt_call_s1",
        "type": "call.ended",
        "session_id": "s1",
        "state": "done",
        "attempts": 3,
        "response_status": 200,
    }
    assert delivery["last_error"] == "HTTP 500 from receiver" and delivery["next_attempt_at"] is None
    assert delivery["delivered_at"].endswith("Z")
    history = delivery["history"]
    assert [(a["attempt"], a["outcome"], a["error"], a["status"]) for a in history] == [
        (1, "failed", "HTTP 500 from receiver", None),
        (2, "failed", "HTTP 500 from receiver", None),
        (3, "delivered", None, 200),
    ]
    assert all(a["started_at"] <= a["ended_at"] for a in history)


@pytest.mark.slow
def test_the_api_filters_by_state_session_and_limit(app):
    backend, client = app.extensions["backend"], app.test_client()
    for sid in ("a", "b", "c"):
        end_a_call(backend, sid)
    backend.run_jobs(kinds=WEBHOOKS, limit=1)  # the oldest, a, is delivered
    page = api_get(client, "/api/webhooks/deliveries").json
    assert [d["session_id"] for d in page["deliveries"]] == ["c", "b", "a"]
    assert [d["state"] for d in page["deliveries"]] == ["queued", "queued", "done"]
    done = api_get(client, "/api/webhooks/deliveries?state=done").json["deliveries"]
    assert [d["session_id"] for d in done] == ["a"]
    assert api_get(client, "/api/webhooks/deliveries?state=queued&session_id=a").json["count"] == 0
    assert api_get(client, "/api/webhooks/deliveries?session_id=b").json["deliveries"][0]["event_id"] == "evt_call_b"
    limited = api_get(client, "/api/webhooks/deliveries?limit=2").json
    assert (limited["count"], limited["more"]) == (2, True)
    for query, code in (
        ("state=lost", "invalid_state"),
        ("limit=0", "invalid_limit"),
        ("cursor=abc", "unknown_parameter"),
        ("state=done&state=queued", "repeated_parameter"),
    ):
        response = api_get(client, f"/api/webhooks/deliveries?{query}")
        assert (response.status_code, response.json["error"]["code"]) == (400, code), query


def _conforms(instance: Any, name: str) -> None:
    from jsonschema import Draft202012Validator

    from backend.api.openapi import openapi_document

    document = openapi_document()
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    Draft202012Validator(schema).validate(instance)


@pytest.mark.slow
def test_the_events_and_the_page_are_as_the_openapi_document_says(app, receiver):
    backend, client = app.extensions["backend"], app.test_client()
    receiver.script = [500]
    end_a_call(backend)
    backend.enqueue_webhook(webhook.event_for_summary("s1", {"summary": "Qualified."}))
    backend.run_jobs(kinds=WEBHOOKS)
    for request in receiver.requests:
        _conforms(request["verified"], "WebhookEvent")
    page = api_get(client, "/api/webhooks/deliveries").json
    assert page["count"] == 2
    _conforms(page, "WebhookDeliveriesPage")
    spec = client.get("/api/openapi.json").json
    assert set(spec["webhooks"]["callEvent"]["post"]["requestBody"]["content"]) == {"application/json"}


# ---- the dashboard --------------------------------------------------------------------------------
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def dash(store, data_dir, secret):
    """The app with webhooks configured to a port nothing listens on (no test here delivers)."""
    from backend.api_server import create_app

    settings = webhook_settings(data_dir, "http://127.0.0.1:9/hook", secret)
    config = {"DATA_DIR": str(data_dir), "API_TOKENS": [TOKEN], "TESTING": True, "STORE": store}
    return create_app({**config, "SETTINGS": settings})


def signed_in_client(app):
    import re

    client = app.test_client()
    page = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    assert client.post("/login", data={"token": TOKEN, "csrf_token": csrf}).status_code == 302
    return client


def test_the_webhooks_page_needs_sign_in(dash):
    response = dash.test_client().get("/webhooks")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")


def test_the_webhooks_page_lists_deliveries_with_state_and_errors_escaped(dash, store):
    backend = dash.extensions["backend"]
    sid = f"s{XSS}"
    end_a_call(backend, sid)
    end_a_call(backend, "s2")
    job_id = webhook.job_id("call.ended", sid)
    assert jobs.claim(store, ("webhook",))["id"] == job_id
    jobs.fail(store, job_id, f"HTTP 500 from receiver {XSS}", FAST)
    client = signed_in_client(dash)
    page = client.get("/webhooks").text
    assert XSS not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert 'aria-current="page">Webhooks' in page and 'href="/webhooks"' in page
    assert "Retrying" in page and "Queued" in page and "HTTP 500 from receiver" in page
    assert page.count('<tr data-job="') == 2
    assert webhook.event_id("call.ended", sid) in page and "evt_call_s2" in page
    retrying = client.get("/webhooks?state=retrying").text
    assert retrying.count('<tr data-job="') == 1 and "evt_call_s2" not in retrying
    assert "No webhook deliveries in this state" in client.get("/webhooks?state=gave_up").text
    wrong = client.get("/webhooks?state=lost")
    assert wrong.status_code == 200 and "state must be one of" in wrong.text
    assert client.get("/").text.count('href="/webhooks"') == 1  # in the nav of every page


def test_the_session_page_shows_its_webhook_status(dash, store):
    backend = dash.extensions["backend"]
    end_a_call(backend, "s1")
    assert jobs.claim(store, ("webhook",))["id"] == JOB
    jobs.fail(store, JOB, "connection refused", FAST)
    backend.start_session("s-open", CALLER)
    client = signed_in_client(dash)
    page = client.get("/sessions/s1").text
    assert 'id="call-webhooks"' in page and "evt_call_s1" in page
    assert "Retrying" in page and "connection refused" in page and "Next try" in page
    assert 'id="call-webhooks-none"' in client.get("/sessions/s-open").text


# ---- the worker: python -m backend work ------------------------------------------------------------
def _queue_a_call(data_dir, receiver, secret) -> None:
    backend = BackendAgent(store=configured_store(data_dir), settings=webhook_settings(data_dir, receiver.url, secret))
    end_a_call(backend)
    backend.close()


@pytest.mark.slow
def test_work_once_delivers_what_is_due(data_dir, receiver, secret, monkeypatch, capsys):
    from backend.__main__ import main
    from backend.settings import reload_settings

    _queue_a_call(data_dir, receiver, secret)
    monkeypatch.setenv("WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("WEBHOOK_SECRET", secret)
    reload_settings()
    assert main(["--data-dir", str(data_dir), "work", "--once"]) == 0
    assert "ran 2 job(s)" in capsys.readouterr().err  # the webhook, and the summary (skipped: no key)
    assert len(receiver.requests) == 1 and isinstance(receiver.verified()[0], dict)
    assert main(["--data-dir", str(data_dir), "work", "--once"]) == 0
    assert "ran 0 job(s)" in capsys.readouterr().err
    assert len(receiver.requests) == 1


@pytest.mark.slow
def test_the_worker_process_delivers_and_stops_cleanly_on_sigterm(data_dir, receiver, secret):
    import signal
    import subprocess
    import sys
    from pathlib import Path

    _queue_a_call(data_dir, receiver, secret)
    env = dict(os.environ, DATA_DIR=str(data_dir), WEBHOOK_URL=receiver.url, WEBHOOK_SECRET=secret)
    worker = subprocess.Popen(
        [sys.executable, "-m", "backend", "work"],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not receiver.requests and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.05)
        assert len(receiver.requests) == 1
        worker.send_signal(signal.SIGTERM)  # perhaps mid-attempt: it is recorded before the worker stops
        _out, err = worker.communicate(timeout=15)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, err
    assert "job worker stopped" in err and secret not in err and "not-in-logs" not in err
    store = configured_store(data_dir)
    try:
        assert store.job(JOB)["state"] == "done"
    finally:
        store.close()


def test_a_job_without_an_event_is_skipped_not_retried_forever(store, data_dir, secret):
    backend = BackendAgent(store=store, settings=webhook_settings(data_dir, "http://127.0.0.1:9/", secret))
    jobs.enqueue(store, "webhook:broken", "webhook", {"session_id": "s1"})
    assert backend.run_jobs(kinds=WEBHOOKS) == 1
    assert (backend.job("webhook:broken")["state"], backend.job("webhook:broken")["reason"]) == (
        "skipped",
        "the job holds no event to send",
    )
