"""LiveKit's agent dispatch: sending the agent into a queued outbound call's fresh room.

`place_call` is `POST /api/calls`: the gates and the queued record (`backend/calls/outbound.py`),
then the dispatch. Only this module (loaded when a call is placed) brings LiveKit into an API
worker.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

import aiohttp
from livekit import api
from livekit.api.twirp_client import ServerError

from backend.calls import outbound
from backend.calls.numbers import redact_number
from backend.settings import Settings
from backend.store.interface import Store

log = logging.getLogger(__name__)

DISPATCH_TIMEOUT_SECONDS = 15.0


async def create_dispatch(settings: Settings, call: dict[str, Any]) -> str:
    """Ask LiveKit to send agent AGENT_NAME into the call's fresh room; returns the dispatch id."""
    timeout = aiohttp.ClientTimeout(total=DISPATCH_TIMEOUT_SECONDS)
    async with api.LiveKitAPI(
        settings.livekit_url, settings.livekit_api_key, settings.livekit_api_secret, timeout=timeout
    ) as lkapi:
        request = api.CreateAgentDispatchRequest(
            agent_name=settings.agent_name, room=call["room"], metadata=outbound.dispatch_metadata(call)
        )
        dispatch = await lkapi.agent_dispatch.create_dispatch(request)
    return dispatch.id


def dispatch_call(store: Store, settings: Settings, call: dict[str, Any]) -> dict[str, Any]:
    """Create the agent dispatch of a queued call; returns the call's view.

    A dispatch LiveKit refuses or cannot be reached for marks the call failed and raises
    CallRefused(503, "dispatch_failed")."""
    try:
        dispatch_id = asyncio.run(create_dispatch(settings, call))
    except (ServerError, aiohttp.ClientError, TimeoutError) as exc:
        error = f"{exc.code}: {exc.message}" if isinstance(exc, ServerError) else repr(exc)
        outbound.record_state(store, call["id"], "failed", error=f"dispatch failed: {error}")
        log.error("outbound call %s: the agent dispatch failed: %s", call["id"], error)
        raise outbound.CallRefused(
            503, "dispatch_failed", "LiveKit did not accept the agent dispatch; try again."
        ) from None
    outbound.record_state(store, call["id"], None, dispatch_id=dispatch_id)
    log.info("outbound call %s to %s dispatched (%s)", call["id"], redact_number(call["phone_number"]), dispatch_id)
    return outbound.call_view(store, call["id"])


def place_call(
    store: Store,
    settings: Settings,
    raw_number: Any,
    *,
    requested_by: str = "api",
    now: datetime | None = None,
) -> dict[str, Any]:
    """`POST /api/calls`: the gates, the queued record, the dispatch. Raises CallRefused."""
    call = outbound.queue_call(store, settings, raw_number, requested_by=requested_by, now=now)
    return dispatch_call(store, settings, call)
