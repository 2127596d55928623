"""One call's state: who is calling, since when, how it ends, and the thread its store calls run
in. One `Userdata` per `AgentSession`, never global; the tools read it through `RunContext`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from backend.backend_agent import BackendAgent
    from backend.calls.recording import RecordingStart, RecordingStop
    from backend.livekit.rooms import RoomHangup
    from backend.settings import Settings


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
