"""A call whose agent process dies without writing its call log (SIGKILL here) still ends with
exactly one: the next agent process's prewarm writes it, with reason agent_error and the
duration up to the call's last sign of life. Live calls, and calls that ended normally, are
left alone."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

import telephony_agent
from backend.backend_agent import BackendAgent
from backend.calls import leases
from backend.store.leases import LIVE_DIR
from backend.store.postgres import PgStore
from backend.voice import call
from tests.fakes.scripted_llm import CALLER, ScriptedLLM, start_call, tool, turn

pytest_plugins = ["tests.conftest_agent"]

ROOT = Path(__file__).resolve().parent.parent

# A call's agent process: opens the call as the entrypoint does, saves one fact, says so, waits
# to be killed.
CALL_PROCESS = """
import asyncio, sys, time
import telephony_agent
from backend.backend_agent import BackendAgent
from backend.settings import Settings
from tests.fakes.scripted_llm import ScriptedLLM

async def main():
    settings = Settings.from_env(dotenv=False)
    backend = BackendAgent(settings=settings)
    telephony_agent.build_agent_session(
        session_id="dead-call", caller_id="+12025550143", backend=backend, llm=ScriptedLLM(), settings=settings
    )
    backend.share_information("Owes $12,000 to Chase", "debt_info", "+12025550143", session_id="dead-call")
    print("ready", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


class Proc:  # the part of LiveKit's JobProcess that prewarm uses
    def __init__(self) -> None:
        self.userdata: dict = {}


def killed_call(data_dir: Path) -> None:
    """Run a call's agent process until it has saved a fact, then SIGKILL it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "GOOGLE_"))}
    env.update(DATA_DIR=str(data_dir), PYTHONPATH=str(ROOT), STORE_FSYNC="0")
    proc = subprocess.Popen([sys.executable, "-c", CALL_PROCESS], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


def set_lease(backend: BackendAgent, session_id: str, *, touched: float | None = None, **fields) -> None:
    """Change a call's lease where its store keeps it: its file under DATA_DIR/live/ (the JSON
    store; `touched` is the file's mtime) or its row in `leases` (PostgreSQL)."""
    store = backend.store
    if isinstance(store, PgStore):
        changes = fields | ({} if touched is None else {"touched": touched})
        with psycopg.connect(store.url, autocommit=True) as conn:
            for column, value in changes.items():
                update = sql.SQL("UPDATE leases SET {} = %s WHERE session_id = %s").format(sql.Identifier(column))
                conn.execute(update, (value, session_id))
        return
    path = store._leases._path(session_id)
    if fields:
        path.write_text(json.dumps(json.loads(path.read_text()) | fields))
    if touched is not None:
        os.utime(path, (touched, touched))


def lease_touched(backend: BackendAgent, session_id: str) -> float:
    return next(lease.touched for lease in backend.store.leases() if lease.session_id == session_id)


def calls_of(backend: BackendAgent, session_id: str) -> list[dict]:
    return [c for c in backend.store.query_calls()[0] if c["session_id"] == session_id]


@pytest.mark.slow
def test_prewarm_writes_the_call_log_a_killed_agent_process_never_wrote(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    killed_call(data_dir)
    before = BackendAgent(data_dir=data_dir)
    [orphan] = before.store.leases()
    assert orphan.session_id == "dead-call"
    assert not leases.process_alive(orphan.pid, orphan.process_start)
    # the call's last sign of life: its last heartbeat, 42 s after the session started
    started = datetime.fromisoformat(before.store.get_session("dead-call")["started_at"])
    set_lease(before, "dead-call", touched=started.timestamp() + 42)

    monkeypatch.setenv("DATA_DIR", str(data_dir))
    monkeypatch.setenv("STORE_FSYNC", "0")
    monkeypatch.setattr(telephony_agent, "get_settings", lambda: telephony_agent.Settings.from_env(dotenv=False))
    proc = Proc()
    telephony_agent.prewarm(proc)  # the next agent process starts
    backend = proc.userdata["backend"]

    [log] = calls_of(backend, "dead-call")
    assert (log["reason"], log["outcome"], log["caller_id"]) == ("agent_error", "incomplete", "+12025550143")
    assert log["information_count"] == 1  # what the caller said before the crash is kept
    assert log["duration_seconds"] == pytest.approx(42, abs=0.01)
    assert backend.store.get_session("dead-call")["status"] == "completed"
    assert backend.store.leases() == []

    telephony_agent.prewarm(Proc())  # another process: nothing left to close, no second log
    assert len(calls_of(backend, "dead-call")) == 1


async def test_a_live_call_is_left_alone(agent_backend, agent_settings):
    start_call(agent_backend, agent_settings, ScriptedLLM(), session_id="live-call")
    [held] = agent_backend.store.leases()
    assert (held.session_id, held.caller_id, held.pid) == ("live-call", CALLER, os.getpid())
    assert leases.orphaned(agent_backend.store.leases()) == []
    assert agent_backend.close_orphaned_calls() == []
    assert agent_backend.store.get_session("live-call")["status"] == "active"


async def test_a_reused_pid_is_not_taken_for_the_dead_calls_process(agent_backend, agent_settings):
    start_call(agent_backend, agent_settings, ScriptedLLM(), session_id="old-call")
    set_lease(agent_backend, "old-call", process_start="1")  # our pid, but a process that started at boot: not us

    [closed] = agent_backend.close_orphaned_calls()
    assert (closed["session_id"], closed["reason"]) == ("old-call", "agent_error")


async def test_a_lease_of_another_host_is_judged_by_its_heartbeat(agent_backend, agent_settings):
    """Another machine sharing DATA_DIR, or this worker's container before a restart (a new host
    name): its processes cannot be looked up here, so only a lease gone quiet is closed."""
    for sid in ("old-container", "other-machine"):
        start_call(agent_backend, agent_settings, ScriptedLLM(), session_id=sid)
    for held in agent_backend.store.leases():
        quiet = held.session_id == "old-container"  # no heartbeat for 10 minutes
        set_lease(agent_backend, held.session_id, host="elsewhere", touched=time.time() - 600 if quiet else None)

    assert [c["session_id"] for c in agent_backend.close_orphaned_calls()] == ["old-container"]
    assert agent_backend.store.get_session("other-machine")["status"] == "active"
    assert [x.session_id for x in agent_backend.store.leases()] == ["other-machine"]


@pytest.mark.json_store_only  # a lease file torn on disk
def test_an_unreadable_lease_is_skipped_not_fatal(agent_backend, agent_settings, caplog):
    live = Path(agent_settings.data_dir) / LIVE_DIR
    live.mkdir(parents=True)
    (live / "torn.json").write_text('{"session_id": "x", "pi')
    assert agent_backend.close_orphaned_calls() == []
    assert "unreadable call lease torn.json" in caplog.text


async def test_ending_a_call_releases_its_lease(agent_backend, agent_settings):
    model = ScriptedLLM(
        turn("Hi, this is Acme Debt Help, an AI assistant; this call is recorded."),  # the greeting
        turn("", tool("end_call", reason="customer_not_interested")),
        turn("Goodbye."),
    )
    session, agent = start_call(agent_backend, agent_settings, model)
    assert len(agent_backend.store.leases()) == 1
    await session.start(agent)
    result = await session.run(user_input="Not interested, bye.")
    result.expect.next_event().is_function_call(name="end_call")
    assert agent_backend.store.leases() == []
    await session.aclose()
    assert [c["reason"] for c in calls_of(agent_backend, "sess-1")] == ["customer_not_interested"]


async def test_a_running_call_keeps_its_lease_fresh(agent_backend, agent_settings, monkeypatch):
    monkeypatch.setattr(call, "HEARTBEAT_SECONDS", 0.05)
    session, _agent = start_call(agent_backend, agent_settings, ScriptedLLM(), session_id="beating")
    set_lease(agent_backend, "beating", touched=time.time() - 3600)
    await asyncio.sleep(0.3)
    assert lease_touched(agent_backend, "beating") > time.time() - 5
    session.userdata.heartbeat.cancel()
