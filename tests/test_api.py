"""The HTTP API (contract section 3) through Flask's test client, over a real journal store:
every route, every error in the one envelope, CSV and NDJSON output, and that cursors and
`after_seq` return every record exactly once while records are being written."""

from __future__ import annotations

import base64
import csv
import inspect
import io
import json
import os
import re
import stat
import subprocess
import sys
import time
import zoneinfo

import phonenumbers
import pytest
from flask import abort
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.api.auth import check_token
from backend.api.formats import neutralise
from backend.api.openapi import MAX_REQUEST_LINE, nanp_number_pattern, not_blank, openapi_document
from backend.api.params import cursor_pattern, decode_cursor, encode_cursor
from backend.api.test_function import FUNCTIONS, NOT_ARGUMENTS
from backend.api_server import create_app
from backend.backend_agent import BackendAgent
from backend.settings import reload_settings
from backend.store.records import CATEGORIES, SCHEMA_DIR, StoreUnavailable

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(autouse=True)
def _no_fsync(monkeypatch):
    monkeypatch.setenv("STORE_FSYNC", "0")
    monkeypatch.delenv("API_TOKENS", raising=False)
    monkeypatch.delenv("SECRET_KEY", raising=False)


@pytest.fixture
def app(tmp_path):
    return create_app({"DATA_DIR": str(tmp_path), "API_TOKENS": [TOKEN], "TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def agent(tmp_path):
    """A writer with its own store on the same folder, as the voice agent's process would be."""
    backend = BackendAgent(tmp_path)
    yield backend
    backend.close()


def get(client, url, **kw):
    return client.get(url, headers={**AUTH, **kw.pop("headers", {})}, **kw)


def share(agent, text, category="debt_info", caller="+15550000001", session=None, fields=None):
    result = agent.share_information(text, category, caller, session_id=session, fields=fields)
    assert result["success"], result
    return result["record"]


def assert_envelope(response, status, code):
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


# ---- the envelope, and every error status -------------------------------------------------------
def test_error_envelope_shape_is_pinned(client):
    response = get(client, "/api/information?limit=0")
    assert response.status_code == 400
    assert response.get_json() == {
        "error": {"code": "invalid_limit", "message": "limit must be a whole number from 1 to 1000."}
    }


def test_401_without_or_with_a_wrong_token_and_no_data(client, agent):
    share(agent, "secret debt fact")
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}):
        response = client.get("/api/information", headers=headers)
        assert_envelope(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert b"secret debt fact" not in response.data


def test_404_405_413_envelopes(client):
    assert_envelope(get(client, "/api/no-such-route"), 404, "not_found")
    response = client.delete("/api/summary", headers=AUTH)
    assert_envelope(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]
    big = b'{"function": "get_current_time", "arguments": {"timezone": "' + b"x" * (1 << 20) + b'"}}'
    response = client.post("/api/test_function", data=big, headers=AUTH, content_type="application/json")
    assert_envelope(response, 413, "body_too_large")


def test_429_after_too_many_wrong_tokens_even_for_the_right_one(tmp_path):
    app = create_app({"DATA_DIR": str(tmp_path), "API_TOKENS": [TOKEN], "AUTH_FAILURE_LIMIT": 3, "TESTING": True})
    client = app.test_client()
    for _ in range(3):
        assert_envelope(client.get("/api/summary", headers={"Authorization": "Bearer guess"}), 401, "unauthorized")
    response = get(client, "/api/summary")
    assert_envelope(response, 429, "too_many_failed_logins")
    assert int(response.headers["Retry-After"]) >= 1
    other = client.get("/api/summary", headers=AUTH, environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other.status_code == 200


def test_500_is_logged_and_enveloped(app, caplog):
    @app.get("/api/boom")
    def boom():
        raise RuntimeError("kaboom")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = app.test_client().get("/api/boom", headers=AUTH)
    assert_envelope(response, 500, "internal_error")
    assert b"kaboom" not in response.data
    assert "kaboom" in caplog.text


@pytest.mark.parametrize(("status", "code"), [(403, "forbidden"), (409, "conflict"), (503, "unavailable")])
def test_flask_aborts_under_api_use_the_envelope(app, status, code):
    @app.get("/api/abort")
    def aborting():
        abort(status)

    assert_envelope(app.test_client().get("/api/abort", headers=AUTH), status, code)


def test_503_when_the_store_is_unavailable(app):
    @app.get("/api/store-down")
    def store_down():
        raise StoreUnavailable("The store cannot save right now (disk full or read-only).")

    response = app.test_client().get("/api/store-down", headers=AUTH)
    assert_envelope(response, 503, "store_unavailable")
    assert response.headers["Retry-After"] == "1"


@pytest.mark.json_store_only  # the journal's torn lines
def test_a_corrupt_line_written_by_another_process_is_quarantined_not_served(client, agent, tmp_path):
    share(agent, "good record")
    with open(tmp_path / "journal.jsonl", "ab") as fh:
        fh.write(b"{this line is corrupt\n")
    share(agent, "after the corrupt line")
    assert [r["information"] for r in get(client, "/api/information").get_json()["information"]] == [
        "after the corrupt line",
        "good record",
    ]
    assert len(list((tmp_path / "quarantine").iterdir())) == 1


def test_bad_parameters_get_400_with_a_code_naming_the_problem(client):
    cases = {
        "/api/information?category=debts": "invalid_category",
        "/api/information?category=debt_info&category=": "invalid_category",
        "/api/information?since=yesterday": "invalid_timestamp",
        "/api/information?until=2026-02-30T00:00:00Z": "invalid_timestamp",
        "/api/information?since=2026-11-22": "invalid_timestamp",
        "/api/information?limit=1001": "invalid_limit",
        "/api/information?limit=abc": "invalid_limit",
        "/api/information?limit=-1": "invalid_limit",
        "/api/information?cursor=garbage!!": "bad_cursor",
        "/api/information?after_seq=-5": "invalid_after_seq",
        "/api/information?format=xml": "invalid_format",
        "/api/information?catgory=debt_info": "unknown_parameter",
        "/api/information?limit=5&limit=6": "repeated_parameter",
        "/api/information?q=" + "x" * 201: "invalid_q",
        "/api/sessions?status=open": "invalid_status",
        "/api/sessions?outcome=won": "invalid_outcome",
        "/api/sessions?cursor=" + encode_cursor("calls", before=3): "bad_cursor",
        "/api/calls?since=2026-13-01T00:00:00Z": "invalid_timestamp",
        "/api/calls?caller_id=" + "1" * 65: "invalid_caller_id",
        "/api/summary?x=1": "unknown_parameter",
    }
    for url, code in cases.items():
        assert_envelope(get(client, url), 400, code)


def test_tampered_cursors_are_refused(client):
    good = encode_cursor("information", before=10)
    raw = json.loads(base64.urlsafe_b64decode(good + "=="))
    for payload in ({**raw, "b": "10"}, {**raw, "b": 0}, {**raw, "x": 1}, {"k": "sessions", "b": 10}, [1, 2]):
        forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()
        assert_envelope(get(client, f"/api/information?cursor={forged}"), 400, "bad_cursor")
    assert get(client, f"/api/information?cursor={good}").status_code == 200


# ---- public routes and authentication ----------------------------------------------------------
def test_health_and_openapi_are_public(client):
    assert client.get("/api/health").get_json() == {"status": "ok"}
    spec = client.get("/api/openapi.json").get_json()
    assert spec["openapi"] == "3.1.0"
    assert {
        "/api/health",
        "/api/openapi.json",
        "/api/summary",
        "/api/analytics",
        "/api/information",
        "/api/sessions",
        "/api/sessions/{session_id}",
        "/api/sessions/{session_id}/transcript",
        "/api/calls",
        "/api/test_function",
        "/api/calls/{call_id}",
        "/api/dnc",
        "/api/webhooks/twilio/status",
        "/api/webhooks/deliveries",
    } == set(spec["paths"])


def test_openapi_document_is_valid_3_1():
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

    validate(openapi_document())
    broken = json.loads(json.dumps(openapi_document()))
    broken["paths"]["/api/summary"]["get"]["responses"] = "nothing"
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def test_every_api_route_of_the_app_is_described(app):
    described = set(openapi_document()["paths"])
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            assert re.sub(r"<(?:path:)?([a-z_]+)>", r"{\1}", rule.rule) in described


# ---- the document says what the server accepts ------------------------------------------------
def _schema_file(name):
    schema = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
    return {k: v for k, v in schema.items() if k not in ("$schema", "$id")}


def test_openapi_record_shapes_are_the_json_schemas_of_backend_schemas():
    components = openapi_document()["components"]["schemas"]
    assert components["Call"] == _schema_file("call")
    information = json.loads(json.dumps(components["Information"]))
    assert information["properties"]["fields"].pop("description")
    assert information == _schema_file("information")
    session = components["Session"]["properties"]
    assert {k: session[k] for k in _schema_file("session")["properties"] if k != "seq"} == {
        k: v for k, v in _schema_file("session")["properties"].items() if k != "seq"
    }
    for category in CATEGORIES:
        assert components[f"Fields_{category}"] == _schema_file(f"fields/{category}")
        fields = components[f"ShareInformation_{category}"]["properties"]["fields"]
        assert {"$ref": f"#/components/schemas/Fields_{category}"} in fields["oneOf"]


def test_openapi_test_function_arguments_are_the_functions_own():
    components = openapi_document()["components"]["schemas"]
    request = components["TestFunctionRequest"]
    assert [one["$ref"] for one in request["oneOf"]] == [f"#/components/schemas/TestFunction_{n}" for n in FUNCTIONS]
    assert set(request["discriminator"]["mapping"]) == set(FUNCTIONS)
    for name in FUNCTIONS:
        params = inspect.signature(getattr(BackendAgent, name)).parameters
        names = [n for n in params if n != "self" and n not in NOT_ARGUMENTS]  # what the call itself gives
        required = [n for n in names if params[n].default is inspect.Parameter.empty]
        arguments = components[f"TestFunction_{name}"]["properties"]["arguments"]
        shapes = [components[one["$ref"].rsplit("/", 1)[1]] for one in arguments.get("oneOf", [])] or [arguments]
        for shape in shapes:
            assert list(shape["properties"]) == names and shape["required"] == required
            assert shape["additionalProperties"] is False
    zones = components["TestFunction_get_current_time"]["properties"]["arguments"]["properties"]["timezone"]["enum"]
    assert "America/New_York" in zones and "" in zones and None in zones and "Mars/Base" not in zones
    for zone in zones:
        if zone:
            zoneinfo.ZoneInfo(zone)  # every one documented loads


def test_not_blank_is_what_str_strip_leaves_and_reads_the_same_in_ascii_mode():
    pattern = not_blank()
    for flags in (0, re.ASCII):
        compiled = re.compile(pattern, flags)
        for code in range(0x3100):
            text = chr(code) * 2
            assert bool(compiled.search(text)) == bool(text.strip()), hex(code)
        assert compiled.search(" \u3000x\t")


def test_documented_cursors_are_exactly_the_cursors_each_route_gives_out(client, agent):
    for i in range(3):
        share(agent, f"fact {i}")
    for kind, after in (("information", True), ("sessions", False), ("calls", False)):
        pattern = re.compile(cursor_pattern(kind, after=after))
        for seq in (1, 9, 10, 99, 123456, 10**17, 10**18 - 1):
            assert pattern.fullmatch(encode_cursor(kind, before=seq))
            assert bool(pattern.fullmatch(encode_cursor(kind, after=seq))) is after
        assert after is bool(pattern.fullmatch(encode_cursor(kind, after=0)))
        assert not pattern.fullmatch(encode_cursor(kind, before=10**18))  # more digits than described
        for other in {"information", "sessions", "calls"} - {kind}:
            assert not pattern.fullmatch(encode_cursor(other, before=5))
        assert not pattern.fullmatch(encode_cursor(kind, before=5) + "A")
    documented = {
        route: next(p for p in op["get"]["parameters"] if p["name"] == "cursor")["schema"]["pattern"]
        for route, op in openapi_document()["paths"].items()
        if route in ("/api/information", "/api/sessions", "/api/calls")
    }
    assert documented == {
        "/api/information": cursor_pattern("information", after=True),
        "/api/sessions": cursor_pattern("sessions"),
        "/api/calls": cursor_pattern("calls"),
    }

    @settings(max_examples=60, deadline=None, database=None)
    @given(
        st.sampled_from(sorted(documented)).flatmap(
            lambda r: st.tuples(st.just(r), st.from_regex(re.compile(documented[r], re.ASCII), fullmatch=True))
        )
    )
    def every_documented_cursor_is_taken(route_and_cursor):
        route, cursor = route_and_cursor
        decode_cursor(route.rsplit("/", 1)[1], cursor)  # no bad_cursor
        assert get(client, f"{route}?cursor={cursor}&limit=2").status_code == 200

    every_documented_cursor_is_taken()


def test_documented_numbers_to_call_are_numbers_the_server_calls(client):
    pattern = nanp_number_pattern()
    assert openapi_document()["components"]["schemas"]["CallRequest"]["properties"]["phone_number"]["pattern"] == (
        pattern
    )
    compiled = re.compile(pattern, re.ASCII)
    for region in ("US", "CA"):
        for kind in (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.TOLL_FREE):
            example = phonenumbers.example_number_for_type(region, kind)
            assert compiled.fullmatch(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164))
    assert compiled.fullmatch("+12125551234")
    for invalid in ("+1000000", "+15551234567", "+1212555123", "+12125551234*"):
        assert not compiled.fullmatch(invalid)
        assert call_number(client, invalid).status_code == 400
    # the pattern describes North America only: a valid number elsewhere is taken, undescribed
    assert not compiled.fullmatch("+442079460000") and call_number(client, "+442079460000").status_code != 400

    @settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.from_regex(compiled, fullmatch=True))
    def every_documented_number_passes_the_number_gate(number):
        response = call_number(client, number)
        # not configured here: 503 (or 409 outside calling hours at the number), never a 400
        assert response.status_code in (409, 503), (number, response.get_json())

    every_documented_number_passes_the_number_gate()


