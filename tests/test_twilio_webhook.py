"""Twilio's status callback: `X-Twilio-Signature` is checked with TWILIO_AUTH_TOKEN (Twilio's own
`RequestValidator`) against PUBLIC_BASE_URL + path when set, else against the request's URL; a
missing or wrong signature is a 403 in the error envelope and records nothing; no bearer token is
needed (nor enough); a good callback records the CallStatus change on the matching session (and
outbound call), once per change."""

from __future__ import annotations

import pytest
from twilio.request_validator import RequestValidator

from backend.api_server import create_app
from backend.backend_agent import BackendAgent
from backend.calls import outbound
from backend.settings import Settings
from tests.postgres import store_env

AUTH_TOKEN = "twilio-auth-token-for-tests"
API_TOKEN = "api-token"
PATH = "/api/webhooks/twilio/status"
CALLER = "+12125551234"
PUBLIC = "https://agent.example.com"


def make_app(tmp_path, **env):
    settings = Settings.from_env(
        {**store_env(), "DATA_DIR": str(tmp_path / "data"), "STORE_FSYNC": "0", "TWILIO_AUTH_TOKEN": AUTH_TOKEN, **env},
        dotenv=False,
    )
    return create_app(
        {
            "SETTINGS": settings,
            "DATA_DIR": str(settings.data_dir),
            "API_TOKENS": [API_TOKEN],
            "TRUST_PROXY": settings.trust_proxy,
        }
    )


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path)


def form(status="ringing", **extra):
    return {"CallSid": "CA0123456789abcdef", "CallStatus": status, "From": CALLER, "To": "+13105559876", **extra}


def sign(url: str, params: dict, token: str = AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def post(client, params, signature=None, query="", **kw):
    headers = kw.pop("headers", {})
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return client.post(PATH + query, data=params, headers=headers, **kw)


def events(app, kind="twilio_status"):
    return app.extensions["backend"].store.events(kind)


def assert_refused(response, code="invalid_signature"):
    assert response.status_code == 403
    assert response.get_json() == {"error": {"code": code, "message": response.get_json()["error"]["message"]}}


def test_a_valid_signature_records_the_status_on_the_callers_session(app):
    store = app.extensions["backend"].store
    BackendAgent(store=store).start_session("sess-in", CALLER)
    client = app.test_client()
    params = form("in-progress", Direction="inbound")
    response = post(client, params, sign(f"http://localhost{PATH}", params))
    assert response.status_code == 200
    assert response.get_json() == {"recorded": True, "session_id": "sess-in", "call_id": None}
    [event] = store.events("twilio_status", "sess-in")
    assert event["data"]["call_status"] == "in-progress" and event["data"]["call_sid"] == "CA0123456789abcdef"

    again = post(client, params, sign(f"http://localhost{PATH}", params))  # Twilio retries
    assert again.get_json()["recorded"] is False
    completed = form("completed", Direction="inbound", CallDuration="42")
    assert post(client, completed, sign(f"http://localhost{PATH}", completed)).get_json()["recorded"] is True
    statuses = [e["data"]["call_status"] for e in store.events("twilio_status", "sess-in")]
    assert statuses == ["in-progress", "completed"]


def test_a_callback_about_an_outbound_call_lands_on_the_call(app):
    store = app.extensions["backend"].store
    outbound.record_state(store, "call-1", "queued", phone_number="+13105559876", room="outbound-call-1")
    outbound.record_state(store, "call-1", "dialing", session_id="sess-out")
    client = app.test_client()
    params = form("busy", Direction="outbound-api", SipResponseCode="486")
    url = f"http://localhost{PATH}?call_id=call-1"
    response = post(client, params, sign(url, params), query="?call_id=call-1")
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"recorded": True, "session_id": "sess-out", "call_id": "call-1"}
    [event] = store.events("twilio_status", "sess-out")
    assert event["data"]["sip_response_code"] == "486"
    view = client.get("/api/calls/call-1", headers={"Authorization": f"Bearer {API_TOKEN}"}).get_json()
    assert view["twilio_status"] == "busy"


def test_an_unmatched_callback_is_kept_under_its_call_sid(app):
    client = app.test_client()
    params = form("ringing", From="+14155550123")
    assert post(client, params, sign(f"http://localhost{PATH}", params)).get_json()["session_id"] is None
    assert [e["key"] for e in events(app)] == ["callsid:CA0123456789abcdef"]


def test_an_invalid_signature_is_refused_and_records_nothing(app):
    client = app.test_client()
    params = form()
    assert_refused(post(client, params, sign(f"http://localhost{PATH}", params, token="another-token")))
    assert_refused(post(client, params, sign(f"http://localhost{PATH}", {**params, "CallStatus": "completed"})))
    assert_refused(post(client, params, "not-a-signature"))
    assert events(app) == []


def test_a_missing_signature_is_refused_even_with_a_bearer_token(app):
    client = app.test_client()
    assert_refused(post(client, form(), headers={"Authorization": f"Bearer {API_TOKEN}"}))
    assert_refused(post(client, form(), signature=""))
    assert events(app) == []


def test_without_a_twilio_auth_token_nothing_can_be_checked(tmp_path):
    app = make_app(tmp_path, TWILIO_AUTH_TOKEN="")
    params = form()
    assert_refused(post(app.test_client(), params, sign(f"http://localhost{PATH}", params)), "twilio_not_configured")


def test_behind_a_proxy_the_public_base_url_is_what_twilio_signed(tmp_path):
    app = make_app(tmp_path, PUBLIC_BASE_URL=PUBLIC + "/")
    client = app.test_client()
    params = form("answered")
    public_url = f"{PUBLIC}{PATH}?call_id=abc"
    internal_url = f"http://localhost{PATH}?call_id=abc"
    # The proxy forwards https://agent.example.com/... to http://localhost/...: Twilio signed the
    # public URL, so that signature is accepted and one made for the internal URL is not.
    assert post(client, params, sign(public_url, params), query="?call_id=abc").status_code == 200
    assert_refused(post(client, params, sign(internal_url, params), query="?call_id=abc"))
    # The query string is part of what Twilio signs.
    assert_refused(post(client, params, sign(public_url, params), query="?call_id=abd"))


def test_behind_a_trusted_proxy_without_public_base_url_the_forwarded_url_counts(tmp_path):
    app = make_app(tmp_path, TRUST_PROXY="1")
    client = app.test_client()
    params = form("ringing")
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "agent.example.com"}
    good = sign(f"https://agent.example.com{PATH}", params)
    assert post(client, params, good, headers=dict(forwarded)).status_code == 200
    assert_refused(post(client, params, good))  # the same request without the proxy's headers


def test_missing_call_sid_or_status_is_a_400_after_the_signature(app):
    client = app.test_client()
    params = {"CallStatus": "ringing"}
    response = post(client, params, sign(f"http://localhost{PATH}", params))
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_callback"
