"""`GET /api/webhooks/deliveries`: the end-of-call webhook's deliveries, newest first, each with
its state, attempts and errors (backend/postcall/webhook.py sends them).

This blueprint needs the bearer token (its own `before_request`): the Twilio callback's blueprint
under the same `/api/webhooks` prefix is public, checked by Twilio's signature instead."""

from __future__ import annotations

from flask import Blueprint, request

from backend.api import get_backend
from backend.api.auth import require_token
from backend.api.data import webhook_deliveries_page
from backend.api.params import webhook_params

bp = Blueprint("api_webhook_deliveries", __name__, url_prefix="/api/webhooks")
bp.before_request(require_token)


@bp.get("/deliveries")
def deliveries():
    return webhook_deliveries_page(get_backend(), webhook_params(request.args))