def call_number(client, number):
    return client.post("/api/calls", json={"phone_number": number}, headers=AUTH)


def test_numbers_with_more_than_a_number_in_them_are_refused(client):
    for junk in ("+12125551234*", "+1-800-FLOWERS", "+12125551234 ext. 5", "tel:+12125551234", "+1 212 555 1234#"):
        assert_envelope(call_number(client, junk), 400, "invalid_phone_number")
        post = client.post("/api/dnc", json={"phone_number": junk}, headers=AUTH)
        assert_envelope(post, 400, "invalid_phone_number")
        delete = client.delete("/api/dnc", query_string={"phone_number": junk}, headers=AUTH)
        assert_envelope(delete, 400, "invalid_phone_number")
    # what the API does take: + and digits, spaced with spaces, dashes, dots or brackets
    assert call_number(client, " +1 (212) 555-1234 ").status_code != 400
    assert client.post("/api/dnc", json={"phone_number": "+1 212.555.1234"}, headers=AUTH).status_code == 201
    removed = client.delete("/api/dnc", query_string={"phone_number": "+1 (212) 555-1234"}, headers=AUTH)
    assert removed.status_code == 200 and removed.get_json()["removed"]["phone_number"] == "+12125551234"


def test_a_removal_reason_fits_in_the_request_line(client):
    """gunicorn refuses request lines over 4094 bytes; the longest reason, 4-byte characters
    percent-encoded, with the longest documented number, still fits."""
    schema = openapi_document()["paths"]["/api/dnc"]["delete"]["parameters"][1]["schema"]
    longest = "\U0001f600" * schema["maxLength"]
    line = client.delete("/api/dnc", query_string={"phone_number": "+123456789012345", "reason": longest}, headers=AUTH)
    assert line.status_code == 404  # not listed: the reason was taken
    request_line = f"DELETE /api/dnc?{line.request.query_string.decode()} HTTP/1.1"
    assert len(request_line.encode()) <= MAX_REQUEST_LINE
    too_long = client.delete(
        "/api/dnc", query_string={"phone_number": "+12125551234", "reason": longest + "x"}, headers=AUTH
    )
    assert_envelope(too_long, 400, "invalid_reason")


