"""The backend functions the voice agent calls during a call (contract section 2).

Every method is synchronous, safe to call from many processes at once, and returns a
JSON-serialisable dict. Bad input never raises: it returns
`{"success": False, "error": "<code>", "message": "<one sentence>"}`.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from backend.hours import in_window, parse_calling_hours
from backend.records import CATEGORIES, END_REASONS, StoreError, iso, utc_now
from backend.settings import Settings, get_settings
from backend.store import JournalStore, Store

log = logging.getLogger(__name__)

MAX_LIMIT = 1000


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


class BackendAgent:
    """The four tools' backend, plus `start_session`, over one store."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        store: Store | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.store = store or JournalStore(
            data_dir if data_dir is not None else self.settings.data_dir, fsync=self.settings.store_fsync
        )

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
    ) -> dict[str, Any]:
        if not isinstance(reason, str) or reason not in END_REASONS:
            return _fail("invalid_reason", f"Reason must be one of: {', '.join(END_REASONS)}.")
        try:
            caller = _text(caller_id, "caller_id", max_len=64)
            sid = _text(session_id, "session_id", required=False)
            call, already = self.store.end_session(
                reason=reason, caller_id=caller, session_id=sid, duration_seconds=duration_seconds
            )
        except StoreError as exc:
            return _failure(exc)
        result: dict[str, Any] = {"success": True, "call": call}
        if already:
            result["already_ended"] = True
            result["message"] = "This call was already ended; the first call log stands."
        else:
            log.info("call ended session=%s reason=%s", call["session_id"], reason)
            result["message"] = f"Call ended: {call['outcome']}."
        return result

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
