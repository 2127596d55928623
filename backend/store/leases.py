"""Call leases as the JSON store keeps them: one small file per call in `DATA_DIR/live/`.

A lease says which process holds a call in progress; its file's modification time is the call's
last heartbeat. `backend/calls/leases.py` decides when a lease's process is gone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

log = logging.getLogger(__name__)

LIVE_DIR = "live"


@dataclass(frozen=True)
class Lease:
    session_id: str
    caller_id: str
    pid: int
    process_start: str | None  # clock ticks since boot (`/proc/<pid>/stat`), or None without /proc
    host: str
    touched: float = 0.0  # the call's last heartbeat (epoch seconds)


class LeaseFiles:
    """The leases of one store folder."""

    def __init__(self, data_dir: Path) -> None:
        self.folder = data_dir / LIVE_DIR

    def _path(self, session_id: str) -> Path:
        # session ids come from our own code, but a file name must not depend on that
        return self.folder / f"{hashlib.sha256(session_id.encode()).hexdigest()[:32]}.json"

    def put(self, lease: Lease) -> None:
        path = self._path(lease.session_id)
        self.folder.mkdir(mode=0o700, exist_ok=True)
        body = {k: getattr(lease, k) for k in ("session_id", "caller_id", "pid", "process_start", "host")}
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(body, f)
        os.replace(tmp, path)

    def touch(self, session_id: str) -> None:
        try:
            os.utime(self._path(session_id))
        except OSError as exc:
            log.warning("could not touch the call's lease: %s", exc.strerror or exc)

    def drop(self, session_id: str) -> None:
        self._path(session_id).unlink(missing_ok=True)

    def all(self) -> list[Lease]:
        """Every readable lease (a malformed one is logged and skipped)."""
        out = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                body = json.loads(path.read_text())
                lease = Lease(
                    session_id=str(body["session_id"]),
                    caller_id=str(body["caller_id"]),
                    pid=int(body["pid"]),
                    process_start=body.get("process_start"),
                    host=str(body["host"]),
                )
                out.append(replace(lease, touched=path.stat().st_mtime))
            except FileNotFoundError:
                continue  # released while we listed
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("skipping unreadable call lease %s: %s", path.name, exc)
        return out
