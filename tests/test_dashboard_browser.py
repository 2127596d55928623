"""The dashboard in a real browser: headless Chromium (Debian's package) driven by Playwright,
against the app under a real gunicorn on a loopback port, with records written by another
process. A record must appear within 2 s without a reload and without moving what the user
is reading; captured text must never run as code. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.postgres import store_env
from tests.servers import free_port, wait_until_up

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.store_per_module,  # one server per module: on each store in turn
]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TOKEN = "browser-test-token"
XSS = '<img src=x onerror=alert(1)> <script>alert("boom")</script>'
CALLER = "+15551230001"
OTHER = "+15551230002"

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)
sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

WRITER = """
import json, sys, time
from backend.backend_agent import BackendAgent
agent = BackendAgent(sys.argv[1])
for item in json.loads(sys.argv[2]):
    if item.get("end"):
        result = agent.end_call(item["end"], item["caller_id"], session_id=item["session_id"])
    elif item.get("start"):
        result = agent.start_session(**item["start"])
    elif item.get("turn"):
        result = agent.save_turn(**item["turn"])
    elif item.get("disclosures"):
        result = agent.record_disclosures(item["session_id"], item["disclosures"])
    else:
        result = agent.share_information(**item)
    assert result["success"], result
print(time.time())
"""


def write(data_dir: Path, *items: dict) -> float:
    """Write through the backend functions in a separate process; returns when it wrote."""
    done = subprocess.run(
        [sys.executable, "-c", WRITER, str(data_dir), json.dumps(items)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "STORE_FSYNC": "0"},
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def fact(text: str, category: str = "debt_info", caller: str = CALLER, session: str = "call-1", **fields):
    return {
        "information": text,
        "category": category,
        "caller_id": caller,
        "session_id": session,
        "fields": fields or None,
    }


def said(speaker: str, text: str, start_s: float, end_s: float, session: str = "call-t", **extra) -> dict:
    """A transcript turn, saved as the agent saves it (BackendAgent.save_turn)."""
    turn = {"session_id": session, "speaker": speaker, "text": text, "start_s": start_s, "end_s": end_s}
    return {"turn": {**turn, **extra}}


@pytest.fixture(scope="module")
def server(tmp_path_factory, _module_store):  # one per store kind: _module_store set STORE_URL
    data_dir = tmp_path_factory.mktemp("dashboard-data")
    write(
        data_dir,
        fact("Caller's name is Pat Doe", "contact_details", full_name="Pat Doe"),
        fact("Has $18,000 of credit card debt with Chase", debt_type="credit_card", amount_usd=18000, creditor="Chase"),
        fact("Disclosures given", "conversation_flow", disclosures=["business_name", "ai_assistant", "call_recorded"]),
        fact("Lives in Ohio, employed", "personal_info", state="OH", employment_status="employed"),
        fact("Owes $3,000 in medical bills", caller=OTHER, session="call-2", debt_type="medical", amount_usd=3000),
        {"end": "customer_not_qualified", "caller_id": OTHER, "session_id": "call-2"},
    )
    port = free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "API_TOKENS": TOKEN,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "2",
        "STORE_FSYNC": "0",
    }
    command = [sys.executable, "-m", "gunicorn", "--no-control-socket", "backend.api_server:create_app()"]
    with open(data_dir / "gunicorn.log", "w") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_up(proc, base, data_dir / "gunicorn.log")
            yield {"base": base, "data_dir": data_dir}
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
    """A signed-in page that fails the test on any dialog (alert) or script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="America/Chicago")
    page = context.new_page()
    page.problems = []
    page.on("dialog", lambda d: (page.problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.on("pageerror", lambda e: page.problems.append(f"error: {e}"))
    page.goto(server["base"] + "/login")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(server["base"] + "/")
    yield page
    problems = page.problems
    context.close()
    assert problems == []


def shoot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def arrives_within(page, selector: str, written_at: float, seconds: float = 2.0) -> None:
    left_ms = (written_at + seconds - time.time()) * 1000
    assert left_ms > 0, "the writer process took too long to report"
    page.wait_for_selector(selector, timeout=left_ms)


def test_pages_without_login_redirect_to_it(browser, server):
    context = browser.new_context()
    page = context.new_page()
    page.goto(server["base"] + "/sessions/call-1")
    assert page.url.startswith(server["base"] + "/login?next=")
    page.fill("#token", "wrong")
    page.click("button[type=submit]")
    assert "not valid" in page.text_content("main")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(server["base"] + "/sessions/call-1")
    context.close()


def test_overview_after_login(page):
    page.wait_for_selector("#live-status.ok")
    assert page.text_content("[data-count=total_information]").strip() == "5"
    assert "+1 (555) 123-0001" in page.text_content("#active-body")
    time_text = page.text_content("#feed time")
    assert "UTC" not in time_text and time_text.strip()  # localised by the script
    shoot(page, "overview.png")
    page.set_viewport_size({"width": 768, "height": 1024})
    shoot(page, "overview-tablet.png")


def test_live_record_appears_without_losing_scroll_filters_or_open_row(page, server):
    page.set_viewport_size({"width": 1280, "height": 500})
    page.locator("#feed details summary").first.click()  # open a row
    page.fill("#f-q", "half-typed")  # a filter being typed, not yet applied
    page.evaluate("document.getElementById('calls-title').scrollIntoView({block: 'start'})")
    page.mouse.wheel(0, -60)  # reading the call log; the feed's newest rows are above the screen
    page.wait_for_timeout(300)
    assert page.locator("#feed").bounding_box()["y"] < 0
    anchor = page.locator("#calls-title")
    top_before = anchor.bounding_box()["y"]
    scroll_before = page.evaluate("window.scrollY")
    written = write(
        server["data_dir"], fact("Also has a $2,500 personal loan", debt_type="personal_loan", amount_usd=2500)
    )
    arrives_within(page, "#feed .rec-text:text('Also has a $2,500 personal loan')", written)
    page.wait_for_timeout(100)
    assert abs(anchor.bounding_box()["y"] - top_before) < 2
    assert page.evaluate("window.scrollY") > scroll_before  # compensated for the new row above
    assert page.locator("#feed details[open]").count() == 1
    assert page.input_value("#f-q") == "half-typed"
    assert "Also has a $2,500" in page.text_content("#active-body")  # newest fact of the active call


def test_hostile_text_shows_as_text_and_runs_nothing(page, server):
    written = write(server["data_dir"], fact(XSS, "contact_details", session="call-x", caller="+15551230003"))
    arrives_within(page, "#feed .rec-text:has-text('onerror=alert(1)')", written)
    assert page.text_content("#feed .rec-text") == XSS  # added live, with textContent
    assert page.locator("#feed img, #feed script").count() == 0
    page.reload()
    assert page.text_content("#feed .rec-text") == XSS  # rendered by the server, escaped
    page.goto(server["base"] + "/sessions/call-x")
    assert page.text_content("#timeline .rec-text") == XSS
    assert page.locator("img[src=x]").count() == 0
    assert page.evaluate("document.querySelectorAll('main script').length") == 0
    page.wait_for_timeout(500)  # give a planted handler the chance to fire; the fixture checks


def disclosure_states(page) -> dict[str, str]:
    items = page.locator("#disclosures li")
    return {
        items.nth(i).get_attribute("data-key"): f"{items.nth(i).get_attribute('class')}: "
        + items.nth(i).locator(".state").text_content()
        for i in range(items.count())
    }


def test_session_page_shows_disclosures_given_and_debt_types(page, server):
    page.goto(server["base"] + "/sessions/call-1")
    assert disclosure_states(page) == {
        "business_name": "given: given",
        "ai_assistant": "given: given",
        "call_recorded": "given: given",
        "callback_number": "missing: not recorded",
    }
    assert "Credit card" in page.locator("#debt-items td:first-child").all_text_contents()
    written = write(
        server["data_dir"],
        fact("Gave the callback number", "conversation_flow", stage="opening", disclosures=["callback_number"]),
    )
    arrives_within(page, "#disclosures li[data-key=callback_number].given", written)
    assert set(disclosure_states(page).values()) == {"given: given"}
    assert page.text_content("#disclosures li[data-key=callback_number] .mark") == "\N{CHECK MARK}"


def test_session_page_shows_its_timeline_live(page, server):
    page.goto(server["base"] + "/sessions/call-1")
    texts = page.locator("#timeline .rec-text").all_text_contents()
    assert texts[:4] == [
        "Caller's name is Pat Doe",
        "Has $18,000 of credit card debt with Chase",
        "Disclosures given",
        "Lives in Ohio, employed",
    ]
    assert "$18,000" in page.text_content("#debt-items")  # one of the debts, summed in #debt-total
    written = write(server["data_dir"], fact("Says the hardship began in March", "personal_info", hardship="job loss"))
    arrives_within(page, "#timeline .rec-text:text('Says the hardship began in March')", written)
    group = page.locator(".group[data-category=personal_info]")
    assert "Says the hardship began in March" in group.text_content()
    written = write(
        server["data_dir"], {"end": "customer_qualified_transfer", "caller_id": CALLER, "session_id": "call-1"}
    )
    arrives_within(page, "#call-log:not([hidden])", written)
    assert page.text_content("#call-outcome") == "Qualified"
    shoot(page, "session.png")


def test_filters_narrow_the_list_and_survive_a_reload(page, server):
    page.fill("#f-caller", "(555) 123-0002")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**/?caller=*")

    def check():
        texts = page.locator("#feed .rec-text").all_text_contents()
        assert texts == ["Owes $3,000 in medical bills"]
        assert page.locator("#calls-body tr").count() == 1
        assert page.input_value("#f-caller") == "(555) 123-0002"

    check()
    page.reload()
    check()
    written = write(
        server["data_dir"],
        fact("A fact from someone else", caller=CALLER, session="call-9"),
        fact("Mentions a second card", caller=OTHER, session="call-3"),
    )
    arrives_within(page, "#feed .rec-text:text('Mentions a second card')", written)
    assert "A fact from someone else" not in page.text_content("#feed")
    page.select_option("#f-category", "contact_details")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**category=contact_details**")
    assert page.locator("#feed .rec").count() == 0
    assert "Nothing matches these filters" in page.text_content("#feed-empty")


def test_notice_when_the_server_cannot_be_reached(page):
    page.wait_for_selector("#live-status.ok")
    page.route("**/live?*", lambda route: route.abort())
    page.wait_for_selector("#offline:not([hidden])", timeout=5000)
    assert "Cannot reach the server" in page.text_content("#offline")
    assert "Last updated" in page.text_content("#live-text")
    page.unroute("**/live?*")
    page.wait_for_selector("#offline[hidden]", state="attached", timeout=10000)


def test_polls_slow_down_while_the_tab_is_hidden(page):
    polls: list[float] = []
    page.on("request", lambda r: polls.append(time.monotonic()) if "/live?" in r.url else None)
    page.wait_for_timeout(3000)
    visible = len(polls)
    page.evaluate(
        """() => { Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});
                   document.dispatchEvent(new Event('visibilitychange')); }"""
    )
    page.wait_for_timeout(1500)
    polls.clear()
    page.wait_for_timeout(4000)
    assert visible >= 2
    assert len(polls) <= 1


TRANSCRIBED = "+15551230004"
SHARE = {
    "name": "share_information",
    "call_id": "c1",
    "arguments": {"category": "debt_info", "information": "Owes $12,000 on a Chase card"},
    "result": "Saved under debt_info.",
    "is_error": False,
}
NO_CALLBACK_NUMBER = {
    "required": ["business_name", "ai_assistant", "call_recorded", "callback_number"],
    "heard": {"business_name": 0.8, "ai_assistant": 0.8, "call_recorded": 0.8},
    "missing": ["callback_number"],
    "agent_turns_checked": 2,
    "flagged": True,
}


def bubbles(page) -> list[str]:
    items = page.locator("#transcript > li")
    return [" ".join(items.nth(i).inner_text().split()) for i in range(items.count())]


def test_session_page_shows_the_transcript_as_a_conversation_that_grows_live(page, server):
    data_dir = server["data_dir"]
    write(
        data_dir,
        {"start": {"session_id": "call-t", "caller_id": TRANSCRIBED}},
        said("agent", "Hi, this is Acme Debt Help. I'm an AI assistant, and this call is recorded.", 0.8, 6.1),
        said("caller", "Hi. I've got about twelve thousand on a Chase card.", 7.4, 10.2),
        fact("Owes $12,000 on a Chase card", caller=TRANSCRIBED, session="call-t", debt_type="credit_card"),
        said("tool", "", 10.5, 10.6, tool=SHARE),
        said("agent", "Thanks, I've noted the Chase card. Is that the only", 11.0, 13.2, interrupted=True),
        {"disclosures": NO_CALLBACK_NUMBER, "session_id": "call-t"},
    )
    page.goto(server["base"] + "/sessions/call-t")
    assert bubbles(page) == [
        "Agent 0:00 Hi, this is Acme Debt Help. I'm an AI assistant, and this call is recorded.",
        "Caller 0:07 Hi. I've got about twelve thousand on a Chase card.",
        "Saved: Debt: Owes $12,000 on a Chase card",
        "0:10 share_information category: debt_info, information: Owes $12,000 on a Chase card"
        " \N{RIGHTWARDS ARROW} Saved under debt_info.",
        "Agent 0:11 Thanks, I've noted the Chase card. Is that the only (interrupted)",
    ]
    box = page.locator("#transcript").bounding_box()
    caller = page.locator("#transcript .turn-caller").first.bounding_box()
    agent = page.locator("#transcript .turn-agent").first.bounding_box()
    assert caller["x"] - box["x"] < 20 and box["x"] + box["width"] - (agent["x"] + agent["width"]) < 20  # two sides
    assert page.text_content("#disclosure-badge") == "Missing disclosure: Callback number"
    assert "Callback number: not heard" in page.inner_text("#heard-disclosures")
    assert "Business name: heard at 0:00" in page.inner_text("#heard-disclosures")

    written = write(data_dir, said("caller", "Yes, that's all of it. " + XSS, 14.0, 16.5))
    arrives_within(page, "#transcript .turn-caller .turn-text:has-text('onerror=alert(1)')", written, seconds=3)
    shown = bubbles(page)
    replays: list[str] = []

    def from_the_start(route):  # every poll now answers the whole call again: nothing may repeat
        replays.append(route.request.url)
        route.continue_(url=re.sub(r"after_seq=\d+", "after_seq=0", route.request.url))

    page.route("**/live?*", from_the_start)
    page.wait_for_timeout(2500)
    page.unroute("**/live?*")
    assert len(replays) >= 2 and bubbles(page) == shown
    new = page.locator("#transcript .turn-caller").last
    assert new.locator(".turn-text").text_content() == "Yes, that's all of it. " + XSS  # textContent, not HTML
    assert page.locator("#transcript .turn-text:has-text('all of it')").count() == 1
    assert bubbles(page)[-1].startswith("Caller 0:14 Yes, that's all of it.")
    assert page.locator("#transcript img, #transcript script").count() == 0
    page.screenshot(path="/tmp/transcript.png", full_page=True)
    shoot(page, "transcript.png")


def test_the_missing_disclosure_filter_shows_only_flagged_calls_with_their_badge(page, server):
    page.wait_for_selector("#live-status.ok")
    written = write(
        server["data_dir"],
        {"start": {"session_id": "call-f", "caller_id": "+15551230005"}},
        {"disclosures": NO_CALLBACK_NUMBER, "session_id": "call-f"},
    )
    arrives_within(page, "#active-body tr[data-sid=call-f] .flag:not([hidden])", written)  # live, no reload
    flagged_row = page.locator("#active-body tr[data-sid=call-f]")
    assert flagged_row.locator(".flag").text_content() == "Missing disclosure: Callback number"
    unflagged = page.locator("#active-body tr:has(.flag[hidden])").evaluate_all("rows => rows.map(r => r.dataset.sid)")
    assert unflagged  # calls in progress whose disclosures were not checked (or all heard)
    page.check("#f-missing-disclosure")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**missing_disclosure=1**")
    sids = page.locator("#active-body tr").evaluate_all("rows => rows.map(r => r.dataset.sid)")
    assert "call-f" in sids and not set(unflagged) & set(sids)
    assert all(text.startswith("Missing disclosure") for text in page.locator("#active-body .flag").all_text_contents())
    assert page.is_checked("#f-missing-disclosure")
    written = write(server["data_dir"], {"end": "caller_hung_up", "caller_id": "+15551230005", "session_id": "call-f"})
    arrives_within(page, "#calls-body tr[data-sid=call-f] .flag:not([hidden])", written)  # the ended call, live
    assert page.text_content("#calls-body tr[data-sid=call-f] .flag") == "Missing disclosure: Callback number"
    assert page.locator("#active-body tr[data-sid=call-f]").count() == 0
    shoot(page, "overview-missing-disclosure.png")


def test_the_calls_summary_and_lead_arrive_on_its_page_live(page, server, monkeypatch):
    """The post-call summary is written by a worker after the call ends; a qualifier who has the
    call's page open sees it arrive, with the lead and both qualifications, without a reload."""
    from backend.backend_agent import BackendAgent
    from backend.settings import Settings
    from tests.fakes.gemini_rest import FakeGeminiRest
    from tests.test_summary import REPLY, ended_call

    rest = FakeGeminiRest()
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", rest.base_url)
    env = {**store_env(), "DATA_DIR": str(server["data_dir"]), "GOOGLE_API_KEY": "k", "STORE_FSYNC": "0"}
    worker = BackendAgent(settings=Settings.from_env(env, dotenv=False))
    try:
        worker.run_jobs()  # the module's earlier calls' summaries first: this test scripts only its own
        ended_call(worker, session_id="call-summary", debt=4000)
        page.goto(server["base"] + "/sessions/call-summary")
        assert "Waiting for the summary" in page.inner_text("#after-call")
        rest.say({**REPLY, "summary": f"Pat owes $4,000. {XSS}"})
        worker.run_jobs()
        written = time.time()
        arrives_within(page, "#summary-text", written, seconds=4.0)
        box = page.inner_text("#after-call")
        assert XSS in box  # as text: the page's dialog and error checks would catch it running
        assert "Not qualified" in box and "Qualified" in box and "disagree" in box
        assert "Transfer to a specialist" in box  # the lead's next step
        shoot(page, "after-call.png")
    finally:
        worker.close()
        rest.close()
