"""Who is on the line: the caller id, the number they called and the call's direction, from the
LiveKit participant and the job's dispatch metadata."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

CONSOLE_CALLER_ID = "console"


@dataclass(frozen=True)
class CallDetails:
    caller_id: str
    called_number: str | None
    direction: Literal["inbound", "outbound"]


def _metadata_text(metadata: str | None, key: str) -> str | None:
    try:
        data = json.loads(metadata or "{}")
    except ValueError:
        return None
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def dispatch_phone_number(metadata: str | None) -> str | None:
    """The number to dial when the dispatch metadata asks for an outbound call, else None."""
    return _metadata_text(metadata, "phone_number")


def dispatch_call_id(metadata: str | None) -> str | None:
    """The id of the outbound call record (`POST /api/calls`) the dispatch belongs to, if any."""
    return _metadata_text(metadata, "call_id")


def call_details(identity: str | None, attributes: dict[str, str] | None, metadata: str | None = None) -> CallDetails:
    """`identity`/`attributes` of the remote participant (None in console mode).

    SIP participants carry `sip.phoneNumber` (the customer's number) and `sip.trunkPhoneNumber`
    (ours); web and console participants are known by their identity. A dispatch asking for an
    outbound call (`{"phone_number": "+1..."}`) makes the direction outbound.
    """
    attributes = attributes or {}
    outbound = dispatch_phone_number(metadata)
    # On an outbound call the number we dialled is the customer's id, exactly as the outbound
    # session was opened with it (`backend/voice/dial.py`), whatever form SIP reports it in.
    caller_id = outbound or attributes.get("sip.phoneNumber") or identity or CONSOLE_CALLER_ID
    called = outbound if outbound else attributes.get("sip.trunkPhoneNumber")
    return CallDetails(caller_id=caller_id, called_number=called, direction="outbound" if outbound else "inbound")
