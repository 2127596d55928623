"""What a SIP dial or transfer came to, and what that means for the call: outcomes, end reasons,
SIP status codes. Pure data: `backend/livekit/sip.py` builds these from LiveKit's answers."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

DialOutcome = Literal["answered", "busy", "no_answer", "rejected", "failed"]

# SIP final responses and what they mean for an outbound call.
BUSY_SIP_CODES = frozenset({486, 600})  # Busy Here, Busy Everywhere
NO_ANSWER_SIP_CODES = frozenset({408, 480, 487})  # Request Timeout, Temporarily Unavailable, Terminated
REJECTED_SIP_CODES = frozenset({403, 603})  # Forbidden, Decline

# How an outbound call that never became a conversation ends the session (contract section 1).
# busy / no answer: nobody was reached and a later attempt may reach them, like voicemail
# (outcome no_contact). rejected: the called party (or their carrier) declined the call, so the
# other side hung up before we spoke (outcome incomplete). failed: our side or the network
# failed (outcome incomplete). The SIP status travels with the result, so nothing is lost.
OUTBOUND_END_REASONS: dict[str, str] = {
    "busy": "voicemail",
    "no_answer": "voicemail",
    "rejected": "caller_hung_up",
    "failed": "agent_error",
}
# A failed call whose SIP status says the number does not exist is a wrong number (no_contact).
WRONG_NUMBER_SIP_CODES = frozenset({404, 484, 604})  # Not Found, Address Incomplete, Does Not Exist


@dataclass(frozen=True)
class DialResult:
    """What became of an outbound dial. `outcome` is answered, busy, no_answer, rejected or failed."""

    outcome: DialOutcome
    sip_status_code: int | None = None
    sip_status: str | None = None
    participant_identity: str | None = None
    participant_id: str | None = None
    sip_call_id: str | None = None
    error: str | None = None

    @property
    def answered(self) -> bool:
        return self.outcome == "answered"

    @property
    def call_state(self) -> str:
        """The state for `GET /api/calls/<id>`: `answered` or `failed`."""
        return "answered" if self.answered else "failed"

    @property
    def end_reason(self) -> str | None:
        """The contract end reason for a call that did not connect (None when answered)."""
        return end_reason_for(self)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["call_state"] = self.call_state
        data["end_reason"] = self.end_reason
        return data


def end_reason_for(result: DialResult) -> str | None:
    """Map a dial result to the session's end reason (see OUTBOUND_END_REASONS)."""
    if result.answered:
        return None
    if result.outcome == "failed" and result.sip_status_code in WRONG_NUMBER_SIP_CODES:
        return "wrong_number"
    return OUTBOUND_END_REASONS[result.outcome]


def outcome_for_sip_status(code: int | None) -> DialOutcome:
    """Classify a SIP final response code of a call that was not answered."""
    if code in BUSY_SIP_CODES:
        return "busy"
    if code in NO_ANSWER_SIP_CODES:
        return "no_answer"
    if code in REJECTED_SIP_CODES:
        return "rejected"
    return "failed"


@dataclass(frozen=True)
class TransferResult:
    """What became of a SIP REFER. `ok` only when LiveKit reports the transfer successful."""

    ok: bool
    status: str  # successful, failed, ongoing (not accepted in time) or error (the request failed)
    reason: str | None = None  # LiveKit's SIPTransferReason name, e.g. STR_REJECTED
    sip_status_code: int | None = None
    sip_status: str | None = None
    transfer_id: str | None = None
    error: str | None = None

    @property
    def end_reason(self) -> str | None:
        """None when the caller was handed over; else `transfer_failed` (the call-back fallback)."""
        return None if self.ok else "transfer_failed"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["end_reason"] = self.end_reason
        return data
