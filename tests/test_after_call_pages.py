"""The session page after the call: the summary and lead, the rule's and the model's
qualification (a disagreement flagged), the cost with its parts, a reply kept with its errors,
everything escaped, and the box arriving by the page's live update once the summary is ready."""

from __future__ import annotations

import pytest

from backend.api_server import create_app
from backend.backend_agent import BackendAgent
from backend.settings import Settings
from tests.fakes.gemini_rest import FakeGeminiRest
from tests.postgres import store_env
from tests.test_dashboard import sign_in
from tests.test_summary import LEAD, REPLY, ended_call

TOKEN = "t0ken-for-tests"


@pytest.fixture
def rest(monkeypatch):
    server = FakeGeminiRest()
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.base_url)
    yield server
    server.close()


@pytest.fixture
def backend(data_dir):
    env = {
        **store_env(),
        "DATA_DIR": str(data_dir),
        "GOOGLE_API_KEY": "k",
        "STORE_FSYNC": "0",
        "TELEPHONY_USD_PER_MINUTE": "0.02",
    }
    agent = BackendAgent(settings=Settings.from_env(env, dotenv=False))
    yield agent
    agent.close()


def page(client, session_id="s1"):
    response = client.get(f"/sessions/{session_id}")
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def signed_in(client):
    assert sign_in(client, TOKEN).status_code == 302
    return client


def test_the_summary_lead_qualification_and_cost_are_shown(backend, rest, data_dir):
    client = signed_in(create_app({**store_env(), "DATA_DIR": str(data_dir), "API_TOKENS": [TOKEN]}).test_client())
    ended_call(backend, debt=4000)  # below the threshold: our rule says not qualified
    rest.say({**REPLY, "summary": "Pat <script>alert(1)</script> owes money."})
    backend.run_jobs()
    html = page(client)
    assert "Pat &lt;script&gt;alert(1)&lt;/script&gt; owes money." in html and "<script>alert(1)" not in html
    assert "Ready" in html and LEAD["hardship"] in html and "Chase" in html
    assert "By our rule</dt><dd>Not qualified" in html and "By the model</dt><dd>Qualified" in html
    assert "The rule and the model disagree" in html
    assert "The cost is known once the call has ended." in html  # ended by hand here: no usage, no cost


def test_a_reply_kept_with_its_errors_is_shown_as_it_came(backend, rest, data_dir):
    client = signed_in(create_app({**store_env(), "DATA_DIR": str(data_dir), "API_TOKENS": [TOKEN]}).test_client())
    ended_call(backend)
    rest.say("not json <b>at all</b>")
    backend.run_jobs()
    html = page(client)
    assert "What was wrong with the model&#39;s reply" in html or "What was wrong with the model's reply" in html
    assert "not json &lt;b&gt;at all&lt;/b&gt;" in html


def test_the_box_arrives_by_the_live_update(backend, rest, data_dir):
    client = signed_in(create_app({**store_env(), "DATA_DIR": str(data_dir), "API_TOKENS": [TOKEN]}).test_client())
    ended_call(backend)
    first = client.get("/live?session_id=s1&after_seq=0").get_json()
    before = first["after_call"]["key"]
    assert "Waiting for the summary" in first["after_call"]["html"]
    rest.say(REPLY)
    backend.run_jobs()
    later = client.get(f"/live?session_id=s1&after_seq={first['last_seq']}").get_json()
    assert later["after_call"]["key"] != before
    assert REPLY["summary"] in later["after_call"]["html"] and "Ready" in later["after_call"]["html"]


def test_the_calls_cost_and_a_missing_price_are_shown(backend, data_dir):
    client = signed_in(create_app({**store_env(), "DATA_DIR": str(data_dir), "API_TOKENS": [TOKEN]}).test_client())
    backend.start_session("c1", "+12025550143")
    usage = [{"type": "llm_usage", "model": "gemini-live-x", "input_tokens": 900, "output_tokens": 300}]
    assert backend.end_call("completed", "+12025550143", duration_seconds=120, session_id="c1", usage=usage)["success"]
    html = page(client, "c1")
    assert 'id="cost-total">$0.0400' in html  # two minutes at $0.02; the model has no price
    assert "no price for model gemini-live-x in MODEL_PRICES" in html


def test_the_overview_shows_cost_and_qualification_rate(backend, data_dir):
    client = signed_in(create_app({**store_env(), "DATA_DIR": str(data_dir), "API_TOKENS": [TOKEN]}).test_client())
    for sid, reason in (("o1", "customer_qualified_transfer"), ("o2", "customer_not_qualified")):
        backend.start_session(sid, "+12025550143")
        backend.end_call(reason, "+12025550143", duration_seconds=180, session_id=sid, usage=[])
    html = client.get("/").get_data(as_text=True)
    assert 'data-count="qualification_rate">50%' in html
    assert 'data-count="cost_total">$0.1200' in html  # two 3-minute calls at $0.02 a minute
    assert 'data-count="cost_per_qualified">$0.1200' in html
    live = client.get("/live?after_seq=0").get_json()["summary"]
    assert (live["qualification_rate"], live["cost_total"]) == ("50%", "$0.1200")
