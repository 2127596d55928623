"""The backend functions (contract section 2): the one door to the store and the call rules.

The agent, the API, the dashboard (through the API's page functions) and the CLI reach the
store and `backend/calls/` only through `BackendAgent`; none of them opens a store or touches
its files. Two kinds of method:

- the tools and `start_session` (contract section 2) return JSON-serialisable dicts and never
  raise for bad input: `{"success": False, "error": "<code>", "message": "<one sentence>"}`;
- the operations the agent, API and CLI need besides (call logs with details, the opt-out, the
  do-not-call list, outbound calls, leases, reads, verify/export) return plain values and raise
  `StoreError` (or `CallRefused`, `InvalidPhoneNumber`), which each caller translates once at its
  own boundary (a `ToolError`, the API's error envelope, an exit status).

Every method is synchronous and safe to call from many processes at once.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from backend.calls import carrier, dnc, leases, outbound, recording
from backend.calls.hours import in_window, parse_calling_hours
from backend.postcall import cost, jobs, summary, webhook
from backend.settings import Settings, get_settings
from backend.store import JournalStore, Lease, Store, freeze_loaded_heap, open_store
from backend.store.interface import CallFigures
from backend.store.records import (
    CATEGORIES,
    DISCLOSURES,
    END_REASONS,
    JOBS,
    Entry,
    StoreError,
    StoreUnavailable,
    epoch,
    iso,
    utc_now,
)

log = logging.getLogger(__name__)

# kind -> (handler(backend, job) -> result, retry policy); handlers register below the class
JOB_HANDLERS: dict[str, tuple[Any, jobs.Policy]] = {}

__all__ = ["MODEL_END_REASONS", "TOOL_NAMES", "WEBHOOK_STATES", "BackendAgent", "freeze_loaded_heap", "spoken_time"]

MAX_LIMIT = 1000
# The tools the model sees (contract section 4), named once for the agent, the API's
# test_function route and the OpenAPI document.
TOOL_NAMES = ("share_information", "get_shared_information", "end_call", "get_current_time")
# The end reasons the model may give end_call; the others are the call's own (a hang-up, an
# agent error, a failed transfer).
MODEL_END_REASONS = tuple(r for r in END_REASONS if r not in ("caller_hung_up", "agent_error", "transfer_failed"))
# The states of a webhook delivery (`webhook_deliveries`), for the API's filter and the OpenAPI document.
WEBHOOK_STATES = webhook.STATES
OPT_OUT_ATTEMPTS = 3  # a failed do-not-call write is tried again twice, 0.2 s and 0.4 s later
OPT_OUT_RETRY_SECONDS = 0.2


def _fail(code: str, message: str) -> dict[str, Any]:
    return {"success": False, "error": code, "message": message}


def _failure(exc: StoreError) -> dict[str, Any]:
    return _fail(exc.code, exc.message)


def _text(value: Any, name: str, *, required: bool = True, max_len: int = 128) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise StoreError(f"{name} must be a non-empty string of at most {max_len} characters.", f"invalid_{name}")
    return value.strip()


def spoken_time(now: datetime) -> str:
    """`Sunday, November 22 at 3:04 PM`."""
    hour = now.hour % 12 or 12
    return f"{now:%A, %B} {now.day} at {hour}:{now:%M} {now:%p}"


def _store_read(name: str):
    """A read of the store offered as it is, with the store method's own signature and docs."""
    method = getattr(Store, name)

    @functools.wraps(method)
    def read(self: BackendAgent, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.store, name)(*args, **kwargs)

    return read


