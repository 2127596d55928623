"""The OpenAPI 3.1 description of every route, built from the same vocabularies and rules the
API checks, so the two cannot drift apart: the record shapes and each category's `fields` are
the JSON Schemas of `backend/schemas/` themselves; categories, outcomes, end reasons, limits and
time zones are the code's own lists; a cursor's pattern is computed from its encoding, and the
pattern of a number to call from phonenumbers' metadata.

The aim is that a request the document calls valid is one the server accepts (a fuzzer such as
schemathesis, given only this document, finds no well-formed request refused) and a request it
calls invalid is refused."""

from __future__ import annotations

import json
import re._constants as sre  # the parser of `re` itself: the patterns below are Python's too
import re._parser as sre_parse
import zoneinfo
from collections.abc import Iterator
from functools import cache
from typing import Any

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata

from backend.api.params import (
    ANALYTICS_DEFAULT_DAYS,
    ANALYTICS_MAX_DAYS,
    DEFAULT_LIMIT,
    FIRST_DAY,
    FORMATS,
    LAST_DAY,
    MAX_LIMIT,
    RFC3339_PATTERN,
    STATUSES,
    cursor_pattern,
    time_zones,
)
from backend.api.sip_routes import MAX_NOTE, MAX_REASON
from backend.api.test_function import FUNCTIONS
from backend.calls.outbound import STATES as OUTBOUND_STATES
from backend.calls.recording import STATUSES as RECORDING_STATUSES
from backend.postcall.webhook import EVENT_TYPES as WEBHOOK_EVENT_TYPES
from backend.postcall.webhook import STATES as WEBHOOK_STATES
from backend.store.records import CATEGORIES, END_REASONS, MAX_INFORMATION_CHARS, OUTCOMES, SCHEMA_DIR, schema


def _without_meta(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if not k.startswith("$")}


LEAD = _without_meta(schema("lead"))
TURN = _without_meta(schema("turn"))  # the store's own schema: the two cannot drift apart
DISCLOSURE_KEYS = schema("fields/conversation_flow")["properties"]["disclosures"]["items"]["enum"]

TIMESTAMP = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$"}
NULLABLE_TS = {"type": ["string", "null"], "pattern": TIMESTAMP["pattern"]}
# What the do-not-call routes take: any number of this shape (one phonenumbers does not know is
# kept as given: an opt-out must never be lost to number metadata).
E164 = {
    "type": "string",
    "pattern": r"^\+[1-9][0-9]{6,14}$",
    "description": "E.164, e.g. +12125551234 (spaces, dashes, dots and brackets between the digits are tolerated).",
}
MAX_FIELDS_CHARS = 4000  # backend.store refuses larger `fields` (compact JSON) with invalid_fields


# ---- numbers to call -------------------------------------------------------------------------
class _Automaton:
    """A Thompson automaton over the digits, of a phonenumbers pattern (literals, classes, `\\d`,
    groups, alternation and repetition are all those patterns use; anything else raises)."""

    def __init__(self, pattern: str) -> None:
        self.edges: list[list[tuple[frozenset[str] | None, int]]] = [[]]  # None: an epsilon move
        self._steps: dict[tuple[frozenset[int], str], frozenset[int]] = {}
        self.accept = self._build(sre_parse.parse(pattern), 0)

    def _state(self) -> int:
        self.edges.append([])
        return len(self.edges) - 1

    def _move(self, state: int, chars: frozenset[str] | None) -> int:
        target = self._state()
        self.edges[state].append((chars, target))
        return target

    def _build(self, items: Any, state: int) -> int:
        for op, av in items:
            if op is sre.LITERAL:
                state = self._move(state, frozenset(chr(av)))
            elif op is sre.IN or op is sre.CATEGORY:
                state = self._move(state, frozenset(_class_chars([(op, av)] if op is sre.CATEGORY else av)))
            elif op is sre.SUBPATTERN:
                state = self._build(av[-1], state)
            elif op is sre.BRANCH:
                ends = [self._build(branch, self._move(state, None)) for branch in av[1]]
                state = self._state()
                for end in ends:
                    self.edges[end].append((None, state))
            elif op is sre.MAX_REPEAT:
                low, high, sub = av
                for _ in range(low):
                    state = self._build(sub, state)
                end = self._state()
                if high is sre.MAXREPEAT:
                    self.edges[self._build(sub, state)].append((None, state))
                else:
                    for _ in range(high - low):
                        self.edges[state].append((None, end))
                        state = self._build(sub, state)
                self.edges[state].append((None, end))
                state = end
            else:
                raise ValueError(f"unsupported regular expression construct {op}")
        return state

    def closure(self, states: set[int]) -> frozenset[int]:
        todo, seen = list(states), set(states)
        while todo:
            for chars, target in self.edges[todo.pop()]:
                if chars is None and target not in seen:
                    seen.add(target)
                    todo.append(target)
        return frozenset(seen)

    def step(self, states: frozenset[int], digit: str) -> frozenset[int]:
        key = (states, digit)
        if key not in self._steps:
            self._steps[key] = self.closure(
                {t for s in states for chars, t in self.edges[s] if chars and digit in chars}
            )
        return self._steps[key]


