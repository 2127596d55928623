"""Calls in progress, so that a call whose agent process died without writing
its call log (SIGKILL, the kernel's OOM killer, a crash in native code, power loss) still ends
with exactly one.

A call claims a lease file in `DATA_DIR/live/` when its session opens, and touches it every
`HEARTBEAT_SECONDS` while the call runs; writing the call log releases it. Every agent process
sweeps the leases as it starts (`prewarm`): a lease whose process is gone gets the call log that
process never wrote, with reason `agent_error` and the duration from the session's start to the
last sign of life (the lease's last heartbeat or the session's last record, whichever is later).
A restarted worker so closes its crashed calls within seconds, and a running worker closes a
lost job's call as soon as it starts the next job process.

On this host a process is identified by its pid and its start time (`/proc/<pid>/stat`), so a
reused pid is not mistaken for the dead call's process. A lease of another host name (another
machine sharing DATA_DIR, or this worker's container before a restart, which gets a new host
name) is judged by its heartbeat alone: untouched for `STALE_SECONDS`, its process is gone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.records import epoch

if TYPE_CHECKING:
    from backend.backend_agent import BackendAgent

log = logging.getLogger(__name__)

LIVE_DIR = "live"
HEARTBEAT_SECONDS = 15.0
# A lease of another host untouched this long is dead: twelve missed heartbeats, and longer than
# an outbound call's dialing (45 s ringing + 15 s to join), which holds a lease without one.
STALE_SECONDS = 180.0


@dataclass(frozen=True)
class Lease:
    session_id: str
    caller_id: str
    pid: int
    process_start: str | None
    host: str
    path: Path
    touched: float  # the lease's modification time: the call's last heartbeat


def _process_start(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot, or None (no such process, or
    no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: count fields after the last ")"
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, starttime


def process_alive(pid: int, process_start: str | None) -> bool:
    """Whether the process that claimed a lease is still running."""
    if process_start is not None and Path("/proc/self/stat").exists():
        return _process_start(pid) == process_start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _path(data_dir: Path, session_id: str) -> Path:
    # session ids come from our own code, but a file name must not depend on that
    return data_dir / LIVE_DIR / f"{hashlib.sha256(session_id.encode()).hexdigest()[:32]}.json"


def claim(data_dir: str | os.PathLike[str], session_id: str, caller_id: str) -> Path:
    """Mark `session_id` as in progress in this process (again, if it already is); returns the
    lease's path."""
    path = _path(Path(data_dir), session_id)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    body = {
        "session_id": session_id,
        "caller_id": caller_id,
        "pid": os.getpid(),
        "process_start": _process_start(os.getpid()),
        "host": socket.gethostname(),
    }
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(body, f)
    os.replace(tmp, path)
    return path


def touch(path: Path) -> None:
    """The call's heartbeat: the lease's modification time is its last sign of life."""
    try:
        os.utime(path)
    except OSError as exc:
        log.warning("could not touch the call's lease: %s", exc.strerror or exc)


def release(path: Path) -> None:
    path.unlink(missing_ok=True)


def release_session(data_dir: str | os.PathLike[str], session_id: str) -> None:
    """Release the lease of `session_id`, if it has one."""
    release(_path(Path(data_dir), session_id))


def leases(data_dir: str | os.PathLike[str]) -> list[Lease]:
    """Every readable lease in DATA_DIR/live/ (a malformed one is logged and skipped)."""
    out = []
    for path in sorted((Path(data_dir) / LIVE_DIR).glob("*.json")):
        try:
            body = json.loads(path.read_text())
            out.append(
                Lease(
                    session_id=str(body["session_id"]),
                    caller_id=str(body["caller_id"]),
                    pid=int(body["pid"]),
                    process_start=body.get("process_start"),
                    host=str(body["host"]),
                    path=path,
                    touched=path.stat().st_mtime,
                )
            )
        except FileNotFoundError:
            continue  # released while we listed
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("skipping unreadable call lease %s: %s", path.name, exc)
    return out


def _gone(lease: Lease, host: str, now: float) -> bool:
    if lease.host == host:
        return not process_alive(lease.pid, lease.process_start)
    return now - lease.touched > STALE_SECONDS  # another host: its processes cannot be looked up


def orphaned(data_dir: str | os.PathLike[str]) -> list[Lease]:
    """Leases whose process is gone (see the module doc for how that is told)."""
    host, now = socket.gethostname(), time.time()
    return [x for x in leases(data_dir) if _gone(x, host, now)]


def _last_alive_duration(backend: BackendAgent, lease: Lease) -> float | None:
    """Seconds from the session's start to its last sign of life, or None if it never started."""
    session = backend.store.get_session(lease.session_id)
    if session is None:
        return None
    started = epoch(session["started_at"])
    last = max(started, lease.touched)
    for record in backend.get_shared_information(session_id=lease.session_id, limit=1).get("records", []):
        last = max(last, epoch(record["timestamp"]))
    return round(max(0.0, last - started), 3)


def close_orphaned_calls(backend: BackendAgent) -> list[dict[str, Any]]:
    """Write the call log of every call whose agent process died without one; returns the logs
    written. Safe to run in many processes at once: the store keeps one call log per session."""
    closed = []
    for lease in orphaned(backend.store.data_dir):
        result = backend.end_call(
            reason="agent_error",
            caller_id=lease.caller_id,
            duration_seconds=_last_alive_duration(backend, lease),
            session_id=lease.session_id,
        )
        if not result.get("success"):
            log.error("could not close the orphaned call %s: %s", lease.session_id, result.get("message"))
            continue
        release(lease.path)
        if not result.get("already_ended"):
            closed.append(result["call"])
            log.warning(
                "closed call %s: its agent process (pid %d) died without a call log",
                lease.session_id,
                lease.pid,
            )
    return closed
