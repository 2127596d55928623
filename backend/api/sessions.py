"""`GET /api/sessions`, `GET /api/sessions/<session_id>` and its transcript
(`GET /api/sessions/<session_id>/transcript`, JSON or `?format=txt`)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from backend.api import get_backend
from backend.api.auth import require_token
from backend.api.data import session_detail, sessions_page, transcript_page, transcript_text
from backend.api.errors import ApiError
from backend.api.params import session_params

bp = Blueprint("api_sessions", __name__, url_prefix="/api")
bp.before_request(require_token)


@bp.get("/sessions")
def sessions():
    return sessions_page(get_backend(), session_params(request.args))


@bp.get("/sessions/<path:session_id>/transcript")
def transcript(session_id: str):
    unknown = sorted(set(request.args) - {"format"})
    if unknown:
        raise ApiError(400, "unknown_parameter", "This route takes: format.")
    fmt = request.args.get("format", "json")
    if fmt not in ("json", "txt"):
        raise ApiError(400, "invalid_format", "format must be json or txt.")
    page = transcript_page(get_backend(), session_id)
    if fmt == "txt":
        return Response(transcript_text(page), mimetype="text/plain", headers={"Cache-Control": "no-store"})
    return page


@bp.get("/sessions/<path:session_id>")
def session(session_id: str):
    return session_detail(get_backend(), session_id)
