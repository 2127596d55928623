"""Import of the seed's single-file `shared_information.json` store.

The seed kept one JSON document, rewritten on every write:
`{"shared_information": [...], "sessions": {...} or [...], "call_logs": [...]}` with naive
timestamps (taken as UTC here). Records keep their ids and timestamps; sessions missing from
the file are opened for the records that name them; a file already imported is skipped.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from backend.store.interface import Store
from backend.store.records import CATEGORIES, END_REASONS, StoreError, iso, parse_iso, utc_now

_INFO_KEYS = ("shared_information", "information", "records")
_CALL_KEYS = ("call_logs", "calls")


def _when(value: Any) -> str:
    try:
        return iso(parse_iso(value))
    except (TypeError, ValueError):
        return iso(utc_now())


def _sessions(doc: dict[str, Any]) -> list[dict[str, Any]]:
    raw = doc.get("sessions") or []
    if isinstance(raw, dict):
        raw = [{"session_id": k, **v} for k, v in raw.items() if isinstance(v, dict)]
    return [s for s in raw if isinstance(s, dict) and s.get("session_id")]


def import_legacy(store: Store, path: str | Path) -> dict[str, Any]:
    """Import one legacy file; returns counts of what was written and skipped."""
    data = Path(path).read_bytes()
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise StoreError(f"{path} is not a JSON document ({exc}).", "invalid_legacy_file") from exc
    if not isinstance(doc, dict):
        raise StoreError(f"{path} does not hold a JSON object.", "invalid_legacy_file")
    digest = hashlib.sha256(data).hexdigest()
    if store.events("legacy_import", digest):
        return {"skipped": True, "reason": "already imported", "sha256": digest}
    info = next((doc[k] for k in _INFO_KEYS if isinstance(doc.get(k), list)), [])
    calls = next((doc[k] for k in _CALL_KEYS if isinstance(doc.get(k), list)), [])
    counts = {"sessions": 0, "information": 0, "calls": 0, "rejected": 0}
    callers: dict[str, str] = {}
    for s in _sessions(doc):
        caller = str(s.get("caller_id") or "unknown")
        callers[s["session_id"]] = caller
        started = _when(s.get("started_at") or s.get("start_time") or s.get("timestamp"))
        _, created = store.start_session(str(s["session_id"]), caller, "inbound", None, started)
        counts["sessions"] += created
    for r in info:
        if not isinstance(r, dict) or r.get("category") not in CATEGORIES or not r.get("information"):
            counts["rejected"] += 1
            continue
        caller = str(r.get("caller_id") or callers.get(r.get("session_id"), "unknown"))
        sid = str(r.get("session_id") or f"legacy-{caller}")
        if store.get_session(sid) is None:
            store.start_session(sid, caller, "inbound", None, _when(r.get("timestamp")))
            counts["sessions"] += 1
        try:
            store.import_information(r, session_id=sid, caller_id=caller, timestamp=_when(r.get("timestamp")))
            counts["information"] += 1
        except StoreError:
            counts["rejected"] += 1
    for c in calls:
        reason = c.get("reason") if isinstance(c, dict) else None
        sid = c.get("session_id") if isinstance(c, dict) else None
        if reason not in END_REASONS or not sid:
            counts["rejected"] += 1
            continue
        duration = c.get("duration_seconds", c.get("duration"))
        duration = duration if isinstance(duration, int | float) and duration >= 0 else None
        caller = str(c.get("caller_id") or callers.get(sid, "unknown"))
        _, already = store.end_session(reason=reason, caller_id=caller, session_id=str(sid), duration_seconds=duration)
        counts["calls"] += not already
    store.append_event("legacy_import", digest, {"file": Path(path).name, **counts})
    return {"skipped": False, "sha256": digest, **counts}
