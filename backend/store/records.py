"""Record vocabulary shared by the store, the backend functions and the API: categories, end
reasons, timestamps, errors, the journal's JSON encoding, and validation against the JSON
Schemas in `backend/schemas/`, which are the one source of the record shapes: the categories
are read from `information.json`, each category's fields from `fields/<category>.json`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Protocol

import jsonschema_rs
from jsonschema import Draft202012Validator

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

Entry = dict  # a store entry or record: a plain JSON object


@cache
def schema(name: str) -> dict:
    """`backend/schemas/<name>.json` as a dict (shared: do not modify)."""
    with open(SCHEMA_DIR / f"{name}.json", encoding="utf-8") as fh:
        return json.load(fh)


CATEGORIES: tuple[str, ...] = tuple(schema("information")["properties"]["category"]["enum"])

END_REASONS: dict[str, str] = {
    "customer_qualified_transfer": "qualified",
    "customer_qualified_callback": "callback",
    "transfer_failed": "callback",
    "customer_not_qualified": "not_qualified",
    "customer_not_interested": "not_interested",
    "do_not_call_request": "do_not_call",
    "wrong_number": "no_contact",
    "voicemail": "no_contact",
    "caller_hung_up": "incomplete",
    "agent_error": "incomplete",
    "completed": "completed",
}
OUTCOMES: tuple[str, ...] = tuple(dict.fromkeys(END_REASONS.values()))

MAX_INFORMATION_CHARS = 2000
DISCLOSURES = "disclosures"  # the event kind of a session's disclosure evidence
JOBS = "job"  # the event kind of durable jobs (backend/postcall/jobs.py)
MAX_TURN_CHARS = 10_000  # longer turns are kept whole, as consecutive parts of this size at most
SPEAKERS: tuple[str, ...] = tuple(schema("turn")["properties"]["speaker"]["enum"])
DUPLICATE_WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class SessionFacts:
    """What the write rules need to know of a session (see `WriteView`)."""

    caller_id: str
    started_ts: float  # epoch seconds
    call: Entry | None  # its call log, once written
    information_count: int
    disclosures: Entry | None  # its latest disclosure evidence, if any


class WriteView(Protocol):
    """What the rules (`backend/store/interface.py`) read inside a write: everything written
    before it, by every process. The full `Index`, the agent's lean index and a PostgreSQL
    transaction each offer it."""

    def session(self, session_id: str) -> Entry | None:
        """The session as `get_session` shows it, or None."""

    def session_facts(self, session_id: str) -> SessionFacts | None: ...

    def active_session_id(self, caller_id: str) -> str | None:
        """The caller's newest session without a call log, if any."""

    def recent_duplicate(
        self, session_id: str, category: str, information: str, now: float, window: float
    ) -> Entry | None:
        """The first record of this session with the same category and text within `window` s."""


class StoreError(Exception):
    """A failure with a contract error code and one sentence for people (and the model)."""

    code = "store_error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class StoreUnavailable(StoreError):
    code = "store_unavailable"


class InvalidRecord(StoreError):
    code = "invalid_record"


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a `Z`, as every record timestamp."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime:
    """Parse an ISO 8601 timestamp; a naive one is taken as UTC. Raises ValueError."""
    if not isinstance(text, str) or not text:
        raise ValueError("empty timestamp")
    dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def epoch(text: str) -> float:
    return parse_iso(text).timestamp()


@cache
def validator(name: str) -> Draft202012Validator:
    """The compiled validator of `backend/schemas/<name>.json`."""
    document = schema(name)
    Draft202012Validator.check_schema(document)
    return Draft202012Validator(document)


@cache
def fast_validator(name: str):
    """The same schema compiled by `jsonschema_rs`: about 150 times faster than `jsonschema` here
    (1.5 us against 250 us for an information record), which keeps validation off the critical
    path of a store write. `jsonschema` stays the reference: it words every error message, and
    a test checks both agree on generated documents."""
    return jsonschema_rs.Draft202012Validator(schema(name))


def check(name: str, document: object, code: str = "invalid_record") -> None:
    """Raise InvalidRecord(code) naming the first problem when `document` breaks schema `name`."""
    if fast_validator(name).is_valid(document):
        return
    error = next(iter(validator(name).iter_errors(document)), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "record"
        raise InvalidRecord(f"Invalid {where}: {error.message}.", code)


dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_ORDER = ("seq", "type")


def line_of(entry: Entry) -> bytes:
    """An entry as its journal line (without the newline): `seq` and `type` first."""
    ordered = {**{k: entry[k] for k in _ORDER}, **{k: v for k, v in entry.items() if k not in _ORDER}}
    return dumps(ordered).encode("utf-8")


def public(entry: Entry) -> Entry:
    """An entry as callers see it: without the journal's `type` tag."""
    out = dict(entry)
    out.pop("type", None)
    return out
