"""`GET /api/analytics`: the figures of the calls in a date range (calls per day, outcomes,
qualification rate, duration, cost, missing disclosures), from the store's index alone."""

from __future__ import annotations

from flask import Blueprint, request

from backend.api import get_backend
from backend.api.auth import require_token
from backend.api.data import analytics_page
from backend.api.params import analytics_params

bp = Blueprint("api_analytics", __name__, url_prefix="/api")
bp.before_request(require_token)


@bp.get("/analytics")
def analytics():
    backend = get_backend()
    return analytics_page(backend, analytics_params(request.args, backend.settings.business_timezone))
