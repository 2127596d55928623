"""Bearer tokens for the API (and the dashboard's login), and the app's secret key.

Tokens come from `API_TOKENS`. When none is set, a random token is created on first start in
`DATA_DIR/api_token` (mode 0600) and printed once, so a fresh install is never open. Files are
created atomically (written aside, then hard-linked into place), so several gunicorn workers
starting at once agree on one value. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import os
import secrets
import sys
import threading
import time
from collections import deque
from pathlib import Path

from flask import Flask, current_app, request

from backend.api.errors import ApiError

TOKEN_FILE = "api_token"  # noqa: S105 - a file name
SECRET_FILE = "secret_key"  # noqa: S105 - a file name


def persistent_secret(path: Path, nbytes: int = 32) -> tuple[str, bool]:
    """The secret stored at `path`, creating it (mode 0600) if absent; returns (value, created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    created = False
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, (secrets.token_urlsafe(nbytes) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process won the race: then its value counts
            created = True
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise RuntimeError(f"{path} is empty; delete it to create a new one")
    return value, created


def load_tokens(app: Flask, configured: list[str] | tuple[str, ...] | str | None, data_dir: Path) -> None:
    """Put the accepted tokens in `app.extensions["api_tokens"]`."""
    if isinstance(configured, str):
        configured = configured.split(",")
    tokens = [t.strip() for t in configured or () if t and t.strip()]
    if not tokens:
        token, created = persistent_secret(data_dir / TOKEN_FILE)
        if created:
            print(f"API token created in {data_dir / TOKEN_FILE} (shown once): {token}", file=sys.stderr, flush=True)
        tokens = [token]
    app.extensions["api_tokens"] = tuple(t.encode() for t in tokens)


def secret_key(data_dir: Path, configured: str | None) -> str:
    """The `SECRET_KEY` setting, else one persisted in `DATA_DIR/secret_key`."""
    return configured or persistent_secret(data_dir / SECRET_FILE, 48)[0]


def check_token(app: Flask, token: str | None) -> bool:
    """True when `token` is one of the app's tokens (constant time; every token is compared)."""
    if not token:
        return False
    given = token.encode("utf-8", "replace")
    ok = False
    for expected in app.extensions["api_tokens"]:
        ok |= hmac.compare_digest(given, expected)
    return ok


class FailureLimiter:
    """At most `limit` wrong tokens per client address within `window` seconds (per worker)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self._seen: dict[str, deque[float]] = {}
        self._mutex = threading.Lock()

    def blocked_for(self, addr: str) -> float:
        """Seconds until `addr` may try again (0 when it may now)."""
        with self._mutex:
            times = self._prune(addr, time.monotonic())
            return self.window - (time.monotonic() - times[0]) if len(times) >= self.limit else 0.0

    def fail(self, addr: str) -> None:
        with self._mutex:
            if len(self._seen) > 10000:
                self._seen.clear()
            self._prune(addr, time.monotonic()).append(time.monotonic())

    def _prune(self, addr: str, now: float) -> deque[float]:
        times = self._seen.setdefault(addr, deque())
        while times and now - times[0] > self.window:
            times.popleft()
        return times


def bearer_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require_token() -> None:
    """`before_request` hook of every protected blueprint: 401 without a valid token."""
    app = current_app._get_current_object()
    limiter: FailureLimiter = app.extensions["auth_failures"]
    addr = request.remote_addr or "-"
    wait = limiter.blocked_for(addr)
    if wait > 0:
        raise ApiError(
            429,
            "too_many_failed_logins",
            "Too many wrong tokens; try again later.",
            {"Retry-After": str(max(1, round(wait)))},
        )
    token = bearer_token()
    if check_token(app, token):
        return
    if token is not None:
        limiter.fail(addr)
    raise ApiError(
        401,
        "unauthorized",
        "A valid 'Authorization: Bearer <token>' header is required.",
        {"WWW-Authenticate": 'Bearer realm="api"'},
    )


def init_app(app: Flask, data_dir: Path) -> None:
    load_tokens(app, app.config.get("API_TOKENS"), data_dir)
    app.extensions["auth_failures"] = FailureLimiter(
        int(app.config.get("AUTH_FAILURE_LIMIT", 20)), float(app.config.get("AUTH_FAILURE_WINDOW", 60.0))
    )
