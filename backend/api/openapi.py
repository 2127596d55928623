"""The OpenAPI 3.1 description of every route, built from the same vocabularies the API checks
(categories, outcomes, end reasons, limits), so the two cannot drift apart."""

from __future__ import annotations

from functools import cache
from typing import Any

from backend.api.params import (
    ANALYTICS_DEFAULT_DAYS,
    ANALYTICS_MAX_DAYS,
    DEFAULT_LIMIT,
    FIRST_DAY,
    FORMATS,
    LAST_DAY,
    MAX_LIMIT,
    STATUSES,
)
from backend.api.test_function import FUNCTIONS
from backend.calls.outbound import STATES as OUTBOUND_STATES
from backend.calls.recording import STATUSES as RECORDING_STATUSES
from backend.postcall.webhook import EVENT_TYPES as WEBHOOK_EVENT_TYPES
from backend.postcall.webhook import STATES as WEBHOOK_STATES
from backend.store.records import CATEGORIES, END_REASONS, OUTCOMES, schema


def _without_meta(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if not k.startswith("$")}


LEAD = _without_meta(schema("lead"))
TURN = _without_meta(schema("turn"))  # the store's own schema: the two cannot drift apart
DISCLOSURE_KEYS = schema("fields/conversation_flow")["properties"]["disclosures"]["items"]["enum"]
TIMESTAMP = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$"}
NULLABLE_TS = {"type": ["string", "null"], "pattern": TIMESTAMP["pattern"]}
E164 = {
    "type": "string",
    "pattern": r"^\+[1-9][0-9]{6,14}$",
    "description": "E.164, e.g. +12125551234; it must also be a valid number for its country.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], /, **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


def _analytics_schema() -> dict[str, Any]:
    count = {"type": "integer", "minimum": 0}
    share = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
    seconds = {"type": ["number", "null"], "minimum": 0}
    usd = {"type": ["number", "null"], "minimum": 0}
    day = {"type": "string", "format": "date"}
    return _obj(
        ["range", "totals", "per_day", "outcomes", "duration", "cost", "missing_disclosures"],
        range=_obj(
            ["since", "until", "tz", "days", "starts_at", "ends_before"],
            since=day,
            until=day,
            tz={"type": "string"},
            days={"type": "integer", "minimum": 1, "maximum": ANALYTICS_MAX_DAYS},
            starts_at=TIMESTAMP | {"description": "The first instant of `since` in `tz`."},
            ends_before=TIMESTAMP | {"description": "The first instant of the day after `until` in `tz`."},
        ),
        totals=_obj(
            ["calls", "conversations", "qualified", "qualification_rate"],
            calls=count,
            conversations=count
            | {"description": "Calls that reached someone to qualify: every outcome but no_contact."},
            qualified=count,
            qualification_rate=share | {"description": "qualified / conversations; null without conversations."},
        ),
        per_day={
            "type": "array",
            "description": "Every day of the range in `tz`, oldest first; days without calls have zeros.",
            "items": _obj(
                [
                    "date",
                    "calls",
                    "qualified",
                    "missing_disclosures",
                    "average_duration_seconds",
                    "p90_duration_seconds",
                ],
                date=day,
                calls=count,
                qualified=count,
                missing_disclosures=count,
                average_duration_seconds=seconds,
                p90_duration_seconds=seconds,
            ),
        },
        outcomes={
            "type": "object",
            "required": list(OUTCOMES),
            "properties": {o: count for o in OUTCOMES},
            "additionalProperties": count,
            "description": "Calls per outcome; every outcome is listed.",
        },
        duration=_obj(
            ["average_seconds", "p90_seconds"],
            average_seconds=seconds,
            p90_seconds=seconds | {"description": "Nearest rank: 90 % of the calls were no longer."},
        ),
        cost=_obj(
            ["total_usd", "calls_with_cost", "calls_without_cost", "per_call_usd", "per_qualified_lead_usd"],
            total_usd={"type": "number", "minimum": 0, "description": "Over the calls that have a cost."},
            calls_with_cost=count,
            calls_without_cost=count,
            per_call_usd=usd | {"description": "total_usd / calls_with_cost; null without costs."},
            per_qualified_lead_usd=usd | {"description": "total_usd / qualified; null without costs or leads."},
        ),
        missing_disclosures=_obj(
            ["calls", "share"],
            calls=count | {"description": "Calls whose agent did not give a required disclosure in time."},
            share=share | {"description": "Of all calls; null without calls."},
        ),
    ) | {"description": "Every null is a figure whose denominator is zero."}


SCHEMAS: dict[str, Any] = {
    "Error": _obj(
        ["error"],
        error={
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            "additionalProperties": False,
        },
    )
    | {"additionalProperties": False},
    "Information": _obj(
        ["id", "seq", "session_id", "caller_id", "category", "information", "timestamp", "status"],
        id={"type": "string"},
        seq={"type": "integer", "minimum": 1},
        session_id={"type": "string"},
        caller_id={"type": "string"},
        category={"enum": list(CATEGORIES)},
        information={"type": "string", "minLength": 1, "maxLength": 2000},
        fields={"type": "object", "description": "Structured data, checked against a JSON Schema per category."},
        timestamp=TIMESTAMP,
        status={"enum": ["received"]},
    ),
    "Session": _obj(
        [
            "session_id",
            "caller_id",
            "direction",
            "called_number",
            "started_at",
            "ended_at",
            "status",
            "information_count",
            "end_reason",
            "outcome",
            "duration_seconds",
        ],
        session_id={"type": "string"},
        caller_id={"type": "string"},
        direction={"enum": ["inbound", "outbound"]},
        called_number={"type": ["string", "null"]},
        started_at=TIMESTAMP,
        ended_at=NULLABLE_TS,
        status={"enum": list(STATUSES)},
        information_count={"type": "integer", "minimum": 0},
        end_reason={"enum": [*END_REASONS, None]},
        outcome={"enum": [*OUTCOMES, None]},
        duration_seconds={"type": ["number", "null"], "minimum": 0},
        disclosures={"oneOf": [_ref("DisclosureEvidence"), {"type": "null"}]},
    ),
    "DisclosureEvidence": _obj(
        ["required", "heard", "missing", "flagged"],
        required={"type": "array", "items": {"enum": DISCLOSURE_KEYS}},
        heard={
            "type": "object",
            "additionalProperties": {"type": "number", "minimum": 0},
            "description": "Each disclosure heard in the agent's own words, and when (seconds from the call's start).",
        },
        missing={"type": "array", "items": {"enum": DISCLOSURE_KEYS}},
        agent_turns_checked={"type": "integer", "minimum": 0},
        flagged={"type": "boolean", "description": "A required disclosure was not heard within two agent turns."},
    )
    | {"description": "Checked from the agent's transcribed words, not from what the model claims."},
    "Turn": TURN,
    "Lead": LEAD,
    "CallSummary": _obj(
        ["state", "attempts"],
        state={"enum": ["queued", "claimed", "retrying", "done", "skipped", "gave_up"]},
        attempts={"type": "integer", "minimum": 0},
        error={"type": ["string", "null"], "description": "The last failed attempt's error."},
        reason={"type": ["string", "null"], "description": "Why it was skipped, e.g. `skipped: no key`."},
        summary={"type": ["string", "null"], "description": "Three sentences at most."},
        lead={"description": "The model's lead, kept as it came (see `lead_valid` and `errors`)."},
        lead_valid={"type": "boolean", "description": "The lead meets the Lead schema."},
        errors={"type": "array", "items": {"type": "string"}, "description": "What was wrong with the reply."},
        rule={
            "type": "object",
            "description": "Our own qualification: unsecured debt against QUALIFY_MIN_UNSECURED_DEBT_USD.",
            "properties": {
                "qualified": {"type": "boolean"},
                "unsecured_debt_usd": {"type": "number"},
                "threshold_usd": {"type": "number"},
                "reason": {"type": "string"},
            },
        },
        model_decision={"enum": ["qualified", "not_qualified", "undecided", None]},
        disagreement={"type": "boolean", "description": "The model's decision differs from the rule's."},
        model={"type": "string"},
        raw={"type": "string", "description": "A reply that was not JSON, as it came."},
    ),
    "Transcript": _obj(
        ["session_id", "turns", "count"],
        session_id={"type": "string"},
        turns={"type": "array", "items": _ref("Turn"), "description": "In the order they were saved."},
        count={"type": "integer", "minimum": 0},
    ),
    "Call": _obj(
        ["id", "session_id", "caller_id", "reason", "outcome", "duration_seconds", "information_count", "ended_at"],
        id={"type": "string"},
        seq={"type": "integer", "minimum": 1},
        session_id={"type": "string"},
        caller_id={"type": "string"},
        reason={"enum": list(END_REASONS)},
        outcome={"enum": list(OUTCOMES)},
        duration_seconds={"type": "number", "minimum": 0},
        information_count={"type": "integer", "minimum": 0},
        ended_at=TIMESTAMP,
        details={"type": "object"},
        missing_disclosures={
            "type": "array",
            "items": {"enum": DISCLOSURE_KEYS},
            "description": "Once the disclosure check has run: the required disclosures not heard.",
        },
        cost=_without_meta(schema("call")["properties"]["cost"]),
    ),
    "Cursor": {"type": ["string", "null"], "description": "Pass as `cursor` for the next page; null at the end."},
    "InformationPage": _obj(
        ["information", "count", "next_cursor"],
        information={"type": "array", "items": _ref("Information"), "maxItems": MAX_LIMIT},
        count={"type": "integer", "minimum": 0, "maximum": MAX_LIMIT},
        next_cursor=_ref("Cursor"),
        next_after_seq={
            "type": "integer",
            "minimum": 0,
            "description": "With after_seq: the after_seq of the next pull.",
        },
    ),
    "SessionsPage": _obj(
        ["sessions", "next_cursor"],
        sessions={"type": "array", "items": _ref("Session")},
        next_cursor=_ref("Cursor"),
    ),
    "Recording": _obj(
        ["egress_id", "status", "location", "started_at", "ended_at", "error"],
        egress_id={"type": ["string", "null"], "description": "LiveKit's egress id; null when it never started."},
        status={"enum": list(RECORDING_STATUSES)},
        location={"type": ["string", "null"], "description": "The file path or s3:// URL it is written to."},
        started_at=NULLABLE_TS,
        ended_at=NULLABLE_TS,
        error={"type": ["string", "null"], "description": "Why it failed or did not start, in one sentence."},
    ),
    "SessionDetail": _obj(
        ["session", "information", "call"],
        session=_ref("Session"),
        information={"type": "array", "items": _ref("Information"), "description": "Oldest first."},
        call={"oneOf": [_ref("Call"), {"type": "null"}]},
        transcript={"type": "array", "items": _ref("Turn"), "description": "The call's transcript, in order."},
        recording={
            "oneOf": [_ref("Recording"), {"type": "null"}],
            "description": "The call's recording (RECORDING=on); null when none was started.",
        },
        summary={
            "oneOf": [_ref("CallSummary"), {"type": "null"}],
            "description": "The post-call summary and lead; null until the call has ended.",
        },
    ),
    "CallsPage": _obj(
        ["calls", "next_cursor"], calls={"type": "array", "items": _ref("Call")}, next_cursor=_ref("Cursor")
    ),
    "Summary": _obj(
        [
            "total_sessions",
            "active_sessions",
            "total_calls",
            "total_information",
            "by_category",
            "by_outcome",
            "recent_information",
            "recent_calls",
            "last_seq",
        ],
        total_sessions={"type": "integer", "minimum": 0},
        active_sessions={"type": "integer", "minimum": 0},
        total_calls={"type": "integer", "minimum": 0},
        total_information={"type": "integer", "minimum": 0},
        by_category={"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
        by_outcome={"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
        recent_information={"type": "array", "items": _ref("Information"), "maxItems": 10},
        recent_calls={"type": "array", "items": _ref("Call"), "maxItems": 10},
        last_seq={"type": "integer", "minimum": 0},
    ),
    "Analytics": _analytics_schema(),
    "CallRequest": _obj(
        ["phone_number"],
        phone_number=E164,
    )
    | {"additionalProperties": False},
    "OutboundCall": _obj(
        ["id", "state", "phone_number", "created_at", "updated_at", "sip_status_code", "history"],
        id={"type": "string"},
        state={"enum": list(OUTBOUND_STATES)},
        phone_number={"type": ["string", "null"]},
        room={"type": ["string", "null"]},
        session_id={"type": ["string", "null"]},
        dispatch_id={"type": ["string", "null"]},
        created_at=TIMESTAMP,
        updated_at=TIMESTAMP,
        dial_outcome={"enum": ["answered", "busy", "no_answer", "rejected", "failed", None]},
        sip_status_code={"type": ["integer", "null"], "description": "The SIP status of a call not answered."},
        sip_status={"type": ["string", "null"]},
        end_reason={"enum": [*END_REASONS, None]},
        twilio_status={"type": ["string", "null"]},
        error={"type": ["string", "null"]},
        stale={"type": "boolean", "description": "Failed because the agent stopped reporting."},
        history={
            "type": "array",
            "items": _obj(["state", "at"], state={"enum": list(OUTBOUND_STATES)}, at=TIMESTAMP),
        },
    ),
    "DncEntry": _obj(
        ["phone_number", "added_at", "source"],
        phone_number={"type": "string"},
        added_at=TIMESTAMP,
        source={"type": ["string", "null"], "description": "opt_out (during a call) or api."},
        session_id={"type": ["string", "null"]},
        note={"type": ["string", "null"]},
    ),
    "DncList": _obj(
        ["dnc", "count"], dnc={"type": "array", "items": _ref("DncEntry")}, count={"type": "integer", "minimum": 0}
    ),
    "DncAddRequest": _obj(
        ["phone_number"],
        phone_number=E164,
        note={"type": ["string", "null"], "maxLength": 500},
    )
    | {"additionalProperties": False},
    "DncAdded": _obj(["entry", "created"], entry=_ref("DncEntry"), created={"type": "boolean"}),
    "DncRemoved": _obj(["removed"], removed=_ref("DncEntry")),
    "TwilioStatusRecorded": _obj(
        ["recorded", "session_id", "call_id"],
        recorded={"type": "boolean", "description": "false for a repeat of the status already recorded."},
        session_id={"type": ["string", "null"]},
        call_id={"type": ["string", "null"]},
    ),
    "TestFunctionRequest": {"oneOf": [_ref(f"TestFunction_{name}") for name in FUNCTIONS]},
    "FunctionResult": _obj(["success"], success={"type": "boolean"})
    | {"description": "The backend function's own result, passed through unchanged."},
}

# ---- the end-of-call webhook: its deliveries (GET /api/webhooks/deliveries) and its events ----------
SCHEMAS["WebhookAttempt"] = _obj(
    ["attempt", "started_at", "ended_at", "outcome", "error", "worker", "status", "response_ms"],
    attempt={"type": "integer", "minimum": 1},
    started_at=TIMESTAMP,
    ended_at=NULLABLE_TS,
    outcome={
        "enum": ["in_progress", "delivered", "failed", "skipped", "abandoned"],
        "description": "abandoned: the worker stopped before it could record an answer (its claim ran out).",
    },
    error={"type": ["string", "null"], "description": "e.g. HTTP 500 from receiver, timed out after 10 s."},
    worker={"type": ["string", "null"], "description": "host:pid of the worker that made the attempt."},
    status={"type": ["integer", "null"], "description": "The receiver's HTTP status, when it was 2xx."},
    response_ms={"type": ["number", "null"], "minimum": 0},
)
SCHEMAS["WebhookDelivery"] = _obj(
    [
        "job_id",
        "event_id",
        "type",
        "session_id",
        "state",
        "attempts",
        "last_error",
        "queued_at",
        "next_attempt_at",
        "delivered_at",
        "history",
    ],
    job_id={"type": "string"},
    event_id={"type": ["string", "null"], "description": "The webhook-id header: the same at every attempt."},
    type={"enum": [*WEBHOOK_EVENT_TYPES, None]},
    session_id={"type": ["string", "null"]},
    state={"enum": list(WEBHOOK_STATES)},
    attempts={"type": "integer", "minimum": 0},
    last_error={"type": ["string", "null"]},
    queued_at=NULLABLE_TS,
    next_attempt_at=NULLABLE_TS,
    delivered_at=NULLABLE_TS,
    response_status={"type": ["integer", "null"]},
    response_ms={"type": ["number", "null"], "minimum": 0},
    history={"type": "array", "items": _ref("WebhookAttempt"), "description": "Every attempt, oldest first."},
)
SCHEMAS["WebhookDeliveriesPage"] = _obj(
    ["deliveries", "count", "more"],
    deliveries={"type": "array", "items": _ref("WebhookDelivery"), "maxItems": MAX_LIMIT},
    count={"type": "integer", "minimum": 0, "maximum": MAX_LIMIT},
    more={"type": "boolean", "description": "Older deliveries match too (there is no cursor: raise limit)."},
)
SCHEMAS["WebhookEvent"] = _obj(
    ["id", "type", "timestamp", "data"],
    id={"type": "string", "description": "evt_call_<session_id> or evt_summary_<session_id>; also webhook-id."},
    type={"enum": list(WEBHOOK_EVENT_TYPES)},
    timestamp=TIMESTAMP,
    data={
        "oneOf": [
            _obj(
                ["session_id", "call", "session"],
                session_id={"type": "string"},
                call=_ref("Call"),
                session=_ref("Session"),
            ),
            _obj(["session_id", "summary"], session_id={"type": "string"}, summary={"type": "object"}),
        ]
    },
) | {"description": "What WEBHOOK_URL receives: call.ended (the call log and session) or call.summary."}

_TEXT = {"type": ["string", "null"], "minLength": 1}
_ARGUMENTS: dict[str, tuple[list[str], dict[str, Any]]] = {
    "share_information": (
        ["information", "category", "caller_id"],
        {
            "information": {"type": "string", "minLength": 1, "maxLength": 2000},
            "category": {"enum": list(CATEGORIES)},
            "caller_id": {"type": "string", "minLength": 1, "maxLength": 64},
            "session_id": _TEXT | {"maxLength": 128},
            "fields": {"type": ["object", "null"]},
        },
    ),
    "get_shared_information": (
        [],
        {
            "category": {"enum": [*CATEGORIES, None]},
            "caller_id": _TEXT | {"maxLength": 64},
            "session_id": _TEXT | {"maxLength": 128},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
        },
    ),
    "end_call": (
        ["reason", "caller_id"],
        {
            "reason": {"enum": list(END_REASONS)},
            "caller_id": {"type": "string", "minLength": 1, "maxLength": 64},
            "duration_seconds": {"type": ["number", "null"], "minimum": 0, "exclusiveMaximum": 10**7},
            "session_id": _TEXT | {"maxLength": 128},
        },
    ),
    "get_current_time": (
        [],
        {
            "timezone": {
                "type": ["string", "null"],
                "maxLength": 64,
                "description": "IANA name; empty or null: BUSINESS_TIMEZONE.",
            }
        },
    ),
}
for _name, (_required, _props) in _ARGUMENTS.items():
    SCHEMAS[f"TestFunction_{_name}"] = {
        "type": "object",
        "required": ["function", *(["arguments"] if _required else [])],
        "properties": {
            "function": {"const": _name},
            "arguments": {"type": "object", "required": _required, "properties": _props, "additionalProperties": False},
        },
        "additionalProperties": False,
    }


def _param(name: str, schema: dict, description: str, where: str = "query", **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": where, "schema": schema, "description": description, **extra}


LIMIT = _param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}, "Page size.")


def _cursor(kind: str) -> dict[str, Any]:
    """An opaque cursor; its custom format names the route that gave it out (a cursor from one
    route is refused by another with 400 bad_cursor)."""
    schema = {"type": "string", "minLength": 1, "maxLength": 200, "format": f"{kind}-cursor"}
    return _param("cursor", schema, "The next_cursor of the previous page (takes precedence over after_seq).")


CALLER = _param("caller_id", {"type": "string", "minLength": 1, "maxLength": 64}, "Only this caller.")
SINCE = _param("since", {"type": "string", "format": "date-time"}, "Only at or after this time (RFC 3339).")
UNTIL = _param("until", {"type": "string", "format": "date-time"}, "Only at or before this time (RFC 3339).")
OUTCOME = _param("outcome", {"enum": list(OUTCOMES)}, "Only calls with this outcome.")
INFO_PARAMS = [
    _param(
        "category",
        {"type": "array", "items": {"enum": list(CATEGORIES)}, "maxItems": 5},
        "Only these categories (repeat the parameter).",
        style="form",
        explode=True,
    ),
    CALLER,
    _param("session_id", {"type": "string", "minLength": 1, "maxLength": 128}, "Only this session."),
    SINCE,
    UNTIL,
    _param("q", {"type": "string", "minLength": 1, "maxLength": 200}, "Text search (case-insensitive)."),
    LIMIT,
    _cursor("information"),
    _param(
        "after_seq",
        {"type": "integer", "minimum": 0, "maximum": 2**62},
        "Records with seq > after_seq, in write order (incremental pulls).",
    ),
    _param("format", {"enum": list(FORMATS), "default": "json"}, "json, ndjson (streamed) or csv (UTF-8, header row)."),
]
ERRORS = {
    "400": "Bad parameters or body (the code names the problem).",
    "401": "Missing or wrong bearer token.",
    "429": "Too many wrong tokens from this address.",
    "503": "The store is unavailable.",
}


def _responses(ok: dict[str, Any], *, public: bool = False, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": _ref("Error")}}}
    out = {"200": ok}
    for code, text in ERRORS.items():
        if not (public and code in ("400", "401", "429")):
            out[code] = {"description": text, **error}
    for code in extra:
        out[code] = {"description": "Not found." if code == "404" else "Error.", **error}
    out["default"] = {"description": "Any other error, in the same envelope.", **error}
    return out


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _get(summary: str, ok: dict, params: list | None = None, **kw: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": _responses(ok, **kw)}
    if params:
        op["parameters"] = params
    if kw.get("public"):
        op["security"] = []
    return {"get": op}


def _paths() -> dict[str, Any]:
    page_headers = {
        "X-Next-Cursor": {"schema": {"type": "string"}, "description": "Cursor of the next page, when there is one."},
        "X-Next-After-Seq": {"schema": {"type": "string"}, "description": "With after_seq: the next after_seq."},
    }
    info_ok = _json("InformationPage", "A page of records (newest first; with after_seq, in write order).")
    info_ok["headers"] = page_headers
    info_ok["content"]["application/x-ndjson"] = {"schema": {"type": "string"}}
    info_ok["content"]["text/csv"] = {"schema": {"type": "string"}}
    test_function = {
        "summary": "Run one backend function by hand (200 when it succeeds, 400 when it refuses).",
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("TestFunctionRequest")}}},
        "responses": _responses(_json("FunctionResult", "The function succeeded: its result.")),
    }
    test_function["responses"]["400"] = {
        "description": "The function refused (its own result), or the body is wrong (the envelope).",
        "content": {"application/json": {"schema": {"anyOf": [_ref("FunctionResult"), _ref("Error")]}}},
    }
    test_function["responses"]["413"] = {"description": "Body over 1 MiB.", **_json("Error", "")}
    health_ok = {
        "description": "The server and its store answer.",
        "content": {"application/json": {"schema": _obj(["status"], status={"const": "ok"})}},
    }
    transcript_ok = _json("Transcript", "The transcript.")
    transcript_ok["content"]["text/plain"] = {"schema": {"type": "string"}}
    spec_ok = {"description": "This document.", "content": {"application/json": {"schema": {"type": "object"}}}}
    return {
        "/api/health": _get("Liveness and store readiness", health_ok, public=True),
        "/api/openapi.json": _get("This OpenAPI description", spec_ok, public=True),
        "/api/summary": _get("Totals, counts, newest records and calls", _json("Summary", "The summary.")),
        "/api/information": _get("Information records", info_ok, INFO_PARAMS),
        "/api/sessions": _get(
            "Sessions, newest first",
            _json("SessionsPage", "A page of sessions."),
            [
                _param("status", {"enum": list(STATUSES)}, "active or completed."),
                CALLER,
                OUTCOME,
                SINCE,
                UNTIL,
                _param(
                    "missing_disclosure",
                    {"enum": ["true", "false"]},
                    "true: only calls whose agent did not give a required disclosure in time; false: the others.",
                ),
                LIMIT,
                _cursor("sessions"),
            ],
        ),
        "/api/sessions/{session_id}": _get(
            "One session with its records (oldest first) and call log",
            _json("SessionDetail", "The session."),
            [_param("session_id", {"type": "string", "minLength": 1}, "The session id.", "path", required=True)],
            extra=("404",),
        ),
        "/api/sessions/{session_id}/transcript": _get(
            "The call's transcript: each turn of the caller and the agent, and each tool call, in order",
            transcript_ok,
            [
                _param("session_id", {"type": "string", "minLength": 1}, "The session id.", "path", required=True),
                _param("format", {"enum": ["json", "txt"], "default": "json"}, "json, or txt (one line per turn)."),
            ],
            extra=("404",),
        ),
        "/api/analytics": _get(
            "Figures of the calls that ended in a date range, from the store's index",
            _json("Analytics", "The figures."),
            _analytics_params(),
        ),
        "/api/test_function": {"post": test_function},
    } | _sip_paths()


def _analytics_params() -> list[dict[str, Any]]:
    day = {"type": "string", "format": "date"}
    bounds = f"(YYYY-MM-DD, {FIRST_DAY} to {LAST_DAY})"
    return [
        _param(
            "since",
            day,
            f"First day, included, in tz {bounds}; default: {ANALYTICS_DEFAULT_DAYS - 1} days before until. "
            f"At most {ANALYTICS_MAX_DAYS} days from since through until, and since <= until, else 400.",
        ),
        _param("until", day, f"Last day, included, in tz {bounds}; default: today in tz."),
        _param(
            "tz",
            {"type": "string", "minLength": 1, "maxLength": 64},
            "IANA time zone the days are counted in (e.g. America/Chicago); default: BUSINESS_TIMEZONE.",
        ),
    ]


def _error(description: str) -> dict[str, Any]:
    return _json("Error", description)


def _sip_paths() -> dict[str, Any]:
    """Outbound calls, the do-not-call list and Twilio's status callback."""
    number = {"type": "string", "minLength": 1, "maxLength": 64}
    place = {
        "summary": "Place an outbound call (gates in this order: 400, 403, 409, 429, 503)",
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("CallRequest")}}},
        "responses": _responses(_json("OutboundCall", "")),
    }
    place["responses"].pop("200")
    place["responses"] |= {
        "202": _json("OutboundCall", "Accepted: the agent is dispatched and will dial (state queued)."),
        "400": _error("Not a valid E.164 number, or a bad body."),
        "403": _error("The number is on the do-not-call list."),
        "409": _error("Outside calling hours at the called party."),
        "429": _error("At the outbound concurrency limit (or too many wrong tokens)."),
        "503": _error("Outbound calling is not configured, the dispatch failed, or the store is unavailable."),
    }
    dnc_add = {
        "summary": "Put a number on the do-not-call list",
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("DncAddRequest")}}},
        "responses": _responses(_json("DncAdded", "Already listed (its first entry).")),
    }
    dnc_add["responses"]["201"] = _json("DncAdded", "Added.")
    dnc_remove = {
        "summary": "Take a number off the do-not-call list (the removal is logged)",
        "parameters": [
            _param("phone_number", number, "The number (E.164).", required=True),
            _param("reason", {"type": "string", "maxLength": 500}, "Why it is removed (logged)."),
        ],
        "responses": _responses(_json("DncRemoved", "Removed."), extra=("404",)),
    }
    webhook = {
        "summary": "Twilio's call status callback (checked by X-Twilio-Signature, not a bearer token)",
        "security": [],
        "parameters": [
            _param(
                "X-Twilio-Signature", {"type": "string", "minLength": 1}, "Twilio's signature.", "header", required=True
            ),
            _param("call_id", {"type": "string", "maxLength": 128}, "The outbound call this callback is about."),
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": _obj(
                        ["CallSid", "CallStatus"],
                        CallSid={"type": "string", "minLength": 1, "maxLength": 64},
                        CallStatus={"type": "string", "minLength": 1, "maxLength": 32},
                        Direction={"type": "string"},
                        From={"type": "string"},
                        To={"type": "string"},
                        SipResponseCode={"type": "string"},
                    )
                }
            },
        },
        "responses": {
            "200": _json("TwilioStatusRecorded", "Checked and recorded."),
            "400": _error("CallSid or CallStatus missing."),
            "403": _error("The signature is missing or does not match (or TWILIO_AUTH_TOKEN is not set)."),
            "503": _error("The store is unavailable."),
            "default": _error("Any other error, in the same envelope."),
        },
    }
    calls = _get(
        "Call logs, newest first",
        _json("CallsPage", "A page of call logs."),
        [CALLER, OUTCOME, SINCE, UNTIL, LIMIT, _cursor("calls")],
    )
    return {
        "/api/calls": calls | {"post": place},
        "/api/calls/{call_id}": _get(
            "An outbound call's state: queued, dialing, answered, completed or failed, with the SIP status",
            _json("OutboundCall", "The call."),
            [_param("call_id", {"type": "string", "minLength": 1}, "The call id.", "path", required=True)],
            extra=("404",),
        ),
        "/api/dnc": _get("The do-not-call list, newest first", _json("DncList", "The list."))
        | {"post": dnc_add, "delete": dnc_remove},
        "/api/webhooks/twilio/status": {"post": webhook},
    }