def test_a_fresh_install_gets_a_token_file_printed_once(tmp_path, capfd):
    first = create_app({"DATA_DIR": str(tmp_path), "API_TOKENS": [], "TESTING": True})
    token = (tmp_path / "api_token").read_text().strip()
    assert stat.S_IMODE(os.stat(tmp_path / "api_token").st_mode) == 0o600
    assert len(token) >= 32 and token in capfd.readouterr().err
    second = create_app({"DATA_DIR": str(tmp_path), "API_TOKENS": [], "TESTING": True})
    assert token not in capfd.readouterr().err
    for app in (first, second):
        assert check_token(app, token) and not check_token(app, token + "x") and not check_token(app, None)
        assert app.test_client().get("/api/summary", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_workers_starting_together_agree_on_one_token_and_secret(tmp_path):
    code = (
        "import sys; from pathlib import Path; from backend.api.auth import persistent_secret; d = Path(sys.argv[1]);"
        "print(persistent_secret(d / 'api_token')[0], persistent_secret(d / 'secret_key')[0])"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE) for _ in range(6)]
    outputs = {p.communicate(timeout=60)[0] for p in procs}
    assert len(outputs) == 1
    assert stat.S_IMODE(os.stat(tmp_path / "secret_key").st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_secret_key_comes_from_the_environment_or_a_shared_file(tmp_path, monkeypatch):
    a = create_app({"DATA_DIR": str(tmp_path), "API_TOKENS": [TOKEN]})
    b = create_app({"DATA_DIR": str(tmp_path), "API_TOKENS": [TOKEN]})
    assert a.config["SECRET_KEY"] == b.config["SECRET_KEY"] == (tmp_path / "secret_key").read_text().strip()
    monkeypatch.setenv("SECRET_KEY", "from-env")
    reload_settings()  # settings are read once per process
    assert create_app({"DATA_DIR": str(tmp_path), "API_TOKENS": [TOKEN]}).config["SECRET_KEY"] == "from-env"


def test_proxy_headers_count_only_when_trust_proxy_is_on(tmp_path):
    def blocked_other_client(trust: bool) -> int:
        config = {"DATA_DIR": str(tmp_path), "API_TOKENS": [TOKEN], "AUTH_FAILURE_LIMIT": 1, "TRUST_PROXY": trust}
        client = create_app(config).test_client()
        client.get("/api/summary", headers={"Authorization": "Bearer x", "X-Forwarded-For": "203.0.113.1"})
        return client.get("/api/summary", headers={**AUTH, "X-Forwarded-For": "203.0.113.2"}).status_code

    assert blocked_other_client(trust=True) == 200  # a different client behind the proxy
    assert blocked_other_client(trust=False) == 429  # the header is ignored: same address


# ---- /api/information -------------------------------------------------------------------------
def test_information_filters(client, agent):
    a = share(agent, "Owes $20,000 on cards", "debt_info", "+15550000001", "s1", {"amount_usd": 20000})
    time.sleep(0.003)  # timestamps have millisecond resolution
    b = share(agent, "Name is Ana", "contact_details", "+15550000001", "s1")
    time.sleep(0.003)
    c = share(agent, "Lives in Texas", "personal_info", "+15550000002", "s2")
    seqs = lambda url: [r["seq"] for r in get(client, url).get_json()["information"]]  # noqa: E731
    assert seqs("/api/information") == [c["seq"], b["seq"], a["seq"]]
    assert seqs("/api/information?category=debt_info&category=personal_info") == [c["seq"], a["seq"]]
    assert seqs("/api/information?category=debt_info,contact_details") == [b["seq"], a["seq"]]
    assert seqs("/api/information?caller_id=%2B15550000002") == [c["seq"]]
    assert seqs("/api/information?session_id=s1") == [b["seq"], a["seq"]]
    assert seqs("/api/information?q=TEXAS") == [c["seq"]]
    assert seqs("/api/information?q=20000") == [a["seq"]]  # fields are searched too
    assert seqs(f"/api/information?since={b['timestamp']}") == [c["seq"], b["seq"]]
    assert seqs(f"/api/information?until={b['timestamp']}") == [b["seq"], a["seq"]]
    page = get(client, "/api/information?limit=2").get_json()
    assert page["count"] == 2 and page["next_cursor"]
    assert get(client, "/api/information").get_json()["information"][-1] == a


def test_information_default_and_maximum_limit(client, agent):
    for i in range(105):
        share(agent, f"fact {i}")
    assert get(client, "/api/information").get_json()["count"] == 100
    assert get(client, "/api/information?limit=1000").get_json()["count"] == 105
    assert get(client, "/api/information?limit=1").get_json()["count"] == 1


def test_cursor_pages_return_every_record_exactly_once_while_writes_go_on(client, agent):
    written = [share(agent, f"fact {i}", caller=f"+1555000{i % 3:04d}")["seq"] for i in range(23)]
    seen, cursor = [], None
    while True:
        page = get(client, "/api/information?limit=4" + (f"&cursor={cursor}" if cursor else "")).get_json()
        seen += [r["seq"] for r in page["information"]]
        share(agent, f"new while paging {len(seen)}")  # newer records never enter older pages
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(written, reverse=True)


def test_after_seq_pulls_every_record_once_in_write_order(client, agent):
    pulled, after = [], 0
    expected = []
    for round_ in range(6):
        expected += [share(agent, f"r{round_} fact {i}")["seq"] for i in range(round_ * 2)]
        first_url = f"/api/information?after_seq={after}&limit=3"
        page = get(client, first_url).get_json()
        while True:
            pulled += [r["seq"] for r in page["information"]]
            after = page["next_after_seq"]
            if not page["next_cursor"]:
                break
            expected.append(share(agent, f"between pages {len(pulled)}")["seq"])  # joins this pull, in order
            page = get(client, f"{first_url}&cursor={page['next_cursor']}").get_json()  # cursor wins
    assert pulled == expected == sorted(expected)
    empty = get(client, f"/api/information?after_seq={after}").get_json()
    assert empty == {"information": [], "count": 0, "next_cursor": None, "next_after_seq": after}


def test_ndjson_streams_one_record_per_line(client, agent):
    records = [share(agent, f"fact {i}") for i in range(5)]
    response = get(client, "/api/information?format=ndjson&limit=3")
    assert response.status_code == 200 and response.is_streamed
    assert response.mimetype == "application/x-ndjson"
    lines = response.get_data(as_text=True).splitlines()
    assert [json.loads(line) for line in lines] == records[:1:-1]
    assert response.headers["X-Count"] == "3"
    rest = get(client, f"/api/information?format=ndjson&cursor={response.headers['X-Next-Cursor']}")
    assert [json.loads(line)["seq"] for line in rest.get_data(as_text=True).splitlines()] == [
        records[1]["seq"],
        records[0]["seq"],
    ]
    assert 'rel="next"' in response.headers["Link"]
    assert "X-Next-Cursor" not in rest.headers
    incremental = get(client, f"/api/information?format=ndjson&after_seq={records[2]['seq']}")
    assert incremental.headers["X-Next-After-Seq"] == str(records[4]["seq"])


def test_csv_is_utf8_with_a_header_and_neutralised_formulas(client, agent):
    dangerous = ['=HYPERLINK("http://x")', "+1+2", "-2+3", "@SUM(A1)", "\tTab start", "\rCR start"]
    for text in dangerous:
        share(agent, f"{text}", "contact_details", session="csv")
    share(agent, "Café owner, owes “a lot”", "debt_info", session="csv", fields={"creditor": "=cmd|'/c calc'!A1"})
    response = get(client, "/api/information?format=csv&session_id=csv")
    assert response.status_code == 200 and response.is_streamed
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response.headers["Content-Disposition"]
    body = response.data
    assert body.startswith(b"\xef\xbb\xbf")  # UTF-8 byte-order mark, for spreadsheets
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline="")))
    assert list(rows[0]) == [
        "seq",
        "id",
        "timestamp",
        "session_id",
        "caller_id",
        "category",
        "information",
        "fields",
        "status",
    ]
    assert rows[0]["information"] == "Café owner, owes “a lot”"
    assert json.loads(rows[0]["fields"]) == {"creditor": "=cmd|'/c calc'!A1"}  # a JSON cell starts with {
    texts = [r["information"] for r in rows[1:]]
    stored = [t.strip() for t in dangerous]  # the store trims surrounding whitespace
    assert sorted(texts) == sorted("'" + t if t[0] in "=+-@\t\r" else t for t in stored)
    assert all(r["caller_id"] == "'+15550000001" for r in rows)
    assert neutralise("\tx") == "'\tx" and neutralise("\rx") == "'\rx" and neutralise("ok") == "ok"
    assert neutralise(-5) == -5


