"""Calling hours (`CALLING_HOURS`): one parser and one rule, shared by `get_current_time` and the
outbound calling gate, so both always agree on whether a moment is within hours."""

from __future__ import annotations

from datetime import datetime
from datetime import time as dtime


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
