"""The Gemini Live model, built by one function from settings (so tests build the same model
against a local fake server by passing `http_options`)."""

from __future__ import annotations

import functools
import os
import ssl

import certifi
from google.genai import types
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN
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


@functools.cache
def gemini_tls_context() -> ssl.SSLContext:
    """The one TLS context of this process for every call's Gemini connection.

    Given no context, google-genai builds a new one per client, three times over (httpx, aiohttp,
    websocket), each loading the whole CA bundle; LiveKit's plugin makes a client per call, on
    the call's event loop, as the call connects: about 150 ms of blocked audio per call
    (bench/agent_bench.py prints it). It trusts what google-genai trusts by default: the file in
    SSL_CERT_FILE or certifi's bundle, plus SSL_CERT_DIR. The worker's `prewarm` builds it.
    """
    return ssl.create_default_context(
        cafile=os.environ.get("SSL_CERT_FILE", certifi.where()), capath=os.environ.get("SSL_CERT_DIR")
    )


def gemini_http_options(
    *, base_url: str | None = None, tls: ssl.SSLContext | None = None, **async_client_args: object
) -> types.HttpOptions:
    """google-genai's HTTP options for one call, sharing the process's TLS context.

    `base_url` None means Google's endpoint (or GOOGLE_GEMINI_BASE_URL); tests pass a local
    fake server and its `tls` trust. The timeout is what the plugin sets when given no options.
    """
    ctx = tls or gemini_tls_context()
    return types.HttpOptions(
        base_url=base_url,
        timeout=int(DEFAULT_API_CONNECT_OPTIONS.timeout * 1000),
        client_args={"verify": ctx},
        async_client_args={"ssl": ctx, "verify": ctx, **async_client_args},
    )


def build_realtime_model(settings: Settings, *, http_options: types.HttpOptions | None = None) -> RealtimeModel:
    """The realtime model for one call: audio in and out, phone-tuned turn detection, context
    window compression and session resumption (the connection survives the Live API's session
    limits and server `goAway`s). The plugin builds its google-genai client from
    `http_options`, by default `gemini_http_options()`."""
    return RealtimeModel(
        model=settings.gemini_model or NOT_GIVEN,
        api_key=settings.google_api_key or NOT_GIVEN,
        voice=settings.gemini_voice,
        modalities=[types.Modality.AUDIO],
        realtime_input_config=PHONE_TURN_DETECTION,
        context_window_compression=CONTEXT_COMPRESSION,
        session_resumption=types.SessionResumptionConfig(),
        http_options=http_options or gemini_http_options(),
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
