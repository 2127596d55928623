"""`GET /api/health` and `GET /api/openapi.json`: open to everyone, no data."""

from __future__ import annotations

from flask import Blueprint, jsonify

from backend.api import get_backend
from backend.api.openapi import openapi_document

bp = Blueprint("api_health", __name__, url_prefix="/api")


@bp.get("/health")
def health():
    get_backend().last_seq()  # the store answers (a StoreUnavailable becomes 503)
    return {"status": "ok"}


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())
