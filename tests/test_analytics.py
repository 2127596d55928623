"""Analytics: `analytics_page` from the store's index columns alone, `GET /api/analytics` through
Flask's test client (known figures, empty ranges, calls without a cost, days in a time zone that
is not UTC, daylight saving, the 400s), the dashboard's page and JSON route, and the bench's
quick mode.

No backend function writes a call's cost yet (the call log's schema allows one), so calls are
written here as schema-checked call logs through the store's own write path."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from backend.api.data import analytics_page
from backend.api.params import AnalyticsParams, analytics_params
from backend.api_server import create_app
from backend.store import MemoryStore
from backend.store.interface import CallFigures
from backend.store.records import DISCLOSURES, END_REASONS, check, iso

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "analytics-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CALLER = "+15551234567"
CHICAGO = ZoneInfo("America/Chicago")


def ended_call(store, when: datetime, reason: str, duration: float, cost: float | None = None, missing: bool = False):
    """A session and its call log ending at `when`; `cost` in USD or none; `missing`: the
    disclosure check found a required disclosure not given."""
    sid = str(uuid.uuid4())
    store.start_session(sid, CALLER, started_at=iso(when - timedelta(seconds=duration)))
    if missing:
        store.append_event(DISCLOSURES, sid, {"required": ["ai_assistant"], "missing": ["ai_assistant"]})
    call = {
        "id": str(uuid.uuid4()),
        "session_id": sid,
        "caller_id": CALLER,
        "reason": reason,
        "outcome": END_REASONS[reason],
        "duration_seconds": float(duration),
        "information_count": 0,
        "ended_at": iso(when),
    }
    if missing:
        call["missing_disclosures"] = ["ai_assistant"]
    if cost is not None:
        call["cost"] = {"total_usd": cost, "model_usd": None, "telephony_usd": None}
    check("call", call)
    store._transact(lambda _view, append: append({"type": "call", **call}))  # a call log as it was written


def chicago(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=CHICAGO)


@pytest.fixture
def store():
    return MemoryStore()


@pytest.fixture
def app(store, tmp_path):
    return create_app({"DATA_DIR": str(tmp_path / "data"), "API_TOKENS": [TOKEN], "TESTING": True, "STORE": store})


@pytest.fixture
def client(app):
    return app.test_client()


def get(client, query: str = ""):
    return client.get("/api/analytics" + (f"?{query}" if query else ""), headers=AUTH)


@pytest.fixture
def known(store):
    """Five calls in Nov 20-23 2026 (Chicago), one just before and one just after."""
    ended_call(store, chicago("2026-11-19T23:59:59.999"), "customer_qualified_transfer", 999, cost=9.0)  # before
    ended_call(store, chicago("2026-11-20T23:30:00"), "customer_qualified_transfer", 300, cost=1.2)  # UTC: the 21st
    ended_call(store, chicago("2026-11-21T00:30:00"), "customer_not_qualified", 100, cost=0.3, missing=True)
    ended_call(store, chicago("2026-11-21T12:00:00"), "voicemail", 20)  # no cost, no conversation
    ended_call(store, chicago("2026-11-22T10:00:00"), "customer_qualified_transfer", 600, cost=1.5)
    ended_call(store, chicago("2026-11-23T00:00:00"), "completed", 50, cost=0.0)  # first instant of the 23rd
    ended_call(store, chicago("2026-11-24T00:00:00"), "customer_qualified_transfer", 999, cost=9.0)  # after


# ---- the figures ---------------------------------------------------------------------------------
def test_figures_of_a_known_set_of_calls(client, known):
    response = get(client, "since=2026-11-20&until=2026-11-23&tz=America/Chicago")
    assert response.status_code == 200
    page = response.get_json()
    assert page["range"] == {
        "since": "2026-11-20",
        "until": "2026-11-23",
        "tz": "America/Chicago",
        "days": 4,
        "starts_at": "2026-11-20T06:00:00.000Z",
        "ends_before": "2026-11-24T06:00:00.000Z",
    }
    assert page["totals"] == {"calls": 5, "conversations": 4, "qualified": 2, "qualification_rate": 0.5}
    assert [(d["date"], d["calls"], d["qualified"], d["missing_disclosures"]) for d in page["per_day"]] == [
        ("2026-11-20", 1, 1, 0),
        ("2026-11-21", 2, 0, 1),
        ("2026-11-22", 1, 1, 0),
        ("2026-11-23", 1, 0, 0),
    ]
    assert [(d["average_duration_seconds"], d["p90_duration_seconds"]) for d in page["per_day"]] == [
        (300.0, 300.0),
        (60.0, 100.0),
        (600.0, 600.0),
        (50.0, 50.0),
    ]
    assert page["outcomes"] == {
        "qualified": 2,
        "callback": 0,
        "not_qualified": 1,
        "not_interested": 0,
        "do_not_call": 0,
        "no_contact": 1,
        "incomplete": 0,
        "completed": 1,
    }
    assert page["duration"] == {"average_seconds": 214.0, "p90_seconds": 600.0}  # [20, 50, 100, 300, 600]
    assert page["cost"] == {
        "total_usd": 3.0,  # a cost of 0.00 is a cost; the voicemail has none
        "calls_with_cost": 4,
        "calls_without_cost": 1,
        "per_call_usd": 0.75,
        "per_qualified_lead_usd": 1.5,
    }
    assert page["missing_disclosures"] == {"calls": 1, "share": 0.2}


def test_days_are_the_viewers_days_across_midnight(client, known):
    utc = get(client, "since=2026-11-20&until=2026-11-23&tz=UTC").get_json()
    assert [(d["date"], d["calls"]) for d in utc["per_day"]] == [
        ("2026-11-20", 1),  # the call just before midnight in Chicago ended at 05:59 UTC on the 20th
        ("2026-11-21", 3),  # 23:30 and 00:30 in Chicago are both the 21st in UTC
        ("2026-11-22", 1),
        ("2026-11-23", 1),
    ]
    assert utc["totals"]["calls"] == 6
    tokyo = get(client, "since=2026-11-21&until=2026-11-21&tz=Asia/Tokyo").get_json()
    assert tokyo["range"]["starts_at"] == "2026-11-20T15:00:00.000Z"
    assert [d["calls"] for d in tokyo["per_day"]] == [2]  # 23:30 and 00:30 Chicago = 14:30, 15:30 Tokyo


def test_a_day_of_25_hours_when_clocks_go_back(client, store):
    ended_call(store, datetime(2026, 11, 2, 4, 30, tzinfo=UTC), "customer_qualified_transfer", 60)  # 23:30 EST Nov 1
    ended_call(store, datetime(2026, 11, 2, 5, 30, tzinfo=UTC), "customer_qualified_transfer", 60)  # 00:30 Nov 2
    page = get(client, "since=2026-11-01&until=2026-11-02&tz=America/New_York").get_json()
    assert [(d["date"], d["calls"]) for d in page["per_day"]] == [("2026-11-01", 1), ("2026-11-02", 1)]
    assert page["range"]["starts_at"] == "2026-11-01T04:00:00.000Z"  # EDT
    assert page["range"]["ends_before"] == "2026-11-03T05:00:00.000Z"  # EST


def test_no_calls_in_range_gives_zeros_and_nulls_not_division_errors(client, known):
    response = get(client, "since=2025-01-01&until=2025-01-03")
    assert response.status_code == 200
    page = response.get_json()
    assert page["totals"] == {"calls": 0, "conversations": 0, "qualified": 0, "qualification_rate": None}
    assert page["per_day"] == [
        {
            "date": f"2025-01-0{n}",
            "calls": 0,
            "qualified": 0,
            "missing_disclosures": 0,
            "average_duration_seconds": None,
            "p90_duration_seconds": None,
        }
        for n in (1, 2, 3)
    ]
    assert set(page["outcomes"].values()) == {0}
    assert page["duration"] == {"average_seconds": None, "p90_seconds": None}
    assert page["cost"] == {
        "total_usd": 0.0,
        "calls_with_cost": 0,
        "calls_without_cost": 0,
        "per_call_usd": None,
        "per_qualified_lead_usd": None,
    }
    assert page["missing_disclosures"] == {"calls": 0, "share": None}


def test_calls_without_a_cost_and_cost_without_a_lead(client, store):
    when = datetime.now(CHICAGO).replace(hour=12, minute=0, second=0, microsecond=0)
    ended_call(store, when, "caller_hung_up", 30)
    ended_call(store, when + timedelta(minutes=1), "customer_not_interested", 90)
    page = get(client, "tz=America/Chicago").get_json()
    assert page["cost"] == {
        "total_usd": 0.0,
        "calls_with_cost": 0,
        "calls_without_cost": 2,
        "per_call_usd": None,
        "per_qualified_lead_usd": None,
    }
    ended_call(store, when + timedelta(minutes=2), "customer_not_qualified", 60, cost=0.25)
    page = get(client, "tz=America/Chicago").get_json()
    assert page["cost"]["per_call_usd"] == 0.25 and page["cost"]["calls_without_cost"] == 2
    assert page["cost"]["per_qualified_lead_usd"] is None  # money spent, nobody qualified: no price per lead
    assert page["totals"]["qualification_rate"] == 0.0


def test_the_default_range_is_the_last_30_days_in_the_business_time_zone(client, store):
    page = get(client).get_json()
    today = datetime.now(ZoneInfo("America/New_York")).date()  # BUSINESS_TIMEZONE of the tests
    assert page["range"]["tz"] == "America/New_York"
    assert page["range"]["until"] == today.isoformat()
    assert page["range"]["since"] == (today - timedelta(days=29)).isoformat()
    assert len(page["per_day"]) == page["range"]["days"] == 30
    only_until = get(client, "until=2026-03-31").get_json()["range"]
    assert (only_until["since"], only_until["days"]) == ("2026-03-02", 30)


def test_a_range_of_366_days_is_allowed_and_one_more_is_not(client):
    assert get(client, "since=2024-01-01&until=2024-12-31").get_json()["range"]["days"] == 366
    assert get(client, "since=2025-06-01&until=2025-06-01").get_json()["range"]["days"] == 1


def test_every_range_the_document_allows_is_answered_and_says_what_it_counts(client):
    """The document can check dates and zones, not their order or distance: the two dates may
    come in either order, and a range over 366 days is cut to the 366 days ending at its last."""
    swapped = get(client, "since=2026-11-23&until=2026-11-20").get_json()["range"]
    assert (swapped["since"], swapped["until"], swapped["days"]) == ("2026-11-20", "2026-11-23", 4)
    long = get(client, "since=2023-01-01&until=2024-01-02").get_json()["range"]  # 367 days asked for
    assert (long["since"], long["until"], long["days"]) == ("2023-01-02", "2024-01-02", 366)


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("since=2026-13-01", "invalid_date"),
        ("since=2026-02-30", "invalid_date"),
        ("until=yesterday", "invalid_date"),
        ("since=20261101", "invalid_date"),  # ISO's basic form: not the documented YYYY-MM-DD
        ("since=2026-11-01T00:00:00Z", "invalid_date"),
        ("since=1969-12-31&until=1970-01-01", "invalid_date"),
        ("tz=Mars/Olympus_Mons", "invalid_tz"),
        ("tz=../../etc/passwd", "invalid_tz"),
        ("tz=", "invalid_tz"),
        ("since=2026-11-01&since=2026-11-02", "repeated_parameter"),
        ("from=2026-11-01", "unknown_parameter"),
    ],
)
def test_bad_parameters_are_400s_in_the_envelope(client, query, code):
    response = get(client, query)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == code and response.get_json()["error"]["message"]
    assert set(response.get_json()) == {"error"}


def test_the_route_needs_the_token(client):
    response = client.get("/api/analytics")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


def test_the_answer_matches_its_openapi_schema(client, known):
    from jsonschema import Draft202012Validator

    from backend.api.openapi import openapi_document

    document = openapi_document()
    schema = {**document["paths"]["/api/analytics"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]}
    schema["components"] = document["components"]
    for query in ("since=2026-11-20&until=2026-11-23&tz=America/Chicago", "since=2025-01-01&until=2025-01-01"):
        Draft202012Validator(schema).validate(get(client, query).get_json())


# ---- the page function: the index columns only -----------------------------------------------------
class FiguresOnly:
    """A backend with nothing but `call_figures`: reading a record would fail."""

    def __init__(self, figures: CallFigures):
        self.figures = figures
        self.asked: list[tuple[float, float]] = []

    def call_figures(self, since, until):
        self.asked.append((since, until))
        keep = [i for i, t in enumerate(self.figures.ended) if since <= t <= until]
        cols = (self.figures.ended, self.figures.outcome, self.figures.duration, self.figures.cost)
        return CallFigures(*([c[i] for i in keep] for c in cols), [self.figures.missing_disclosure[i] for i in keep])


def test_the_page_is_built_from_call_figures_alone_even_out_of_order():
    day = datetime(2026, 5, 10, tzinfo=UTC).timestamp()
    # a clock stepped back between two writers: the index holds them in write order
    figures = CallFigures(
        ended=[day + 86400 + 10, day + 5, day + 86400 + 20, day + 3 * 86400],
        outcome=["qualified", "no_contact", "callback", "qualified"],
        duration=[10.0, 20.0, 30.0, 40.0],
        cost=[-1.0, 0.5, 0.5, 2.0],
        missing_disclosure=[True, False, False, False],
    )
    backend = FiguresOnly(figures)
    page = analytics_page(backend, AnalyticsParams(date(2026, 5, 10), date(2026, 5, 12), "UTC"))
    assert backend.asked == [(day, pytest.approx(day + 3 * 86400))]
    assert backend.asked[0][1] < day + 3 * 86400  # the day after `until` is left out
    assert [d["calls"] for d in page["per_day"]] == [1, 2, 0]
    assert [d["qualified"] for d in page["per_day"]] == [0, 1, 0]
    assert page["totals"] == {"calls": 3, "conversations": 2, "qualified": 1, "qualification_rate": 0.5}
    assert page["cost"]["total_usd"] == 1.0 and page["cost"]["calls_without_cost"] == 1
    assert page["missing_disclosures"] == {"calls": 1, "share": 0.3333}


def test_p90_is_the_nearest_rank():
    day = datetime(2026, 5, 10, tzinfo=UTC).timestamp()
    n = 20
    figures = CallFigures(
        [day + i for i in range(n)], ["completed"] * n, [float(i + 1) for i in range(n)], [-1.0] * n, [False] * n
    )
    page = analytics_page(FiguresOnly(figures), AnalyticsParams(date(2026, 5, 10), date(2026, 5, 10), "UTC"))
    assert page["duration"] == {"average_seconds": 10.5, "p90_seconds": 18.0}  # 18 of the 20 took at most 18 s


def test_an_outcome_outside_the_vocabulary_is_counted_too():
    day = datetime(2026, 5, 10, tzinfo=UTC).timestamp()
    figures = CallFigures([day, day + 1], ["qualified", "transferred"], [1.0, 2.0], [-1.0, -1.0], [False, False])
    page = analytics_page(FiguresOnly(figures), AnalyticsParams(date(2026, 5, 10), date(2026, 5, 10), "UTC"))
    assert page["outcomes"]["qualified"] == 1 and page["outcomes"]["transferred"] == 1
    assert sum(page["outcomes"].values()) == page["totals"]["calls"] == 2


def test_params_defaults_and_an_empty_form():
    today = date(2026, 3, 1)
    assert analytics_params({}, "America/Chicago", today=today) == AnalyticsParams(
        date(2026, 1, 31), today, "America/Chicago"
    )
    form = {"since": "", "until": "", "tz": ""}
    assert analytics_params(form, "UTC", today=today, drop_empty=True) == AnalyticsParams(
        date(2026, 1, 31), today, "UTC"
    )


# ---- the dashboard ----------------------------------------------------------------------------------
def sign_in(client) -> None:
    page = client.get("/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post("/login", data={"token": TOKEN, "csrf_token": csrf}).status_code == 302


def figure(html: str, name: str) -> str:
    return re.search(rf'data-figure="{name}">([^<]*)<', html).group(1)


def test_the_page_needs_sign_in(client):
    response = client.get("/analytics")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")
    response = client.get("/analytics.json")
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "signed_out"


def test_the_page_renders_the_figures_without_a_script(client, known):
    sign_in(client)
    response = client.get("/analytics?since=2026-11-20&until=2026-11-23&tz=America/Chicago")
    assert response.status_code == 200
    html = response.text
    assert figure(html, "calls") == "5"
    assert figure(html, "conversations") == "4"
    assert figure(html, "qualified") == "2"
    assert figure(html, "qualification_rate") == "50.0%"
    assert figure(html, "average_duration") == "3m 34s"
    assert figure(html, "p90_duration") == "10m 00s"
    assert figure(html, "cost_per_call") == "$0.75"
    assert figure(html, "cost_per_lead") == "$1.50"
    assert figure(html, "cost_total") == "$3.00"
    assert figure(html, "calls_without_cost") == "1"
    assert figure(html, "missing_calls") == "1"
    assert figure(html, "missing_share") == "20.0%"
    assert figure(html, "range") == "Nov 20 \N{EN DASH} Nov 23, 2026"
    assert 'data-outcome="qualified"' in html and ">Not qualified<" in html
    assert html.count('<time datetime="2026-11-2') == 4  # the table of days
    assert 'value="America/Chicago" selected' in html
    assert 'aria-current="page">Analytics<' in html  # the nav
    assert "vendor/uplot/uPlot.iife.min.js" in html and "cdn" not in html.lower()
    assert 'data-url="/analytics.json?since=2026-11-20&amp;until=2026-11-23&amp;tz=America/Chicago"' in html


def test_the_nav_links_to_analytics_from_the_overview(client):
    sign_in(client)
    html = client.get("/").text
    assert 'href="/analytics"' in html and 'aria-current="page">Overview<' in html


def test_the_pages_json_is_the_apis_figures_with_their_texts(client, known):
    sign_in(client)
    query = "since=2026-11-20&until=2026-11-23&tz=America/Chicago"
    data = client.get(f"/analytics.json?{query}").get_json()
    assert data["page"] == get(client, query).get_json()
    assert data["display"]["qualification_rate"] == "50.0%"
    assert [o["key"] for o in data["outcomes"]][:3] == ["qualified", "callback", "not_qualified"]
    assert data["outcomes"][0]["label"] == "Qualified" and data["outcomes"][0]["share_display"] == "40.0%"
    bad = client.get("/analytics.json?since=2026-13-24&until=2026-11-20")
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_date"


def test_a_bad_date_is_named_and_the_last_30_days_shown(client):
    sign_in(client)
    html = client.get("/analytics?since=2026-11-31&until=2026-11-20&tz=America/Denver").text
    assert "since must be a date such as 2026-11-22" in html and "Showing the last 30 days." in html
    assert 'value="America/Denver" selected' in html
    html = client.get("/analytics?tz=%3Cscript%3Ealert(1)%3C/script%3E").text
    assert "<script>alert(1)</script>" not in html and "IANA time zone" in html


def test_an_empty_range_says_so(client):
    sign_in(client)
    html = client.get("/analytics?since=2025-01-01&until=2025-01-31").text
    assert "No call ended in this range." in html
    assert figure(html, "qualification_rate") == "\N{EN DASH}" and figure(html, "cost_per_lead") == "\N{EN DASH}"


def test_the_viewers_browser_zone_is_offered(client):
    sign_in(client)
    client.set_cookie("tz", "Europe/Lisbon")
    html = client.get("/analytics").text
    assert 'value="Europe/Lisbon"' in html and "your browser" in html
    assert 'value="America/New_York" selected' in html  # the default stays the business's zone
    client.set_cookie("tz", "<b>bad</b>")
    assert "&lt;b&gt;" not in client.get("/analytics").text  # an unknown zone is not offered at all


def test_the_vendored_chart_library_is_pinned_and_licensed():
    vendor = ROOT / "dashboard" / "static" / "vendor" / "uplot"
    assert (vendor / "uPlot.iife.min.js").read_text().startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    assert "MIT License" in (vendor / "LICENSE").read_text()
    assert "1.6.32" in (vendor / "README.md").read_text()


# ---- the bench ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_bench_runs_in_quick_mode():
    done = subprocess.run(
        [sys.executable, "bench/analytics_bench.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(r"^target: p99 < 1000 ms .* at 1,000,000 records: (met|NOT met|not measured .*)$", out, re.M), out
    for label in ("30 days", "365 days"):
        assert re.search(rf"^\s*\d+\s+{label}\b.*\d+\.\d+x$", out, re.M), out


def test_a_misconfigured_business_time_zone_is_said_not_a_crash(tmp_path):
    from backend.api_server import create_app
    from backend.settings import Settings

    settings = Settings.from_env({"DATA_DIR": str(tmp_path), "BUSINESS_TIMEZONE": "Mars/Base"}, dotenv=False)
    app = create_app({"SETTINGS": settings, "API_TOKENS": ["t"], "TESTING": True})
    response = app.test_client().get("/api/analytics", headers={"Authorization": "Bearer t"})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "invalid_business_timezone"
    ok = app.test_client().get("/api/analytics?tz=UTC", headers={"Authorization": "Bearer t"})
    assert ok.status_code == 200


def test_the_page_says_when_the_business_time_zone_is_misconfigured(tmp_path):
    from backend.api_server import create_app
    from backend.settings import Settings
    from tests.test_dashboard import sign_in

    settings = Settings.from_env({"DATA_DIR": str(tmp_path), "BUSINESS_TIMEZONE": "Mars/Base"}, dotenv=False)
    client = create_app({"SETTINGS": settings, "API_TOKENS": ["t0ken-for-tests"]}).test_client()
    assert sign_in(client, "t0ken-for-tests").status_code == 302
    page = client.get("/analytics")
    assert page.status_code == 200
    assert "BUSINESS_TIMEZONE is not an IANA time zone name" in page.text and "in UTC" in page.text
