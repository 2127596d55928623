"""Calling hours (`CALLING_HOURS`): one parser and one rule, shared by `get_current_time` and the
outbound calling gate, so both always agree on whether a moment is within hours."""

from __future__ import annotations

from datetime import UTC, datetime
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

from backend.calls.numbers import timezones_for_number

DEFAULT_CALLING_HOURS = "08:00-21:00"


def parse_calling_hours(calling_hours: str) -> tuple[dtime, dtime]:
    """Parse `"HH:MM-HH:MM"` into (start, end); the window is [start, end), and may cross midnight."""
    try:
        start_text, end_text = (part.strip() for part in calling_hours.split("-"))
        start = datetime.strptime(start_text, "%H:%M").time()
        end = datetime.strptime(end_text, "%H:%M").time()
    except (AttributeError, ValueError):
        raise ValueError(f"CALLING_HOURS must look like 08:00-21:00, not {calling_hours!r}.") from None
    if start == end:
        raise ValueError(f"CALLING_HOURS must be a window of some length, not {calling_hours!r}.")
    return start, end


def in_window(local: dtime, start: dtime, end: dtime) -> bool:
    """Whether the local wall-clock time `local` is within [start, end)."""
    if start < end:
        return start <= local < end
    return local >= start or local < end  # a window across midnight, e.g. 22:00-06:00


def within_calling_hours(
    number: str, calling_hours: str = DEFAULT_CALLING_HOURS, now: datetime | None = None
) -> tuple[bool, dict[str, Any]]:
    """Whether it is within `calling_hours` at the called party, using the stricter of zones.

    The number's candidate time zones come from its area code (`timezones_for_number`); the call
    is allowed only when the local time is inside the window in every candidate zone. A number
    whose zone is unknown is refused (we cannot show it is within hours). `now` defaults to the
    current time; a naive `now` is taken as UTC. Raises InvalidPhoneNumber for an invalid number
    and ValueError for a malformed `calling_hours`.

    Returns `(allowed, details)`; details has `calling_hours`, `timezones`, `local_times`
    (zone -> "HH:MM"), `outside` (zones where it is outside the window) and `reason`
    (`within_hours`, `outside_hours` or `unknown_timezone`).
    """
    start, end = parse_calling_hours(calling_hours)
    zones = timezones_for_number(number)
    current = now or datetime.now(UTC)
    if current.tzinfo is None:
        current = current.replace(tzinfo=UTC)
    local_times = {zone: current.astimezone(ZoneInfo(zone)) for zone in zones}
    outside = [zone for zone, local in local_times.items() if not in_window(local.time(), start, end)]
    allowed = bool(zones) and not outside
    reason = "unknown_timezone" if not zones else ("within_hours" if allowed else "outside_hours")
    details = {
        "calling_hours": calling_hours,
        "timezones": zones,
        "local_times": {zone: local.strftime("%H:%M") for zone, local in local_times.items()},
        "outside": outside,
        "reason": reason,
    }
    return allowed, details
