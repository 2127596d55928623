"""Fixtures for the agent tests, loaded with `pytest_plugins = ["tests.conftest_agent"]`: the
settings of a test call (a temporary store) and the real `BackendAgent` on it."""

from __future__ import annotations

import asyncio

import pytest

from backend.backend_agent import BackendAgent
from backend.settings import Settings
from backend.voice.model import build_realtime_model
from tests.fakes.gemini_live import FakeGeminiLive
from tests.postgres import store_env


@pytest.fixture
def agent_env(tmp_path) -> dict[str, str]:
    """The environment of a test call: a temporary store, no fsync, a fixed business and
    threshold. Tests that need more settings build theirs from it."""
    return {
        **store_env(),
        "DATA_DIR": str(tmp_path / "data"),
        "STORE_FSYNC": "0",
        "GOOGLE_API_KEY": "test-key",
        "BUSINESS_NAME": "Acme Debt Help",
        "CALLBACK_NUMBER": "+15550001111",
        "QUALIFY_MIN_UNSECURED_DEBT_USD": "10000",
    }


@pytest.fixture
def agent_settings(agent_env) -> Settings:
    return Settings.from_env(agent_env, dotenv=False)


@pytest.fixture
def livekit_settings(agent_env, twirp) -> Settings:
    """A test call's settings with LiveKit credentials pointing at the fake server API."""
    return Settings.from_env(agent_env | twirp.env(), dotenv=False)


@pytest.fixture
def agent_backend(agent_settings) -> BackendAgent:
    """The real backend on the journal store in the test's DATA_DIR."""
    agent = BackendAgent(settings=agent_settings)
    yield agent
    agent.close()


@pytest.fixture
async def gemini():
    """A fake Gemini Live server on 127.0.0.1 (TLS, throw-away certificate)."""
    async with FakeGeminiLive() as server:
        yield server


@pytest.fixture
def realtime_model(agent_settings, gemini):
    """The shipped RealtimeModel, built from settings, pointed at the fake server."""
    return build_realtime_model(agent_settings, http_options=gemini.http_options())


async def _until(condition, timeout: float = 10.0, interval: float = 0.02) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {condition}")
        await asyncio.sleep(interval)


@pytest.fixture
def until():
    """`await until(lambda: ..., timeout=10)`: wait for a condition, fail after the timeout."""
    return _until
