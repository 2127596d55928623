"""Signing in to the dashboard with an API token, the session cookie, and CSRF protection.

The session is Flask's signed cookie: HttpOnly, SameSite=Strict, and Secure when the request
came over HTTPS (`request.is_secure`, which honours ProxyFix when the API enables it). It holds
when the user signed in and a CSRF token, never the API token. Every POST to the dashboard must
carry the session's CSRF token; the login form gets one before there is a signed-in session.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from urllib.parse import urlsplit

from flask import current_app, has_request_context, request, session
from flask.sessions import SecureCookieSessionInterface

from backend.api.data import check_token

log = logging.getLogger(__name__)

SESSION_HOURS = 12
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class DashboardSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, Strict same-site and Secure whenever served over HTTPS."""

    def get_cookie_samesite(self, app) -> str:
        return "Strict"

    def get_cookie_httponly(self, app) -> bool:
        return True

    def get_cookie_secure(self, app) -> bool:
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or (has_request_context() and request.is_secure)


def token_is_valid(token: str) -> bool:
    """The API's own check (constant-time, same tokens as the bearer auth)."""
    return bool(token) and check_token(current_app, token)


def csrf_token() -> str:
    """This session's CSRF token, created on first use (also before signing in)."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok() -> bool:
    sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    expected = session.get("csrf") or ""
    return bool(expected) and hmac.compare_digest(sent.encode(), expected.encode())


def signed_in() -> bool:
    at = session.get("signed_in_at")
    return isinstance(at, int | float) and 0 <= time.time() - at < SESSION_HOURS * 3600


def sign_in() -> None:
    """A fresh session (new CSRF token) so nothing from before signing in carries over."""
    session.clear()
    session["signed_in_at"] = time.time()
    session["csrf"] = secrets.token_urlsafe(32)
    log.info("dashboard sign-in from %s", request.remote_addr)


def sign_out() -> None:
    session.clear()


def safe_next(target: str | None) -> str | None:
    """Only a path on this site (no scheme, no host, no `//`, no backslash) may be a redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    return None if parts.scheme or parts.netloc else target