# ---- sessions, calls, summary -----------------------------------------------------------------
def test_sessions_listing_filters_and_detail(client, agent):
    agent.start_session("s-1", "+15550000001")
    share(agent, "first", session="s-1")
    share(agent, "second", "qualification", session="s-1", fields={"qualified": True})
    agent.end_call("customer_qualified_transfer", "+15550000001", duration_seconds=12.5, session_id="s-1")
    agent.start_session("s-2", "+15550000002", direction="outbound", called_number="+15550000002")
    listing = get(client, "/api/sessions").get_json()
    assert [s["session_id"] for s in listing["sessions"]] == ["s-2", "s-1"] and listing["next_cursor"] is None
    assert [s["session_id"] for s in get(client, "/api/sessions?status=active").get_json()["sessions"]] == ["s-2"]
    completed = get(client, "/api/sessions?status=completed&outcome=qualified").get_json()["sessions"]
    assert [(s["session_id"], s["information_count"], s["duration_seconds"]) for s in completed] == [("s-1", 2, 12.5)]
    assert get(client, "/api/sessions?caller_id=%2B15550000002").get_json()["sessions"][0]["direction"] == "outbound"
    detail = get(client, "/api/sessions/s-1").get_json()
    assert [r["information"] for r in detail["information"]] == ["first", "second"]
    assert detail["session"]["status"] == "completed" and detail["call"]["outcome"] == "qualified"
    assert get(client, "/api/sessions/s-2").get_json()["call"] is None
    assert_envelope(get(client, "/api/sessions/unknown"), 404, "session_not_found")


