"""Calls in progress, so that a call whose agent process died without writing its call log
(SIGKILL, the kernel's OOM killer, a crash in native code, power loss) still ends with exactly one.

A call claims a lease when its session opens (or while an outbound call dials) and renews it
every `HEARTBEAT_SECONDS` while the call runs; writing the call log releases it. The store keeps
the leases (`Store.put_lease`; the JSON store as files in `DATA_DIR/live/`). Every agent process
sweeps them as it starts (`prewarm`), and so does `python -m backend verify`: a lease whose
process is gone gets the call log that process never wrote (`BackendAgent.close_orphaned_calls`),
reason `agent_error`, with the duration up to the last sign of life.

This module holds the rule for "gone". On this host a process is identified by its pid and its
start time (`/proc/<pid>/stat`), so a reused pid is not mistaken for the dead call's process. A
lease of another host name (another machine sharing the store, or this worker's container before
a restart, which gets a new host name) is judged by its heartbeat alone: untouched for
`STALE_SECONDS`, its process is gone.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from backend.store.leases import Lease

HEARTBEAT_SECONDS = 15.0
# A lease of another host untouched this long is dead: twelve missed heartbeats, and longer than
# an outbound call's dialing (45 s ringing + 15 s to join), which holds a lease without one.
STALE_SECONDS = 180.0


def _process_start(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot, or None (no such process, or
    no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: count fields after the last ")"
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, starttime


def this_process(session_id: str, caller_id: str) -> Lease:
    """A lease of `session_id` held by the calling process."""
    pid = os.getpid()
    return Lease(session_id, caller_id, pid, _process_start(pid), socket.gethostname(), time.time())


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


def gone(lease: Lease, host: str, now: float) -> bool:
    """Whether the process holding `lease` is gone (see the module doc)."""
    if lease.host == host:
        return not process_alive(lease.pid, lease.process_start)
    return now - lease.touched > STALE_SECONDS  # another host: its processes cannot be looked up


def orphaned(leases: list[Lease]) -> list[Lease]:
    """The leases among `leases` whose process is gone."""
    host, now = socket.gethostname(), time.time()
    return [x for x in leases if gone(x, host, now)]
