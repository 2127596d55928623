"""LiveKit's room service for a call in progress: hanging up (deleting the room) and handing the
SIP caller to a specialist, plus the server API client the agent dials out with."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aiohttp
from livekit import api

from backend.calls.sip_results import TransferResult
from backend.livekit.sip import transfer_to_specialist
from backend.settings import Settings

log = logging.getLogger(__name__)

TRANSFER_TIMEOUT = 60.0  # seconds LiveKit may take to report a SIP REFER's result
RINGING_TIMEOUT_S = 45  # an outbound call rings this long; then the carrier's no-answer (480/487) comes back
# the dial request waits for the answer: ringing time plus room to set the call up
DIAL_HTTP_TIMEOUT = aiohttp.ClientTimeout(total=RINGING_TIMEOUT_S + 30)


def livekit_api(settings: Settings) -> api.LiveKitAPI:
    """A LiveKit server API client with a timeout long enough for a phone to ring out."""
    return api.LiveKitAPI(
        settings.livekit_url, settings.livekit_api_key, settings.livekit_api_secret, timeout=DIAL_HTTP_TIMEOUT
    )


@dataclass(frozen=True)
class RoomHangup:
    """How to hang up a call: delete its LiveKit room through the server API (Twirp)."""

    room_name: str
    url: str
    api_key: str
    api_secret: str

    @classmethod
    def for_room(cls, room_name: str | None, settings: Settings) -> RoomHangup | None:
        """The hang-up of `room_name`, or None without a room or LiveKit credentials (console)."""
        if not (room_name and settings.livekit_url and settings.livekit_api_key and settings.livekit_api_secret):
            return None
        return cls(room_name, settings.livekit_url, settings.livekit_api_key, settings.livekit_api_secret)

    async def delete_room(self) -> None:
        async with api.LiveKitAPI(self.url, self.api_key, self.api_secret) as lkapi:
            try:
                await lkapi.room.delete_room(api.DeleteRoomRequest(room=self.room_name))
            except api.TwirpError as exc:
                if exc.code != api.TwirpErrorCode.NOT_FOUND:  # already gone: the caller hung up
                    raise
        log.info("hung up: deleted the call's room")
        log.debug("deleted room %s", self.room_name)  # room names of SIP calls carry the number

    async def transfer(self, participant_identity: str, transfer_to: str) -> TransferResult:
        """Transfer `participant_identity` in this room to `transfer_to` (SIP REFER); never raises."""
        timeout = aiohttp.ClientTimeout(total=TRANSFER_TIMEOUT)
        async with api.LiveKitAPI(self.url, self.api_key, self.api_secret, timeout=timeout) as lkapi:
            return await transfer_to_specialist(
                lkapi, room_name=self.room_name, participant_identity=participant_identity, transfer_to=transfer_to
            )