class BackendAgent:
    """The four tools' backend, plus `start_session`, over one store."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        store: Store | None = None,
        settings: Settings | None = None,
        lean: bool = False,
    ) -> None:
        """`lean`: an agent process's store, which indexes what a call needs and no more
        (`backend/store/lean.py`); the API's reads still answer, slowly."""
        self.settings = settings or get_settings()
        if store is not None:
            self.store = store
        else:
            if data_dir is not None:  # this data folder; the store is still STORE_URL's when that is set
                self.settings = replace(self.settings, data_dir=Path(data_dir))
            self.store = open_store(self.settings, lean=lean)

    def close(self) -> None:
        self.store.close()

    def share_information(
        self,
        information: str,
        category: str,
        caller_id: str,
        session_id: str | None = None,
        fields: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        try:
            caller = _text(caller_id, "caller_id", max_len=64)
            sid = _text(session_id, "session_id", required=False)
            record, duplicate = self.store.add_information(
                information=information, category=category, caller_id=caller, session_id=sid, fields=fields
            )
        except StoreError as exc:
            return _failure(exc)
        log.info("stored %s record seq=%s session=%s", record["category"], record["seq"], record["session_id"])
        log.debug("record text: %s", record["information"])
        result: dict[str, Any] = {"success": True, "record": record}
        if duplicate:
            result["duplicate"] = True
            result["message"] = "This was already saved a moment ago; nothing new was written."
        else:
            result["message"] = f"Saved under {record['category']}."
        return result

    def get_shared_information(
        self,
        category: str | None = None,
        caller_id: str | None = None,
        session_id: str | None = None,
        limit: int = 20,
    ) -> dict[str, Any]:
        if category is not None and (not isinstance(category, str) or category not in CATEGORIES):
            return _fail("invalid_category", f"Category must be one of: {', '.join(CATEGORIES)}.")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            return _fail("invalid_limit", f"limit must be a whole number from 1 to {MAX_LIMIT}.")
        try:
            caller = _text(caller_id, "caller_id", required=False, max_len=64)
            sid = _text(session_id, "session_id", required=False)
            records, _more = self.store.query_information(
                categories=[category] if category else None, caller_id=caller, session_id=sid, limit=limit
            )
        except StoreError as exc:
            return _failure(exc)
        return {"success": True, "count": len(records), "records": records}

    def end_call(
        self,
        reason: str,
        caller_id: str,
        duration_seconds: float | None = None,
        session_id: str | None = None,
        details: dict[str, Any] | None = None,
        usage: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Write the session's call log (once); `details` (a transfer's or a dial's SIP status)
        go into it, and with the model's `usage` (LiveKit's, from the call itself) its cost.
        Writing it releases the call's lease and queues the post-call summary."""
        if not isinstance(reason, str) or reason not in END_REASONS:
            return _fail("invalid_reason", f"Reason must be one of: {', '.join(END_REASONS)}.")
        try:
            caller = _text(caller_id, "caller_id", max_len=64)
            sid = _text(session_id, "session_id", required=False)
            priced = self._cost(usage, duration_seconds) if usage is not None else None
            call, already = self.store.end_session(
                reason=reason,
                caller_id=caller,
                session_id=sid,
                duration_seconds=duration_seconds,
                details=details,
                cost=priced,
            )
        except StoreError as exc:
            return _failure(exc)
        self._queue_call_ended(call, already)  # before the lease goes: see there
        self.store.drop_lease(call["session_id"])
        if not already:
            self._after_call(call)
        result: dict[str, Any] = {"success": True, "call": call}
        if already:
            result["already_ended"] = True
            result["message"] = "This call was already ended; the first call log stands."
        else:
            log.info("call ended session=%s reason=%s", call["session_id"], reason)
            result["message"] = f"Call ended: {call['outcome']}."
        return result

    def _queue_call_ended(self, call: Entry, already: bool) -> None:
        """Queue the call's `call.ended` webhook event when webhooks are configured: when its call
        log is written, and again (idempotent: nothing is written when it is queued) on a repeat
        of end_call within the retry window. The repeat covers a process that died between
        writing the call log and queueing the event: the call's lease is still there, so the next
        agent start (or `verify`) closes the call again, and that queues the event. A store error
        is logged: the call log stands."""
        if not webhook.enabled(self.settings):
            return
        if already and time.time() - epoch(call["ended_at"]) > webhook.POLICY.deadline_seconds:
            return
        try:
            session = self.store.get_session(call["session_id"])
            if self.enqueue_webhook(webhook.event_for_call(call, session)):
                log.info("webhook call.ended queued for session=%s", call["session_id"])
        except StoreError as exc:
            log.error("could not queue the call.ended webhook of session %s: %s", call["session_id"], exc.message)

    def get_current_time(self, timezone: str | None = None) -> dict[str, Any]:
        name = timezone or self.settings.business_timezone
        try:
            if not isinstance(name, str) or not name or len(name) > 64:
                raise ZoneInfoNotFoundError(name)
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            return _fail("invalid_timezone", "Time zone must be an IANA name such as America/New_York.")
        try:
            first, last = parse_calling_hours(self.settings.calling_hours)
        except ValueError:
            return _fail("invalid_calling_hours", "CALLING_HOURS must look like 08:00-21:00.")
        now = utc_now().astimezone(zone)
        return {
            "success": True,
            "iso": now.isoformat(timespec="seconds"),
            "utc": iso(now),
            "timezone": name,
            "spoken": spoken_time(now),
            "within_calling_hours": in_window(now.time(), first, last),
            "calling_hours": self.settings.calling_hours,
        }

    def start_session(
        self,
        session_id: str,
        caller_id: str,
        direction: str = "inbound",
        called_number: str | None = None,
    ) -> dict[str, Any]:
        if direction not in ("inbound", "outbound"):
            return _fail("invalid_direction", "direction must be inbound or outbound.")
        try:
            sid = _text(session_id, "session_id")
            caller = _text(caller_id, "caller_id", max_len=64)
            called = _text(called_number, "called_number", required=False, max_len=64)
            session, created = self.store.start_session(sid, caller, direction, called)
        except StoreError as exc:
            return _failure(exc)
        result: dict[str, Any] = {"success": True, "session": session}
        if not created:
            result["already_started"] = True
        return result

    # ---- the transcript ------------------------------------------------------------------------
    def save_turn(
        self,
        session_id: str,
        speaker: str,
        text: str,
        start_s: float,
        end_s: float,
        *,
        interrupted: bool = False,
        tool: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Save one transcript turn (the agent calls it off its event loop as each turn ends).
        `{"success": true, "turns": [...]}` (several for a turn over 10,000 characters), or the
        failure, logged with its reason: a turn without words, an unknown session, the store down."""
        try:
            turns = self.store.add_turn(
                session_id=session_id,
                speaker=speaker,
                text=text,
                start_s=start_s,
                end_s=end_s,
                interrupted=interrupted,
                tool=tool,
            )
        except StoreError as exc:
            level = logging.ERROR if isinstance(exc, StoreUnavailable) else logging.INFO
            log.log(level, "transcript turn of session %s not saved (%s): %s", session_id, exc.code, exc.message)
            return _failure(exc)
        if turns[0].get("after_call_log"):
            log.info("session %s: a %s turn arrived after the call log; kept, marked so", session_id, speaker)
        log.debug("session %s %s: %s", session_id, speaker, text)
        return {"success": True, "turns": turns}

    def record_disclosures(self, session_id: str, evidence: dict[str, Any]) -> dict[str, Any]:
        """Save which required disclosures the agent's own words gave (and when); a call missing
        one is flagged on its session, its call log and the dashboard."""
        try:
            self.store.append_event(DISCLOSURES, session_id, evidence)
        except StoreError as exc:
            log.error("disclosure evidence of session %s not saved: %s", session_id, exc.message)
            return _failure(exc)
        if evidence.get("missing"):
            log.warning("session %s: required disclosure(s) not heard: %s", session_id, ", ".join(evidence["missing"]))
        return {"success": True}

    def transcript(self, session_id: str) -> list[Entry] | None:
        """The session's turns in order, or None when there is no such session."""
        if self.store.get_session(session_id) is None:
            return None
        return self.store.session_transcript(session_id)

    # ---- call leases: a call in progress until its call log is written ----------------------
    def claim_lease(self, session_id: str, caller_id: str) -> bool:
        """Mark the call as in progress in this process (`backend/calls/leases.py`); False (and
        a warning) when the store cannot keep it: the call goes on without one."""
        try:
            self.store.put_lease(leases.this_process(session_id, caller_id))
        except (OSError, StoreError) as exc:
            log.warning("session %s: no lease (%s); a crash would leave it without a call log", session_id, exc)
            return False
        return True

    def touch_lease(self, session_id: str) -> None:
        self.store.touch_lease(session_id)

    def close_orphaned_calls(self) -> list[dict[str, Any]]:
        """Write the call log of every call whose agent process died without one; returns the logs
        written. Safe in many processes at once: the store keeps one call log per session."""
        closed = []
        for lease in leases.orphaned(self.store.leases()):
            result = self.end_call(
                reason="agent_error",
                caller_id=lease.caller_id,
                duration_seconds=self._last_alive_duration(lease),
                session_id=lease.session_id,
            )
            if not result.get("success"):
                log.error("could not close the orphaned call %s: %s", lease.session_id, result.get("message"))
                continue
            if not result.get("already_ended"):
                closed.append(result["call"])
                log.warning(
                    "closed call %s: its agent process (pid %d) died without a call log", lease.session_id, lease.pid
                )
        return closed

    def _last_alive_duration(self, lease: Lease) -> float | None:
        """Seconds from the session's start to its last sign of life, or None if it never started."""
        session = self.store.get_session(lease.session_id)
        if session is None:
            return None
        started = epoch(session["started_at"])
        last = max(started, lease.touched)
        newest, _more = self.store.query_information(session_id=lease.session_id, limit=1)
        for record in newest:
            last = max(last, epoch(record["timestamp"]))
        return round(max(0.0, last - started), 3)

    # ---- the do-not-call list -----------------------------------------------------------------
    def opt_out(self, caller_id: str, session_id: str | None = None) -> dict[str, Any]:
        """Put a caller who opted out on the do-not-call list, retrying a failed write twice.
        `{"success": true, "created": bool}`, or the failure (`no_phone_number` for a caller
        without one, `store_unavailable` when the list could not be written: logged at ERROR,
        and `reconcile_opt_outs` lists the number on the next start from the call log)."""
        for attempt in range(OPT_OUT_ATTEMPTS):
            try:
                _entry, created = dnc.add(self.store, caller_id, source="opt_out", session_id=session_id)
                return {"success": True, "created": created}
            except dnc.InvalidPhoneNumber:
                return _fail("no_phone_number", "The caller has no phone number to put on the do-not-call list.")
            except StoreError as exc:
                failure = exc
                if attempt + 1 < OPT_OUT_ATTEMPTS:
                    time.sleep(OPT_OUT_RETRY_SECONDS * (attempt + 1))
        log.error("opt-out of session %s NOT saved on the do-not-call list: %s", session_id, failure.message)
        return _failure(failure)

    def reconcile_opt_outs(self) -> list[str]:
        """List every caller whose call ended `do_not_call_request` but who is not on the list
        (the opt-out write failed during the call); returns the sessions repaired."""
        repaired = []
        before = None
        while True:
            calls, more = self.store.query_calls(
                outcome=END_REASONS["do_not_call_request"], limit=500, before_seq=before
            )
            for call in calls:
                if call["reason"] == "do_not_call_request" and not dnc.contains(self.store, call["caller_id"]):
                    try:
                        dnc.add(self.store, call["caller_id"], source="opt_out_retry", session_id=call["session_id"])
                    except dnc.InvalidPhoneNumber:
                        continue
                    log.warning(
                        "do-not-call: listed the caller of session %s, whose opt-out had failed", call["session_id"]
                    )
                    repaired.append(call["session_id"])
            if not more:
                return repaired
            before = calls[-1]["seq"]

    def on_do_not_call_list(self, number: str) -> bool:
        return dnc.contains(self.store, number)

    def do_not_call_list(self) -> list[dict[str, Any]]:
        return dnc.listed(self.store)

    def add_to_do_not_call(self, number: str, *, source: str, note: str | None = None) -> tuple[dict[str, Any], bool]:
        """(entry, created); raises InvalidPhoneNumber."""
        return dnc.add(self.store, number, source=source, note=note)

    def remove_from_do_not_call(self, number: str, *, by: str, reason: str | None = None) -> dict[str, Any] | None:
        return dnc.remove(self.store, number, by=by, reason=reason)

    # ---- outbound calls -----------------------------------------------------------------------
    def place_call(self, raw_number: Any, *, requested_by: str = "api") -> dict[str, Any]:
        """`POST /api/calls`: the gates in the contract's order, the queued record, the agent
        dispatch. Raises `outbound.CallRefused`. LiveKit is loaded only here."""
        from backend.livekit import dispatch

        return dispatch.place_call(self.store, self.settings, raw_number, requested_by=requested_by)

    def outbound_call(self, call_id: str) -> dict[str, Any] | None:
        return outbound.call_view(self.store, call_id)

    def record_dial(self, call_id: str, state: str | None, **data: Any) -> None:
        """An outbound call's progress as the agent dials (`dialing`, `answered`, `failed`, `completed`)."""
        outbound.record_state(self.store, call_id, state, **data)

    def record_carrier_status(self, form: dict[str, str], call_id: str | None) -> dict[str, Any]:
        """Twilio's CallStatus callback (signature already checked); raises InvalidRecord."""
        return carrier.record_twilio_status(self.store, form, call_id)

    # ---- call recordings (RECORDING=on) ---------------------------------------------------------
    def record_recording(self, session_id: str, **data: Any) -> dict[str, Any]:
        """Save a step of the session's recording (`backend/calls/recording.py`: `state`
        started, failed, stopped or stray_stopped, and its facts); returns the event. Raises
        StoreError."""
        return recording.record(self.store, session_id, data)

    def session_recording(self, session_id: str) -> dict[str, Any] | None:
        """The session's recording: `{"egress_id", "status", "location", "started_at",
        "ended_at", "error"}`, or None when none was started (recording off)."""
        return recording.view(self.store, session_id)

    def recording_file(self, session_id: str) -> Path | None:
        """The file of the session's completed recording, when it is a file inside
        RECORDING_FILE_DIR on this machine; else None (an S3 location, a file elsewhere or gone)."""
        found = self.session_recording(session_id)
        if found is None or found["status"] != "completed":
            return None
        return recording.file_inside(self.settings.recording_file_dir, found["location"])

    # ---- reads for the API and the dashboard ----------------------------------------------------
    # The store's own typed reads, passed through unchanged (see `Store` for their arguments).
    query_information = _store_read("query_information")
    query_sessions = _store_read("query_sessions")
    query_calls = _store_read("query_calls")
    call_totals = _store_read("call_totals")

    def session(self, session_id: str) -> tuple[Entry, list[Entry], Entry | None] | None:
        """(session, its records oldest first, its call log or None), or None when unknown."""
        session = self.store.get_session(session_id)
        if session is None:
            return None
        return session, self.store.session_information(session_id), self.store.session_call(session_id)

    def summary(self, recent: int = 10) -> dict[str, Any]:
        return self.store.summary(recent=recent)

    def call_figures(self, since: float | None = None, until: float | None = None) -> CallFigures:
        """Per-call columns (end time, outcome, duration, cost, missing disclosure) for analytics."""
        return self.store.call_figures(since, until)

    def count_calls(self, since: float) -> tuple[int, int]:
        return self.store.count_calls(since)

    def active_sessions(self) -> list[Entry]:
        return self.store.active_sessions()

    def last_seq(self) -> int:
        return self.store.last_seq()

    # ---- after the call: durable jobs ----------------------------------------------------------------
    def _cost(self, usage: list[dict[str, Any]], duration_seconds: float | None) -> dict[str, Any]:
        """The call's cost from its usage and duration; a bad price table is said, not raised."""
        try:
            prices = cost.price_table(self.settings.model_prices)
        except cost.PriceTableError as exc:
            log.error("%s", exc)
            prices, problem = {}, str(exc)
        else:
            problem = None
        priced = cost.call_cost(usage, duration_seconds or 0.0, prices, self.settings.telephony_usd_per_minute)
        if problem:
            priced["error"] = problem
        return priced

    def _after_call(self, call: dict[str, Any]) -> None:
        """The call log is written: queue its post-call work (durable; a crash right after the
        call log is caught up by `enqueue_missing_jobs`)."""
        try:
            jobs.enqueue(self.store, f"summary:{call['session_id']}", "summary", {"session_id": call["session_id"]})
        except StoreError as exc:
            log.error("could not queue the summary of session %s: %s", call["session_id"], exc.message)

    def enqueue_missing_jobs(self) -> int:
        """Queue the summary of every ended call that has none (its process died between the call
        log and the queueing); returns how many were queued."""
        queued = 0
        for session_id in self.store.sessions_with_call_logs():
            if self.store.job(f"summary:{session_id}") is None:
                queued += jobs.enqueue(self.store, f"summary:{session_id}", "summary", {"session_id": session_id})
        return queued

    def summary_of(self, session_id: str) -> dict[str, Any] | None:
        """The call's post-call summary job: its state, and its result once done."""
        return self.store.job(f"summary:{session_id}")

    def run_jobs(self, *, kinds: tuple[str, ...] | None = None, limit: int | None = None) -> int:
        """Run the jobs that are due now (summaries, webhook deliveries), one at a time; returns
        how many ran. Many workers may run at once: each job is claimed by one."""
        ran = 0
        while limit is None or ran < limit:
            job = jobs.claim(self.store, kinds)
            if job is None:
                return ran
            self._run_job(job)
            ran += 1
        return ran

    def _run_job(self, job: dict[str, Any]) -> None:
        handler, policy = JOB_HANDLERS[job["kind"]]
        try:
            result = handler(self, job)
        except jobs.Skip as exc:
            jobs.skip(self.store, job["id"], str(exc))
        except jobs.Retry as exc:
            jobs.fail(self.store, job["id"], str(exc), policy)
        else:
            if jobs.finish(self.store, job["id"], result) and job["kind"] == "summary":
                session_id = job["payload"]["session_id"]
                self.enqueue_webhook(webhook.event_for_summary(session_id, result))  # when configured

    def job(self, job_id: str) -> dict[str, Any] | None:
        return self.store.job(job_id)

    # ---- the end-of-call webhook (backend/postcall/webhook.py) --------------------------------------
    def enqueue_webhook(self, event: dict[str, Any]) -> bool:
        """Queue the delivery of `event` to WEBHOOK_URL, once: job `webhook:<type>:<session_id>`
        (`webhook.job_id`). Returns True when queued now; False when it was queued before, or when
        WEBHOOK_URL and WEBHOOK_SECRET are not both set (then nothing is queued). Raises StoreError.

        The hook for the jobs that produce events: `end_call` queues `webhook.event_for_call`, and
        the summary job, when a summary is ready, calls
        `backend.enqueue_webhook(webhook.event_for_summary(session_id, result))`."""
        if not webhook.enabled(self.settings):
            return False
        sid = event["data"]["session_id"]
        payload = {"event": event, "session_id": sid}
        return jobs.enqueue(self.store, webhook.job_id(event["type"], sid), webhook.KIND, payload)

    def webhook_deliveries(
        self, *, state: str | None = None, session_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Webhook deliveries newest queued first (`webhook.delivery_view`: state, attempts with
        their errors, next attempt, delivered at); `state` is one of `webhook.STATES`. With
        `session_id`, that call's events, looked up by their job ids (no walk over every job)."""
        states = webhook.job_states(state)
        if session_id is not None:
            ids = dict.fromkeys(webhook.job_id(t, session_id) for t in webhook.EVENT_TYPES)
            found = [(jid, job) for jid in ids if (job := self.store.job(jid)) is not None]
            found = [(jid, job) for jid, job in found if states is None or job.get("state") in states]
            found = sorted(found, key=lambda pair: pair[1].get("created", 0), reverse=True)[:limit]
        else:
            found = self.store.jobs_of_kind(webhook.KIND, states=states, limit=limit)
        return [webhook.delivery_view(jid, job, self.store.events(JOBS, jid)) for jid, job in found]

    def webhook_problems(self) -> list[str]:
        """What is wrong with the webhook settings (for the worker to say at start), if anything."""
        return webhook.problems(self.settings)

    # ---- the command line -----------------------------------------------------------------------
    def verify(self) -> dict[str, Any]:
        """Check and repair the store, close the calls of dead agent processes, list failed opt-outs."""
        report = self.store.verify()
        report["closed_calls"] = [c["session_id"] for c in self.close_orphaned_calls()]
        report["relisted_opt_outs"] = self.reconcile_opt_outs()
        return report

    def export(self) -> dict[str, Any]:
        return self.store.export()

    def stats(self) -> dict[str, Any]:
        return self.store.stats()

    def import_legacy(self, path: str) -> dict[str, Any]:
        from backend.store.legacy import import_legacy

        return import_legacy(self.store, path)


# ---- whole stores (the command line's migrate and copy) -------------------------------------------
def is_database_url(location: str) -> bool:
    return location.startswith(("postgresql://", "postgres://"))


def describe_store(location: str) -> str:
    """`location` as it may be printed or logged: a database URL without its password."""
    if not is_database_url(location):
        return location
    from backend.store.postgres import redact_url

    return redact_url(location)


def store_at(location: str, settings: Settings | None = None) -> Store:
    """The store a `postgresql://` URL or a folder (a JSON store) names."""
    settings = settings or get_settings()
    if is_database_url(location):
        from backend.store.postgres import PgStore

        return PgStore(location, pool_size=settings.store_pool_size)
    return JournalStore(location, fsync=settings.store_fsync)


def migrate_store(url: str) -> dict[str, Any]:
    """Create or upgrade the PostgreSQL store's schema at `url` (safe to run again)."""
    from backend.store.postgres import migrate

    return migrate(url)


def copy_store(source: str, target: str, settings: Settings | None = None) -> dict[str, Any]:
    """Copy the store at `source` into the one at `target` (each a folder or a `postgresql://`
    URL; a database is migrated first), then verify counts and checksums. Safe to run again."""
    from backend.store.copier import copy_store as copy

    if is_database_url(target):
        migrate_store(target)
    src, dst = store_at(source, settings), store_at(target, settings)
    try:
        return copy(src, dst)
    finally:
        src.close()
        dst.close()


# ---- job handlers ---------------------------------------------------------------------------------
JOB_HANDLERS["summary"] = (summary.run, summary.POLICY)
JOB_HANDLERS[webhook.KIND] = (webhook.deliver, webhook.POLICY)
