"""A call's recording as the API and the dashboard show it: `GET /api/sessions/<id>` carries
`recording` (null when none was started); the session page has a Recording box with a player when
the completed recording's file lies inside RECORDING_FILE_DIR, else its location, and why when it
failed, all escaped; the player's file route needs a signed-in session and serves only a file
the store names for that session inside that folder."""

from __future__ import annotations

import os
import re

import pytest

from backend.api.openapi import openapi_document
from backend.api_server import create_app
from backend.backend_agent import BackendAgent
from backend.settings import Settings
from backend.store import MemoryStore
from tests.postgres import store_env
from tests.test_dashboard import CALLER, TOKEN, XSS, sign_in

PLAYER = re.compile(r"\ssrc=")  # an <audio> with a source (data-src is the address kept for later)
AUDIO = b"OggS\x00\x02" + bytes(range(256)) * 8


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "recordings"
    path.mkdir()
    return path


@pytest.fixture
def settings(tmp_path, folder) -> Settings:
    env = dict(os.environ, DATA_DIR=str(tmp_path / "data"), RECORDING="on", RECORDING_FILE_DIR=str(folder))
    return Settings.from_env(env, dotenv=False)


@pytest.fixture
def store():
    return MemoryStore()


@pytest.fixture
def backend(store, settings) -> BackendAgent:
    backend = BackendAgent(store=store, settings=settings)
    backend.start_session("s1", CALLER)
    return backend


@pytest.fixture
def client(store, settings, tmp_path):
    app = create_app(
        {
            **store_env(),
            "DATA_DIR": str(tmp_path / "data"),
            "API_TOKENS": [TOKEN],
            "TESTING": True,
            "STORE": store,
            "SETTINGS": settings,
        }
    )
    return app.test_client()


@pytest.fixture
def signed_in(client):
    assert sign_in(client).status_code == 302
    return client


def recorded(backend, location, *, stopped=True, session="s1", **stop):
    backend.record_recording(session, state="started", egress_id="EG_1", location=location)
    if stopped:
        backend.record_recording(session, state="stopped", egress_id="EG_1", **stop)


def recording_box(html: str) -> str:
    start = html.index('id="recording"')
    return html[start : html.index("</section>", start)]


# ---- the API ---------------------------------------------------------------------------------
def test_the_session_detail_carries_its_recording(client, backend, folder):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/api/sessions/s1", headers=auth).get_json()["recording"] is None

    recorded(backend, f"{folder}/s1.ogg", stopped=False)
    running = client.get("/api/sessions/s1", headers=auth).get_json()["recording"]
    assert running["status"] == "recording" and running["ended_at"] is None
    backend.record_recording("s1", state="stopped", egress_id="EG_1", location=f"{folder}/final.ogg")
    done = client.get("/api/sessions/s1", headers=auth).get_json()["recording"]
    assert {k: done[k] for k in ("egress_id", "status", "location", "error")} == {
        "egress_id": "EG_1",
        "status": "completed",
        "location": f"{folder}/final.ogg",  # where LiveKit said the file went
        "error": None,
    }
    assert done["started_at"] == running["started_at"] <= done["ended_at"]
    schema = openapi_document()["components"]["schemas"]["Recording"]
    assert set(done) == set(schema["required"]) == set(schema["properties"])

    backend.start_session("s2", CALLER)
    backend.record_recording("s2", state="failed", error="LiveKit Egress refused it (permission_denied: no).")
    failed = client.get("/api/sessions/s2", headers=auth).get_json()["recording"]
    assert failed["status"] == "failed" and failed["egress_id"] is None and failed["started_at"] is None
    assert "permission_denied" in failed["error"]
    assert client.get("/api/sessions/s1").status_code == 401


def test_the_session_detail_schema_describes_recording():
    detail = openapi_document()["components"]["schemas"]["SessionDetail"]
    assert "recording" in detail["properties"] and "recording" not in detail["required"]


