"""The session page's Recording box in a real browser (headless Chromium, Playwright, the app
under gunicorn): when the call's recording ends while the page is open, the box turns to
"Recorded" and its player gets the file without a reload; a failure's reason arrives as text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS, ROOT, TOKEN, XSS, free_port, wait_until_up

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.store_per_module,  # one server per module: on each store in turn
]

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)
sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

CALLER = "+15551230009"
WRITER = """
import json, sys
from backend.backend_agent import BackendAgent
agent = BackendAgent(sys.argv[1])
for session_id, data in json.loads(sys.argv[2]):
    if data is None:
        assert agent.start_session(session_id, sys.argv[3])["success"]
    else:
        agent.record_recording(session_id, **data)
"""


def write(data_dir: Path, *steps: tuple[str, dict | None]) -> None:
    """Write through the backend functions in another process, as the agent's would."""
    subprocess.run(
        [sys.executable, "-c", WRITER, str(data_dir), json.dumps(steps), CALLER],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "STORE_FSYNC": "0"},
        check=True,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory, _module_store):  # one per store kind: _module_store set STORE_URL
    data_dir = tmp_path_factory.mktemp("recording-data")
    folder = tmp_path_factory.mktemp("recordings")
    write(data_dir, ("rec-1", None), ("rec-2", None))
    port = free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "API_TOKENS": TOKEN,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "1",
        "STORE_FSYNC": "0",
        "RECORDING": "on",
        "RECORDING_FILE_DIR": str(folder),
    }
    command = [sys.executable, "-m", "gunicorn", "--no-control-socket", "backend.api_server:create_app()"]
    with open(data_dir / "gunicorn.log", "w") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_up(proc, base, data_dir / "gunicorn.log")
            yield {"base": base, "data_dir": data_dir, "folder": folder}
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture
def page(server):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        problems = []
        page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
        page.on("pageerror", lambda e: problems.append(f"error: {e}"))
        page.goto(server["base"] + "/login")
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(server["base"] + "/")
        yield page
        browser.close()
        assert problems == []


def test_the_player_appears_when_the_recording_ends(page, server):
    path = server["folder"] / "rec-1.ogg"
    write(server["data_dir"], ("rec-1", {"state": "started", "egress_id": "EG_9", "location": str(path)}))
    page.goto(server["base"] + "/sessions/rec-1")
    assert page.text_content("#recording-status") == "Recording"
    assert page.is_hidden("#recording-player")

    path.write_bytes(b"OggS" + bytes(2048))
    began = time.monotonic()
    write(server["data_dir"], ("rec-1", {"state": "stopped", "egress_id": "EG_9"}))
    page.wait_for_selector("#recording-player[src]", state="visible", timeout=5000)
    assert time.monotonic() - began < 5
    assert page.text_content("#recording-status") == "Recorded"
    assert page.get_attribute("#recording-player", "src") == "/recordings/rec-1"
    status = page.evaluate("fetch('/recordings/rec-1').then(r => r.status + ' ' + r.headers.get('content-type'))")
    assert status == "200 audio/ogg"


def test_a_failure_arrives_as_text(page, server):
    page.goto(server["base"] + "/sessions/rec-2")
    assert page.is_visible("#recording-none")
    write(server["data_dir"], ("rec-2", {"state": "failed", "error": f"LiveKit Egress refused it ({XSS})."}))
    page.wait_for_selector("#recording-problem", state="visible", timeout=5000)
    assert page.text_content("#recording-problem-label") == "Why it is not recorded:"
    assert XSS in page.text_content("#recording-error")  # shown as text, never run
    assert page.is_hidden("#recording-none") and page.is_hidden("#recording-player")
