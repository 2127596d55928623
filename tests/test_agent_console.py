"""`python telephony_agent.py console --text`, the way a qualifier tries the agent on a laptop,
run for real in a pseudo-terminal: LiveKit's console CLI, the worker, prewarm, the entrypoint
and the shipped RealtimeModel and google-genai, talking to the local fake Gemini Live server
over TLS (found through the SDK's own GOOGLE_GEMINI_BASE_URL and SSL_CERT_FILE). What the
"caller" types lands in the store under caller `console`, and leaving the console ends the
session with exactly one call log."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from pathlib import Path

import pexpect
import pytest

from tests.fakes.gemini_live import FakeGeminiLive, speech, tool_call
from tests.postgres import configured_store

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

DEBT = {
    "information": "Owes $12,000 on a Chase credit card",
    "category": "debt_info",
    "fields": {"debt_type": "credit_card", "amount_usd": 12000, "creditor": "Chase"},
}


@pytest.fixture
def gemini():
    """The fake Gemini Live server on its own event loop in a thread (pexpect blocks)."""
    loop = asyncio.new_event_loop()
    server = FakeGeminiLive()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=10)
    yield server
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


def test_console_text_mode_saves_what_the_caller_says(gemini, tmp_path):
    gemini.reply(speech("Hello, this is Acme Debt Relief's AI assistant, and this call is recorded."))
    gemini.reply(tool_call("c1", "share_information", **DEBT))
    gemini.reply(speech("Got it: twelve thousand dollars with Chase."))
    ca = tmp_path / "ca.pem"
    gemini.ca.cert_pem.write_to_path(str(ca))
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "GOOGLE_", "GEMINI_"))}
    env.update(
        GOOGLE_API_KEY="console-test-key",
        GOOGLE_GEMINI_BASE_URL=gemini.base_url,
        SSL_CERT_FILE=str(ca),
        DATA_DIR=str(data_dir),
        STORE_FSYNC="0",
        PYTHONPATH=str(ROOT),
        TERM="xterm",
    )
    console = pexpect.spawn(
        sys.executable,
        [str(ROOT / "telephony_agent.py"), "console", "--text"],
        cwd=str(tmp_path),
        env=env,
        encoding="utf-8",
        timeout=90,
        dimensions=(50, 200),
    )
    log = tmp_path / "console.log"
    console.logfile_read = log.open("w")
    try:
        console.expect("Type to talk to your agent")
        console.sendline("I owe twelve thousand dollars on my Chase card")
        console.expect("Got it: twelve thousand dollars with Chase")
        console.sendcontrol("c")
        console.expect(pexpect.EOF, timeout=60)
    finally:
        console.close(force=True)
        console.logfile_read.close()

    assert [r["name"] for r in gemini.tool_responses()] == ["share_information"]
    assert "output" in gemini.tool_responses()[0]["response"], gemini.tool_responses()
    store = configured_store(data_dir)
    try:
        records, _more = store.query_information(caller_id="console")
        assert [(r["category"], r["information"], r["fields"]) for r in records] == [
            (DEBT["category"], DEBT["information"], DEBT["fields"])
        ]
        session_id = records[0]["session_id"]
        logs = [c for c in store.query_calls(caller_id="console")[0] if c["session_id"] == session_id]
        assert len(logs) == 1, log.read_text()[-3000:]
        assert logs[0]["reason"] == "caller_hung_up" and logs[0]["information_count"] == 1
    finally:
        store.close()
