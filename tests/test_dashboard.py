"""The dashboard through Flask's test client: every page needs a signed-in session, every POST
a CSRF token; captured text is escaped; filters live in the URL; live updates carry only what
changed; the CSV export is the API's format over the current view."""

from __future__ import annotations

import ast
import csv
import io
import json
import re
import time
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from backend.api_server import create_app
from backend.calls.numbers import caller_filter_number
from backend.store import MemoryStore
from backend.store.records import DISCLOSURES, iso
from dashboard import formatting, views

TOKEN = "dash-token-123"
XSS = "<img src=x onerror=alert(1)> and <script>alert(2)</script>"
CALLER = "+15551234567"
OTHER = "+15557654321"


@pytest.fixture
def store():
    return MemoryStore()


@pytest.fixture
def app(store, tmp_path):
    return create_app({"DATA_DIR": str(tmp_path / "data"), "API_TOKENS": [TOKEN], "TESTING": True, "STORE": store})


@pytest.fixture
def client(app):
    return app.test_client()


def csrf_from(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(client, token: str = TOKEN, next_url: str = ""):
    page = client.get("/login")
    return client.post("/login", data={"token": token, "csrf_token": csrf_from(page.text), "next": next_url})


@pytest.fixture
def signed_in(client):
    assert sign_in(client).status_code == 302
    return client


def add(store, text, category="debt_info", caller=CALLER, session="s1", fields=None):
    return store.add_information(
        information=text, category=category, caller_id=caller, session_id=session, fields=fields
    )[0]


# ---- sign-in, session cookie, CSRF, headers --------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/sessions/s1", "/export.csv", "/?caller=555&q=debt"])
def test_pages_redirect_to_login_when_signed_out(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")
    assert client.get(response.headers["Location"]).status_code == 200


def test_live_answers_401_json_when_signed_out(client):
    response = client.get("/live?after_seq=0")
    assert response.status_code == 401
    assert response.json["error"]["code"] == "signed_out"


def test_login_sets_a_strict_httponly_cookie_and_returns_to_next(client):
    response = sign_in(client, next_url="/?q=credit")
    assert response.status_code == 302
    assert response.headers["Location"] == "/?q=credit"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    assert TOKEN not in cookie
    assert client.get("/").status_code == 200


def test_cookie_is_secure_over_https(app):
    client = app.test_client()
    page = client.get("/login", base_url="https://dash.example")
    response = client.post(
        "/login", data={"token": TOKEN, "csrf_token": csrf_from(page.text)}, base_url="https://dash.example"
    )
    assert response.status_code == 302
    assert "; Secure" in response.headers["Set-Cookie"]


def test_wrong_token_is_refused(client):
    response = sign_in(client, token="not-the-token")
    assert response.status_code == 401
    assert "not valid" in response.text
    assert client.get("/").status_code == 302


def test_login_without_or_with_a_foreign_csrf_token_is_refused(app, client):
    client.get("/login")
    assert client.post("/login", data={"token": TOKEN}).status_code == 400
    other = app.test_client()
    foreign = csrf_from(other.get("/login").text)
    assert client.post("/login", data={"token": TOKEN, "csrf_token": foreign}).status_code == 400
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:x"])
def test_login_never_redirects_off_site(client, target):
    response = sign_in(client, next_url=target)
    assert response.headers["Location"] == "/"


def test_logout_needs_post_with_the_session_csrf_token(signed_in):
    page = signed_in.get("/")
    assert signed_in.get("/logout").status_code == 405
    assert signed_in.post("/logout").status_code == 400
    assert signed_in.get("/").status_code == 200  # still signed in
    response = signed_in.post("/logout", data={"csrf_token": csrf_from(page.text)})
    assert response.status_code == 302
    assert signed_in.get("/").status_code == 302


def test_the_csrf_token_changes_when_signing_in(client):
    before = csrf_from(client.get("/login").text)
    sign_in(client)
    assert csrf_from(client.get("/").text) != before


def test_sessions_expire(signed_in):
    with signed_in.session_transaction() as session:
        session["signed_in_at"] = time.time() - 13 * 3600
    assert signed_in.get("/").status_code == 302


def test_too_many_wrong_tokens_are_throttled(app, client):
    app.extensions["auth_failures"].limit = 3
    for _ in range(3):
        assert sign_in(client, token="wrong").status_code == 401
    assert sign_in(client).status_code == 429


@pytest.mark.parametrize("path", ["/login", "/", "/sessions/s1", "/dashboard/static/dashboard.js"])
def test_strict_content_security_policy_and_no_inline_script(signed_in, store, path):
    add(store, "Has debt")
    response = signed_in.get(path)
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    if path.endswith(".js"):
        return
    assert response.headers["Cache-Control"] == "no-store"
    for tag in re.findall(r"<script[^>]*>", response.text):
        assert 'src="/dashboard/static/' in tag
    assert not re.search(r"\son[a-z]+=", response.text)  # no inline event handlers
    assert not re.search(r"https?://", response.text)  # no CDN or other origin


# ---- escaping ---------------------------------------------------------------------------------
def test_captured_text_is_escaped_everywhere(signed_in, store):
    add(store, XSS, fields={"creditor": "<b>Bank</b>", "amount_usd": 100})
    add(store, "Name", category="contact_details", fields={"full_name": "<script>x</script>"})
    for path in ("/", "/sessions/s1", "/?q=img"):
        html = signed_in.get(path).text
        assert "<img src=x" not in html and "<script>alert" not in html and "<b>Bank" not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html
        assert "&lt;script&gt;" in html


def test_a_hostile_session_id_is_escaped(signed_in, store):
    store.start_session('"><script>alert(1)</script>', CALLER)
    html = signed_in.get("/").text
    assert "<script>alert(1)" not in html
    missing = signed_in.get("/sessions/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert missing.status_code == 404
    assert "<script>alert(1)" not in missing.text and "No such call" in missing.text


# ---- overview and filters ---------------------------------------------------------------------
def seed_calls(store):
    add(store, "Has $20,000 on credit cards", fields={"debt_type": "credit_card", "amount_usd": 20000})
    add(store, "Name is Pat", category="contact_details")
    store.end_session(reason="customer_qualified_transfer", caller_id=CALLER, session_id="s1")
    add(store, "Owes medical bills", caller=OTHER, session="s2")
    store.end_session(reason="customer_not_interested", caller_id=OTHER, session_id="s2")
    store.start_session("live1", "+15550001111")


def test_overview_shows_cards_active_calls_feed_and_call_log(signed_in, store):
    seed_calls(store)
    html = signed_in.get("/").text
    assert re.search(r'data-count="calls_today">2<', html)
    assert re.search(r'data-count="active_sessions">1<', html)
    assert re.search(r'data-count="qualified_today">1<', html)
    assert re.search(r'data-count="total_information">3<', html)
    assert "+1 (555) 000-1111" in html  # the active call, formatted
    assert "Has $20,000 on credit cards" in html and "Owes medical bills" in html
    assert "Qualified" in html and "Not interested" in html
    assert 'data-category="debt_info"' in html


def test_empty_overview_says_what_to_do(signed_in):
    html = signed_in.get("/").text
    assert "No information has been captured yet" in html
    assert "No calls are in progress" in html
    assert "No call has ended yet" in html


@pytest.mark.parametrize(
    ("query", "shown", "hidden"),
    [
        ("caller=(555) 765-4321", ["Owes medical bills"], ["Has $20,000", "Name is Pat"]),
        ("caller=5551234567", ["Has $20,000", "Name is Pat"], ["Owes medical bills"]),
        ("category=contact_details", ["Name is Pat"], ["Has $20,000", "Owes medical bills"]),
        ("q=MEDICAL", ["Owes medical bills"], ["Has $20,000", "Name is Pat"]),
        ("q=credit_card", ["Has $20,000"], ["Name is Pat"]),  # fields are searched too
    ],
)
def test_filters_narrow_the_feed(signed_in, store, query, shown, hidden):
    seed_calls(store)
    html = signed_in.get("/?" + query).text
    feed = html[html.index('id="feed"') : html.index('id="calls-title"')]
    for text in shown:
        assert text in feed
    for text in hidden:
        assert text not in feed


def test_outcome_narrows_the_call_log(signed_in, store):
    seed_calls(store)
    html = signed_in.get("/?outcome=not_interested").text
    log = html[html.index('id="calls-body"') :]
    assert "Not interested" in log and "customer_qualified_transfer" not in log
    assert 'value="not_interested" selected' in html


def test_date_range_uses_the_viewers_day(signed_in, store):
    seed_calls(store)
    signed_in.set_cookie("tz", "Pacific/Kiritimati")  # UTC+14: "today" there may be tomorrow in UTC
    today = datetime.now(UTC).astimezone(ZoneInfo("Pacific/Kiritimati")).date()
    assert "Has $20,000" in signed_in.get(f"/?from={today}&to={today}").text
    yesterday = today - timedelta(days=1)
    html = signed_in.get(f"/?from={yesterday}&to={yesterday}").text
    assert "Has $20,000" not in html and "Nothing matches these filters" in html


def test_bad_filter_values_are_named_and_ignored(signed_in, store):
    seed_calls(store)
    html = signed_in.get("/?category=nonsense&from=yesterday&cursor=garbage").text
    assert "Unknown category" in html and "From date must look like" in html and "page link is broken" in html
    assert "Has $20,000" in html


def test_filters_stay_in_the_form_and_in_every_link(signed_in, store, monkeypatch):
    monkeypatch.setattr("dashboard.pages.FEED_PAGE", 2)
    for i in range(5):
        add(store, f"credit fact {i}")
    html = signed_in.get("/?q=credit&caller=5551234567").text
    assert 'name="q" value="credit"' in html and 'name="caller" value="5551234567"' in html
    older = re.search(r'href="(/\?[^"]*cursor=[^"]+)" rel="next"', html).group(1).replace("&amp;", "&")
    assert "q=credit" in older and "caller=5551234567" in older
    export = re.search(r'href="(/export\.csv\?[^"]+)"', html).group(1)
    assert "q=credit" in export and "caller=5551234567" in export
    live = re.search(r'data-query="([^"]+)"', html).group(1)
    assert "q=credit" in live


def test_pages_follow_each_other_without_gaps_or_repeats(signed_in, store, monkeypatch):
    monkeypatch.setattr("dashboard.pages.FEED_PAGE", 3)
    for i in range(8):
        add(store, f"fact number {i:02d}")
    seen, url = [], "/"
    while url:
        html = signed_in.get(url).text
        seen += re.findall(r"fact number (\d\d)", html[html.index('id="feed"') : html.index('id="calls-title"')])
        found = re.search(r'href="([^"]*[?&]cursor=[^"]+)" rel="next"', html)
        url = found.group(1).replace("&amp;", "&") if found else None
    assert seen == [f"{i:02d}" for i in reversed(range(8))]


# ---- live updates -----------------------------------------------------------------------------
def test_live_returns_only_what_changed(signed_in, store):
    seed_calls(store)
    first = signed_in.get("/live?after_seq=0").json
    last = first["last_seq"]
    assert first["records"][0]["information"] == "Has $20,000 on credit cards"
    assert first["active"]["count"] == 1
    quiet = signed_in.get(f"/live?after_seq={last}").json
    assert quiet["changed"] is False and "records" not in quiet
    new = add(store, XSS, session="live1", caller="+15550001111")
    fresh = signed_in.get(f"/live?after_seq={last}").json
    assert [r["seq"] for r in fresh["records"]] == [new["seq"]]
    assert fresh["records"][0]["information"] == XSS  # raw in JSON; the page sets it with textContent
    assert fresh["records"][0]["caller_display"] == "+1 (555) 000-1111"
    assert fresh["active"]["sessions"][0]["newest"]["seq"] == new["seq"]
    assert fresh["calls"] == []


def test_live_applies_the_views_filters(signed_in, store):
    seed_calls(store)
    last = store.last_seq()
    add(store, "Another debt", session="live1", caller="+15550001111")
    add(store, "Email given", category="contact_details", session="live1", caller="+15550001111")
    store.end_session(reason="customer_not_qualified", caller_id="+15550001111", session_id="live1")
    only = signed_in.get(f"/live?after_seq={last}&category=contact_details&outcome=qualified").json
    assert [r["information"] for r in only["records"]] == ["Email given"]
    assert only["calls"] == []
    assert [c["outcome"] for c in signed_in.get(f"/live?after_seq={last}").json["calls"]] == ["not_qualified"]


def test_live_rejects_a_bad_after_seq(signed_in):
    assert signed_in.get("/live").status_code == 400
    assert signed_in.get("/live?after_seq=-1").status_code == 400


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [("/live", 400, "invalid_after_seq"), ("/live?after_seq=0&session_id=nope", 404, "session_not_found")],
)
def test_live_errors_are_the_apis_error_envelope(signed_in, path, status, code):
    response = signed_in.get(path)
    assert (response.status_code, response.mimetype) == (status, "application/json")
    assert list(response.json) == ["error"] and list(response.json["error"]) == ["code", "message"]
    assert response.json["error"]["code"] == code


def test_live_for_one_call(signed_in, store):
    add(store, "First")
    last = store.last_seq()
    add(store, "Owes $5,000", fields={"amount_usd": 5000, "creditor": "Citi"})
    add(store, "Says hello", session="s9")
    store.end_session(reason="customer_qualified_callback", caller_id=CALLER, session_id="s1")
    data = signed_in.get(f"/live?after_seq={last}&session_id=s1").json
    assert [r["information"] for r in data["records"]] == ["Owes $5,000"]
    assert data["debt"]["total_display"] == "$5,000"
    assert data["call"]["outcome_label"] == "Callback"
    assert signed_in.get("/live?after_seq=0&session_id=nope").status_code == 404


# ---- a call's page ----------------------------------------------------------------------------
def test_session_page_shows_timeline_debt_disclosures_and_other_calls(signed_in, store):
    add(
        store, "Greeting done", category="conversation_flow", fields={"disclosures": ["business_name", "call_recorded"]}
    )
    add(store, "Credit cards", fields={"debt_type": "credit_card", "amount_usd": 12500.5, "creditor": "Chase"})
    add(store, "Car loan", fields={"debt_type": "auto_loan", "amount_usd": 8000, "secured": True})
    add(store, "Lives in Ohio", category="personal_info", fields={"state": "OH"})
    store.end_session(reason="customer_qualified_transfer", caller_id=CALLER, session_id="s1", duration_seconds=421)
    add(store, "Called back", session="s0")
    html = signed_in.get("/sessions/s1").text
    timeline = html[html.index('id="timeline"') : html.index('id="groups-title"')]
    assert timeline.index("Greeting done") < timeline.index("Credit cards") < timeline.index("Lives in Ohio")
    assert "$20,500.50" in html and "$12,500.50</span> unsecured" in html
    assert "Auto loan (secured)" in html and "Chase" in html
    assert re.search(r'data-key="business_name" class="given"', html)
    assert re.search(r'data-key="ai_assistant" class="missing"', html)
    assert "7m 01s" in html and "Qualified" in html and "customer_qualified_transfer" in html
    assert "/sessions/s0" in html  # the caller's other call
    assert "State" in html and "OH" in html  # fields as a table


# ---- the transcript ---------------------------------------------------------------------------
SHARE = {
    "name": "share_information",
    "call_id": "c1",
    "arguments": {"category": "debt_info", "information": "Owes $12,000", "fields": None},
    "result": "Saved under debt_info.",
    "is_error": False,
}


def turn(store, speaker, text, start_s, session="s1", **extra):
    return store.add_turn(session_id=session, speaker=speaker, text=text, start_s=start_s, end_s=start_s + 1, **extra)


def seed_conversation(store):
    """A call as the agent saves it: the record of a share_information call comes just before
    its tool turn (tests/test_transcript.py)."""
    store.start_session("s1", CALLER)
    turn(store, "agent", "Hello, this is Acme Debt Help.", 3.2)
    turn(store, "caller", "I owe twelve thousand.", 65.9)
    add(store, "Owes $12,000")
    turn(store, "tool", "", 66.0, tool=SHARE)
    turn(store, "agent", "Great, and how", 68.0, interrupted=True)
    failed = {**SHARE, "name": "end_call", "arguments": {"reason": "oops"}, "result": "Unknown reason"}
    failed["is_error"] = True
    turn(store, "tool", "", 80.5, tool=failed)


def transcript_items(html: str) -> list[tuple[str, str]]:
    """(class, text as read) of each item of the Transcript, hidden marks left out."""
    box = html[html.index('id="transcript"') : html.index("</ol>", html.index('id="transcript"'))]
    items = []
    for cls, body in re.findall(r'<li class="([^"]+)" data-seq="\d+">(.*?)</li>', box, re.S):
        body = re.sub(r"<(\w+)[^>]*\shidden[^>]*>.*?</\1>", "", body, flags=re.S)
        items.append((cls, " ".join(unescape(re.sub(r"<[^>]+>", " ", body)).split())))
    return items


def test_the_transcript_is_a_conversation_with_times_marks_tools_and_records_in_place(signed_in, store):
    seed_conversation(store)
    assert transcript_items(signed_in.get("/sessions/s1").text) == [
        ("turn turn-agent", "Agent 0:03 Hello, this is Acme Debt Help."),
        ("turn turn-caller", "Caller 1:05 I owe twelve thousand."),
        ("saved-row", "Saved: Debt : Owes $12,000"),
        ("tool-row", "1:06 share_information category: debt_info, information: Owes $12,000 → Saved under debt_info."),
        ("turn turn-agent", "Agent 1:08 Great, and how (interrupted)"),
        ("tool-row tool-error", "1:20 end_call reason: oops → Unknown reason (error)"),
    ]


def test_a_turn_kept_in_parts_is_one_bubble(signed_in, store):
    store.start_session("s1", CALLER)
    long_turn = " ".join(f"w{i}" for i in range(4000))  # over 10,000 characters: stored in parts
    assert len(turn(store, "agent", long_turn, 2.0)) > 1
    turn(store, "caller", "OK", 3725.0)
    items = transcript_items(signed_in.get("/sessions/s1").text)
    assert items == [("turn turn-agent", f"Agent 0:02 {long_turn}"), ("turn turn-caller", "Caller 1:02:05 OK")]
    live = signed_in.get("/live?after_seq=0&session_id=s1").json["transcript"]
    assert [(i["speaker"], i["text"]) for i in live] == [("agent", long_turn), ("caller", "OK")]


def test_turn_text_is_escaped_on_the_page_and_raw_in_the_live_json(signed_in, store):
    store.start_session("s1", CALLER)
    turn(store, "caller", XSS, 1.0)
    hostile = {**SHARE, "arguments": {"information": "<script>alert(3)</script>"}, "result": "<b>done</b>"}
    turn(store, "tool", "", 2.0, tool=hostile)
    html = signed_in.get("/sessions/s1").text
    assert "<img src=x" not in html and "<script>alert" not in html and "<b>done" not in html
    assert [text for _, text in transcript_items(html)] == [
        f"Caller 0:01 {XSS}",
        "0:02 share_information information: <script>alert(3)</script> → <b>done</b>",
    ]
    live = signed_in.get("/live?after_seq=0&session_id=s1").json["transcript"]
    assert live[0]["text"] == XSS  # the page's script sets it with textContent


def test_the_script_builds_transcript_rows_with_text_content_only():
    script = (DASHBOARD / "static" / "dashboard.js").read_text()
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "outerHTML" not in script


def test_live_carries_only_the_transcript_items_after_after_seq(signed_in, store):
    seed_conversation(store)
    last = store.last_seq()
    assert signed_in.get(f"/live?after_seq={last}&session_id=s1").json["changed"] is False
    turn(store, "caller", "Is that all?", 90.0)
    add(store, "Wants a callback", category="conversation_flow")
    turn(store, "agent", "Yes.", 92.0)
    store.start_session("s2", OTHER)
    turn(store, "caller", "Another call's words", 1.0, session="s2")
    data = signed_in.get(f"/live?after_seq={last}&session_id=s1").json
    assert [(i["kind"], i.get("text") or i.get("information")) for i in data["transcript"]] == [
        ("turn", "Is that all?"),
        ("saved", "Wants a callback"),
        ("turn", "Yes."),
    ]
    assert all(i["seq"] > last for i in data["transcript"]) and data["transcript_more"] is False
    assert data["transcript"][0]["time_display"] == "1:30"


def test_live_transcript_is_capped_and_catches_up_without_gaps_or_repeats(signed_in, store, monkeypatch):
    monkeypatch.setattr("dashboard.pages.LIVE_TURNS", 2)
    store.start_session("s1", CALLER)
    after = store.last_seq()
    for i in range(5):
        turn(store, "caller" if i % 2 else "agent", f"turn {i}", float(i))
    seen, polls = [], 0
    while True:
        data = signed_in.get(f"/live?after_seq={after}&session_id=s1").json
        polls += 1
        if not data["changed"]:
            break
        assert len(data["transcript"]) <= 2
        seen += [i["text"] for i in data["transcript"]]
        after = data["last_seq"]
    assert seen == [f"turn {i}" for i in range(5)] and polls == 4


# ---- the disclosure flag --------------------------------------------------------------------
FLAGGED = {
    "required": ["business_name", "ai_assistant", "callback_number"],
    "heard": {"business_name": 2.4},
    "missing": ["ai_assistant", "callback_number"],
    "agent_turns_checked": 2,
    "flagged": True,
}
LIVE = "+15550001111"
HEARD_ALL = {**FLAGGED, "heard": {"business_name": 2.4, "ai_assistant": 5.0, "callback_number": 61.0}, "missing": []}


def checked(store, session_id, evidence):
    store.append_event(DISCLOSURES, session_id, {**evidence, "flagged": bool(evidence["missing"])})


def heard_states(html: str) -> tuple[str, dict[str, str]]:
    """The session page's disclosure badge, and each required disclosure's heard state."""
    badge = re.search(r'class="badge flag-([a-z]+)" id="disclosure-badge">([^<]*)<', html)
    box = html[html.index('id="heard-disclosures"') : html.index("</ul>", html.index('id="heard-disclosures"'))]
    items = re.findall(r'data-key="([a-z_]+)" class="([a-z-]+)">.*?<span class="state">([^<]*)<', box, re.S)
    return f"{badge.group(1)}: {badge.group(2)}", {key: f"{cls}: {state}" for key, cls, state in items}


def test_session_page_badge_names_the_missing_disclosures_and_when_the_others_were_heard(signed_in, store):
    store.start_session("s1", CALLER)
    html = signed_in.get("/sessions/s1").text
    assert heard_states(html) == ("pending: Disclosures not checked yet", {})
    assert "Disclosures recorded by the agent" in html and "Disclosures heard in the agent's words" in html
    last = store.last_seq()
    checked(store, "s1", FLAGGED)
    assert heard_states(signed_in.get("/sessions/s1").text) == (
        "flagged: Missing disclosure: AI assistant, Callback number",
        {
            "business_name": "heard: heard at 0:02",
            "ai_assistant": "not-heard: not heard",
            "callback_number": "not-heard: not heard",
        },
    )
    flag = signed_in.get(f"/live?after_seq={last}&session_id=s1").json["disclosure_flag"]
    assert flag["state"] == "flagged" and flag["badge"] == "Missing disclosure: AI assistant, Callback number"
    first = flag["items"][0]
    assert (first["key"], first["heard"], first["at_display"]) == ("business_name", True, "0:02")
    store.start_session("s2", OTHER)
    checked(store, "s2", HEARD_ALL)
    badge, heard = heard_states(signed_in.get("/sessions/s2").text)
    assert badge == "ok: All required disclosures heard" and heard["callback_number"] == "heard: heard at 1:01"
    store.start_session("s3", OTHER)
    store.end_session(reason="caller_hung_up", caller_id=OTHER, session_id="s3")  # ended, never checked
    assert heard_states(signed_in.get("/sessions/s3").text) == ("pending: Disclosures not checked on this call", {})


def seed_flagged_calls(store):
    """s1 ended flagged, s2 ended with every disclosure heard, live1 in progress flagged, live2
    in progress not checked yet."""
    for sid, caller, evidence in (("s1", CALLER, FLAGGED), ("s2", OTHER, HEARD_ALL), ("live1", LIVE, FLAGGED)):
        store.start_session(sid, caller)
        checked(store, sid, evidence)
    store.end_session(reason="customer_not_qualified", caller_id=CALLER, session_id="s1")
    store.end_session(reason="customer_qualified_transfer", caller_id=OTHER, session_id="s2")
    store.start_session("live2", "+15550002222")


def section(html: str, start: str, end: str) -> str:
    return html[html.index(start) : html.index(end, html.index(start))]


def test_flagged_calls_have_a_badge_in_the_overviews_lists(signed_in, store):
    seed_flagged_calls(store)
    html = signed_in.get("/").text
    calls = section(html, 'id="calls-body"', "</tbody>")
    active = section(html, 'id="active-body"', "</tbody>")
    badge = "Missing disclosure: AI assistant, Callback number"
    assert calls.count(badge) == 1
    assert re.search(r'data-sid="s1">(?:(?!</tr>).)*' + badge, calls, re.S)
    assert not re.search(r'data-sid="s2">(?:(?!</tr>).)*Missing disclosure', calls, re.S)
    assert re.search(r'data-sid="live1">(?:(?!</tr>).)*' + badge, active, re.S)
    assert not re.search(r'data-sid="live2">(?:(?!</tr>).)*Missing disclosure', active, re.S)
    assert "Missing disclosure" in signed_in.get("/sessions/s1").text


def test_the_missing_disclosure_filter_lists_only_flagged_calls(signed_in, store):
    seed_flagged_calls(store)
    html = signed_in.get("/?missing_disclosure=1").text
    calls = section(html, 'id="calls-body"', "</tbody>")
    assert re.findall(r'<tr (?:data-seq="\d+" )?data-sid="([^"]+)"', calls) == ["s1"]
    assert re.findall(r'data-sid="([^"]+)"', section(html, 'id="active-body"', "</tbody>")) == ["live1"]
    assert 'name="missing_disclosure" value="1" type="checkbox"\n        checked' in html
    assert "missing_disclosure=1" in re.search(r'data-query="([^"]+)"', html).group(1)
    unfiltered = signed_in.get("/").text
    assert len(re.findall(r"<tr [^>]*data-sid=", section(unfiltered, 'id="calls-body"', "</tbody>"))) == 2
    assert "Unknown missing-disclosure choice" in signed_in.get("/?missing_disclosure=maybe").text


def test_the_missing_disclosure_filter_pages_and_follows_live(signed_in, store, monkeypatch):
    monkeypatch.setattr("dashboard.pages.CALLS_PAGE", 1)
    seed_flagged_calls(store)
    store.start_session("s3", CALLER)
    checked(store, "s3", FLAGGED)
    store.end_session(reason="caller_hung_up", caller_id=CALLER, session_id="s3")
    html = signed_in.get("/?missing_disclosure=1").text
    assert re.findall(r'data-sid="(s\d)"', section(html, 'id="calls-body"', "</tbody>")) == ["s3"]
    older = re.search(r'href="(/\?[^"]*calls_cursor=[^"]+)" rel="next"', html).group(1).replace("&amp;", "&")
    assert "missing_disclosure=1" in older
    html = signed_in.get(older).text
    assert re.findall(r'data-sid="(s\d)"', section(html, 'id="calls-body"', "</tbody>")) == ["s1"]
    last = store.last_seq()
    store.end_session(reason="caller_hung_up", caller_id="+15550002222", session_id="live2")  # not flagged
    store.end_session(reason="caller_hung_up", caller_id=LIVE, session_id="live1")  # flagged
    data = signed_in.get(f"/live?after_seq={last}&missing_disclosure=1").json
    assert [(c["session_id"], c["flag_display"]) for c in data["calls"]] == [
        ("live1", "Missing disclosure: AI assistant, Callback number")
    ]
    assert data["active"]["sessions"] == []


# ---- debt types and disclosures -----------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "backend" / "schemas" / "fields"
DEBT_TYPE_LABELS = {
    "credit_card": "Credit card",
    "medical": "Medical",
    "personal_loan": "Personal loan",
    "student_loan": "Student loan",
    "payday_loan": "Payday loan",
    "auto_loan": "Auto loan",
    "mortgage": "Mortgage",
    "tax": "Tax",
    "business": "Business",
    "collections": "Collections",
    "other": "Other",
}
# As the agent records them (prompts/call_script.md, tests/test_agent_flows.py).
ALL_DISCLOSURES = ["business_name", "ai_assistant", "call_recorded", "callback_number"]


def schema_enum(category: str, field: str) -> list[str]:
    schema = json.loads((SCHEMAS / f"{category}.json").read_text())
    prop = schema["properties"][field]
    return prop.get("enum") or prop["items"]["enum"]


def debt_rows(html: str) -> list[list[str]]:
    body = html[html.index('id="debt-items"') : html.index("</tbody>", html.index('id="debt-items"'))]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def disclosure_states(html: str) -> dict[str, tuple[str, str]]:
    """key -> (class, state text) of each item of the Disclosures box."""
    box = html[html.index('id="disclosures"') : html.index("</ul>", html.index('id="disclosures"'))]
    items = re.findall(r'<li data-key="([a-z_]+)" class="([a-z]+)">.*?<span class="state">([^<]*)</span>', box, re.S)
    return {key: (cls, state) for key, cls, state in items}


def test_every_schema_debt_type_has_a_label():
    assert list(DEBT_TYPE_LABELS) == schema_enum("debt_info", "debt_type")
    assert formatting.DEBT_TYPE_LABELS == DEBT_TYPE_LABELS


def test_debt_table_shows_each_debt_types_label_first_render_and_live(signed_in, store):
    store.start_session("s1", CALLER)
    for i, kind in enumerate(DEBT_TYPE_LABELS):
        add(store, f"Debt {i}", fields={"debt_type": kind, "amount_usd": 100 + i})
    add(store, "A debt of unknown kind", fields={"amount_usd": 50})
    expected = [*DEBT_TYPE_LABELS.values(), "Not stated"]
    html = signed_in.get("/sessions/s1").text
    assert [row[0] for row in debt_rows(html)] == expected
    live = signed_in.get("/live?after_seq=0&session_id=s1").json
    assert [d["type_display"] for d in live["debt"]["items"]] == expected


def test_an_imported_records_debt_type_gets_its_label_too(signed_in, store):
    """Records carried over by `import-legacy` keep their fields unchecked."""
    store.start_session("s1", CALLER)
    record = {"category": "debt_info", "information": "Card", "fields": {"debt_type": "Credit Card", "amount_usd": 5}}
    store.import_information(record, session_id="s1", caller_id=CALLER, timestamp=iso(datetime.now(UTC)))
    assert debt_rows(signed_in.get("/sessions/s1").text)[0][0] == "Credit card"
    assert formatting.debt_type("boat_loan") == "boat loan"


def test_a_records_details_show_vocabulary_words_by_their_labels(signed_in, store):
    add(store, "Card", fields={"debt_type": "credit_card", "amount_usd": 10})
    add(store, "Opening", category="conversation_flow", fields={"disclosures": ["business_name", "ai_assistant"]})
    html = signed_in.get("/sessions/s1").text
    assert '<th scope="row">Debt type</th><td>Credit card</td>' in html
    assert '<th scope="row">Disclosures</th><td>Business name, AI assistant</td>' in html
    live = signed_in.get("/live?after_seq=0&session_id=s1").json
    assert ["Debt type", "Credit card"] in live["records"][0]["fields_display"]
    assert ["Disclosures", "Business name, AI assistant"] in live["records"][1]["fields_display"]


def test_a_secured_debt_says_so_after_its_label(signed_in, store):
    add(store, "House", fields={"debt_type": "mortgage", "amount_usd": 200000, "secured": True})
    assert debt_rows(signed_in.get("/sessions/s1").text)[0] == ["Mortgage (secured)", "\N{EN DASH}", "$200,000"]


def test_disclosures_recorded_by_the_agent_show_as_given(signed_in, store):
    add(
        store,
        "Opening disclosures given",
        category="conversation_flow",
        fields={"stage": "opening", "disclosures": ALL_DISCLOSURES},
    )
    html = signed_in.get("/sessions/s1").text
    assert disclosure_states(html) == {k: ("given", "given") for k in ALL_DISCLOSURES}
    live = signed_in.get("/live?after_seq=0&session_id=s1").json
    assert [(d["key"], d["given"]) for d in live["disclosures"]] == [(k, True) for k in ALL_DISCLOSURES]


def test_disclosures_from_any_record_of_the_call_count_and_only_that_call(signed_in, store):
    assert list(formatting.DISCLOSURE_LABELS) == schema_enum("conversation_flow", "disclosures")
    add(store, "Said the business name", category="conversation_flow", fields={"disclosures": ["business_name"]})
    add(store, "Has a card", fields={"debt_type": "credit_card", "amount_usd": 10})
    add(store, "Other call", category="conversation_flow", session="s2", fields={"disclosures": ["call_recorded"]})
    html = signed_in.get("/sessions/s1").text
    last = store.last_seq()
    assert disclosure_states(html) == {
        "business_name": ("given", "given"),
        "ai_assistant": ("missing", "not recorded"),
        "call_recorded": ("missing", "not recorded"),
        "callback_number": ("missing", "not recorded"),
    }
    add(
        store,
        "Rest of the opening",
        category="conversation_flow",
        fields={"stage": "opening", "disclosures": ["ai_assistant", "callback_number"]},
    )
    live = signed_in.get(f"/live?after_seq={last}&session_id=s1").json
    assert {d["key"]: d["given"] for d in live["disclosures"]} == {
        "business_name": True,
        "ai_assistant": True,
        "call_recorded": False,
        "callback_number": True,
    }
    assert disclosure_states(signed_in.get("/sessions/s1").text)["callback_number"] == ("given", "given")


def test_unknown_session_is_a_404_page(signed_in):
    response = signed_in.get("/sessions/nope")
    assert response.status_code == 404
    assert "No such call" in response.text


# ---- CSV export -------------------------------------------------------------------------------
def test_csv_export_is_the_whole_filtered_view_in_the_api_format(signed_in, store, monkeypatch):
    monkeypatch.setattr(views, "EXPORT_PAGE", 2)
    for i in range(5):
        add(store, f"debt {i}")
    add(store, "=HYPERLINK(evil)", category="contact_details")
    add(store, "other caller", caller=OTHER, session="s2")
    response = signed_in.get("/export.csv?caller=555-123-4567")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert len(rows) == 6
    assert "'=HYPERLINK(evil)" in [r["information"] for r in rows]
    assert "other caller" not in response.get_data(as_text=True)
    only = signed_in.get("/export.csv?category=contact_details").get_data(as_text=True)
    assert "HYPERLINK" in only and "debt 1" not in only


# ---- one door to the data --------------------------------------------------------------------
DASHBOARD = ROOT / "dashboard"
DOORS = {"backend.api.data", "backend.api.errors", "backend.settings"}


def test_the_dashboard_reaches_the_backend_only_through_the_api_data_module():
    """The page data, parameters, formats, store and vocabularies come from `backend.api.data`,
    failures from `backend.api.errors`; never the store, the records module or other API modules."""
    imported = {}
    for path in sorted(DASHBOARD.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                if name.startswith("backend"):
                    imported.setdefault(name, []).append(path.name)
    assert set(imported) <= DOORS, imported


def test_the_dashboard_builds_no_error_envelope_of_its_own():
    for path in DASHBOARD.glob("*.py"):
        assert '{"error"' not in path.read_text(), path.name


# ---- formatting -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("+15551234567", "+1 (555) 123-4567"),
        ("+442071838750", "+44 20 7183 8750"),
        ("anonymous", "anonymous"),
        ("", ""),
    ],
)
def test_phone_numbers_are_formatted(raw, shown):
    assert formatting.phone(raw) == shown


@pytest.mark.parametrize(("typed", "stored"), [("(555) 123-4567", CALLER), ("+1 555 123 4567", CALLER), ("abc", "abc")])
def test_typed_numbers_match_stored_ids(typed, stored):
    assert caller_filter_number(typed) == stored


def test_times_are_sent_as_utc_for_the_browser_to_localise(signed_in, store):
    record = add(store, "A fact")
    html = signed_in.get("/").text
    assert f'<time datetime="{record["timestamp"]}"' in html
    assert iso(datetime.now(UTC))[:10] in html
