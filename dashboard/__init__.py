"""The qualifiers' dashboard: a blueprint mounted at `/` by the API's `create_app`, reading the
same store through the same page functions as `/api/...`."""

from __future__ import annotations

from flask import Flask

from backend.settings import get_settings
from dashboard.disclosure_flag import missing_text
from dashboard.formatting import FILTERS
from dashboard.login import DashboardSessionInterface


def init_app(app: Flask) -> None:
    """Register the dashboard's routes, its template filters and its session cookie on `app`."""
    from dashboard.views import bp

    app.register_blueprint(bp)
    app.jinja_env.filters.update(FILTERS, missing_disclosure_text=missing_text)
    app.session_interface = DashboardSessionInterface()
    settings = app.extensions.get("settings") or get_settings()  # the app's own settings
    zone = app.config.get("BUSINESS_TIMEZONE") or settings.business_timezone
    app.extensions["dashboard"] = {"business_timezone": zone}
