"""The backend functions keep the contract's results and error codes, never raise for bad input,
guard against repeated calls, and write exactly one call log per session."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from backend.backend_agent import BackendAgent, spoken_time
from backend.calls.hours import parse_calling_hours
from backend.settings import Settings, get_settings, override_settings
from tests.postgres import store_env

CALLER = "+15551234567"


def test_share_information_success(backend):
    result = backend.share_information("Lives in Ohio", "personal_info", CALLER, "s1", {"state": "OH"})
    assert result["success"] is True and "duplicate" not in result
    assert result["record"]["fields"] == {"state": "OH"} and result["message"]


def test_repeated_call_returns_first_record_with_duplicate_flag(backend):
    first = backend.share_information("Owes $9,000 medical", "debt_info", CALLER, "s1")
    again = backend.share_information("Owes $9,000 medical", "debt_info", CALLER, "s1")
    assert again["duplicate"] is True and again["record"] == first["record"]
    assert backend.get_shared_information(caller_id=CALLER)["count"] == 1


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("", "debt_info", CALLER), "empty_information"),
        (("x" * 2001, "debt_info", CALLER), "information_too_long"),
        (("fact", "nonsense", CALLER), "invalid_category"),
        (("fact", "debt_info", ""), "invalid_caller_id"),
        (("fact", "debt_info", None), "invalid_caller_id"),
        (("fact", "debt_info", CALLER, 42), "invalid_session_id"),
        (("fact", "debt_info", CALLER, "s1", {"amount_usd": -5}), "invalid_fields"),
        ((None, "debt_info", CALLER), "empty_information"),
    ],
)
def test_share_information_errors(backend, args, code):
    result = backend.share_information(*args)
    assert result == {"success": False, "error": code, "message": result["message"]}
    assert result["message"].endswith(".")


def test_get_shared_information_filters_and_limits(backend):
    for i in range(5):
        backend.share_information(f"fact {i}", "debt_info", CALLER, "s1")
    backend.share_information("other", "contact_details", "+15550000000", "s2")
    result = backend.get_shared_information(caller_id=CALLER, limit=3)
    assert result["count"] == 3 and [r["information"] for r in result["records"]] == ["fact 4", "fact 3", "fact 2"]
    assert backend.get_shared_information(category="contact_details")["count"] == 1
    assert backend.get_shared_information(session_id="s2")["records"][0]["information"] == "other"


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"limit": 0}, "invalid_limit"),
        ({"limit": 1001}, "invalid_limit"),
        ({"limit": "5"}, "invalid_limit"),
        ({"limit": True}, "invalid_limit"),
        ({"category": "x"}, "invalid_category"),
    ],
)
def test_get_shared_information_errors(backend, kwargs, code):
    assert backend.get_shared_information(**kwargs)["error"] == code


def test_end_call_once_per_session(backend):
    backend.start_session("s1", CALLER)
    backend.share_information("fact", "debt_info", CALLER, "s1")
    first = backend.end_call("customer_qualified_transfer", CALLER, 420.5, "s1")
    assert first["success"] and first["call"]["duration_seconds"] == 420.5
    assert first["call"]["information_count"] == 1 and first["call"]["outcome"] == "qualified"
    second = backend.end_call("caller_hung_up", CALLER, 10, "s1")
    assert second["already_ended"] is True and second["call"] == first["call"]


def test_end_call_without_duration_uses_time_since_start(backend):
    backend.start_session("s1", CALLER)
    call = backend.end_call("completed", CALLER, session_id="s1")["call"]
    assert 0 <= call["duration_seconds"] < 5


def test_end_call_errors(backend):
    assert backend.end_call("because", CALLER)["error"] == "invalid_reason"
    assert backend.end_call("completed", CALLER, duration_seconds=-3)["error"] == "invalid_duration"
    assert backend.end_call("completed", "")["error"] == "invalid_caller_id"


def test_start_session(backend):
    result = backend.start_session("s1", CALLER, "outbound", "+15557654321")
    assert result["session"]["direction"] == "outbound" and result["session"]["status"] == "active"
    assert backend.start_session("s1", CALLER)["already_started"] is True
    assert backend.start_session("s2", CALLER, "sideways")["error"] == "invalid_direction"
    assert backend.start_session("", CALLER)["error"] == "invalid_session_id"


def test_get_current_time_default_zone(backend):
    result = backend.get_current_time()
    assert result["success"] and result["timezone"] == "America/New_York"
    now = datetime.fromisoformat(result["iso"])
    assert now.utcoffset() == datetime.now(ZoneInfo("America/New_York")).utcoffset()
    assert result["within_calling_hours"] == (8 <= now.hour < 21)
    assert " at " in result["spoken"] and result["spoken"].endswith(("AM", "PM"))


def test_get_current_time_accepts_iana_names_and_refuses_others(backend):
    assert backend.get_current_time("Asia/Tokyo")["timezone"] == "Asia/Tokyo"
    for bad in ("Mars/Olympus", "../../etc/passwd", "UTC; rm -rf", 5):
        assert backend.get_current_time(bad)["error"] == "invalid_timezone"


def test_calling_hours_setting_is_honoured(data_dir):
    settings = Settings.from_env(
        {**store_env(), "DATA_DIR": str(data_dir), "CALLING_HOURS": "00:00-23:59"}, dotenv=False
    )
    agent = BackendAgent(settings=settings)
    now = datetime.now(ZoneInfo("America/New_York"))
    assert agent.get_current_time()["within_calling_hours"] == ((now.hour, now.minute) < (23, 59))
    broken = BackendAgent(
        settings=Settings.from_env({**store_env(), "DATA_DIR": str(data_dir), "CALLING_HOURS": "9-5"}, dotenv=False)
    )
    assert broken.get_current_time()["error"] == "invalid_calling_hours"


def test_helpers():
    assert parse_calling_hours("08:00-21:00")[1].hour == 21
    for bad in ("9-5", "08:00-08:00", "8am-9pm", "", "08:00"):
        with pytest.raises(ValueError, match="CALLING_HOURS"):
            parse_calling_hours(bad)
    assert spoken_time(datetime(2026, 11, 22, 15, 4)) == "Sunday, November 22 at 3:04 PM"
    assert spoken_time(datetime(2026, 11, 22, 0, 30)) == "Sunday, November 22 at 12:30 AM"


@pytest.mark.json_store_only  # the journal's file in DATA_DIR
def test_default_data_dir_comes_from_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "elsewhere"))
    with override_settings():  # the environment read afresh
        BackendAgent().share_information("fact", "debt_info", CALLER)
    assert (tmp_path / "elsewhere" / "journal.jsonl").exists()
    with override_settings(data_dir=tmp_path / "third"):
        BackendAgent().share_information("fact", "debt_info", CALLER)
    assert (tmp_path / "third" / "journal.jsonl").exists()


def test_settings_are_read_once_per_process(monkeypatch, tmp_path):
    first = get_settings()
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "changed"))
    assert get_settings() is first  # one frozen object: a later change of the environment is not seen
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.data_dir = tmp_path  # type: ignore[misc]


def test_arguments_of_the_wrong_type_are_errors_not_crashes(backend):
    assert backend.end_call(["completed"], CALLER)["error"] == "invalid_reason"
    assert backend.get_shared_information(category=["debt_info"])["error"] == "invalid_category"
    assert backend.share_information("fact", {"x": 1}, CALLER)["error"] == "invalid_category"
    assert backend.share_information(["fact"], "debt_info", CALLER)["error"] == "empty_information"


@pytest.mark.parametrize("hours", ["08:00-21:00", "21:00-08:00", "00:00-23:59", "12:30-12:31"])
def test_get_current_time_and_the_outbound_gate_agree_on_calling_hours(data_dir, monkeypatch, hours):
    """One rule for both: a window may cross midnight (21:00-08:00 is the night)."""
    from backend import backend_agent
    from backend.calls import hours as sip

    agent = BackendAgent(
        settings=Settings.from_env({**store_env(), "DATA_DIR": str(data_dir), "CALLING_HOURS": hours}, dotenv=False)
    )
    for hour, minute in [(0, 0), (7, 59), (8, 0), (12, 30), (20, 59), (21, 0), (23, 59)]:
        moment = datetime(2026, 11, 23, hour, minute, tzinfo=ZoneInfo("America/New_York"))
        monkeypatch.setattr(backend_agent, "utc_now", lambda moment=moment: moment.astimezone(UTC))
        told = agent.get_current_time("America/New_York")["within_calling_hours"]
        gate, _ = sip.within_calling_hours("+12125551234", hours, now=moment)  # a New York number
        assert told == gate, (hours, hour, minute)
        if hours == "21:00-08:00":  # the night window: late evening and early morning only
            assert told == (hour >= 21 or hour < 8), (hour, minute)
