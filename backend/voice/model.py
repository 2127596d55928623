"""The Gemini Live model, built by one function from settings (so tests build the same model
against a local fake server by passing `http_options`)."""

from __future__ import annotations

from google.genai import types
from livekit.agents import NOT_GIVEN
from livekit.plugins.google.realtime import RealtimeModel
from pydantic import BaseModel

from backend.settings import Settings

# Phone audio is 8 kHz, narrow-band and noisy. Low start sensitivity keeps line hiss and
# background noise from barging in on the agent; low end sensitivity plus a longer silence
# lets a caller pause while reading out an account balance without being cut off.
PHONE_TURN_DETECTION = types.RealtimeInputConfig(
    automatic_activity_detection=types.AutomaticActivityDetection(
        start_of_speech_sensitivity=types.StartSensitivity.START_SENSITIVITY_LOW,
        end_of_speech_sensitivity=types.EndSensitivity.END_SENSITIVITY_LOW,
        prefix_padding_ms=200,
        silence_duration_ms=800,
    ),
    activity_handling=types.ActivityHandling.START_OF_ACTIVITY_INTERRUPTS,
)

# Audio costs ~25 tokens a second; without compression a Live session ends after about 15
# minutes. The sliding window drops the oldest turns (the system instruction stays), and the
# facts already captured remain reachable through the get_shared_information tool.
CONTEXT_COMPRESSION = types.ContextWindowCompressionConfig(
    trigger_tokens=32000,
    sliding_window=types.SlidingWindow(target_tokens=16000),
)


def build_realtime_model(settings: Settings, *, http_options: types.HttpOptions | None = None) -> RealtimeModel:
    """The realtime model for one call: audio in and out, phone-tuned turn detection, context
    window compression and session resumption (the connection survives the Live API's session
    limits and server `goAway`s)."""
    return RealtimeModel(
        model=settings.gemini_model or NOT_GIVEN,
        api_key=settings.google_api_key or NOT_GIVEN,
        voice=settings.gemini_voice,
        modalities=[types.Modality.AUDIO],
        realtime_input_config=PHONE_TURN_DETECTION,
        context_window_compression=CONTEXT_COMPRESSION,
        session_resumption=types.SessionResumptionConfig(),
        http_options=http_options or NOT_GIVEN,
    )


def warm_up_gemini_types() -> int:
    """Build the pydantic schemas of google-genai's types now; returns how many were built.

    google-genai defers each model's schema to its first use, and the Live API path touches
    dozens of them: the first server message alone costs ~220 ms, the connect config ~90 ms
    (bench/agent_bench.py prints the total). A LiveKit job process serves one call, so without
    this every call would pay that on its event loop in its first seconds. The worker's
    `prewarm` calls it before the process takes a call.
    """
    built = 0
    for value in vars(types).values():
        if isinstance(value, type) and issubclass(value, BaseModel) and not value.__pydantic_complete__:
            value.model_rebuild()
            built += 1
    return built
