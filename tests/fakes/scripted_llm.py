"""`ScriptedLLM`: an `llm.LLM` written for the agent-flow tests.

Each time the agent asks the model for a reply it plays the next scripted turn (text and/or tool
calls) and keeps the chat context it was given, so a test can check what the model saw. It
stands in for the model only; the tools, the store and AgentSession stay real.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import APIConnectOptions, llm
from livekit.agents.llm import ChatChunk, ChoiceDelta, FunctionToolCall
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

import telephony_agent

CALLER = "+15551234567"


@dataclass
class Turn:
    text: str = ""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def turn(text: str = "", *calls: tuple[str, dict[str, Any]]) -> Turn:
    """One model turn: what it says, then the tools it calls, e.g.
    `turn("Got it.", tool("share_information", information=..., category=...))`."""
    return Turn(text, list(calls))


def tool(name: str, **arguments: Any) -> tuple[str, dict[str, Any]]:
    return name, arguments


def opt_out_turns(goodbye: str) -> tuple[Turn, Turn]:
    """What the call script makes the model do when the caller opts out: save the opt-out, end
    the call as `do_not_call_request`, then say `goodbye`."""
    return (
        turn(
            "",
            tool(
                "share_information",
                information="Caller asked not to be called again",
                category="conversation_flow",
                fields={"opt_out": True},
            ),
            tool("end_call", reason="do_not_call_request"),
        ),
        turn(goodbye),
    )


def start_call(backend, settings, model, session_id: str = "sess-1", caller_id: str = CALLER):
    """A test call built exactly as the entrypoint builds one, with `model` as its LLM."""
    return telephony_agent.build_agent_session(
        session_id=session_id, caller_id=caller_id, backend=backend, llm=model, settings=settings
    )


class ScriptedLLM(llm.LLM):
    def __init__(self, *turns: Turn) -> None:
        super().__init__()
        self.turns: deque[Turn] = deque(turns)
        self.seen: list[llm.ChatContext] = []
        self._ids = 0

    def add(self, *turns: Turn) -> None:
        self.turns.extend(turns)

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        self.seen.append(chat_ctx.copy())
        step = self.turns.popleft() if self.turns else Turn()
        return _ScriptedStream(self, step, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)

    def next_call_id(self) -> str:
        self._ids += 1
        return f"call_{self._ids}"


class _ScriptedStream(llm.LLMStream):
    def __init__(self, model: ScriptedLLM, step: Turn, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self._model, self._step = model, step

    async def _run(self) -> None:
        calls = [
            FunctionToolCall(name=name, arguments=json.dumps(args), call_id=self._model.next_call_id())
            for name, args in self._step.calls
        ]
        self._event_ch.send_nowait(
            ChatChunk(id="scripted", delta=ChoiceDelta(role="assistant", content=self._step.text, tool_calls=calls))
        )
