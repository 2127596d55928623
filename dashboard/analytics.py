"""The analytics page's data: the API's `analytics_page` (the same figures as `GET
/api/analytics`, from the store's index alone) with the texts the page shows them with, the
date-range form's choices and quick ranges."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from backend.api.data import OUTCOMES, AnalyticsParams, BackendAgent, analytics_page, analytics_params
from backend.api.errors import ApiError
from dashboard import formatting as fmt

# The zones offered in the form (US calling: the business's own and the viewer's are added).
ZONES = {
    "America/New_York": "Eastern",
    "America/Chicago": "Central",
    "America/Denver": "Mountain",
    "America/Phoenix": "Arizona",
    "America/Los_Angeles": "Pacific",
    "America/Anchorage": "Alaska",
    "Pacific/Honolulu": "Hawaii",
    "UTC": "UTC",
}
QUICK_RANGES = (("Last 7 days", 7), ("Last 30 days", 30), ("Last 90 days", 90), ("Last 365 days", 365))
OUTCOME_COLOURS = {  # the badges' colours (dashboard.css)
    "qualified": "#1e7b45",
    "callback": "#52a872",
    "not_qualified": "#b3261e",
    "not_interested": "#d9695f",
    "do_not_call": "#7a1712",
    "no_contact": "#c98a1b",
    "incomplete": "#e0b25c",
    "completed": "#7f8c8d",
}


def read_params(args: Mapping, business_tz: str) -> tuple[AnalyticsParams, str | None]:
    """The page's range from its URL; a bad value is named and the last 30 days shown instead
    (in the asked time zone when that part is good)."""
    try:
        return analytics_params(args, business_tz, drop_empty=True), None
    except ApiError as problem:
        message = problem.message
    try:
        tz = {"tz": args["tz"]} if args.get("tz") else {}
        return analytics_params(tz, business_tz), message + " Showing the last 30 days."
    except ApiError:
        pass
    try:
        return analytics_params({}, business_tz), message + " Showing the last 30 days."
    except ApiError:  # BUSINESS_TIMEZONE itself is no time zone: say so, count in UTC
        return analytics_params({}, "UTC"), message + " Showing the last 30 days in UTC."


def analytics(backend: BackendAgent, params: AnalyticsParams) -> dict[str, Any]:
    """`{"page": analytics_page(...), "display": {figure: text}, "outcomes": [...]}`: the
    figures, the texts the cards show (the script puts them in place with textContent) and the
    outcomes with their labels, shares and colours."""
    page = analytics_page(backend, params)
    totals, duration, cost, missing = page["totals"], page["duration"], page["cost"], page["missing_disclosures"]
    calls = totals["calls"]
    display = {
        "calls": fmt.count(calls),
        "conversations": fmt.count(totals["conversations"]),
        "qualified": fmt.count(totals["qualified"]),
        "qualification_rate": fmt.percent(totals["qualification_rate"]),
        "average_duration": fmt.duration(duration["average_seconds"]),
        "p90_duration": fmt.duration(duration["p90_seconds"]),
        "cost_total": fmt.cost(cost["total_usd"]) if cost["calls_with_cost"] else fmt.NONE,
        "cost_per_call": fmt.cost(cost["per_call_usd"]),
        "cost_per_lead": fmt.cost(cost["per_qualified_lead_usd"]),
        "calls_with_cost": fmt.count(cost["calls_with_cost"]),
        "calls_without_cost": fmt.count(cost["calls_without_cost"]),
        "missing_calls": fmt.count(missing["calls"]),
        "missing_share": fmt.percent(missing["share"]),
        "range": range_text(params),
    }
    outcomes = [
        {
            "key": key,
            "label": fmt.OUTCOME_LABELS.get(key, key),
            "count": n,
            "count_display": fmt.count(n),
            "share_display": fmt.percent(n / calls if calls else None),
            "colour": OUTCOME_COLOURS.get(key, "#7f8c8d"),
        }
        for key, n in page["outcomes"].items()
        if key in OUTCOMES or n
    ]
    days = [
        {
            **d,
            "date_display": _day_text(date.fromisoformat(d["date"])),
            "average_display": fmt.duration(d["average_duration_seconds"]),
            "p90_display": fmt.duration(d["p90_duration_seconds"]),
        }
        for d in page["per_day"]
    ]
    return {"page": page, "display": display, "outcomes": outcomes, "days": days}


def range_text(p: AnalyticsParams) -> str:
    """`Nov 3 - Dec 2, 2026` (with an en dash; both years across a year; one day alone)."""
    if p.since == p.until:
        return _day_text(p.since, year=True)
    first = _day_text(p.since, year=p.since.year != p.until.year)
    return f"{first} \N{EN DASH} {_day_text(p.until, year=True)}"


def _day_text(day: date, *, year: bool = False) -> str:
    return f"{day:%b} {day.day}" + (f", {day.year}" if year else "")


def zone_choices(current: str, business_tz: str, browser_tz: str | None) -> list[tuple[str, str]]:
    """(value, label) of the form's time zones: the business's first, the viewer's browser's,
    the US zones and UTC, and the one shown now."""
    labels: dict[str, str] = {}

    def offer(name: str, note: str = "") -> None:
        base = f"{ZONES[name]} ({name})" if name in ZONES and name != "UTC" else name
        labels.setdefault(name, base + note)

    offer(business_tz, " \N{EN DASH} business")
    if browser_tz and _valid_zone(browser_tz):
        offer(browser_tz, " \N{EN DASH} your browser")
    for name in ZONES:
        offer(name)
    offer(current)
    return list(labels.items())


def _valid_zone(name: str) -> bool:
    try:
        analytics_params({"tz": name}, "UTC", today=date(2026, 1, 1))
    except ApiError:
        return False
    return True


def quick_ranges(tz: str) -> list[tuple[str, dict[str, str]]]:
    """(label, URL query) of the last 7, 30, 90 and 365 days up to today in `tz`."""
    today = datetime.now(ZoneInfo(tz)).date()
    out = []
    for label, days in QUICK_RANGES:
        since = today - timedelta(days=days - 1)
        out.append((label, {"since": since.isoformat(), "until": today.isoformat(), "tz": tz}))
    return out
