"""The call's transcript: every finished turn of the caller and the agent, and every tool call at
its place, saved to the store as it happens.

LiveKit delivers finished turns on the session's `conversation_item_added` event (Gemini Live's
input and output transcription, once a turn is final; an agent turn the caller cut off arrives
marked `interrupted`, with only the words that were played) and tool calls on
`function_tools_executed`. Each is handed to the call's store thread at once, in order with the
call's other writes; the event loop never waits for the disk. The write is the same durable
store write as a record's, so a turn is kept once it ended, whatever happens to the process
afterwards. A turn without words is not saved (logged); one that arrives after the call log is
saved and marked so; one longer than 10,000 characters is kept whole, in parts.

The agent's own first turns also feed the disclosure check (`backend/calls/disclosures.py`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from livekit.agents import AgentSession, ConversationItemAddedEvent, FunctionToolsExecutedEvent, llm

from backend.voice.state import Userdata

log = logging.getLogger(__name__)

SPEAKER = {"user": "caller", "assistant": "agent"}


def record_transcript(session: AgentSession, ud: Userdata) -> dict[str, Callable[..., None]]:
    """Save the call's turns and tool calls as they happen (see the module doc). Returns the
    listeners it registered, by event name, so a caller can detach them with `session.off`
    (`bench/transcript_bench.py` does, for its baseline without transcripts)."""

    def on_item(ev: ConversationItemAddedEvent) -> None:
        item = ev.item
        if not isinstance(item, llm.ChatMessage) or item.role not in SPEAKER:
            return
        speaker, text = SPEAKER[item.role], item.text_content or ""
        if not text.strip():
            log.info("session %s: a %s turn without words was not saved", ud.session_id, speaker)
            return
        metrics = item.metrics or {}
        start = ud.since_start(metrics.get("started_speaking_at") or item.created_at)
        end = ud.since_start(metrics.get("stopped_speaking_at") or ev.created_at)
        ud.submit(
            ud.backend.save_turn, ud.session_id, speaker, text, start, max(start, end), interrupted=item.interrupted
        )
        if speaker == "agent":
            ud.disclosures.agent_turn(text, start)
            if ud.disclosures.due():
                ud.submit(ud.backend.record_disclosures, ud.session_id, ud.disclosures.evidence())

    def on_tools(ev: FunctionToolsExecutedEvent) -> None:
        at = ud.since_start(ev.created_at)
        for called, output in zip(ev.function_calls, ev.function_call_outputs, strict=False):
            tool = {
                "name": called.name,
                "call_id": called.call_id,
                "arguments": _arguments(called.arguments),
                "result": (output.output if output is not None else "")[:10_000],
                "is_error": bool(output is not None and output.is_error),
            }
            ud.submit(ud.backend.save_turn, ud.session_id, "tool", "", at, at, tool=tool)

    handlers: dict[str, Callable[..., None]] = {"conversation_item_added": on_item, "function_tools_executed": on_tools}
    for event, handler in handlers.items():
        session.on(event, handler)
    return handlers


def _arguments(raw: str) -> Any:
    """A tool call's arguments as JSON, or the raw text the model sent when it is not JSON."""
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return raw[:10_000]
