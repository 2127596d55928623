"""What a call cost: its model tokens (from LiveKit's usage of the real Gemini plugin, as the
fake Live server reports them) at MODEL_PRICES, plus its minutes at TELEPHONY_USD_PER_MINUTE;
stored on the call log with its parts. A model missing from the table, or a broken table, is
said on the cost, never guessed, and nothing else is lost."""

from __future__ import annotations

import json

import pytest

import telephony_agent
from backend.postcall.cost import PriceTableError, call_cost, price_table
from backend.settings import Settings
from backend.voice import call
from backend.voice.model import build_realtime_model
from tests.fakes.gemini_live import speech
from tests.fakes.scripted_llm import CALLER

pytest_plugins = ["tests.conftest_agent"]

PRICES = {"input_audio": 3.0, "input_text": 0.5, "output_audio": 12.0, "output_text": 2.0}


def test_tokens_of_each_kind_at_their_price_and_the_minutes():
    usage = [
        {"type": "llm_usage", "model": "m", "input_tokens": 1500, "input_audio_tokens": 1000, "input_text_tokens": 500,
         "output_tokens": 300, "output_audio_tokens": 200, "output_text_tokens": 100},
    ]  # fmt: skip
    cost = call_cost(usage, 90.0, {"m": PRICES}, 0.02)
    model = (1000 * 3.0 + 500 * 0.5 + 200 * 12.0 + 100 * 2.0) / 1_000_000
    assert cost["model_usd"] == pytest.approx(model)
    assert cost["telephony_usd"] == pytest.approx(0.03)
    assert cost["total_usd"] == pytest.approx(model + 0.03)
    assert cost["usage"]["m"] == {"input_audio": 1000, "input_text": 500, "output_audio": 200, "output_text": 100}
    assert cost["error"] is None


def test_a_model_without_a_price_is_said_not_guessed():
    cost = call_cost([{"model": "new-model", "input_tokens": 10}], 60.0, {"m": PRICES}, 0.01)
    assert cost["model_usd"] is None and cost["total_usd"] == pytest.approx(0.01)
    assert cost["error"] == "no price for model new-model in MODEL_PRICES"
    assert cost["usage"]["new-model"]["input_text"] == 10  # kept, to be priced later


@pytest.mark.parametrize(
    ("raw", "problem"),
    [("{", "not JSON"), ("[]", "must be an object"), ('{"m": {"input_audio": -1}}', "non-negative"),
     ('{"m": {"per_call": 1}}', "use input_audio")],
)  # fmt: skip
def test_a_broken_price_table_is_a_clear_error(raw, problem):
    with pytest.raises(PriceTableError, match=problem):
        price_table(raw)


@pytest.mark.slow
async def test_a_calls_cost_from_the_real_plugins_usage_is_on_its_call_log(agent_env, gemini, until):
    model_name = build_realtime_model(Settings.from_env(agent_env, dotenv=False)).model
    env = agent_env | {"MODEL_PRICES": json.dumps({model_name: PRICES}), "TELEPHONY_USD_PER_MINUTE": "0.012"}
    settings = Settings.from_env(env, dotenv=False)
    from backend.backend_agent import BackendAgent

    backend = BackendAgent(settings=settings)
    gemini.reply(speech("Hi, this is Acme Debt Help, an AI assistant."))
    session, agent = telephony_agent.build_agent_session(
        session_id="priced",
        caller_id=CALLER,
        backend=backend,
        llm=build_realtime_model(settings, http_options=gemini.http_options()),
        settings=settings,
    )
    await session.start(agent)
    await until(lambda: backend.transcript("priced"))
    await session.aclose()
    await call.finish_call(session.userdata)

    cost = backend.store.session_call("priced")["cost"]
    used = cost["usage"][model_name]
    assert sum(used.values()) == 15  # the fake server's usageMetadata: 10 prompt + 5 response tokens
    expected = sum(used[k] * PRICES[k] for k in PRICES) / 1_000_000
    assert cost["model_usd"] == pytest.approx(expected) and cost["error"] is None
    duration = backend.store.session_call("priced")["duration_seconds"]
    assert cost["telephony_usd"] == pytest.approx(duration / 60 * 0.012, abs=1e-6)
    assert cost["total_usd"] == pytest.approx(expected + cost["telephony_usd"], abs=1e-6)
    backend.close()
