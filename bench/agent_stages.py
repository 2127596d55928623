"""Where a tool call's time goes: `python bench/agent_bench.py --stages`.

Wraps six points of the path a `toolCall` takes through the agent, in a separate instrumented
run (the wrappers cost a few microseconds each, so the headline figures come from the
uninstrumented run). Each point is noted per call id on `time.perf_counter()`, the system-wide
monotonic clock, so the fake server's send and receive times in its own process line up:

    sent        the fake server sends the toolCall
    parsed      google-genai has read and parsed it (TLS, websocket, JSON, pydantic)
    plugin      LiveKit's Gemini plugin hands it on (new generation, events)
    tool        LiveKit starts our tool (speech handle, scheduling, tool executor)
    stored      our tool has its store result back (argument model, thread hop, durable write)
    queued      the toolResponse is queued for google-genai (our reply, LiveKit's bookkeeping,
                chat-context diff)
    received    the fake server has it (google-genai's send, TLS, loopback)

These wrap private functions of livekit-plugins-google, livekit-agents and google-genai at the
pinned versions; they are for this bench only, never for the shipped agent.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from typing import Any

POINTS = ("sent", "parsed", "plugin", "tool", "stored", "queued", "received")
STAGES = {
    "parsed": "network in + google-genai parse",
    "plugin": "LiveKit Gemini plugin",
    "tool": "LiveKit dispatch (generation, speech handle, executor)",
    "stored": "our tool: arguments, thread hop, durable store write",
    "queued": "our reply + LiveKit bookkeeping + chat-context diff",
    "received": "google-genai send + network out",
}


class StageClock:
    """Timestamps per call id for the points above."""

    def __init__(self) -> None:
        self.at: dict[str, dict[str, float]] = defaultdict(dict)
        self._running: str | None = None  # the call id of the tool running now (one at a time here)

    def mark(self, call_id: str | None, point: str) -> None:
        if call_id is not None:
            self.at[call_id][point] = time.perf_counter()

    def install(self) -> None:
        from google.genai import live, types
        from livekit.agents.voice.events import RunContext
        from livekit.plugins.google.realtime import realtime_api

        from backend.voice.tools import Userdata

        clock = self
        receive = live.AsyncSession._receive

        async def timed_receive(session: Any) -> Any:
            message = await receive(session)
            for fc in message.tool_call.function_calls if message.tool_call else []:
                clock.mark(fc.id, "parsed")
            return message

        handle_tool_calls = realtime_api.RealtimeSession._handle_tool_calls

        def timed_handle_tool_calls(session: Any, tool_call: Any) -> None:
            for fc in tool_call.function_calls or []:
                clock.mark(fc.id, "plugin")
            handle_tool_calls(session, tool_call)

        run_context_init = RunContext.__init__

        def timed_run_context(ctx: Any, *args: Any, **kwargs: Any) -> None:
            run_context_init(ctx, *args, **kwargs)
            clock._running = ctx.function_call.call_id
            clock.mark(clock._running, "tool")

        backend_call = Userdata.backend_call

        async def timed_backend_call(ud: Any, method: str, **kwargs: Any) -> dict[str, Any]:
            call_id = clock._running
            result = await backend_call(ud, method, **kwargs)
            clock.mark(call_id, "stored")
            return result

        send_client_event = realtime_api.RealtimeSession._send_client_event

        def timed_send(session: Any, event: Any) -> None:
            if isinstance(event, types.LiveClientToolResponse):
                for response in event.function_responses or []:
                    clock.mark(response.id, "queued")
            send_client_event(session, event)

        live.AsyncSession._receive = timed_receive
        realtime_api.RealtimeSession._handle_tool_calls = timed_handle_tool_calls
        RunContext.__init__ = timed_run_context
        Userdata.backend_call = timed_backend_call
        realtime_api.RealtimeSession._send_client_event = timed_send

    def table(self, server_times: dict[str, list[float]], pct) -> list[str]:
        """p50 / p99 of each stage in ms, over the calls every point was seen for."""
        rows = []
        for call_id, (sent, received) in server_times.items():
            at = self.at.get(call_id, {}) | {"sent": sent, "received": received}
            if all(p in at for p in POINTS):
                rows.append([(at[b] - at[a]) * 1000 for a, b in itertools.pairwise(POINTS)])
        lines = [f"  where the time goes ({len(rows)} calls, instrumented run), p50 / p99 ms:"]
        for i, point in enumerate(POINTS[1:]):
            column = [r[i] for r in rows]
            lines.append(f"    {pct(column, 0.5):6.2f} {pct(column, 0.99):6.2f}   {STAGES[point]}")
        totals = [sum(r) for r in rows]
        lines.append(f"    {pct(totals, 0.5):6.2f} {pct(totals, 0.99):6.2f}   total")
        return lines
