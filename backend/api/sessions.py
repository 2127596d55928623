"""`GET /api/sessions` and `GET /api/sessions/<session_id>`."""

from __future__ import annotations

from flask import Blueprint, request

from backend.api import get_backend
from backend.api.auth import require_token
from backend.api.data import session_detail, sessions_page
from backend.api.params import session_params

bp = Blueprint("api_sessions", __name__, url_prefix="/api")
bp.before_request(require_token)


@bp.get("/sessions")
def sessions():
    return sessions_page(get_backend(), session_params(request.args))


@bp.get("/sessions/<path:session_id>")
def session(session_id: str):
    return session_detail(get_backend(), session_id)
