"""Starting real servers in tests: a free port on loopback, and waiting for `/api/health`."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(proc: subprocess.Popen, base: str, log: Path, timeout: float = 30) -> None:
    """Until `base`/api/health answers; fails with the server's log if it exits or times out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(base + "/api/health", timeout=1).ok:
                return
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(log.read_text())
        time.sleep(0.1)