def _webhook_paths() -> dict[str, Any]:
    """The end-of-call webhook's deliveries (bearer token, unlike the Twilio callback beside it)."""
    return {
        "/api/webhooks/deliveries": _get(
            "The end-of-call webhook's deliveries, newest first, each with its attempts and their errors",
            _json("WebhookDeliveriesPage", "The newest `limit` deliveries."),
            [
                _param("state", {"enum": list(WEBHOOK_STATES)}, "Only deliveries in this state."),
                _param("session_id", {"type": "string", "minLength": 1, "maxLength": 128}, "Only this call's events."),
                _param(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
                    "How many (there is no cursor).",
                ),
            ],
        )
    }


def _outgoing_webhooks() -> dict[str, Any]:
    """What we send to WEBHOOK_URL (OpenAPI 3.1 `webhooks`), signed per Standard Webhooks."""
    header = {"type": "string", "minLength": 1}
    op = {
        "summary": "An ended call (call.ended) or its summary (call.summary), signed per Standard Webhooks",
        "parameters": [
            _param("webhook-id", header, "The event id: the same at every attempt.", "header", required=True),
            _param("webhook-timestamp", header, "Unix seconds of this attempt.", "header", required=True),
            _param(
                "webhook-signature",
                header,
                "v1,<base64 HMAC-SHA256 of id.timestamp.body with WEBHOOK_SECRET>.",
                "header",
                required=True,
            ),
        ],
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("WebhookEvent")}}},
        "responses": {"2XX": {"description": "Received; any other answer (or none in time) is retried."}},
        "security": [],
    }
    return {"callEvent": {"post": op}}


@cache
def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Debt-relief voice agent API",
            "version": "1.0.0",
            "description": "Records captured by the voice agent, its sessions and call logs, outbound calls and the "
            "do-not-call list. Every route except /api/health, /api/openapi.json and the Twilio status "
            "callback (checked by its X-Twilio-Signature) needs `Authorization: Bearer <token>`. Errors have the body "
            '`{"error": {"code", "message"}}`.',
        },
        "paths": _paths() | _webhook_paths(),
        "webhooks": _outgoing_webhooks(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