# ---- the session page ------------------------------------------------------------------------
def test_a_completed_recording_in_the_folder_gets_a_player_that_serves_it(signed_in, backend, folder):
    (folder / "s1.ogg").write_bytes(AUDIO)
    recorded(backend, f"{folder}/s1.ogg")
    box = recording_box(signed_in.get("/sessions/s1").text)
    assert '<audio controls preload="metadata" id="recording-player"' in box
    assert 'src="/recordings/s1"' in box and "Recorded" in box and "EG_1" in box

    audio = signed_in.get("/recordings/s1")
    assert audio.status_code == 200 and audio.mimetype == "audio/ogg" and audio.data == AUDIO
    part = signed_in.get("/recordings/s1", headers={"Range": "bytes=0-3"})
    assert part.status_code == 206 and part.data == b"OggS"  # the player can seek
    assert audio.headers["X-Content-Type-Options"] == "nosniff"


def test_the_recording_route_needs_a_signed_in_session(client, backend, folder):
    (folder / "s1.ogg").write_bytes(AUDIO)
    recorded(backend, f"{folder}/s1.ogg")
    response = client.get("/recordings/s1")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")
    assert AUDIO not in response.data
    bearer = client.get("/recordings/s1", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bearer.status_code == 302  # the dashboard's own sign-in, not the API's token


@pytest.mark.parametrize("where", ["outside", "relative", "symlink", "folder", "missing"])
def test_a_file_outside_the_folder_is_never_served(signed_in, backend, folder, tmp_path, where):
    secret = tmp_path / "secret.ogg"
    secret.write_bytes(b"not yours")
    location = {
        "outside": str(secret),
        "relative": "../secret.ogg",
        "symlink": str(folder / "link.ogg"),
        "folder": str(folder),
        "missing": str(folder / "gone.ogg"),
    }[where]
    (folder / "link.ogg").symlink_to(secret)
    recorded(backend, location)
    box = recording_box(signed_in.get("/sessions/s1").text)
    assert not PLAYER.search(box) and location in box  # the location, no player
    response = signed_in.get("/recordings/s1")
    assert response.status_code == 404 and b"not yours" not in response.data


def test_the_route_takes_no_path_from_the_request(signed_in, backend, folder):
    (folder / "s1.ogg").write_bytes(AUDIO)
    recorded(backend, f"{folder}/s1.ogg")
    for path in ("/recordings/s1.ogg", "/recordings/..%2Fs1.ogg", "/recordings/nope", f"/recordings{folder}/s1.ogg"):
        assert signed_in.get(path).status_code == 404, path


def test_an_s3_recording_shows_its_location(signed_in, backend):
    recorded(backend, "s3://calls-bucket/recordings/s1.ogg")
    box = recording_box(signed_in.get("/sessions/s1").text)
    assert "s3://calls-bucket/recordings/s1.ogg" in box and not PLAYER.search(box) and "Recorded" in box
    assert signed_in.get("/recordings/s1").status_code == 404


def test_a_recording_in_progress_has_no_player_yet(signed_in, backend, folder):
    (folder / "s1.ogg").write_bytes(AUDIO)
    recorded(backend, f"{folder}/s1.ogg", stopped=False)
    box = recording_box(signed_in.get("/sessions/s1").text)
    assert "Recording" in box and not PLAYER.search(box)
    assert signed_in.get("/recordings/s1").status_code == 404


def test_a_failed_recording_says_why_escaped(signed_in, backend):
    backend.record_recording("s1", state="failed", error=f"LiveKit Egress refused it ({XSS}).")
    box = recording_box(signed_in.get("/sessions/s1").text)
    assert "Why it is not recorded:" in box and "Not recorded" in box
    assert "&lt;img src=x onerror=alert(1)&gt;" in box and "<img src=x" not in box and "<script>" not in box


def test_a_call_without_recording_says_so(signed_in, backend):
    box = recording_box(signed_in.get("/sessions/s1").text)
    assert 'id="recording-none" >' in box or 'id="recording-none">' in box
    assert "This call is not recorded" in box


def test_live_updates_carry_the_recording(signed_in, backend, store, folder):
    (folder / "s1.ogg").write_bytes(AUDIO)
    backend.record_recording("s1", state="started", egress_id="EG_1", location=f"{folder}/s1.ogg")
    last = store.last_seq()
    backend.record_recording("s1", state="stopped", egress_id="EG_1")
    data = signed_in.get(f"/live?after_seq={last}&session_id=s1").json
    assert data["changed"] is True
    rec = data["recording"]
    assert (rec["status"], rec["status_label"], rec["playable"]) == ("completed", "Recorded", True)
    assert "src" not in rec  # the player's address is the page's own