def _class_chars(items: Any) -> set[str]:
    chars: set[str] = set()
    for op, av in items:
        if op is sre.LITERAL:
            chars.add(chr(av))
        elif op is sre.RANGE:
            chars |= {chr(c) for c in range(av[0], av[1] + 1)}
        elif op is sre.CATEGORY and av is sre.CATEGORY_DIGIT:
            chars |= set("0123456789")
        else:
            raise ValueError(f"unsupported character class item {op}")
    return chars


def _within(pattern: str, other: str) -> bool:
    """Whether every digit string `pattern` matches whole, `other` matches whole."""
    a, b = _Automaton(pattern), _Automaton(other)
    # `b` out of states while `a` is not: some string of `a` (every state reaches its accepting
    # state) is not one of `b`
    return all(sb and (b.accept in sb or a.accept not in sa) for sa, sb in _pairs(a, b))


def _clear_of(pattern: str, prefix: str) -> bool:
    """Whether no digit string `pattern` matches whole begins with a match of `prefix` (what
    `re.match(prefix, number)` would find)."""
    a, b = _Automaton(pattern), _Automaton(prefix)
    return all(b.accept not in sb for _sa, sb in _pairs(a, b, while_b=True))


def _pairs(a: _Automaton, b: _Automaton, *, while_b: bool = False) -> Iterator[tuple[frozenset[int], frozenset[int]]]:
    """The states of both automata after each digit string that `a` can still complete (and,
    `while_b`, that `b` can too)."""
    start = (a.closure({0}), b.closure({0}))
    seen, todo = {start}, [start]
    while todo:
        here = todo.pop()
        yield here
        if while_b and not here[1]:
            continue
        for digit in "0123456789":
            there = (a.step(here[0], digit), b.step(here[1], digit))
            if there[0] and there not in seen:
                seen.add(there)
                todo.append(there)


_NUMBER_TYPES = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)


@cache
def nanp_number_pattern() -> str:
    """The North American (+1) numbers `backend.sip.normalize_e164` takes, as one pattern.

    A number is valid to phonenumbers when the pattern of one of its types (fixed line, mobile,
    toll free, ...) matches it, for the region the number resolves to. Each +1 region's type
    patterns go in only when that is certain by construction, checked on the digit automata:
    every number of the pattern has a length its type allows and fits the region's general
    pattern; none begins with the national prefix (which parsing would strip); it begins with
    the region's own leading digits, if it has any, and with none of the regions before it in
    phonenumbers' order (which would claim it first). The few that fail (a Caribbean toll-free
    range or two) are numbers the server takes but this pattern does not describe."""
    regions = COUNTRY_CODE_TO_REGION_CODE[1]
    national_prefix = PhoneMetadata.metadata_for_region(regions[0]).national_prefix_for_parsing
    alternatives: list[str] = []
    for position, region in enumerate(regions):
        metadata = PhoneMetadata.metadata_for_region(region)
        general = metadata.general_desc
        earlier = [PhoneMetadata.metadata_for_region(r).leading_digits for r in regions[:position]]
        for kind in _NUMBER_TYPES:
            desc = getattr(metadata, kind)
            pattern = desc.national_number_pattern if desc is not None else None
            if not pattern or pattern in alternatives:
                continue
            lengths = set(desc.possible_length or general.possible_length) & set(general.possible_length)
            if (
                _within(pattern, "|".join(f"\\d{{{n}}}" for n in sorted(lengths)))
                and _within(pattern, general.national_number_pattern)
                and (not national_prefix or _clear_of(pattern, national_prefix))
                and (not metadata.leading_digits or _within(pattern, f"(?:{metadata.leading_digits})\\d*"))
                and all(_clear_of(pattern, digits) for digits in earlier if digits)
            ):
                alternatives.append(pattern)
    return r"^\+1(?:" + "|".join(alternatives) + ")$"


