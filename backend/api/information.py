"""`GET /api/information`: records, filtered, newest first or (`after_seq`) in write order, as
JSON, NDJSON or CSV."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, request

from backend.api import get_backend
from backend.api.auth import require_token
from backend.api.data import information_page
from backend.api.formats import csv_response, ndjson_response
from backend.api.params import information_params

bp = Blueprint("api_information", __name__, url_prefix="/api")
bp.before_request(require_token)


@bp.get("/information")
def information():
    params = information_params(request.args)
    page = information_page(get_backend(), params)
    if params.format == "json":
        return page
    headers = {"X-Count": str(page["count"])}
    if page["next_cursor"]:
        args = [(k, v) for k, v in request.args.items(multi=True) if k not in ("cursor", "after_seq")]
        headers["X-Next-Cursor"] = page["next_cursor"]
        headers["Link"] = f'<{request.path}?{urlencode([*args, ("cursor", page["next_cursor"])])}>; rel="next"'
    if "next_after_seq" in page:
        headers["X-Next-After-Seq"] = str(page["next_after_seq"])
    render = ndjson_response if params.format == "ndjson" else csv_response
    return render(page["information"], headers)
