"""Conversation flows through the real agent, tools and store, with a scripted model: every fact
the model hands to a tool lands in the store under the call's own caller id and session id, a
bad argument or a store failure becomes an error the model can act on and the call goes on, and
every call ends with exactly one call log."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.backend_agent import BackendAgent
from backend.voice.caller import CONSOLE_CALLER_ID, CallDetails, call_details
from tests.fakes.scripted_llm import CALLER, ScriptedLLM, opt_out_turns, start_call, tool, turn
from tests.faults import full_disk

pytest_plugins = ["tests.conftest_agent"]

ROOT = Path(__file__).resolve().parent.parent
DISCLOSURES = ["business_name", "ai_assistant", "call_recorded", "callback_number"]
OPENING = turn(
    "Hi, thanks for calling Acme Debt Help. I'm an AI assistant, this call is recorded, and our "
    "callback number is 555-000-1111. How can I help?",
    tool(
        "share_information",
        information="Opening disclosures given",
        category="conversation_flow",
        fields={"stage": "opening", "disclosures": DISCLOSURES},
    ),
)


def records_of(backend: BackendAgent, session_id: str) -> list[dict]:
    return list(reversed(backend.get_shared_information(session_id=session_id, limit=100)["records"]))


async def test_first_time_caller_is_qualified_end_to_end(agent_backend, agent_settings):
    model = ScriptedLLM(OPENING, turn(""))
    began = time.monotonic()
    session, agent = start_call(agent_backend, agent_settings, model)
    greeting = await session.start(agent, capture_run=True)
    greeting.expect.skip_next_event_if(type="agent_handoff")
    greeting.expect.next_event().is_message(role="assistant")
    greeting.expect.next_event().is_function_call(name="share_information")
    greeting.expect.next_event().is_function_call_output(output="Saved under conversation_flow.", is_error=False)

    model.add(
        turn(
            "",
            tool(
                "share_information",
                information="Name is Ann Lee",
                category="contact_details",
                fields={"first_name": "Ann", "last_name": "Lee"},
            ),
            tool(
                "share_information",
                information="Owes $12,000 on a Chase credit card",
                category="debt_info",
                fields={"debt_type": "credit_card", "amount_usd": 12000, "creditor": "Chase"},
            ),
        ),
        turn("Thanks Ann. Any other debts?"),
    )
    result = await session.run(user_input="I'm Ann Lee and I owe about twelve thousand on my Chase card.")
    result.expect.next_event().is_function_call(name="share_information", arguments={"category": "contact_details"})
    result.expect.next_event().is_function_call(name="share_information", arguments={"category": "debt_info"})
    result.expect.next_event().is_function_call_output(output="Saved under contact_details.", is_error=False)
    result.expect.next_event().is_function_call_output(output="Saved under debt_info.", is_error=False)
    result.expect.next_event().is_message(role="assistant")
    result.expect.no_more_events()

    model.add(
        turn(
            "",
            tool(
                "share_information",
                information="Lives in Texas, earns $3,200 a month, employed",
                category="personal_info",
                fields={
                    "state": "TX",
                    "monthly_income_usd": 3200,
                    "employment_status": "employed",
                    "hardship": "lost second job",
                },
            ),
            tool(
                "share_information",
                information="Qualified: $12,000 unsecured debt",
                category="qualification",
                fields={"qualified": True, "total_unsecured_debt_usd": 12000, "reason": "over threshold"},
            ),
        ),
        turn("A specialist can review your options. May I connect you now?"),
    )
    await session.run(user_input="Texas. I make thirty-two hundred a month since I lost my second job.")

    model.add(turn("", tool("end_call", reason="customer_qualified_transfer")), turn("Thank you, goodbye!"))
    closed = []
    session.on("close", closed.append)
    result = await session.run(user_input="Yes, please connect me.")
    result.expect.next_event().is_function_call(name="end_call", arguments={"reason": "customer_qualified_transfer"})
    result.expect.next_event().is_function_call_output(is_error=False)
    result.expect.next_event().is_message(role="assistant")
    elapsed = time.monotonic() - began
    await session.aclose()

    saved = records_of(agent_backend, "sess-1")
    assert [r["category"] for r in saved] == [
        "conversation_flow",
        "contact_details",
        "debt_info",
        "personal_info",
        "qualification",
    ]
    assert {r["caller_id"] for r in saved} == {CALLER}
    assert saved[0]["fields"]["disclosures"] == DISCLOSURES
    assert saved[2]["fields"] == {"debt_type": "credit_card", "amount_usd": 12000, "creditor": "Chase"}
    assert saved[4]["fields"]["qualified"] is True
    log = agent_backend.store.session_call("sess-1")
    assert (log["reason"], log["outcome"], log["information_count"]) == ("customer_qualified_transfer", "qualified", 5)
    assert 0 < log["duration_seconds"] <= elapsed
    assert closed, "the session closes itself after the goodbye"
    assert "Acme Debt Help" in model.seen[0].items[0].text_content  # the script reached the model


async def test_returning_caller_gets_earlier_records_and_is_not_asked_again(agent_backend, agent_settings):
    agent_backend.start_session("old-call", CALLER)
    agent_backend.share_information("Name is Ann Lee", "contact_details", CALLER, session_id="old-call")
    agent_backend.share_information("Owes $9,000 to Citi", "debt_info", CALLER, session_id="old-call")
    agent_backend.end_call("caller_hung_up", CALLER, session_id="old-call")
    agent_backend.share_information("Someone else's debt", "debt_info", "+15559990000")

    model = ScriptedLLM(turn("Welcome back, Ann!"))
    session, agent = start_call(agent_backend, agent_settings, model, session_id="new-call")
    await session.start(agent, capture_run=True)
    instructions = model.seen[0].items[0].text_content
    assert "has called before" in instructions
    assert "Name is Ann Lee" in instructions and "Owes $9,000 to Citi" in instructions
    assert "Someone else's debt" not in instructions

    model.add(turn("", tool("get_shared_information", category="debt_info")), turn("I see the Citi card."))
    result = await session.run(user_input="I called last week about my debts.")
    result.expect.next_event().is_function_call(name="get_shared_information")
    output = result.expect.next_event().is_function_call_output(is_error=False).event().item.output
    assert "Owes $9,000 to Citi" in output and "Someone else" not in output
    await session.aclose()

    assert agent_backend.store.session_call("old-call")["reason"] == "caller_hung_up"  # untouched
    assert records_of(agent_backend, "new-call") == []


async def test_opt_out_ends_the_call_at_once_as_do_not_call(agent_backend, agent_settings):
    model = ScriptedLLM(OPENING, turn(""))
    session, agent = start_call(agent_backend, agent_settings, model)
    await session.start(agent, capture_run=True)
    model.add(*opt_out_turns("Understood, you won't be called again. Goodbye."))
    closed = []
    session.on("close", closed.append)
    result = await session.run(user_input="Stop calling me and take me off your list.")
    result.expect.next_event().is_function_call(name="share_information")
    result.expect.next_event().is_function_call(name="end_call", arguments={"reason": "do_not_call_request"})
    result.expect.next_event().is_function_call_output(is_error=False)
    out = result.expect.next_event().is_function_call_output(is_error=False).event().item.output
    assert "will not be called again" in out
    await session.aclose()

    log = agent_backend.store.session_call("sess-1")
    assert (log["reason"], log["outcome"]) == ("do_not_call_request", "do_not_call")
    assert records_of(agent_backend, "sess-1")[-1]["fields"] == {"opt_out": True}
    assert closed


async def test_bad_tool_arguments_become_errors_the_model_can_fix(agent_backend, agent_settings):
    model = ScriptedLLM(turn("Hello!"))
    session, agent = start_call(agent_backend, agent_settings, model)
    await session.start(agent, capture_run=True)
    model.add(
        turn("", tool("share_information", information="Owes $5,000", category="banana")),
        turn(
            "",
            tool(
                "share_information", information="Lives in Texas", category="personal_info", fields={"state": "Texas"}
            ),
        ),
        turn(
            "",
            tool(
                "share_information",
                information="Lives in Texas",
                category="personal_info",
                fields={"state": "TX"},
                caller_id="+19998887777",
                session_id="hijack",
            ),
        ),
        turn("Thanks!"),
    )
    result = await session.run(user_input="I live in Texas and owe five thousand.")
    result.expect.next_event().is_function_call(arguments={"category": "banana"})
    bad_category = result.expect.next_event().is_function_call_output(is_error=True).event().item.output
    assert "category" in bad_category
    result.expect.next_event().is_function_call(arguments={"fields": {"state": "Texas"}})
    bad_state = result.expect.next_event().is_function_call_output(is_error=True).event().item.output
    assert "state" in bad_state and "try again" in bad_state
    result.expect.next_event().is_function_call(arguments={"fields": {"state": "TX"}})
    result.expect.next_event().is_function_call_output(is_error=False)
    result.expect.next_event().is_message(role="assistant")
    await session.aclose()

    saved = records_of(agent_backend, "sess-1")
    assert [(r["information"], r["caller_id"]) for r in saved] == [("Lives in Texas", CALLER)]
    assert agent_backend.get_shared_information(session_id="hijack")["count"] == 0


async def test_store_failure_is_a_tool_error_and_the_call_goes_on(agent_backend, agent_settings):
    model = ScriptedLLM(turn("Hello!"))
    session, agent = start_call(agent_backend, agent_settings, model)
    await session.start(agent, capture_run=True)

    model.add(
        turn(
            "",
            tool(
                "share_information",
                information="Owes $20,000 in medical bills",
                category="debt_info",
                fields={"debt_type": "medical", "amount_usd": 20000},
            ),
        ),
        turn("I see. And what state are you in?"),
    )
    with full_disk(agent_settings.data_dir):
        result = await session.run(user_input="I owe twenty thousand in medical bills.")
    result.expect.next_event().is_function_call(name="share_information")
    error = result.expect.next_event().is_function_call_output(is_error=True).event().item.output
    assert "unavailable" in error and "carry on" in error
    result.expect.next_event().is_message(role="assistant")

    model.add(
        turn("", tool("share_information", information="Owes $20,000 in medical bills", category="debt_info")),
        turn("Thanks, noted."),
    )
    result = await session.run(user_input="Ohio.")
    result.expect.next_event().is_function_call(name="share_information")
    result.expect.next_event().is_function_call_output(output="Saved under debt_info.", is_error=False)
    await session.aclose()
    assert [r["information"] for r in records_of(agent_backend, "sess-1")] == ["Owes $20,000 in medical bills"]


def test_caller_details_come_from_the_sip_participant():
    attrs = {"sip.phoneNumber": "+15551234567", "sip.trunkPhoneNumber": "+15557654321"}
    assert call_details("sip_+15551234567", attrs) == CallDetails("+15551234567", "+15557654321", "inbound")


def test_web_and_console_callers_are_known_by_identity():
    assert call_details("web-user-7", {}).caller_id == "web-user-7"
    assert call_details(None, None) == CallDetails(CONSOLE_CALLER_ID, None, "inbound")


def test_dispatch_metadata_with_a_phone_number_makes_the_call_outbound():
    details = call_details(None, None, '{"phone_number": "+15550009999"}')
    assert details == CallDetails("+15550009999", "+15550009999", "outbound")
    assert call_details("web-user-7", {}, "not json").direction == "inbound"


@pytest.mark.slow
def test_importing_the_agent_has_no_side_effects(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "GOOGLE_"))}
    env.update(DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT))
    code = "import telephony_agent, socket; print(telephony_agent.build_agent_session.__name__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert list(tmp_path.iterdir()) == [], "import created files"


PREWARM = """
import gc, sys
import telephony_agent
from backend.backend_agent import BackendAgent
from backend.settings import get_settings