# ---- text the backend functions take ---------------------------------------------------------
@cache
def not_blank() -> str:
    """A pattern a string matches when `str.strip()` leaves something of it: one character that
    is not whitespace to Python, spelled out (`\\S` means three different things to Python,
    ECMA-262 and the Rust validator)."""
    runs: list[list[int]] = []
    for code in range(0x110000):
        if chr(code).isspace():
            if runs and runs[-1][1] == code - 1:
                runs[-1][1] = code
            else:
                runs.append([code, code])
    return "[^" + "".join(f"\\u{a:04x}" + (f"-\\u{b:04x}" if b > a else "") for a, b in runs) + "]"


def _text(max_len: int, *, nullable: bool = False) -> dict[str, Any]:
    """A string the backend functions strip and then require non-empty (at most max_len long)."""
    return {"type": ["string", "null"] if nullable else "string", "minLength": 1, "maxLength": max_len} | {
        "pattern": not_blank()
    }


# ---- the record shapes: backend/schemas/ -------------------------------------------------------
def _schema_file(name: str) -> dict[str, Any]:
    """`backend/schemas/<name>.json` as an OpenAPI 3.1 schema object (they are JSON Schema 2020-12)."""
    with open(SCHEMA_DIR / f"{name}.json", encoding="utf-8") as fh:
        schema = json.load(fh)
    return {k: v for k, v in schema.items() if k not in ("$schema", "$id")}


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


