"""The analytics page in a real browser: headless Chromium (Debian's package) driven by
Playwright, against the app under a real gunicorn on a loopback port, over a store of a month
of calls. The charts must be drawn by the vendored uPlot (canvases in the page, nothing fetched
from elsewhere, no script error, nothing the Content Security Policy blocks) and the cards must
show the API's figures. Screenshot: /tmp/analytics.png (and tests/artifacts/)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests

from tests.postgres import configured_store
from tests.test_analytics import ended_call
from tests.test_dashboard_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ROOT,
    free_port,
    wait_until_up,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.store_per_module,  # one server per module: on each store in turn
]

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)
sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

TOKEN = "analytics-browser-token"
SCREENSHOT = Path("/tmp/analytics.png")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
ZONE = ZoneInfo("America/New_York")
REASONS = [  # roughly how a month of qualification calls ends
    ("customer_qualified_transfer", 22),
    ("customer_qualified_callback", 8),
    ("customer_not_qualified", 25),
    ("customer_not_interested", 15),
    ("do_not_call_request", 3),
    ("voicemail", 14),
    ("wrong_number", 3),
    ("caller_hung_up", 9),
    ("completed", 1),
]


def fill_month(data_dir: Path) -> int:
    """About 300 calls over the last 30 days (fewer at weekends), most with a cost."""
    rng = random.Random(5)
    store = configured_store(data_dir, fsync=False)  # STORE_URL's database on PostgreSQL
    today = datetime.now(ZONE).replace(hour=0, minute=0, second=0, microsecond=0)
    n = 0
    for back in range(29, -1, -1):
        day = today - timedelta(days=back)
        for _ in range(rng.randint(2, 6) if day.weekday() >= 5 else rng.randint(8, 16)):
            when = day + timedelta(hours=rng.uniform(8, 20.5))
            if when > datetime.now(UTC):
                continue
            reason = rng.choices([r for r, _ in REASONS], [w for _, w in REASONS])[0]
            long_call = reason.startswith("customer_qualified") or reason == "customer_not_qualified"
            duration = rng.uniform(240, 900) if long_call else rng.uniform(15, 180)
            cost = None if rng.random() < 0.08 else round(0.002 * duration + rng.uniform(0.01, 0.05), 4)
            ended_call(store, when, reason, round(duration, 1), cost=cost, missing=rng.random() < 0.04)
            n += 1
    store.close()
    return n


@pytest.fixture(scope="module")
def server(tmp_path_factory, _module_store):  # one per store kind: _module_store set STORE_URL
    data_dir = tmp_path_factory.mktemp("analytics-data")
    fill_month(data_dir)
    port = free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "API_TOKENS": TOKEN,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "1",
        "STORE_FSYNC": "0",
        "BUSINESS_TIMEZONE": "America/New_York",
    }
    command = [sys.executable, "-m", "gunicorn", "--no-control-socket", "backend.api_server:create_app()"]
    with open(data_dir / "gunicorn.log", "w") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_up(proc, base, data_dir / "gunicorn.log")
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    """A signed-in page that fails the test on a dialog, a script error, a console error (a
    blocked script or style included) or a request that leaves the server."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="America/Chicago")
    page = context.new_page()
    page.problems = []
    page.on("dialog", lambda d: (page.problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.on("pageerror", lambda e: page.problems.append(f"error: {e}"))
    page.on("console", lambda m: m.type == "error" and page.problems.append(f"console: {m.text}"))
    page.on("request", lambda r: r.url.startswith(server) or page.problems.append(f"off-site: {r.url}"))
    page.goto(server + "/login?next=/analytics")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(server + "/analytics")
    yield page
    problems = page.problems
    context.close()
    assert problems == []


def api(server: str, query: str = "") -> dict:
    response = requests.get(f"{server}/api/analytics?{query}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    response.raise_for_status()
    return response.json()


def test_the_charts_are_drawn_and_the_cards_show_the_apis_figures(page, server):
    page.wait_for_selector("#analytics[data-drawn='3']", state="attached", timeout=10_000)
    for chart in ("#chart-days", "#chart-outcomes", "#chart-duration"):
        assert page.locator(f"{chart} .uplot canvas").count() == 1, chart
        box = page.locator(f"{chart} canvas").bounding_box()
        assert box["width"] > 300 and box["height"] > 150
    assert page.locator("#chart-days .u-legend").count() == 1
    figures = api(server)  # the page's default: the last 30 days in the business's zone
    totals = figures["totals"]
    assert page.text_content("[data-figure=calls]") == f"{totals['calls']:,}"
    assert totals["calls"] > 100
    rate = page.text_content("[data-figure=qualification_rate]")
    assert rate == f"{totals['qualification_rate'] * 100:.1f}%"
    assert page.text_content("[data-figure=missing_calls]") == str(figures["missing_disclosures"]["calls"])
    lead = figures["cost"]["per_qualified_lead_usd"]
    assert page.text_content("[data-figure=cost_per_lead]") == f"${lead:,.2f}"
    # the bars are there: the chart's canvas is not blank where the newest days' bars stand
    painted = page.evaluate(
        """() => {
        const c = document.querySelector('#chart-days canvas');
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let coloured = 0;
        for (let i = 0; i < px.length; i += 4) {
            if (px[i + 3] > 0 && !(px[i] > 240 && px[i + 1] > 240 && px[i + 2] > 240)) coloured++;
        }
        return coloured;
    }"""
    )
    assert painted > 2000
    page.wait_for_timeout(200)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    shutil.copy(SCREENSHOT, ARTIFACTS / "analytics.png")
    page.set_viewport_size({"width": 768, "height": 1024})
    page.wait_for_timeout(300)  # the charts follow their cards' width
    assert page.locator("#chart-outcomes canvas").bounding_box()["width"] < 740
    page.screenshot(path=str(ARTIFACTS / "analytics-tablet.png"), full_page=True)


def test_a_quick_range_and_a_time_zone_redraw_the_page(page, server):
    page.wait_for_selector("#analytics[data-drawn='3']", state="attached")
    page.click("text=Last 7 days")
    page.wait_for_selector("#analytics[data-drawn='3']", state="attached")
    query = urlsplit(page.url).query
    assert parse_qs(query)["tz"] == ["America/New_York"]
    week = api(server, query)
    assert week["range"]["days"] == 7
    assert page.text_content("[data-figure=calls]") == f"{week['totals']['calls']:,}"
    page.select_option("#a-tz", "America/Los_Angeles")
    page.click("#range-form button[type=submit]")
    page.wait_for_url(lambda url: parse_qs(urlsplit(url).query).get("tz") == ["America/Los_Angeles"])
    page.wait_for_selector("#analytics[data-drawn='3']", state="attached")
    assert "America/Los_Angeles" in page.text_content("#range-text")
    page.click("text=Last 365 days")
    page.wait_for_selector("#analytics[data-drawn='3']", state="attached")
    assert page.text_content("[data-figure=calls]") == f"{api(server)['totals']['calls']:,}"  # all in the last 30


def test_an_empty_range_draws_no_chart_and_says_so(page, server):
    page.goto(server + "/analytics?since=2020-01-01&until=2020-01-31")
    page.wait_for_selector("#analytics[data-drawn]", state="attached")
    assert page.locator(".uplot").count() == 0
    assert page.is_visible("text=No call ended in this range.")
    assert page.text_content("[data-figure=qualification_rate]") == "\N{EN DASH}"
