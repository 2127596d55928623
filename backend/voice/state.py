"""One call's state: who is calling, since when, how it ends, and the thread its store calls run
in. One `Userdata` per `AgentSession`, never global; the tools read it through `RunContext`."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from backend.calls.disclosures import DisclosureCheck

if TYPE_CHECKING:
    from backend.backend_agent import BackendAgent
    from backend.calls.recording import RecordingStart, RecordingStop
    from backend.livekit.rooms import RoomHangup
    from backend.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Userdata:
    """Everything one call knows about itself. One instance per `AgentSession`, never global."""

    session_id: str
    caller_id: str
    backend: BackendAgent
    called_number: str | None = None
    direction: Literal["inbound", "outbound"] = "inbound"
    room_name: str | None = None
    started_monotonic: float = field(default_factory=time.monotonic)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    call_ended: bool = False
    call_log: dict[str, Any] | None = None
    agent_error: str | None = None
    hangup: RoomHangup | None = None
    # The SIP participant (for a transfer) and where qualified callers go (TRANSFER_NUMBER).
    participant_identity: str | None = None
    transfer_to: str | None = None
    # The reason end_call asked for while its call log waits on a transfer (call.py).
    pending_reason: str | None = None
    opted_out: bool = False
    # LiveKit's usage of the call's models (`AgentSession.usage`), read when the call log is written.
    usage_source: Callable[[], list[dict[str, Any]]] | None = field(default=None, repr=False)
    # Which required disclosures the agent's own first turns gave (backend/calls/disclosures.py).
    disclosures: DisclosureCheck = field(default_factory=lambda: DisclosureCheck({}))
    # Whether the call holds a lease (backend/calls/leases.py): in progress until its call log is written.
    leased: bool = False
    heartbeat: asyncio.TimerHandle | None = field(default=None, repr=False)
    # The call's settings (for LiveKit calls made while it runs, such as stopping its recording).
    settings: Settings | None = field(default=None, repr=False)
    # The call's recording (RECORDING=on, backend/voice/recording.py): what starting it gave
    # (None: not asked for), and the one task that stops it and saves the end.
    recording: RecordingStart | None = None
    recording_stop: asyncio.Task[RecordingStop | None] | None = field(default=None, repr=False)
    # Awaited with (userdata, final reason) after the goodbye (and any transfer) and before the
    # room is deleted.
    before_hangup: list[Callable[[Userdata, str], Awaitable[None]]] = field(default_factory=list)
    ending: asyncio.Task[Any] | None = field(default=None, repr=False)  # the hang-up task
    end_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    inflight: set[asyncio.Future[Any]] = field(default_factory=set, repr=False)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set, repr=False)
    # One worker thread per call: store calls leave the event loop, and run in the order the
    # model made them (a record asked for before end_call is counted in the call log).
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="call-store"), repr=False
    )

    @property
    def recorded(self) -> bool:
        """Whether the call is being recorded: the egress really started (what the opening
        disclosure says)."""
        return self.recording is not None and self.recording.ok

    def duration_seconds(self) -> float:
        """Seconds since the call connected, from the monotonic clock."""
        return round(time.monotonic() - self.started_monotonic, 3)

    def model_usage(self) -> list[dict[str, Any]]:
        """The models' token usage of this call so far, as LiveKit counts it (for its cost)."""
        return self.usage_source() if self.usage_source is not None else []

    def since_start(self, wall_time: float) -> float:
        """`wall_time` (epoch seconds, as LiveKit stamps its events) in seconds from the call's start."""
        return round(max(0.0, wall_time - self.started_at.timestamp()), 3)

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Hand `fn(*args, **kwargs)` to the call's store thread without waiting (from an event
        handler), in order with the call's other writes; `drain_writes` waits for it at the end.
        After the store thread has shut down (the call is over) it runs in another thread."""
        loop = asyncio.get_running_loop()
        try:
            fut = loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))
        except RuntimeError:  # the executor is shut down
            fut = loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))
        self.inflight.add(fut)
        fut.add_done_callback(self._done)

    def _done(self, fut: asyncio.Future[Any]) -> None:
        self.inflight.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            log.error("session %s: a store call failed", self.session_id, exc_info=fut.exception())

    async def backend_call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        """Run `BackendAgent.<method>(**kwargs)` in a worker thread; the result dict is returned."""
        return await self.in_store_thread(getattr(self.backend, method), **kwargs)

    async def in_store_thread(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn(*args, **kwargs)` in the call's store thread, in order with the other writes."""
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))
        self.inflight.add(fut)
        fut.add_done_callback(self.inflight.discard)
        return await fut
