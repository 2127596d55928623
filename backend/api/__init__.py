"""The HTTP API: one blueprint per area, the error envelope, authentication, parameters and
the page data functions the dashboard reuses (`backend.api.data`)."""

from __future__ import annotations

from flask import Flask, current_app

from backend.backend_agent import BackendAgent


def get_backend() -> BackendAgent:
    """The app's backend functions over its one store (opened by `create_app`)."""
    return current_app.extensions["backend"]


def register_blueprints(app: Flask) -> None:
    from backend.api import (
        analytics,
        calls,
        health,
        information,
        sessions,
        sip_routes,
        summary,
        test_function,
        webhooks,
    )

    for module in (health, information, sessions, calls, summary, analytics, test_function, sip_routes, webhooks):
        app.register_blueprint(module.bp)
    app.register_blueprint(sip_routes.webhook_bp)
