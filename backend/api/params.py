"""Query parameters of the API, parsed and checked once, for the API and the dashboard alike.

Every problem is an `ApiError(400, <code naming it>, ...)`. Parameters a route does not know
are refused (a typo such as `catgory=` must not silently return everything).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from werkzeug.datastructures import MultiDict

from backend.api.errors import ApiError
from backend.backend_agent import WEBHOOK_STATES
from backend.store.records import CATEGORIES, OUTCOMES

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
FORMATS = ("json", "ndjson", "csv")
STATUSES = ("active", "completed")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
_DIGITS = re.compile(r"[0-9]{1,19}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
ANALYTICS_DEFAULT_DAYS = 30
ANALYTICS_MAX_DAYS = 366
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9998, 12, 31)
RFC3339_PATTERN = _RFC3339.pattern  # for the OpenAPI document: what `timestamp` reads


@dataclass(frozen=True)
class InformationParams:
    categories: tuple[str, ...] | None = None
    caller_id: str | None = None
    session_id: str | None = None
    since: float | None = None
    until: float | None = None
    q: str | None = None
    limit: int = DEFAULT_LIMIT
    before_seq: int | None = None
    after_seq: int | None = None
    format: str = "json"


@dataclass(frozen=True)
class SessionParams:
    status: str | None = None
    caller_id: str | None = None
    outcome: str | None = None
    since: float | None = None
    until: float | None = None
    missing_disclosure: bool | None = None
    limit: int = DEFAULT_LIMIT
    before_seq: int | None = None


@dataclass(frozen=True)
class WebhookParams:
    state: str | None = None
    session_id: str | None = None
    limit: int = DEFAULT_LIMIT


@dataclass(frozen=True)
class CallParams:
    caller_id: str | None = None
    outcome: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = DEFAULT_LIMIT
    before_seq: int | None = None


@dataclass(frozen=True)
class AnalyticsParams:
    """Whole days `since` through `until` (both included) in the IANA time zone `tz`."""

    since: date
    until: date
    tz: str

    @property
    def days(self) -> int:
        return (self.until - self.since).days + 1


# ---- single values ---------------------------------------------------------------------------
def timestamp(value: str, name: str) -> float:
    """RFC 3339 date-time (e.g. `2026-11-22T15:04:05Z`) -> epoch seconds."""
    m = _RFC3339.fullmatch(value)
    if not m:
        raise ApiError(400, "invalid_timestamp", f"{name} must be an RFC 3339 date-time such as 2026-11-22T15:04:05Z.")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    days_in_month = (31, 29 if _leap(year) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    off_h, off_m = int(m[10] or 0), int(m[11] or 0)
    if not (
        1 <= month <= 12
        and 1 <= day <= days_in_month[month - 1]
        and hour < 24
        and minute < 60
        and second <= 60
        and off_h < 24
        and off_m < 60
    ):
        raise ApiError(400, "invalid_timestamp", f"{name} is not a real date and time.")
    offset = (off_h * 3600 + off_m * 60) * (-1 if m[9] == "-" else 1)
    fraction = int(m[7]) / 10 ** len(m[7]) if m[7] else 0.0
    return _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + min(second, 59) - offset + fraction


def _leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (any year, including 0)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def integer(value: str, name: str, low: int, high: int, code: str) -> int:
    if not _DIGITS.fullmatch(value) or not low <= int(value) <= high:
        raise ApiError(400, code, f"{name} must be a whole number from {low} to {high}.")
    return int(value)


def text(value: str, name: str, max_len: int) -> str:
    if not value or len(value) > max_len:
        raise ApiError(400, f"invalid_{name}", f"{name} must be 1 to {max_len} characters.")
    return value


def choice(value: str, name: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ApiError(400, f"invalid_{name}", f"{name} must be one of: {', '.join(allowed)}.")
    return value


# ---- cursors ---------------------------------------------------------------------------------
def encode_cursor(kind: str, *, before: int | None = None, after: int | None = None) -> str:
    """An opaque cursor: urlsafe base64 of `{"k": kind, "b": before_seq}` (or `"a": after_seq`)."""
    payload = {"k": kind, "b": before} if before is not None else {"k": kind, "a": after}
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(kind: str, value: str) -> tuple[int | None, int | None]:
    """(before_seq, after_seq) of a cursor made by `encode_cursor(kind, ...)`; 400 bad_cursor otherwise."""
    try:
        if len(value) > 200:
            raise ValueError("too long")
        payload = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        if not isinstance(payload, dict) or payload.get("k") != kind or len(payload) != 2:
            raise ValueError("not ours")
        ((key, seq),) = ((k, v) for k, v in payload.items() if k != "k")
        if key not in ("a", "b") or type(seq) is not int or seq < (1 if key == "b" else 0) or seq >= 2**62:
            raise ValueError("bad seq")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "bad_cursor", "cursor is not one this route gave out; start again without it.") from None
    return (seq, None) if key == "b" else (None, seq)


_BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_CURSOR_DIGITS = 18  # every seq of up to 18 digits is below the 2**62 decode_cursor allows


def cursor_pattern(kind: str, *, after: bool = False) -> str:
    """A regular expression (ECMA-262 and Python alike) matching exactly the cursors that
    `encode_cursor(kind, before=n)` (and with `after`, `encode_cursor(kind, after=n)`) gives for
    a seq of up to 18 digits: what the OpenAPI document says a route's `cursor` is, so that a
    client (or a fuzzer) can tell a well-formed cursor without asking the server.

    The cursor is base64 of `{"k":"<kind>","b":<digits>}`; base64 turns each 3 bytes into 4
    characters independently, so for every number of digits the encoding is a sequence of
    groups, each from a small finite set of 2 to 4 characters."""
    variants = [("b", b"123456789")] + ([("a", b"0123456789")] if after else [])
    sequences = []
    for key, first in variants:
        prefix = json.dumps({"k": kind, key: 0}, separators=(",", ":")).encode()[:-2]  # `...,"b":`
        for n in range(1, _CURSOR_DIGITS + 1):
            leading = first if n == 1 else b"123456789"
            positions = [bytes([c]) for c in prefix] + [leading] + [b"0123456789"] * (n - 1) + [b"}"]
            sequences.append([_group_regex(_encode_group(positions[i : i + 3])) for i in range(0, len(positions), 3)])
    return f"^{_alternatives(sequences)}$"


def _encode_group(group: list[bytes]) -> set[str]:
    """The unpadded base64url encodings of every choice of one byte per position (1 to 3)."""
    out = {""}
    for choices in group:
        out = {s + chr(c) for s in out for c in choices}
    return {base64.urlsafe_b64encode(s.encode("latin-1")).decode().rstrip("=") for s in out}


def _group_regex(strings: set[str]) -> str:
    """A regex matching exactly a set of equal-length strings: a character class per position,
    branching only where the following characters differ."""
    if not next(iter(strings)):
        return ""
    rests: dict[str, set[str]] = {}
    for s in strings:
        rests.setdefault(s[0], set()).add(s[1:])
    by_rest: dict[str, set[str]] = {}
    for first, rest in rests.items():
        by_rest.setdefault(_group_regex(rest), set()).add(first)
    alts = sorted(_char_class(chars) + rest for rest, chars in by_rest.items())
    return alts[0] if len(alts) == 1 else f"(?:{'|'.join(alts)})"


def _char_class(chars: set[str]) -> str:
    ordered = sorted(chars, key=_BASE64URL.index)
    if len(ordered) == 1:
        return ordered[0]
    return "[" + "".join("\\-" if c == "-" else c for c in ordered) + "]"


def _alternatives(sequences: list[list[str]]) -> str:
    """One regex for several sequences of pieces, sharing their common leading pieces."""
    if len(sequences) == 1:
        return "".join(sequences[0])
    heads: dict[str, list[list[str]]] = {}
    for seq in sequences:
        heads.setdefault(seq[0] if seq else "", []).append(seq[1:])
    alts = [head + (_alternatives(tails) if any(tails) else "") for head, tails in heads.items()]
    return alts[0] if len(alts) == 1 else f"(?:{'|'.join(alts)})"


# ---- whole routes ----------------------------------------------------------------------------
def _single(args: MultiDict, allowed: tuple[str, ...], drop_empty: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in args:
        if name not in allowed:
            raise ApiError(
                400, "unknown_parameter", f"Unknown parameter {name!r}; this route takes: {', '.join(allowed)}."
            )
        values = [v for v in args.getlist(name) if v or not drop_empty]
        if name != "category" and len(values) > 1:
            raise ApiError(400, "repeated_parameter", f"{name} may be given only once.")
        if values and name != "category":
            out[name] = values[0]
    return out


def _common(one: dict[str, str], kind: str) -> dict:
    out: dict = {}
    if "caller_id" in one:
        out["caller_id"] = text(one["caller_id"], "caller_id", 64)
    for name in ("since", "until"):
        if name in one:
            out[name] = timestamp(one[name], name)
    if "limit" in one:
        out["limit"] = integer(one["limit"], "limit", 1, MAX_LIMIT, "invalid_limit")
    if "cursor" in one:
        before, after = decode_cursor(kind, one["cursor"])
        if after is not None:
            out["after_seq"] = after
        else:
            out["before_seq"] = before
    return out


def information_params(args: Mapping | MultiDict, *, drop_empty: bool = False) -> InformationParams:
    """`GET /api/information`: category (repeatable or comma-separated), caller_id, session_id,
    since, until, q, limit, cursor, after_seq, format."""
    args = args if isinstance(args, MultiDict) else MultiDict(args)
    allowed = ("category", "caller_id", "session_id", "since", "until", "q", "limit", "cursor", "after_seq", "format")
    one = _single(args, allowed, drop_empty)
    out = _common(one, "information")
    cats = [c.strip() for v in args.getlist("category") for c in v.split(",") if c.strip() or not drop_empty]
    if cats:
        out["categories"] = tuple(dict.fromkeys(choice(c, "category", CATEGORIES) for c in cats))
    if "session_id" in one:
        out["session_id"] = text(one["session_id"], "session_id", 128)
    if "q" in one:
        out["q"] = text(one["q"], "q", 200)
    if "after_seq" in one:
        after_seq = integer(one["after_seq"], "after_seq", 0, 2**62, "invalid_after_seq")
        if "cursor" not in one:  # a cursor carries its own position: the first URL + &cursor= works
            out["after_seq"] = after_seq
    if "format" in one:
        out["format"] = choice(one["format"], "format", FORMATS)
    return InformationParams(**out)


def session_params(args: Mapping | MultiDict, *, drop_empty: bool = False) -> SessionParams:
    """`GET /api/sessions`: status, caller_id, outcome, since, until, missing_disclosure, limit, cursor."""
    args = args if isinstance(args, MultiDict) else MultiDict(args)
    names = ("status", "caller_id", "outcome", "since", "until", "missing_disclosure", "limit", "cursor")
    one = _single(args, names, drop_empty)
    out = _common(one, "sessions")
    if "missing_disclosure" in one:
        out["missing_disclosure"] = {"true": True, "false": False}.get(one["missing_disclosure"])
        if out["missing_disclosure"] is None:
            raise ApiError(400, "invalid_missing_disclosure", "missing_disclosure must be true or false.")
    if "status" in one:
        out["status"] = choice(one["status"], "status", STATUSES)
    if "outcome" in one:
        out["outcome"] = choice(one["outcome"], "outcome", OUTCOMES)
    if "after_seq" in out:
        raise ApiError(400, "bad_cursor", "cursor is not one this route gave out; start again without it.")
    return SessionParams(**out)


def call_params(args: Mapping | MultiDict, *, drop_empty: bool = False) -> CallParams:
    """`GET /api/calls`: caller_id, outcome, since, until, limit, cursor."""
    args = args if isinstance(args, MultiDict) else MultiDict(args)
    one = _single(args, ("caller_id", "outcome", "since", "until", "limit", "cursor"), drop_empty)
    out = _common(one, "calls")
    if "outcome" in one:
        out["outcome"] = choice(one["outcome"], "outcome", OUTCOMES)
    if "after_seq" in out:
        raise ApiError(400, "bad_cursor", "cursor is not one this route gave out; start again without it.")
    return CallParams(**out)


def webhook_params(args: Mapping | MultiDict, *, drop_empty: bool = False) -> WebhookParams:
    """`GET /api/webhooks/deliveries`: state, session_id, limit (the newest `limit`; no cursor)."""
    args = args if isinstance(args, MultiDict) else MultiDict(args)
    one = _single(args, ("state", "session_id", "limit"), drop_empty)
    out: dict = {}
    if "state" in one:
        out["state"] = choice(one["state"], "state", WEBHOOK_STATES)
    if "session_id" in one:
        out["session_id"] = text(one["session_id"], "session_id", 128)
    if "limit" in one:
        out["limit"] = integer(one["limit"], "limit", 1, MAX_LIMIT, "invalid_limit")
    return WebhookParams(**out)


@cache
def time_zones() -> frozenset[str]:
    """The IANA time zone names this machine knows (read once)."""
    return frozenset(available_timezones() | {"UTC"})


def day(value: str, name: str) -> date:
    """`YYYY-MM-DD` -> a date from FIRST_DAY to LAST_DAY."""
    try:
        if not _DATE.fullmatch(value):
            raise ValueError("not YYYY-MM-DD")
        out = date.fromisoformat(value)
    except ValueError:
        raise ApiError(400, "invalid_date", f"{name} must be a date such as 2026-11-22.") from None
    if not FIRST_DAY <= out <= LAST_DAY:
        raise ApiError(400, "invalid_date", f"{name} must be a date from {FIRST_DAY} to {LAST_DAY}.")
    return out


def time_zone(value: str, name: str = "tz") -> str:
    if value not in time_zones():
        raise ApiError(400, "invalid_tz", f"{name} must be an IANA time zone name such as America/Chicago.")
    return value


def analytics_params(
    args: Mapping | MultiDict, default_tz: str, *, today: date | None = None, drop_empty: bool = False
) -> AnalyticsParams:
    """`GET /api/analytics`: since, until (dates, both included, in `tz`) and tz (default
    `default_tz`, the business's). Without dates: the last 30 days up to today in that zone;
    without `since`: the 30 days up to `until`; without `until`: up to today. The two dates may
    come in either order; a range over 366 days is cut to the 366 days ending at its last day.
    The answer's `range` says which days were counted. Every request the OpenAPI document allows
    is so answered (its dates and zones are checked; their order and distance cannot be)."""
    args = args if isinstance(args, MultiDict) else MultiDict(args)
    one = _single(args, ("since", "until", "tz"), drop_empty)
    tz = time_zone(one["tz"]) if "tz" in one else default_tz
    if tz not in time_zones():  # the server's own setting: not the request's fault
        raise ApiError(
            503, "invalid_business_timezone", "BUSINESS_TIMEZONE is not an IANA time zone name; fix it, or pass tz."
        )
    if today is None:
        today = datetime.now(ZoneInfo(tz)).date()
    until = day(one["until"], "until") if "until" in one else min(max(today, FIRST_DAY), LAST_DAY)
    if "since" in one:
        since = day(one["since"], "since")
    else:
        since = max(until - timedelta(days=ANALYTICS_DEFAULT_DAYS - 1), FIRST_DAY)
    since, until = min(since, until), max(since, until)
    since = max(since, until - timedelta(days=ANALYTICS_MAX_DAYS - 1))
    return AnalyticsParams(since, until, tz)