def test_sessions_and_calls_cursors_page_exactly_once(client, agent):
    for i in range(11):
        agent.start_session(f"p-{i}", f"+1555000{i:04d}")
        agent.end_call("voicemail" if i % 2 else "completed", f"+1555000{i:04d}", session_id=f"p-{i}")
    for route, key, ident in (("sessions", "sessions", "session_id"), ("calls", "calls", "session_id")):
        seen, cursor = [], None
        while True:
            page = get(client, f"/api/{route}?limit=3" + (f"&cursor={cursor}" if cursor else "")).get_json()
            seen += [x[ident] for x in page[key]]
            if not (cursor := page["next_cursor"]):
                break
        assert seen == [f"p-{i}" for i in reversed(range(11))]
    calls = get(client, "/api/calls?outcome=no_contact").get_json()["calls"]
    assert [c["session_id"] for c in calls] == [f"p-{i}" for i in (9, 7, 5, 3, 1)]
    assert [c["reason"] for c in get(client, "/api/calls?caller_id=%2B15550000004").get_json()["calls"]] == [
        "completed"
    ]
    future = get(client, "/api/calls?since=2999-01-01T00:00:00Z").get_json()
    assert future == {"calls": [], "next_cursor": None}


def test_summary(client, agent):
    share(agent, "a", "debt_info", "+15550000001")
    share(agent, "b", "contact_details", "+15550000001")
    agent.end_call("customer_not_interested", "+15550000001")
    share(agent, "c", "debt_info", "+15550000002")
    summary = get(client, "/api/summary").get_json()
    assert {k: summary[k] for k in ("total_sessions", "active_sessions", "total_calls", "total_information")} == {
        "total_sessions": 2,
        "active_sessions": 1,
        "total_calls": 1,
        "total_information": 3,
    }
    assert summary["by_category"]["debt_info"] == 2 and summary["by_outcome"] == {"not_interested": 1}
    assert [r["information"] for r in summary["recent_information"]] == ["c", "b", "a"]
    assert summary["recent_calls"][0]["outcome"] == "not_interested"
    assert summary["last_seq"] == summary["recent_information"][0]["seq"]