def _record_schemas() -> dict[str, Any]:
    information = _schema_file("information")
    information["properties"]["fields"] = information["properties"]["fields"] | {
        "description": "Structured data; new records are checked against their category's schema "
        "(the Fields_<category> schemas)."
    }
    session = _schema_file("session")
    session_view = {
        "title": "Session",
        "type": "object",
        "required": [
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
        # the session start as stored, with what its records and call log add
        "properties": {k: v for k, v in session["properties"].items() if k != "seq"}
        | {
            "ended_at": NULLABLE_TS,
            "status": {"enum": list(STATUSES)},
            "information_count": {"type": "integer", "minimum": 0},
            "end_reason": {"enum": [*END_REASONS, None]},
            "outcome": {"enum": [*OUTCOMES, None]},
            "duration_seconds": {"type": ["number", "null"], "minimum": 0},
            "disclosures": {"oneOf": [_ref("DisclosureEvidence"), {"type": "null"}]},
        },
        "additionalProperties": False,
    }
    fields = {f"Fields_{category}": _schema_file(f"fields/{category}") for category in CATEGORIES}
    return {"Information": information, "Session": session_view, "Call": _schema_file("call")} | fields


def _argument_schemas() -> dict[str, Any]:
    """`POST /api/test_function`: the body for each function, with exactly the arguments its
    signature takes and the checks the function itself makes (so a well-formed call succeeds)."""
    out: dict[str, Any] = {}
    for category in CATEGORIES:
        out[f"ShareInformation_{category}"] = _obj(
            ["information", "category", "caller_id"],
            information=_text(MAX_INFORMATION_CHARS),
            category={"const": category},
            caller_id=_text(64),
            session_id=_text(128, nullable=True),
            fields={
                "oneOf": [_ref(f"Fields_{category}"), {"type": "null"}],
                "description": f"At most {MAX_FIELDS_CHARS:,} characters as compact JSON (a larger "
                "object is refused with invalid_fields, which a JSON Schema cannot say).",
            },
        ) | {"additionalProperties": False}
    share = {
        "oneOf": [_ref(f"ShareInformation_{category}") for category in CATEGORIES],
        "discriminator": {
            "propertyName": "category",
            "mapping": {category: _ref(f"ShareInformation_{category}")["$ref"] for category in CATEGORIES},
        },
    }
    arguments: dict[str, tuple[list[str], dict[str, Any]]] = {
        "get_shared_information": (
            [],
            {
                "category": {"enum": [*CATEGORIES, None]},
                "caller_id": _text(64, nullable=True),
                "session_id": _text(128, nullable=True),
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            },
        ),
        "end_call": (
            ["reason", "caller_id"],
            {
                "reason": {"enum": list(END_REASONS)},
                "caller_id": _text(64),
                "duration_seconds": {"type": ["number", "null"], "minimum": 0, "exclusiveMaximum": 10**7},
                "session_id": _text(128, nullable=True),
            },
        ),
        "get_current_time": (
            [],
            {
                "timezone": {
                    "enum": [*sorted(zoneinfo.available_timezones()), "", None],
                    "description": "An IANA name of this server's time zone database; empty or null: "
                    "BUSINESS_TIMEZONE.",
                }
            },
        ),
    }
    for name in FUNCTIONS:
        if name == "share_information":
            args, required = share, ["function", "arguments"]
        else:
            names, props = arguments[name]
            args = _obj(names, **props) | {"additionalProperties": False}
            required = ["function", *(["arguments"] if names else [])]
        out[f"TestFunction_{name}"] = {
            "type": "object",
            "required": required,
            "properties": {"function": {"const": name}, "arguments": args},
            "additionalProperties": False,
        }
    out["TestFunctionRequest"] = {
        "oneOf": [_ref(f"TestFunction_{name}") for name in FUNCTIONS],
        "discriminator": {
            "propertyName": "function",
            "mapping": {name: _ref(f"TestFunction_{name}")["$ref"] for name in FUNCTIONS},
        },
    }
    return out


def _webhook_schemas() -> dict[str, Any]:
    """The end-of-call webhook: its deliveries (GET /api/webhooks/deliveries) and its events."""
    schemas: dict[str, Any] = {}
    schemas["WebhookAttempt"] = _obj(
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
    schemas["WebhookDelivery"] = _obj(
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
    schemas["WebhookDeliveriesPage"] = _obj(
        ["deliveries", "count", "more"],
        deliveries={"type": "array", "items": _ref("WebhookDelivery"), "maxItems": MAX_LIMIT},
        count={"type": "integer", "minimum": 0, "maximum": MAX_LIMIT},
        more={"type": "boolean", "description": "Older deliveries match too (there is no cursor: raise limit)."},
    )
    schemas["WebhookEvent"] = _obj(
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
    return schemas


def _schemas() -> dict[str, Any]:
    """The components, built on first use (checking the pattern of numbers to call takes a moment)."""
    schemas: dict[str, Any] = {
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
    }
    schemas |= _record_schemas()
    schemas |= {
        "Cursor": {
            "type": ["string", "null"],
            "description": "Pass as `cursor` for the next page; null at the end.",
        },
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
        "DisclosureEvidence": _obj(
            ["required", "heard", "missing", "flagged"],
            required={"type": "array", "items": {"enum": DISCLOSURE_KEYS}},
            heard={
                "type": "object",
                "additionalProperties": {"type": "number", "minimum": 0},
                "description": "Each disclosure heard in the agent's own words, and when (seconds from the start).",
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
        "Analytics": _analytics_schema(),
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
        "CallRequest": _obj(
            ["phone_number"],
            phone_number={
                "type": "string",
                "pattern": nanp_number_pattern(),
                "description": "The number to call, in E.164 form, e.g. +12125551234. The server takes "
                "any number phonenumbers knows as valid for its country (anything else is 400 "
                "invalid_phone_number) and tolerates spaces, dashes, dots and brackets between "
                "the digits; this pattern describes the North American (+1) numbers among them, "
                f"generated from phonenumbers {phonenumbers.__version__} metadata.",
            },
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
            ["dnc", "count"],
            dnc={"type": "array", "items": _ref("DncEntry")},
            count={"type": "integer", "minimum": 0},
        ),
        "DncAddRequest": _obj(
            ["phone_number"],
            phone_number=E164,
            note={"type": ["string", "null"], "maxLength": MAX_NOTE},
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
        "FunctionResult": _obj(["success"], success={"type": "boolean"})
        | {"description": "The backend function's own result, passed through unchanged."},
    }
    schemas |= _webhook_schemas()
    return schemas | _argument_schemas()


def _param(name: str, schema: dict, description: str, where: str = "query", **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": where, "schema": schema, "description": description, **extra}


LIMIT = _param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}, "Page size.")


def _cursor(kind: str) -> dict[str, Any]:
    """An opaque cursor, as the route gives it out: its pattern matches exactly the cursors of
    this route (one from another route is refused with 400 bad_cursor)."""
    schema = {"type": "string", "pattern": cursor_pattern(kind, after=kind == "information")}
    return _param("cursor", schema, "The next_cursor of the previous page (takes precedence over after_seq).")


CALLER = _param("caller_id", {"type": "string", "minLength": 1, "maxLength": 64}, "Only this caller.")
# RFC 3339, with at most 9 digits of a second's fraction (the pattern is the one the server reads)
_DATE_TIME = {"type": "string", "format": "date-time", "pattern": f"^{RFC3339_PATTERN}$"}
SINCE = _param("since", _DATE_TIME, "Only at or after this time (RFC 3339).")
UNTIL = _param("until", _DATE_TIME, "Only at or before this time (RFC 3339).")
OUTCOME = _param("outcome", {"enum": list(OUTCOMES)}, "Only calls with this outcome.")
INFO_PARAMS = [
    _param(
        "category",
        {"type": "array", "items": {"enum": list(CATEGORIES)}},
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
    spec_ok = {"description": "This document.", "content": {"application/json": {"schema": {"type": "object"}}}}
    transcript_ok = _json("Transcript", "The transcript.")
    transcript_ok["content"]["text/plain"] = {"schema": {"type": "string"}}
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
    # years 1970-9998: the dates the server counts in (FIRST_DAY, LAST_DAY)
    years = r"^(19[7-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-"
    day = {"type": "string", "format": "date", "pattern": years}
    bounds = f"(YYYY-MM-DD, {FIRST_DAY} to {LAST_DAY})"
    return [
        _param(
            "since",
            day,
            f"First day, included, in tz {bounds}; default: {ANALYTICS_DEFAULT_DAYS - 1} days before until. "
            f"The two dates may come in either order; a range over {ANALYTICS_MAX_DAYS} days is cut to the "
            f"{ANALYTICS_MAX_DAYS} days ending at its last day (the answer's `range` says which days it counts).",
        ),
        _param("until", day, f"Last day, included, in tz {bounds}; default: today in tz."),
        _param(
            "tz",
            {"enum": sorted(time_zones())},
            "IANA time zone the days are counted in (e.g. America/Chicago); default: BUSINESS_TIMEZONE.",
        ),
    ]


def _error(description: str) -> dict[str, Any]:
    return _json("Error", description)


def _sip_paths() -> dict[str, Any]:
    """Outbound calls, the do-not-call list and Twilio's status callback."""
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
            _param("phone_number", E164, "The number.", required=True),
            _param("reason", {"type": "string", "maxLength": MAX_REASON}, "Why it is removed (logged)."),
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


# gunicorn's default limit_request_line: a longer request line never reaches the app
MAX_REQUEST_LINE = 4094


def _with_uri_too_long(paths: dict[str, Any]) -> dict[str, Any]:
    """Any operation can be sent a request line (method, path and query) longer than gunicorn
    reads; gunicorn answers that itself, with 414 and a small HTML page."""
    too_long = {
        "description": f"The request line is over {MAX_REQUEST_LINE} bytes (gunicorn's own page, not the envelope).",
        "content": {"text/html": {"schema": {"type": "string"}}},
    }
    for operations in paths.values():
        for operation in operations.values():
            operation["responses"]["414"] = too_long
    return paths


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
        "paths": _with_uri_too_long(_paths() | _webhook_paths()),
        "webhooks": _outgoing_webhooks(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
