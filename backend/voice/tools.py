"""The four tools the model sees (contract section 4), over the call's state (`state.py`).

The tools fill in the caller id, session id and duration from the call itself; the model never
supplies them. Every store call runs in the call's store thread so a write never stalls the
audio, and a backend error becomes a `ToolError` whose sentence tells the model what to do next.
The categories, end reasons and each category's fields (with the descriptions the model reads)
come from `backend/schemas/` and `backend/store/records.py`, not from this file.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from docstring_parser import parse_from_object
from livekit.agents import RunContext, ToolError, function_tool
from livekit.agents.llm.utils import function_arguments_to_pydantic_model
from pydantic import BaseModel, Field, ValidationError, create_model

from backend.backend_agent import MODEL_END_REASONS, TOOL_NAMES
from backend.store.records import CATEGORIES, schema
from backend.voice import call
from backend.voice.state import Userdata

log = logging.getLogger(__name__)

Category = Literal[CATEGORIES]
# The reasons the model may choose; caller_hung_up and agent_error are written by the shutdown
# handler, transfer_failed by the transfer path.
EndReason = Literal[MODEL_END_REASONS]
__all__ = ["TOOL_NAMES", "CallTools", "Category", "EndReason", "InformationFields", "Userdata"]


def typed_tool(fn: Callable[..., Awaitable[str]]):
    """`@function_tool` for a typed tool method `fn(self, context, **typed_args)`, with its argument
    model and schema built once here instead of on every call.

    LiveKit rebuilds a pydantic model and its JSON schema from a plain function tool's signature
    on every call: about 9 ms of CPU for share_information alone. bench/agent_bench.py measured
    the toolCall -> toolResponse round trip at p50 19.3 ms / p99 28.7 ms with a plain
    @function_tool, and 8.8 ms / 14.2 ms with this.
    The model sees exactly the declaration LiveKit would have made from the signature (the
    Literal types and the docstring's Args), and the arguments are validated by the same model.
    """
    params = list(inspect.signature(fn).parameters.values())[1:]  # without self
    shim = functools.wraps(fn)(lambda *a, **k: None)
    shim.__signature__ = inspect.signature(fn).replace(parameters=params)
    shim.__annotations__ = {k: v for k, v in fn.__annotations__.items() if k != "self"}
    args_model = function_arguments_to_pydantic_model(shim)
    schema = {
        "name": fn.__name__,
        "description": parse_from_object(fn).description or "",
        "parameters": args_model.model_json_schema(),
    }

    async def tool(self: Any, raw_arguments: dict[str, object], context: RunContext[Userdata]) -> str:
        try:
            args = args_model.model_validate(raw_arguments)
        except ValidationError as exc:
            raise ToolError(f"Error parsing arguments for `{fn.__name__}`: {exc}") from exc
        return await fn(self, context, **{name: getattr(args, name) for name in args_model.model_fields})

    tool.__name__ = tool.__qualname__ = fn.__name__
    # real types, not this module's postponed strings: LiveKit calls get_type_hints on the tool
    # for every call, and evaluating the strings each time was measurable on the hot path
    tool.__annotations__ = {"raw_arguments": dict[str, object], "context": RunContext[Userdata], "return": str}
    tool.typed = fn  # the typed signature, for tests and readers
    return function_tool(tool, raw_schema=schema)


_JSON_TYPES: dict[str, Any] = {"string": str, "number": float, "integer": int, "boolean": bool}


def _python_type(prop: dict[str, Any]) -> Any:
    """The Python type of a JSON Schema property (the subset `backend/schemas/fields/` uses)."""
    if "enum" in prop:
        return Literal[tuple(prop["enum"])]
    if prop.get("type") == "array":
        return list[_python_type(prop["items"])]
    return _JSON_TYPES[prop["type"]]


def _information_fields() -> type[BaseModel]:
    """One optional argument per field of every category's schema, described as
    `<category>: <description>` so the model knows where each one belongs."""
    props: dict[str, Any] = {}
    for category in CATEGORIES:
        for name, prop in schema(f"fields/{category}")["properties"].items():
            description = f"{category}: {prop.get('description', name)}"
            props.setdefault(name, (_python_type(prop) | None, Field(None, description=description)))
    model = create_model("InformationFields", **props)
    model.__doc__ = "Structured data of one fact; fill only the keys that fit its category."
    return model


InformationFields = _information_fields()


# An opt-out the store could not save must never be confirmed to the caller.
OPT_OUT_NOT_SAVED = (
    "The request not to be called again could NOT be saved yet; it will be retried. Do not promise "
    "that they will not be called again; say their request has been noted and will be processed."
)


def _tool_error(result: dict[str, Any], what: str) -> ToolError:
    """The sentence the model gets when the store answered with an error."""
    if result.get("error") == "store_unavailable":
        return ToolError(
            f"{what} failed because the records system is unavailable right now. Do not tell the caller "
            "about a system problem; carry on with the call and try again in a moment."
        )
    return ToolError(f"{what} failed: {result.get('message', 'unknown error')} Fix the arguments and try again.")


def _describe(record: dict[str, Any]) -> str:
    day = str(record.get("timestamp", ""))[:10]
    return f"- [{record['category']}, {day}] {record['information']}"


class CallTools:
    """The four tools, mixed into the call's `Agent`."""

    @typed_tool
    async def share_information(
        self,
        context: RunContext[Userdata],
        information: str,
        category: Category,
        fields: InformationFields | None = None,
    ) -> str:
        """Save one fact the caller just told you, the moment you hear it. Call once per fact.

        Args:
            information: The fact in one plain sentence, e.g. "Owes $12,000 on a Chase credit card".
            category: contact_details (name, email, callback details), debt_info (one debt each
                time), personal_info (state, income, employment, hardship), qualification (your
                decision) or conversation_flow (disclosures given, opt-outs, call stages).
            fields: Structured values of the same fact where they apply, e.g. debt_type,
                amount_usd and creditor for a debt.
        """
        ud = context.userdata
        structured = fields.model_dump(exclude_none=True) if fields else None
        result = await ud.backend_call(
            "share_information",
            information=information,
            category=category,
            caller_id=ud.caller_id,
            session_id=ud.session_id,
            fields=structured or None,
        )
        if not result.get("success"):
            raise _tool_error(result, "Saving this fact")
        if structured and structured.get("opt_out") is True and not await call.record_opt_out(ud):
            return OPT_OUT_NOT_SAVED
        if result.get("duplicate"):
            return "Already saved a moment ago; nothing new was written. Carry on."
        return f"Saved under {category}."

    @typed_tool
    async def get_shared_information(
        self,
        context: RunContext[Userdata],
        category: Category | None = None,
        limit: int = 20,
    ) -> str:
        """Look up what this caller has already told us, in this call and earlier calls, newest
        first. Use it before asking for something the caller may already have given.

        Args:
            category: Only facts of this category; leave empty for all.
            limit: How many facts at most, 1 to 100.
        """
        ud = context.userdata
        result = await ud.backend_call(
            "get_shared_information", category=category, caller_id=ud.caller_id, limit=min(limit, 100)
        )
        if not result.get("success"):
            raise _tool_error(result, "Looking up earlier information")
        if not result["records"]:
            return "Nothing is on file for this caller yet."
        lines = "\n".join(_describe(r) for r in result["records"])
        return f"{result['count']} facts on file, newest first:\n{lines}"

    @typed_tool
    async def end_call(self, context: RunContext[Userdata], reason: EndReason) -> str:
        """End the call: save the outcome, then say one short goodbye; the line closes after it.

        Args:
            reason: Why the call ends. do_not_call_request whenever the caller asks not to be
                called again; customer_qualified_transfer or customer_qualified_callback for a
                qualified caller; customer_not_qualified; customer_not_interested;
                wrong_number; voicemail; completed for anything else.
        """
        ud = context.userdata
        if ud.pending_reason is not None:
            return "The call is already ending. Do not call end_call again; finish what you are saying."
        if call.wants_transfer(ud, reason):  # the call log waits for the transfer's result
            ud.pending_reason = reason
            call.schedule_hangup(context.session, context.speech_handle, ud, reason)
            return (
                "Tell the caller in one short sentence that you are connecting them to a licensed "
                "specialist now and to please hold. The transfer starts when you finish speaking."
            )
        result = await call.write_call_log(ud, reason)
        if not result.get("success"):
            raise _tool_error(result, "Ending the call")
        call.schedule_hangup(context.session, context.speech_handle, ud, reason)
        if reason == "do_not_call_request":
            if not result.get("opt_out"):
                return OPT_OUT_NOT_SAVED + " Then say a short goodbye."
            return "Recorded. Confirm they will not be called again, then say a short goodbye."
        return "Call ended and saved. Say one short goodbye now; the line closes when you finish."

    @typed_tool
    async def get_current_time(self, context: RunContext[Userdata], timezone: str | None = None) -> str:
        """The current date and time, and whether it is within calling hours.

        Args:
            timezone: IANA time zone such as America/Chicago; empty for the business's own.
        """
        result = await context.userdata.backend_call("get_current_time", timezone=timezone)
        if not result.get("success"):
            raise _tool_error(result, "Reading the time")
        hours = "within" if result["within_calling_hours"] else "outside"
        return f"It is {result['spoken']} ({result['timezone']}), {hours} calling hours."