# ---- /api/test_function -----------------------------------------------------------------------
def call(client, function, **arguments):
    return client.post("/api/test_function", json={"function": function, "arguments": arguments}, headers=AUTH)


def test_test_function_runs_each_backend_function(client):
    saved = call(
        client,
        "share_information",
        information="Owes $15,000",
        category="debt_info",
        caller_id="+15550000009",
        fields={"amount_usd": 15000},
    )
    assert saved.status_code == 200 and saved.get_json()["record"]["fields"] == {"amount_usd": 15000}
    again = call(
        client, "share_information", information="Owes $15,000", category="debt_info", caller_id="+15550000009"
    )
    assert again.status_code == 200 and again.get_json()["duplicate"] is True
    fetched = call(client, "get_shared_information", caller_id="+15550000009", limit=5)
    assert fetched.status_code == 200 and fetched.get_json()["count"] == 1
    ended = call(client, "end_call", reason="customer_not_qualified", caller_id="+15550000009")
    assert ended.status_code == 200 and ended.get_json()["call"]["outcome"] == "not_qualified"
    now = call(client, "get_current_time", timezone="America/Chicago")
    assert now.status_code == 200 and now.get_json()["timezone"] == "America/Chicago"
    assert get(client, "/api/summary").get_json()["total_calls"] == 1  # the app's own store saw the writes