writer = BackendAgent(settings=get_settings())
for i in range(200):
    writer.start_session(f"s{i}", f"+1555000{i:04d}")
    writer.share_information(f"fact {i}", "debt_info", f"+1555000{i:04d}", session_id=f"s{i}")
writer.close()

class Proc:  # the part of livekit's JobProcess that prewarm uses
    userdata = {}

from google.genai import types
cold = types.LiveServerMessage.__pydantic_complete__, types.FunctionResponse.__pydantic_complete__
proc = Proc()
telephony_agent.prewarm(proc)
warm = types.LiveServerMessage.__pydantic_complete__, types.FunctionResponse.__pydantic_complete__
print(cold, warm)
backend = proc.userdata["backend"]
index = backend.store.index  # the agent's lean index (backend/store/lean.py)
assert backend.store.lean and len(index._slots) == 200, len(index._slots)
tracked = {id(o) for o in gc.get_objects()}
print(sum(id(o) in tracked for o in (index, index._slots, index._callers)), gc.get_freeze_count() > 0)
backend.share_information("after prewarm", "debt_info", "+15550000001", session_id="s1")
print(backend.get_shared_information(session_id="s1")["count"])
"""


@pytest.mark.json_store_only  # the JSON store's index, frozen out of the collector's sight
@pytest.mark.slow
def test_prewarm_takes_first_use_costs_off_the_call(tmp_path):
    """A full collection walking the store's index, or google-genai building a type's schema on
    first use, would stall the call's event loop (bench/agent_bench.py measures both). After
    prewarm the schemas are built, the store is the lean one and none of its index's objects is
    left for the collector to walk, and the store still reads and writes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "GOOGLE_"))}
    env.update(DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT), STORE_FSYNC="0")
    out = subprocess.run(
        [sys.executable, "-c", PREWARM], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "(False, False) (True, True)"  # google-genai's schemas: built by prewarm, not the call
    assert lines[1:] == ["0 True", "2"]
