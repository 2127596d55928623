"""Shared fixtures: a temporary store folder per test, and the store under every implementation."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend.backend_agent import BackendAgent  # noqa: E402
from backend.settings import Settings, reload_settings  # noqa: E402
from backend.store import IMPLEMENTATIONS, JournalStore, MemoryStore  # noqa: E402
from tests.fakes.livekit_twirp import API_KEY, API_SECRET, FakeTwirpServer  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """No test reads the developer's .env or writes into ./data."""
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BUSINESS_TIMEZONE", "America/New_York")
    monkeypatch.setenv("CALLING_HOURS", "08:00-21:00")
    monkeypatch.setenv("STORE_FSYNC", "1")
    reload_settings()  # settings are read once per process: each test reads its own environment
    yield
    reload_settings()


@pytest.fixture
def data_dir(tmp_path) -> Path:
    path = tmp_path / "data"
    path.mkdir(exist_ok=True)
    return path


def make_store(kind: str, data_dir: Path):
    if kind.startswith("journal"):
        return JournalStore(data_dir, lean=kind == "journal-lean")
    assert kind == "memory"
    return MemoryStore()


@pytest.fixture(params=[*sorted(IMPLEMENTATIONS), "journal-lean"])
def store(request, data_dir):
    """The store, once per implementation that exists."""
    s = make_store(request.param, data_dir)
    yield s
    s.close()


@pytest.fixture
def settings(data_dir) -> Settings:
    return Settings.from_env(dict(os.environ, DATA_DIR=str(data_dir)), dotenv=False)


@pytest.fixture
def backend(store, settings) -> BackendAgent:
    return BackendAgent(store=store, settings=settings)


@pytest.fixture(scope="module")
def _twirp_server():
    with FakeTwirpServer(api_key=API_KEY, api_secret=API_SECRET) as server:
        yield server


@pytest.fixture
def twirp(_twirp_server) -> FakeTwirpServer:
    """A fake LiveKit server API (Twirp, protobuf bodies), one per test module since stopping
    one takes half a second; each test starts with no calls and no handlers. `twirp.env()` is
    the settings that point our code at it."""
    _twirp_server.reset()
    return _twirp_server