def test_test_function_passes_failures_through_with_400(client):
    response = call(client, "share_information", information="x", category="debts", caller_id="+15550000009")
    assert response.status_code == 400
    assert response.get_json() == {
        "success": False,
        "error": "invalid_category",
        "message": "Category must be one of: contact_details, debt_info, personal_info, qualification, "
        "conversation_flow.",
    }
    assert call(client, "get_current_time", timezone="Mars/Base").get_json()["error"] == "invalid_timezone"
    assert call(client, "get_shared_information", limit=0).get_json()["error"] == "invalid_limit"


def test_test_function_bad_requests_use_the_envelope(client):
    post = lambda **kw: client.post("/api/test_function", headers=AUTH, **kw)  # noqa: E731
    assert_envelope(post(data="{not json", content_type="application/json"), 400, "invalid_json")
    nan = '{"function": "share_information", "arguments": {"information": "x", "category": "debt_info", '
    nan += '"caller_id": "+1", "fields": {"note": NaN}}}'  # Python's json reads it; JSON has no NaN
    assert_envelope(post(data=nan, content_type="application/json"), 400, "invalid_json")
    assert_envelope(post(json=["share_information"]), 400, "invalid_body")
    assert_envelope(post(json={"function": "end_call", "arguments": [1]}), 400, "invalid_body")
    assert_envelope(post(json={"function": "end_call", "extra": 1}), 400, "invalid_body")
    assert_envelope(post(json={"function": "start_session", "arguments": {}}), 400, "unknown_function")
    assert_envelope(post(json={"function": "__init__"}), 400, "unknown_function")
    assert_envelope(call(client, "get_current_time", tz="UTC"), 400, "unknown_argument")
    assert_envelope(call(client, "end_call", reason="completed"), 400, "missing_argument")
    assert_envelope(call(client, "end_call", reason=["completed"], caller_id="+1"), 400, "invalid_argument")
    assert_envelope(call(client, "get_shared_information", limit=True), 400, "invalid_argument")
    assert call(client, "end_call", reason="completed", caller_id="+1", duration_seconds=3).status_code == 200
    assert call(client, "get_shared_information", limit=5.0).status_code == 200  # JSON's integer 5
    assert_envelope(call(client, "get_shared_information", limit=5.5), 400, "invalid_argument")


