"""The call's transcript: every finished turn of the caller and the agent is saved as it
happens, through the real AgentSession and the real Gemini plugin against the fake Gemini Live
server (which sends input and output transcriptions); tool calls appear at their place with
their arguments and result; the agent's own opening words are checked for the required
disclosures; and bad turns are stored or refused with a reason, never crashing the call."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from livekit import rtc
from livekit.agents.voice import io
from livekit.agents.voice.transcription.synchronizer import TranscriptSynchronizer

import telephony_agent
from backend.voice import call
from tests.fakes.gemini_live import barge_in, heard, speech, tool_call
from tests.fakes.scripted_llm import CALLER

pytest_plugins = ["tests.conftest_agent"]
pytestmark = pytest.mark.slow

OPENING = (
    "Hi, this is Acme Debt Help. I'm an AI assistant, and this call is recorded. You can reach us at 1 (555) 000-1111."
)
DEBT = {"information": "Owes $12,000 on a Chase card", "category": "debt_info"}


async def start(backend, settings, model, session_id="sess-1"):
    session, agent = telephony_agent.build_agent_session(
        session_id=session_id, caller_id=CALLER, backend=backend, llm=model, settings=settings
    )
    await session.start(agent)
    return session


def turns(backend, session_id="sess-1"):
    return backend.transcript(session_id)


async def test_each_turn_and_tool_call_is_saved_in_order(agent_backend, agent_settings, gemini, realtime_model, until):
    gemini.reply(speech(OPENING))  # the greeting
    session = await start(agent_backend, agent_settings, realtime_model)
    await until(lambda: len(turns(agent_backend)) >= 1)
    gemini.reply(speech("Thanks, I've noted that. Anything else?"))  # answers the tool result
    await gemini.push(heard("I owe twelve thousand on my Chase card."), tool_call("c1", "share_information", **DEBT))
    await until(lambda: len(turns(agent_backend)) >= 4)
    await session.aclose()

    saved = turns(agent_backend)
    assert [t["speaker"] for t in saved] == ["agent", "tool", "caller", "agent"] or [t["speaker"] for t in saved] == [
        "agent",
        "caller",
        "tool",
        "agent",
    ], saved
    greeting = saved[0]
    assert greeting["text"] == OPENING and not greeting.get("interrupted")
    [caller] = [t for t in saved if t["speaker"] == "caller"]
    assert caller["text"] == "I owe twelve thousand on my Chase card."
    [tool] = [t for t in saved if t["speaker"] == "tool"]
    assert tool["tool"]["name"] == "share_information"
    assert tool["tool"]["arguments"]["information"] == DEBT["information"]
    assert tool["tool"]["result"] == "Saved under debt_info." and tool["tool"]["is_error"] is False
    record = agent_backend.store.session_information("sess-1")[0]
    assert record["seq"] < tool["seq"]  # the record was saved before its tool turn: it shows at its place
    seqs = [t["seq"] for t in saved]
    assert seqs == sorted(seqs)
    for turn in saved:
        assert 0 <= turn["start_s"] <= turn["end_s"] < 60, turn
    assert saved[-1]["text"] == "Thanks, I've noted that. Anything else?"


async def test_the_opening_disclosures_are_checked_in_the_agents_own_words(
    agent_backend, agent_settings, gemini, realtime_model, until
):
    gemini.reply(speech(OPENING))
    session = await start(agent_backend, agent_settings, realtime_model)
    await until(lambda: turns(agent_backend))
    gemini.reply(speech("How can I help today?"))
    await gemini.push(heard("Hello?"), speech("Are you there?"))
    await until(lambda: agent_backend.store.get_session("sess-1")["disclosures"] is not None)
    await session.aclose()
    await call.finish_call(session.userdata)  # the job's shutdown: the call log

    evidence = agent_backend.store.get_session("sess-1")["disclosures"]
    # recording is off in this call: recorded is not required; the other three were said
    assert sorted(evidence["required"]) == ["ai_assistant", "business_name", "callback_number"]
    assert evidence["missing"] == [] and evidence["flagged"] is False
    assert set(evidence["heard"]) == {"ai_assistant", "business_name", "callback_number"}
    assert agent_backend.store.session_call("sess-1")["missing_disclosures"] == []


async def test_a_call_whose_agent_skipped_a_disclosure_is_flagged(
    agent_backend, agent_settings, gemini, realtime_model, until
):
    gemini.reply(speech("Hi, this is Acme Debt Help. How can I help?"))  # no AI notice, no number
    session = await start(agent_backend, agent_settings, realtime_model)
    await until(lambda: turns(agent_backend))
    await session.aclose()  # the call ends after one agent turn: what was heard so far counts
    await call.finish_call(session.userdata)

    evidence = agent_backend.store.get_session("sess-1")["disclosures"]
    assert evidence["missing"] == ["ai_assistant", "callback_number"] and evidence["flagged"] is True
    assert agent_backend.store.session_call("sess-1")["missing_disclosures"] == ["ai_assistant", "callback_number"]
    flagged, _ = agent_backend.query_sessions(missing_disclosure=True)
    assert [s["session_id"] for s in flagged] == ["sess-1"]


async def test_bad_turns_are_stored_or_refused_with_a_reason(agent_backend, caplog):
    agent_backend.start_session("sess-9", CALLER)
    with caplog.at_level(logging.INFO):
        empty = agent_backend.save_turn("sess-9", "caller", "   ", 1.0, 2.0)
        unknown = agent_backend.save_turn("no-such-call", "caller", "hello", 1.0, 2.0)
    assert (empty["success"], empty["error"]) == (False, "empty_turn")
    assert (unknown["success"], unknown["error"]) == (False, "unknown_session")
    assert "empty_turn" in caplog.text and "unknown_session" in caplog.text

    huge = ("word " * 5000).strip()  # 24,999 characters
    parts = agent_backend.save_turn("sess-9", "agent", huge, 3.0, 90.0)["turns"]
    assert [(p["part"], p["parts"]) for p in parts] == [(1, 3), (2, 3), (3, 3)]
    assert "".join(p["text"] for p in parts) == huge  # kept whole
    assert all(len(p["text"]) <= 10_000 for p in parts)

    text = "Ich schulde 5.000 € — 借金があります 🙏"
    assert agent_backend.save_turn("sess-9", "caller", text, 91.0, 92.5)["turns"][0]["text"] == text

    agent_backend.end_call("completed", CALLER, session_id="sess-9")
    late = agent_backend.save_turn("sess-9", "agent", "Goodbye!", 93.0, 94.0)["turns"][0]
    assert late["after_call_log"] is True
    assert [t["text"] for t in turns(agent_backend, "sess-9")][-2:] == [text, "Goodbye!"]


class Captions(io.TextOutput):
    def __init__(self) -> None:
        super().__init__(label="captions", next_in_chain=None)

    async def capture_text(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


class PhoneLine(io.AudioOutput):
    """The caller's earpiece: plays in real time; when the agent is cut off it reports how much
    had played."""

    def __init__(self) -> None:
        super().__init__(label="phone-line", capabilities=io.AudioOutputCapabilities(pause=False))
        self.seconds = 0.0
        self.started: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if self.started is None:
            self.started = time.monotonic()
            self.on_playback_started(created_at=time.time())
        self.seconds += frame.duration

    def flush(self) -> None:
        super().flush()
        self._timer = asyncio.get_running_loop().call_later(self.seconds, self._finish, False)

    def _finish(self, interrupted: bool) -> None:
        played = self.seconds if not interrupted else min(self.seconds, time.monotonic() - (self.started or 0))
        self.seconds, self.started = 0.0, None
        self.on_playback_finished(playback_position=played, interrupted=interrupted)

    def clear_buffer(self) -> None:
        if self._timer:
            self._timer.cancel()
        if self.started is not None:
            self._finish(True)


async def test_interrupted_agent_speech_is_marked_with_only_what_was_heard(
    agent_backend, agent_settings, gemini, realtime_model, until
):
    long_answer = "Let me explain how our program works. " * 6
    gemini.reply(speech(long_answer, seconds=4.0))
    session, agent = telephony_agent.build_agent_session(
        session_id="sess-1", caller_id=CALLER, backend=agent_backend, llm=realtime_model, settings=agent_settings
    )
    line = PhoneLine()
    # as LiveKit's room output does on a real call: the words shown keep pace with the audio played
    synced = TranscriptSynchronizer(next_in_chain_audio=line, next_in_chain_text=Captions())
    session.output.audio, session.output.transcription = synced.audio_output, synced.text_output
    await session.start(agent)
    await until(lambda: line.started is not None)
    await asyncio.sleep(0.8)
    await gemini.push(barge_in())
    await until(lambda: turns(agent_backend))
    await session.aclose()
    [turn] = turns(agent_backend)
    assert turn["interrupted"] is True
    heard_words = turn["text"].split()
    assert 0 < len(heard_words) < len(long_answer.split())  # only what was played before the cut
    assert long_answer.startswith(turn["text"].rstrip(". "))


# A call's agent process that has had a few turns; it reports them, then waits to be killed.
TURNS_PROCESS = """
import asyncio
import telephony_agent
from backend.backend_agent import BackendAgent
from backend.settings import Settings
from tests.fakes.scripted_llm import ScriptedLLM, turn

async def main():
    settings = Settings.from_env(dotenv=False)
    backend = BackendAgent(settings=settings)
    model = ScriptedLLM(turn("Hi, this is Acme Debt Help, an AI assistant."), turn("Thanks. Which creditor is it?"))
    session, agent = telephony_agent.build_agent_session(
        session_id="killed", caller_id="+12025550143", backend=backend, llm=model, settings=settings
    )
    await session.start(agent, capture_run=True)  # the greeting has been said
    await session.run(user_input="I owe nine thousand on a card.")
    while len(backend.transcript("killed")) < 3:
        await asyncio.sleep(0.01)
    print("ready", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def test_finished_turns_survive_a_killed_agent_process(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from backend.backend_agent import BackendAgent

    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "GOOGLE_"))}
    env.update(DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(root), STORE_FSYNC="1")
    proc = subprocess.Popen([sys.executable, "-c", TURNS_PROCESS], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    saved = BackendAgent(tmp_path / "data").transcript("killed")
    assert [(t["speaker"], t["text"]) for t in saved] == [
        ("agent", "Hi, this is Acme Debt Help, an AI assistant."),
        ("caller", "I owe nine thousand on a card."),
        ("agent", "Thanks. Which creditor is it?"),
    ]
