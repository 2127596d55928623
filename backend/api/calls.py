"""`GET /api/calls`: the call logs (placing outbound calls comes with the SIP routes)."""

from __future__ import annotations

from flask import Blueprint, request

from backend.api import get_backend
from backend.api.auth import require_token
from backend.api.data import calls_page
from backend.api.params import call_params

bp = Blueprint("api_calls", __name__, url_prefix="/api")
bp.before_request(require_token)


@bp.get("/calls")
def calls():
    return calls_page(get_backend(), call_params(request.args))
