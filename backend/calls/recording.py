"""A call's recording (RECORDING=on): what starting and stopping it gave, and its record.

The recording itself is LiveKit's (`backend/livekit/egress.py`, an audio-only room composite
egress); this module holds what carries no LiveKit type: the results of starting and stopping
it, the file name a session's recording gets, the store events that record it (kind
`recording`, keyed by the session id) and their fold into the session's recording:

    {"egress_id", "status": "recording" | "completed" | "failed", "location",
     "started_at", "ended_at", "error"}

The events, in write order: `started` (the egress id and where it writes) or `failed` (why it
did not start), then `stopped` (when the call ended; where the file went, and any error of the
stop), and `stray_stopped` when a start that failed in an uncertain way (a timeout) had in fact
started egresses that were then stopped.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from backend.store.interface import Store

KIND = "recording"
STATUSES = ("recording", "completed", "failed")
FILE_SUFFIX = ".ogg"  # Ogg Opus: what the egress writes for an audio-only file output
MEDIA_TYPES = {".ogg": "audio/ogg", ".mp4": "audio/mp4", ".m4a": "audio/mp4", ".mp3": "audio/mpeg"}


@dataclass(frozen=True)
class RecordingStart:
    """What asking for a call's recording gave: `ok` with the egress id and where it writes,
    or not `ok` with `error` (one sentence). `uncertain`: the request may have reached LiveKit
    and started an egress anyway (a timeout, a dropped connection, a 5xx answer)."""

    ok: bool
    egress_id: str | None = None
    location: str | None = None
    error: str | None = None
    uncertain: bool = False

    def event(self) -> dict[str, Any]:
        if self.ok:
            return {"state": "started", "egress_id": self.egress_id, "location": self.location}
        return {"state": "failed", "egress_id": self.egress_id, "error": self.error}  # no file to point at


@dataclass(frozen=True)
class RecordingStop:
    """What stopping it gave: `ok` when LiveKit accepted the stop; `failed` when LiveKit
    reports the recording itself failed or was aborted; `location` where the file went, when
    LiveKit said."""

    ok: bool
    egress_id: str
    location: str | None = None
    error: str | None = None
    failed: bool = False

    def event(self) -> dict[str, Any]:
        data = {"state": "stopped", **asdict(self)}
        del data["ok"]
        return data


def file_name(session_id: str) -> str:
    """The recording's file name: the session id with anything but letters, digits, `-`, `_`
    and `.` replaced, never starting with a dot, plus `.ogg`."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", session_id)[:120].lstrip(".") or "session"
    return safe + FILE_SUFFIX


def record(store: Store, session_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return store.append_event(KIND, session_id, {k: v for k, v in data.items() if v is not None})


def view(store: Store, session_id: str) -> dict[str, Any] | None:
    """The session's recording (see the module doc), or None when it was never started."""
    events = store.events(KIND, session_id) if 0 < len(session_id) <= 128 else []
    return fold(events)


def fold(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    out: dict[str, Any] | None = None
    for event in events:
        data, at = event["data"], event["timestamp"]
        state = data.get("state")
        if state in ("started", "failed"):
            out = {
                "egress_id": data.get("egress_id"),
                "status": "recording" if state == "started" else "failed",
                "location": data.get("location"),
                "started_at": at if state == "started" else None,
                "ended_at": None,
                "error": data.get("error"),
            }
        elif out is None:
            continue
        elif state == "stopped" and out["status"] == "recording":
            out["ended_at"] = at
            out["location"] = data.get("location") or out["location"]
            out["status"] = "failed" if data.get("failed") else "completed"
            out["error"] = data.get("error")
        elif state == "stray_stopped":
            stopped = ", ".join(data.get("egress_ids") or [])
            note = f"LiveKit had started it anyway ({stopped}); it was stopped at {at}."
            out["error"] = f"{out['error']} {note}" if out["error"] else note
    return out


def file_inside(folder: str | None, location: str | None) -> Path | None:
    """The recording's file when `location` names an existing regular file inside `folder`
    (symbolic links resolved first, so none leads out of it); else None."""
    if not folder or not location or "\x00" in location:
        return None
    try:
        root = Path(folder).resolve(strict=True)
        path = Path(location)
        path = (path if path.is_absolute() else root / path).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    if path == root or not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def media_type(path: Path) -> str:
    return MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