def test_unknown_paths_outside_the_api_are_not_enveloped(client):
    response = client.get("/definitely-not-a-page")
    assert response.status_code == 404 and response.mimetype != "application/json"


def test_writes_from_other_processes_are_seen_without_restart(client, tmp_path):
    before = get(client, "/api/summary").get_json()["total_information"]
    code = (
        "import sys; from backend.backend_agent import BackendAgent;"
        "print(BackendAgent(sys.argv[1]).share_information('from another process', 'debt_info', '+15550000077'))"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, capture_output=True, timeout=60)
    deadline = time.monotonic() + 5
    while get(client, "/api/summary").get_json()["total_information"] == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert get(client, "/api/summary").get_json()["total_information"] == before + 1


# ---- the transcript -------------------------------------------------------------------------------
def test_the_transcript_as_json_and_as_text(client, agent):
    share(agent, "Owes $9,000 on a card", session="t-1")
    agent.save_turn("t-1", "agent", "Hi, this is Acme Debt Help, an AI assistant.", 0.2, 2.5)
    agent.save_turn("t-1", "caller", "I owe <b>nine</b> thousand.", 3.0, 4.75)
    agent.save_turn(
        "t-1",
        "tool",
        "",
        5.0,
        5.0,
        tool={
            "name": "share_information",
            "call_id": "c1",
            "arguments": {"category": "debt_info"},
            "result": "Saved under debt_info.",
            "is_error": False,
        },
    )
    agent.save_turn("t-1", "agent", "Thanks, which", 6.0, 6.5, interrupted=True)

    page = get(client, "/api/sessions/t-1/transcript").get_json()
    assert page["session_id"] == "t-1" and page["count"] == 4
    assert [t["speaker"] for t in page["turns"]] == ["agent", "caller", "tool", "agent"]
    assert page["turns"][1]["text"] == "I owe <b>nine</b> thousand."  # data, as it was said
    assert page["turns"][3]["interrupted"] is True
    assert get(client, "/api/sessions/t-1").get_json()["transcript"] == page["turns"]

    text = get(client, "/api/sessions/t-1/transcript?format=txt")
    assert text.mimetype == "text/plain"
    assert text.get_data(as_text=True).splitlines() == [
        "[00:00.2-00:02.5] Agent: Hi, this is Acme Debt Help, an AI assistant.",
        "[00:03.0-00:04.8] Caller: I owe <b>nine</b> thousand.",
        '[00:05.0-00:05.0] (tool share_information({"category": "debt_info"}) -> Saved under debt_info.)',
        "[00:06.0-00:06.5] Agent [interrupted]: Thanks, which",
    ]


def test_transcript_errors_use_the_envelope(client, agent):
    share(agent, "A fact", session="t-2")
    assert_envelope(get(client, "/api/sessions/unknown/transcript"), 404, "session_not_found")
    assert_envelope(get(client, "/api/sessions/t-2/transcript?format=pdf"), 400, "invalid_format")
    assert_envelope(get(client, "/api/sessions/t-2/transcript?since=1"), 400, "unknown_parameter")
    assert_envelope(client.get("/api/sessions/t-2/transcript"), 401, "unauthorized")
    assert get(client, "/api/sessions/t-2/transcript").get_json()["turns"] == []


def test_sessions_filter_by_missing_disclosure(client, agent):
    for sid, missing in (("d-ok", []), ("d-bad", ["ai_assistant"])):
        agent.start_session(sid, "+15550000001")
        evidence = {"required": ["ai_assistant"], "heard": {}, "missing": missing, "flagged": bool(missing)}
        agent.record_disclosures(sid, evidence)
    agent.start_session("d-unchecked", "+15550000001")
    flagged = get(client, "/api/sessions?missing_disclosure=true").get_json()["sessions"]
    assert [s["session_id"] for s in flagged] == ["d-bad"]
    assert flagged[0]["disclosures"]["missing"] == ["ai_assistant"]
    others = {s["session_id"] for s in get(client, "/api/sessions?missing_disclosure=false").get_json()["sessions"]}
    assert others == {"d-ok", "d-unchecked"}
    assert_envelope(get(client, "/api/sessions?missing_disclosure=maybe"), 400, "invalid_missing_disclosure")
