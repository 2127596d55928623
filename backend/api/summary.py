"""`GET /api/summary`: totals, counts by category and outcome, the newest records and calls."""

from __future__ import annotations

from flask import Blueprint, request

from backend.api import get_backend
from backend.api.auth import require_token
from backend.api.data import summary_page
from backend.api.errors import ApiError

bp = Blueprint("api_summary", __name__, url_prefix="/api")
bp.before_request(require_token)


@bp.get("/summary")
def summary():
    if request.args:
        raise ApiError(400, "unknown_parameter", "This route takes no parameters.")
    return summary_page(get_backend())
