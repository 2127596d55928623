"""After the call: the summary job reads the call's records and transcript and asks a Gemini
text model (the real google-genai SDK, against a local fake of the REST endpoint) for a summary
and a lead under a JSON Schema; the reply is checked and kept whatever it is; our rule-based
qualification stands beside the model's; the job is durable (exactly one summary, also after a
crash or when run by several workers) and is skipped without a key, retried when Gemini fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.backend_agent import BackendAgent
from backend.postcall import jobs, summary
from backend.settings import Settings
from tests.fakes.gemini_rest import FakeGeminiRest
from tests.postgres import store_env

CALLER = "+12025550143"
ROOT = Path(__file__).resolve().parent.parent
LEAD = {
    "name": "Pat Doe",
    "state": "OH",
    "total_debt_usd": 18000,
    "unsecured_debt_usd": 18000,
    "creditors": ["Chase"],
    "monthly_income_usd": 3200,
    "hardship": "Lost hours at work",
    "qualification": {"decision": "qualified", "reason": "Over $10,000 of unsecured debt."},
    "next_step": "Transfer to a specialist",
    "callback_time": None,
}
REPLY = {"summary": "Pat owes $18,000 on a Chase card. Hours were cut. Qualified and transferred.", "lead": LEAD}


@pytest.fixture
def rest(monkeypatch):
    server = FakeGeminiRest()
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.base_url)
    yield server
    server.close()


@pytest.fixture
def backend(data_dir):
    env = {**store_env(), "DATA_DIR": str(data_dir), "GOOGLE_API_KEY": "test-key", "STORE_FSYNC": "0"}
    agent = BackendAgent(settings=Settings.from_env(env, dotenv=False))
    yield agent
    agent.close()


def ended_call(backend, session_id="s1", debt=18000, secured=False):
    backend.start_session(session_id, CALLER)
    fields = {"debt_type": "credit_card", "amount_usd": debt, "creditor": "Chase", "secured": secured}
    backend.share_information(f"Owes ${debt:,} to Chase", "debt_info", CALLER, session_id=session_id, fields=fields)
    backend.save_turn(session_id, "caller", "My hours got cut and I can't pay Chase.", 3.0, 6.0)
    assert backend.end_call("customer_qualified_transfer", CALLER, session_id=session_id)["success"]


def test_the_summary_and_lead_are_written_once_the_call_ends(backend, rest):
    ended_call(backend)
    assert backend.summary_of("s1")["state"] == "queued"  # queued by the call log itself
    rest.say(REPLY)
    assert backend.run_jobs() == 1
    job = backend.summary_of("s1")
    assert job["state"] == "done"
    result = job["result"]
    assert result["summary"] == REPLY["summary"] and result["lead"] == LEAD and result["lead_valid"] is True
    assert result["errors"] == []
    assert result["rule"]["qualified"] is True and result["rule"]["unsecured_debt_usd"] == 18000
    assert (result["model_decision"], result["disagreement"]) == ("qualified", False)
    [request] = rest.requests
    assert rest.paths[0].endswith("/models/gemini-2.5-flash:generateContent")
    prompt = request["contents"][0]["parts"][0]["text"]
    assert "Owes $18,000 to Chase" in prompt and "My hours got cut" in prompt
    config = request["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == summary.reply_schema()
    assert backend.run_jobs() == 0  # nothing left


def test_a_disagreement_between_the_rule_and_the_model_is_flagged(backend, rest):
    ended_call(backend, debt=4000)  # below the $10,000 threshold
    rest.say(REPLY)  # the model says qualified anyway
    backend.run_jobs()
    result = backend.summary_of("s1")["result"]
    assert result["rule"]["qualified"] is False and result["model_decision"] == "qualified"
    assert result["disagreement"] is True


def test_a_reply_that_is_not_json_is_kept_with_its_error(backend, rest):
    ended_call(backend)
    rest.say("Sorry, I cannot help with that.")
    backend.run_jobs()
    job = backend.summary_of("s1")
    assert job["state"] == "done"
    assert job["result"]["raw"] == "Sorry, I cannot help with that."
    assert job["result"]["errors"][0].startswith("the reply is not JSON")


def test_a_lead_that_breaks_the_schema_is_kept_with_the_validation_error(backend, rest):
    ended_call(backend)
    broken = {**LEAD, "state": "Ohio", "qualification": {"decision": "maybe", "reason": "?"}}
    rest.say({"summary": "One. Two. Three. Four.", "lead": broken})
    backend.run_jobs()
    result = backend.summary_of("s1")["result"]
    assert result["lead"] == broken and result["lead_valid"] is False
    assert any(e.startswith("lead/state") for e in result["errors"])
    assert any(e.startswith("lead/qualification/decision") for e in result["errors"])
    assert "the summary has 4 sentences (at most 3)" in result["errors"]


def test_without_a_key_the_job_is_skipped(data_dir, rest):
    agent = BackendAgent(
        settings=Settings.from_env({**store_env(), "DATA_DIR": str(data_dir), "STORE_FSYNC": "0"}, dotenv=False)
    )
    ended_call(agent)
    agent.run_jobs()
    job = agent.summary_of("s1")
    assert (job["state"], job["reason"]) == ("skipped", "skipped: no key")
    assert rest.requests == []


def test_a_failing_gemini_is_retried_with_backoff_and_shows_its_error(backend, rest, monkeypatch):
    monkeypatch.setattr(summary, "POLICY", jobs.Policy(max_attempts=5, first_delay=0.0, max_delay=0.0))
    from backend import backend_agent

    monkeypatch.setitem(backend_agent.JOB_HANDLERS, "summary", (summary.run, summary.POLICY))
    ended_call(backend)
    rest.fail(503)
    rest.fail(500)
    rest.say(REPLY)
    backend.run_jobs(limit=1)
    job = backend.summary_of("s1")
    assert (job["state"], job["attempts"]) == ("retrying", 1) and "503" in job["error"]
    backend.run_jobs()
    assert backend.summary_of("s1")["state"] == "done" and len(rest.requests) == 3
    states = [e["data"]["state"] for e in backend.store.events("job", "summary:s1")]
    assert states.count("retrying") == 2


def work_once(data_dir, base_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "WEBHOOK_"))}
    env.update(DATA_DIR=str(data_dir), GOOGLE_API_KEY="test-key", GOOGLE_GEMINI_BASE_URL=base_url, STORE_FSYNC="0")
    return subprocess.run(
        [sys.executable, "-m", "backend", "work", "--once"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_a_crash_between_call_end_and_summary_still_gives_exactly_one(data_dir, rest):
    agent = BackendAgent(
        settings=Settings.from_env({**store_env(), "DATA_DIR": str(data_dir), "STORE_FSYNC": "0"}, dotenv=False)
    )
    agent.start_session("s1", CALLER)
    # the call log was written, and the process died before it queued the summary
    agent.store.end_session(reason="completed", caller_id=CALLER, session_id="s1", duration_seconds=30)
    assert agent.summary_of("s1") is None
    agent.close()
    rest.say(REPLY)
    first = work_once(data_dir, rest.base_url)  # the next worker finds the call and summarises it
    assert first.returncode == 0, first.stderr
    assert "queued 1 summary job" in first.stderr
    second = work_once(data_dir, rest.base_url)  # and another worker does nothing more
    assert second.returncode == 0, second.stderr
    again = BackendAgent(data_dir)
    assert again.summary_of("s1")["state"] == "done" and len(rest.requests) == 1
    assert [e["data"]["state"] for e in again.store.events("job", "summary:s1")].count("done") == 1


def test_the_session_api_shows_the_summary_lead_qualification_and_cost(backend, rest, data_dir):
    from backend.api_server import create_app

    ended_call(backend)
    app = create_app({**store_env(), "DATA_DIR": str(data_dir), "API_TOKENS": ["t"], "TESTING": True})
    detail = app.test_client().get("/api/sessions/s1", headers={"Authorization": "Bearer t"}).get_json()
    assert detail["summary"] == {"state": "queued", "attempts": 0, "error": None, "reason": None}
    rest.say(REPLY)
    backend.run_jobs()
    detail = app.test_client().get("/api/sessions/s1", headers={"Authorization": "Bearer t"}).get_json()
    shown = detail["summary"]
    assert (shown["state"], shown["summary"], shown["lead"]) == ("done", REPLY["summary"], LEAD)
    assert shown["rule"]["qualified"] is True and shown["disagreement"] is False


def test_a_ready_summary_is_queued_for_the_webhook(data_dir, rest):
    env = {
        **store_env(),
        "DATA_DIR": str(data_dir),
        "GOOGLE_API_KEY": "k",
        "STORE_FSYNC": "0",
        "WEBHOOK_URL": "http://127.0.0.1:9/hook",
        "WEBHOOK_SECRET": "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    }
    agent = BackendAgent(settings=Settings.from_env(env, dotenv=False))
    ended_call(agent)
    rest.say(REPLY)
    agent.run_jobs(kinds=("summary",))
    queued = agent.job("webhook:call.summary:s1")
    assert queued is not None and queued["payload"]["event"]["type"] == "call.summary"
    assert queued["payload"]["event"]["data"]["summary"]["summary"] == REPLY["summary"]
    agent.close()
