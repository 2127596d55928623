"""A fake Gemini Live API: a TLS websocket server on 127.0.0.1 speaking BidiGenerateContent.

The SDK (google-genai in Gemini API mode) connects to
`wss://HOST/ws/google.ai.generativelanguage.<version>.GenerativeService.BidiGenerateContent`
and sends `{"setup": {...}}` first; we answer `{"setupComplete": {}}`. After that, each frame
that hands the turn to the model (a `clientContent` with `turnComplete: true`, or a
`toolResponse`) is answered with the next scripted reply; when the script is empty the model
says "Okay." so the plugin never waits on a silent server. A reply is a list of server messages
built with `speech(...)` and `tool_call(...)`.

Every frame received is recorded (parsed JSON, keys normalised to camelCase) in `frames`; each
tool call's send time and its response's arrival time are kept in `tool_timings`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import ssl
import time
from collections import deque
from typing import Any

import trustme
from google.genai import types
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from backend.voice.model import gemini_http_options

OUTPUT_RATE = 24000
PATH = re.compile(r"^/ws/google\.ai\.generativelanguage\.[a-z0-9]+\.GenerativeService\.BidiGenerateContent")

Message = dict[str, Any]


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def normalise(value: Any) -> Any:
    """snake_case keys -> camelCase, recursively (the SDK sends both spellings)."""
    if isinstance(value, dict):
        return {_camel(k): normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def speech(text: str, *, seconds: float = 0.1) -> list[Message]:
    """The model says `text`: transcription, PCM audio, generationComplete, usage, turnComplete."""
    pcm = b"\x00\x00" * int(OUTPUT_RATE * seconds)
    audio = {"inlineData": {"mimeType": f"audio/pcm;rate={OUTPUT_RATE}", "data": base64.b64encode(pcm).decode()}}
    return [
        {"serverContent": {"outputTranscription": {"text": text}}},
        {"serverContent": {"modelTurn": {"role": "model", "parts": [audio]}}},
        {"serverContent": {"generationComplete": True}},
        {"usageMetadata": {"promptTokenCount": 10, "responseTokenCount": 5, "totalTokenCount": 15}},
        {"serverContent": {"turnComplete": True}},
    ]


def heard(text: str) -> list[Message]:
    """What the caller said, as Gemini transcribes their audio (sent within the model's turn)."""
    return [{"serverContent": {"inputTranscription": {"text": text}}}]


def barge_in() -> list[Message]:
    """The caller speaks over the model: Gemini's server-side voice detection cuts its turn off."""
    return [{"serverContent": {"interrupted": True}}]


def pause(seconds: float) -> list[Message]:
    """The fake model takes `seconds` before its next message (nothing is sent)."""
    return [{"pause": seconds}]


def tool_call(call_id: str, name: str, **args: Any) -> list[Message]:
    """The model calls tool `name` with `args` (always with an id, as the real server does)."""
    return [{"toolCall": {"functionCalls": [{"id": call_id, "name": name, "args": args}]}}]


class FakeGeminiLive:
    def __init__(self) -> None:
        self.ca = trustme.CA()
        self._cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.script: deque[list[Message]] = deque()
        self.frames: list[Message] = []
        self.paths: list[str] = []
        self.tool_timings: dict[str, list[float]] = {}
        self.reject_connections = False
        self.turns = asyncio.Event()  # set each time a reply has been fully sent
        self._server: Server | None = None
        self._ws: ServerConnection | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client_ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx

    def http_options(self) -> types.HttpOptions:
        """What the SDK needs to reach this server instead of Google: the shipped options
        (`gemini_http_options`) with this server's address and certificate."""
        return gemini_http_options(base_url=self.base_url, tls=self.client_ssl_context(), proxy=None)

    def reply(self, *messages: list[Message]) -> None:
        """Queue one reply made of the given message lists (sent back to back)."""
        self.script.append([m for part in messages for m in part])

    def received(self, kind: str) -> list[Message]:
        """The received frames of one kind: setup, clientContent, toolResponse, realtimeInput."""
        return [f[kind] for f in self.frames if kind in f]

    def tool_responses(self) -> list[Message]:
        return [r for f in self.received("toolResponse") for r in f.get("functionResponses", [])]

    async def start(self) -> FakeGeminiLive:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(ctx)
        self._server = await serve(self._handle, "127.0.0.1", 0, ssl=ctx, max_size=None)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> FakeGeminiLive:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request else ""
        self.paths.append(path)
        if not PATH.match(path):
            await ws.close(1008, "unknown path")
            return
        if self.reject_connections:
            await ws.close(1011, "internal error")
            return
        self._ws = ws
        try:
            async for raw in ws:
                frame = normalise(json.loads(raw))
                self.frames.append(frame)
                if "setup" in frame:
                    await ws.send(json.dumps({"setupComplete": {}}))
                elif "toolResponse" in frame:
                    now = time.perf_counter()
                    for resp in frame["toolResponse"].get("functionResponses", []):
                        self.tool_timings.setdefault(resp.get("id", ""), []).append(now)
                    await self._send_reply(ws)
                elif frame.get("clientContent", {}).get("turnComplete"):
                    await self._send_reply(ws)
        except ConnectionClosed:
            pass

    async def push(self, *messages: list[Message]) -> None:
        """Send a turn now, unprompted, as the real server does when it hears the caller speak."""
        assert self._ws is not None, "no client is connected"
        await self._send(self._ws, [m for part in messages for m in part])

    async def _send_reply(self, ws: ServerConnection) -> None:
        await self._send(ws, self.script.popleft() if self.script else speech("Okay."))

    async def _send(self, ws: ServerConnection, messages: list[Message]) -> None:
        for message in messages:
            if "pause" in message:  # not a protocol message: the fake model thinks for a while
                await asyncio.sleep(message["pause"])
                continue
            if "toolCall" in message:
                for fc in message["toolCall"]["functionCalls"]:
                    self.tool_timings[fc["id"]] = [time.perf_counter()]
            await ws.send(json.dumps(message))
        self.turns.set()
