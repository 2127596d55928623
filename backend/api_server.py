"""The Flask application: the HTTP API (`backend.api`) and the dashboard, over one store.

Run it with `gunicorn 'backend.api_server:create_app()'` (settings in ./gunicorn.conf.py) or,
for development, `python -m backend serve`.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

import dashboard
from backend.api import auth, errors, register_blueprints
from backend.backend_agent import BackendAgent
from backend.settings import Settings, get_settings

MAX_BODY_BYTES = 1 << 20

log = logging.getLogger(__name__)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app. `config` overrides settings, e.g. for tests:
    `{"DATA_DIR": tmp, "API_TOKENS": ["t"], "TESTING": True}`; `"STORE"` passes a store to use."""
    config = dict(config or {})
    settings: Settings = config.pop("SETTINGS", None) or get_settings()
    app = Flask(__name__.split(".")[0])
    app.config.update(
        DATA_DIR=str(settings.data_dir),
        API_TOKENS=list(settings.api_tokens),
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        TRUST_PROXY=settings.trust_proxy,
    )
    app.json.sort_keys = False
    app.config.update(config)
    data_dir = Path(app.config["DATA_DIR"])
    app.extensions["settings"] = settings
    app.extensions["backend"] = _backend(app, settings, data_dir)
    app.config.setdefault("SECRET_KEY", None)
    app.config["SECRET_KEY"] = app.config["SECRET_KEY"] or auth.secret_key(data_dir, settings.secret_key)
    auth.init_app(app, data_dir)
    errors.init_app(app)
    register_blueprints(app)
    dashboard.init_app(app)
    if app.config["TRUST_PROXY"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_port=1, x_prefix=1)
    return app


def _backend(app: Flask, settings: Settings, data_dir: Path) -> BackendAgent:
    """One store per app (per gunicorn worker) behind the backend functions; every request
    reuses it. `STORE` in the config passes a store to use (tests)."""
    if app.config.get("STORE") is not None:
        return BackendAgent(store=app.config["STORE"], settings=settings)
    fsync = app.config.get("STORE_FSYNC", settings.store_fsync)
    return BackendAgent(settings=replace(settings, data_dir=data_dir, store_fsync=fsync))
