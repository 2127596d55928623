"""One error envelope for the whole API, built in one place: `{"error": {"code", "message"}}`.

Views raise `ApiError(status, code, message)`; Flask's own HTTP errors (404, 405, 413, ...),
store failures and unexpected exceptions are translated here too, for every path under `/api/`.
Unexpected exceptions are logged by Flask (with their traceback) and answered as a 500.
Other paths (the dashboard) keep Flask's default pages unless their blueprint handles them.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from backend.store.records import InvalidRecord, StoreError, StoreUnavailable

log = logging.getLogger(__name__)

# Flask's HTTP errors -> our codes (anything else: the snake_case of its name).
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}
_HTTP_MESSAGES = {
    404: "There is no such route.",
    405: "This route does not accept that method.",
    413: "The request body is larger than 1 MiB.",
    500: "The server failed to answer this request.",
}


class ApiError(Exception):
    """An API failure: HTTP status, a machine code and one sentence for people."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def envelope(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """The error response; the only place its shape is written."""
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _is_api() -> bool:
    return request.path == "/api" or request.path.startswith("/api/")


def _api_error(exc: ApiError):
    if _is_api():
        return envelope(exc.status, exc.code, exc.message, exc.headers)
    return Response(exc.message, exc.status, exc.headers, mimetype="text/plain")


def _http_error(exc: HTTPException):
    if not _is_api():
        return exc
    status = exc.code or 500
    headers = {k: v for k, v in exc.get_headers() if k.lower() not in ("content-type", "content-length")}
    message = _HTTP_MESSAGES.get(status) or (exc.description or exc.name).split("\n")[0]
    return envelope(status, _HTTP_CODES.get(status, exc.name.lower().replace(" ", "_")), message, headers)


def _store_error(exc: StoreError):
    if isinstance(exc, InvalidRecord):  # the request's data broke a record rule
        return _api_error(ApiError(400, exc.code, exc.message))
    if isinstance(exc, StoreUnavailable):
        log.warning("store unavailable: %s", exc.message)
        error = ApiError(503, exc.code, exc.message, {"Retry-After": "1"})
    else:
        log.error("store error %s: %s", exc.code, exc.message)
        error = ApiError(500, exc.code, "The store failed to answer this request.")
    return _api_error(error)


def init_app(app: Flask) -> None:
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(StoreError, _store_error)
    app.register_error_handler(HTTPException, _http_error)
