"""The dashboard's routes: overview, a call's page, webhook deliveries, analytics, live updates,
the CSV export, sign in/out."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, abort, current_app, jsonify, redirect, render_template, request, send_file, url_for

from backend.api.data import (
    ANALYTICS_MAX_DAYS,
    CATEGORIES,
    OUTCOMES,
    WEBHOOK_STATES,
    WebhookParams,
    analytics_params,
    csv_response,
    get_backend,
    information_page,
    recording_file,
    recording_media_type,
    webhook_params,
)
from backend.api.errors import ApiError, envelope
from dashboard import analytics as analytics_data
from dashboard import login, pages
from dashboard.query import ViewFilters, parse_filters, zone_named

bp = Blueprint(
    "dashboard", __name__, template_folder="templates", static_folder="static", static_url_path="/dashboard/static"
)

PUBLIC = {"dashboard.login", "dashboard.static"}
JSON_ROUTES = {"dashboard.live", "dashboard.analytics_json"}
EXPORT_PAGE = 1000
EXPORT_MAX = 1_000_000
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


@bp.before_request
def guard():
    """Sign-in for every page but the login form; a valid CSRF token on every POST."""
    if request.method == "POST" and not login.csrf_ok():
        return render_login("This form expired or did not come from this page; please try again.", 400)
    if request.endpoint in PUBLIC or login.signed_in():
        return None
    if request.endpoint in JSON_ROUTES:
        return envelope(401, "signed_out", "Sign in to the dashboard again.")
    return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))


@bp.after_request
def security_headers(response):
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "dashboard.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.context_processor
def page_globals():
    return {
        "signed_in": login.signed_in(),
        "csrf_token": login.csrf_token,
        "categories": CATEGORIES,
        "outcomes": OUTCOMES,
    }


def viewer_zone():
    """The viewer's time zone (cookie set by the page's script), else the business's."""
    return zone_named(request.cookies.get("tz"), current_app.extensions["dashboard"]["business_timezone"])


def view_filters() -> ViewFilters:
    return parse_filters(request.args, viewer_zone())


@bp.get("/")
def overview():
    f = view_filters()
    data = pages.overview(get_backend(), f, viewer_zone())
    live_query = url_for("dashboard.live", **f.url_args(cursor=None, calls_cursor=None))
    return render_template("dashboard/overview.html", data=data, f=f, live_query=live_query)


@bp.get("/sessions/<path:session_id>")
def session(session_id: str):
    data = pages.session_page(get_backend(), session_id)
    if data is None:
        return render_template("dashboard/not_found.html", session_id=session_id), 404
    live_query = url_for("dashboard.live", session_id=session_id)
    return render_template("dashboard/session.html", data=data, live_query=live_query)


@bp.get("/recordings/<path:session_id>")
def recording(session_id: str):
    """The audio of a call's completed recording, for the session page's player. The file is
    the one the store names for that session, served only when it lies inside
    RECORDING_FILE_DIR; anything else is a 404."""
    path = recording_file(get_backend(), session_id)
    if path is None:
        abort(404)
    return send_file(path, mimetype=recording_media_type(path), conditional=True, max_age=0)


@bp.get("/webhooks")
def webhooks():
    """The end-of-call webhook's deliveries: state, attempts and their errors."""
    try:
        params, error = webhook_params(request.args, drop_empty=True), None
    except ApiError as exc:
        params, error = WebhookParams(), exc.message
    data = pages.webhooks_page(get_backend(), params)
    return render_template("dashboard/webhooks.html", data=data, states=WEBHOOK_STATES, error=error)


@bp.get("/live")
def live():
    """What changed since `after_seq` on the overview (with its filters) or on one call."""
    after = request.args.get("after_seq", "")
    if not after.isdigit() or len(after) > 18:
        return envelope(400, "invalid_after_seq", "after_seq must be a whole number.")
    session_id = request.args.get("session_id")
    if session_id:
        data = pages.session_changes(get_backend(), session_id, int(after))
        if data is None:
            return envelope(404, "session_not_found", "There is no such call.")
        if "after_call" in data:  # the box as the page renders it (Jinja escapes every value)
            box = data.pop("after_call")
            data["after_call"] = {"key": box["key"], "html": render_template("dashboard/after_call.html", a=box)}
    else:
        data = pages.overview_changes(get_backend(), view_filters(), viewer_zone(), int(after))
    return jsonify(data)


@bp.get("/export.csv")
def export_csv():
    """The feed of the current view, every page of it, in the API's CSV format."""
    f = view_filters()
    return csv_response(_all_records(f), {"Cache-Control": "no-store"}, filename="information.csv")


def _all_records(f: ViewFilters) -> Iterator[dict]:
    store, sent, params = get_backend(), 0, f.information_params(EXPORT_PAGE)
    while sent < EXPORT_MAX:
        page = information_page(store, params)
        yield from page["information"]
        sent += page["count"]
        if not page["next_cursor"]:
            return
        params = f.information_params(EXPORT_PAGE, before_seq=page["information"][-1]["seq"])


def business_zone() -> str:
    return current_app.extensions["dashboard"]["business_timezone"]


@bp.get("/analytics")
def analytics():
    """The figures of a date range: cards and tables rendered here (readable without a script),
    charts drawn by analytics.js from `analytics_json` for the same range."""
    params, error = analytics_data.read_params(request.args, business_zone())
    data = analytics_data.analytics(get_backend(), params)
    query = {"since": params.since.isoformat(), "until": params.until.isoformat(), "tz": params.tz}
    return render_template(
        "dashboard/analytics.html",
        a=data,
        p=params,
        error=error,
        zones=analytics_data.zone_choices(params.tz, business_zone(), request.cookies.get("tz")),
        quick=analytics_data.quick_ranges(params.tz),
        query=query,
        json_url=url_for("dashboard.analytics_json", **query),
        max_days=ANALYTICS_MAX_DAYS,
    )


@bp.get("/analytics.json")
def analytics_json():
    """The analytics page's figures as JSON (what `GET /api/analytics` answers, with the texts
    the page shows), for its charts."""
    try:
        params = analytics_params(request.args, business_zone(), drop_empty=True)
    except ApiError as problem:
        return envelope(problem.status, problem.code, problem.message)
    return jsonify(analytics_data.analytics(get_backend(), params))


@bp.route("/login", methods=["GET", "POST"], endpoint="login")
def login_page():
    if request.method == "GET":
        return render_login(None, 200)
    limiter = current_app.extensions["auth_failures"]  # the API's: wrong tokens count alike
    addr = request.remote_addr or "-"
    if limiter.blocked_for(addr) > 0:
        return render_login("Too many wrong tokens from this address; wait a minute and try again.", 429)
    if login.token_is_valid(request.form.get("token", "")):
        login.sign_in()
        return redirect(login.safe_next(request.form.get("next")) or url_for("dashboard.overview"))
    limiter.fail(addr)
    return render_login("That token is not valid. Check it and try again.", 401)


@bp.post("/logout")
def logout():
    login.sign_out()
    return redirect(url_for("dashboard.login", signed_out=1))


def render_login(message: str | None, status: int):
    if message is None and request.args.get("signed_out"):
        message = "You are signed out."
    next_url = login.safe_next(request.values.get("next")) or ""
    page = render_template("dashboard/login.html", message=message, error=status >= 400, next_url=next_url)
    return page, status
