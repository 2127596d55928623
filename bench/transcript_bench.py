"""Transcript bench: does saving each transcript turn hold up the agent's event loop?

    python bench/transcript_bench.py               # 500 turns each way a round, 3 rounds, store at 100k records
    python bench/transcript_bench.py --no-fsync    # the same with STORE_FSYNC=0
    python bench/transcript_bench.py --quick       # a smoke run: 40 turns each way a round, 1k records

The agent is the shipped one: `telephony_agent.build_agent_session` (the RealtimeModel,
google-genai, the tools, the transcript hook) on a `BackendAgent` opened as the worker's
prewarm opens it, on a JournalStore in a temporary DATA_DIR filled by `bench/fill.py` (fsync on,
as shipped, unless `--no-fsync`). It talks over TLS to the local fake Gemini Live server, which
runs in its own process so that its work does not share the agent's event loop. The server
drives the conversation: each phone call opens with the agent's greeting, then `--per-call`
turns, each the caller's words (Gemini's input transcription) and the agent's answer (output
transcription and 0.1 s of audio); every `--tool-every`th turn the model calls
`share_information` between the two, and answers once the tool's result is back. So every kind
of transcript turn is saved: the caller's, the agent's and the tool call's. A turn starts `--gap`
seconds after the agent's answer to the last one has ended (the bench tells the server over a
pipe, in both modes alike), so a turn never cuts an answer off however slow the machine is.

What is measured. A probe on the agent's event loop is a `loop.call_at` chain: each callback
notes how late it ran (its lateness: the time it ran minus the time it was due) and schedules the
next 1 ms later. A callback that holds the loop for L ms shows as lateness between L - 1 and L ms
(the probe samples every 1 ms); the idle loop's lateness, printed first, is the floor. A saved
turn's window runs from the LiveKit event that makes the transcript save it
(`conversation_item_added`, `function_tools_executed`; noted by a listener registered just
before the transcript's own) until the call's store thread has finished the write. The turn's
stall is the greatest lateness of the probe callbacks whose wait overlaps the window (and at least
the first callback after the event). Reported per saved turn: p50 / p99 / max; and the loop lag
p99 over every callback while the calls talk.

The baseline is the same conversation in the same process, with the transcript hook detached
(`record_transcript` returns its listeners; the bench calls `session.off` with them), measured in
the same windows: from the same LiveKit events, each as long as the same turn's window in the
same call with transcripts. The two modes alternate call by call (with, without; then without,
with; ...) in each of `--rounds` rounds, so what else a noisy machine does lands on both alike;
each round is printed. Afterwards the store's transcripts are read back: every driven turn of
the calls with transcripts must be there, and none of the calls without, or the bench fails.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import functools
import gc
import logging
import multiprocessing
import ssl
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from livekit.agents import llm  # noqa: E402

import telephony_agent  # noqa: E402
from backend.backend_agent import BackendAgent  # noqa: E402
from backend.settings import Settings  # noqa: E402
from backend.voice import call  # noqa: E402
from backend.voice.model import build_realtime_model, gemini_http_options, warm_up_gemini_types  # noqa: E402
from backend.voice.transcript import SPEAKER  # noqa: E402
from bench.fill import caller_for, fill  # noqa: E402
from tests.fakes.gemini_live import FakeGeminiLive, heard, speech, tool_call  # noqa: E402

GREETING = (
    "Hi, this is Acme Debt Help. I'm an AI assistant, and this call is recorded. "
    "You can reach us at 1 (555) 000-1111. How can I help you today?"
)
CALLER = (
    "I have about {n} dollars on two credit cards and I can't keep up with the payments anymore.",
    "It's mostly Chase and a bit on Capital One, and the interest keeps going up every month.",
    "I work full time, I bring home around four thousand a month after taxes.",
    "No, I haven't missed a payment yet, but I'm close, I'm only paying the minimums.",
    "I live in Ohio, in Columbus. Is that somewhere you can help?",
)
AGENT = (
    "Thanks for telling me that. Roughly {n} dollars across two cards is something we see often, "
    "and there are options. Can you tell me which companies the cards are with?",
    "That helps. Interest going up is a common reason people call us. Do you have a steady income "
    "right now, and roughly how much do you take home each month?",
    "Got it, thank you. Have you missed any payments so far, or are you keeping up with the minimums?",
    "That's good to hear, and it gives you more options. Which state do you live in?",
    "Yes, we work with people in Ohio. Let me note that down. Is there anything else I should know?",
)
PROBE_INTERVAL = 0.001
CALL_TIMEOUT = 120.0


@dataclass(frozen=True)
class Plan:
    """The conversation of one round, the same with transcripts and without, in every round."""

    turns: int  # caller + agent turn pairs each way per round
    per_call: int
    tool_every: int
    gap: float
    rounds: int

    def calls(self) -> list[int]:
        """The turns of each phone call of a round."""
        return [min(self.per_call, self.turns - first) for first in range(0, self.turns, self.per_call)]

    def is_tool_turn(self, t: int) -> bool:
        return self.tool_every > 0 and (t + 1) % self.tool_every == 0

    def saved(self, n: int) -> Counter[str]:
        """The transcript turns a call of `n` turns saves, by speaker: the greeting and the agent's
        answers, the caller's turns, the tool calls."""
        return Counter(agent=1 + n, caller=n, tool=sum(self.is_tool_turn(t) for t in range(n)))

    def lines(self, c: int, t: int) -> tuple[str, str]:
        n = f"{12_000 + 500 * c + t:,}"
        return CALLER[t % len(CALLER)].format(n=n), AGENT[t % len(AGENT)].format(n=n)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ---- the fake model, in its own process ------------------------------------------------------


def serve_fake_gemini(plan: Plan, conn: Connection) -> None:
    """Child process: the fake Gemini Live server, driving each round's phone calls, each twice
    (with and without transcripts), one after the other. Sends back (port, CA certificate); then
    each turn waits until the agent says its answer to the last one has ended ("spoke"), and `gap`
    seconds more, so a turn never cuts off the agent's answer however slow the machine is. Ends
    when the parent says "done"."""

    async def run() -> None:
        async with FakeGeminiLive() as server:
            conn.send((server.port, server.ca.cert_pem.bytes()))
            loop = asyncio.get_running_loop()

            async def agent_spoke() -> bool:
                return await loop.run_in_executor(None, conn.recv) == "spoke"

            async def drive_call(c: int, n: int) -> bool:
                server.reply(speech(GREETING))  # the answer to the agent's generate_reply as it enters
                if not await agent_spoke():
                    return False
                for t in range(n):
                    await asyncio.sleep(plan.gap)
                    caller, agent = plan.lines(c, t)
                    if plan.is_tool_turn(t):
                        server.reply(speech(agent))  # the model's answer once the tool's result is back
                        info = {"information": f"Owes ${12_000 + t} on credit cards", "category": "debt_info"}
                        fields = {"debt_type": "credit_card", "amount_usd": 12_000 + t, "creditor": "Chase"}
                        await server.push(
                            heard(caller), tool_call(f"c{c}-{t}", "share_information", **info, fields=fields)
                        )
                    else:
                        await server.push(heard(caller), speech(agent))
                    if not await agent_spoke():
                        return False
                return True

            for _ in range(plan.rounds):
                for c, n in enumerate(plan.calls()):
                    for _way in ("with transcripts", "without"):  # twice, the same script either way
                        if not await drive_call(c, n):
                            return
            await agent_spoke()  # until "done"

    asyncio.run(run())


# ---- what the agent's side notes -------------------------------------------------------------


class LoopProbe:
    """A `loop.call_at` chain on the running loop: each callback notes when it was due and when it
    ran (`loop.time()`, i.e. `time.monotonic()`), and schedules the next `interval` later."""

    def __init__(self, interval: float = PROBE_INTERVAL) -> None:
        self.interval = interval
        self.due: list[float] = []
        self.ran: list[float] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._when = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._when = self._loop.time() + self.interval
        self._handle = self._loop.call_at(self._when, self._tick)

    def _tick(self) -> None:
        now = self._loop.time()
        self.due.append(self._when)
        self.ran.append(now)
        self._when = now + self.interval
        self._handle = self._loop.call_at(self._when, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()

    def take(self) -> Ticks:
        ticks = Ticks(self.due, self.ran)
        self.due, self.ran = [], []
        return ticks


@dataclass
class Ticks:
    due: list[float]
    ran: list[float]

    def lateness(self) -> list[float]:
        return [r - d for d, r in zip(self.due, self.ran, strict=True)]

    def worst_in(self, start: float, end: float) -> float:
        """The greatest lateness of the callbacks whose wait [due, ran] overlaps [start, end],
        counting at least the first one that ran after `start`."""
        i = bisect.bisect_left(self.ran, start)
        j = max(i + 1, bisect.bisect_right(self.due, end))
        late = [self.ran[k] - self.due[k] for k in range(i, min(j, len(self.ran)))]
        if not late:
            raise SystemExit("the probe stopped before a turn's window ended")
        return max(late)

    def between(self, start: float, end: float) -> list[float]:
        i, j = bisect.bisect_left(self.ran, start), bisect.bisect_right(self.ran, end)
        return [self.ran[k] - self.due[k] for k in range(i, j)]


class SaveClock:
    """Wraps the backend's `save_turn` (as the transcript hook looks it up at each turn): when the
    store thread started and finished each write, and the CPU time the thread spent on it (Python
    work, mostly holding the GIL the event loop needs too), per session, in the order they ran."""

    def __init__(self, backend: BackendAgent) -> None:
        self.by_session: dict[str, list[tuple[float, float, float]]] = {}
        save_turn = backend.save_turn

        def timed_save_turn(session_id: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
            t0, cpu0 = time.monotonic(), time.thread_time()
            try:
                return save_turn(session_id, *args, **kwargs)
            finally:
                cpu = time.thread_time() - cpu0
                self.by_session.setdefault(session_id, []).append((t0, time.monotonic(), cpu))

        backend.save_turn = timed_save_turn


class CallWatch:
    """When each event the transcript saves a turn for arrived, by the same rule the hook uses."""

    def __init__(self, expected: int, spoke: Callable[[], None]) -> None:
        self.expected = expected
        self.spoke = spoke  # tells the fake model an agent turn has ended
        self.starts: list[float] = []
        self.seen: Counter[str] = Counter()
        self.all_seen = asyncio.Event()

    def listen(self, session: Any) -> None:
        def on_item(ev: Any) -> None:
            item = ev.item
            if isinstance(item, llm.ChatMessage) and item.role in SPEAKER and (item.text_content or "").strip():
                self._note(SPEAKER[item.role], 1)
                if item.role == "assistant":
                    self.spoke()

        def on_tools(ev: Any) -> None:
            self._note("tool", len(list(zip(ev.function_calls, ev.function_call_outputs, strict=False))))

        session.on("conversation_item_added", on_item)
        session.on("function_tools_executed", on_tools)

    def _note(self, speaker: str, n: int) -> None:
        now = time.monotonic()
        self.seen[speaker] += n
        self.starts.extend([now] * n)
        if len(self.starts) >= self.expected:
            self.all_seen.set()


@dataclass
class CallResult:
    session_id: str
    n: int
    starts: list[float]
    ends: list[float] = field(default_factory=list)
    writes: list[float] = field(default_factory=list)  # seconds in the store thread, per saved turn
    cpu: list[float] = field(default_factory=list)  # of which the store thread's CPU time


@dataclass
class RunResult:
    """One round's calls with, or without, transcripts; `ticks` is the probe over the whole round."""

    round: int
    transcripts: bool
    calls: list[CallResult]
    ticks: Ticks

    def windows(self) -> list[tuple[float, float]]:
        return [w for c in self.calls for w in zip(c.starts, c.ends, strict=True)]

    def stalls(self) -> list[float]:
        return [self.ticks.worst_in(s, e) for s, e in self.windows()]

    def lag(self) -> list[float]:
        """Every probe callback's lateness while the calls talk (first event to last window end)."""
        return [x for c in self.calls for x in self.ticks.between(c.starts[0], max(c.ends))]


# ---- the agent's side ------------------------------------------------------------------------


@dataclass
class Rig:
    """What every run shares: the store handle, the settings, the way to the fake model, the probe."""

    backend: BackendAgent
    settings: Settings
    http_options: Any
    plan: Plan
    probe: LoopProbe
    saves: SaveClock
    spoke: Callable[[], None]


def build_call(
    rig: Rig, session_id: str, caller_id: str, transcripts: bool, expected: int
) -> tuple[Any, Any, CallWatch]:
    """One call's session and agent, built by `build_agent_session` exactly as the entrypoint
    builds it; the bench's listener goes in just before the transcript's, and without
    transcripts the transcript's two listeners are detached again (`session.off`)."""
    watch = CallWatch(expected, rig.spoke)
    real = telephony_agent.record_transcript

    def hooked(session: Any, ud: Any) -> dict[str, Any]:
        watch.listen(session)
        handlers = real(session, ud)
        if not transcripts:
            for event, handler in handlers.items():
                session.off(event, handler)
        return handlers

    telephony_agent.record_transcript = hooked
    try:
        session, agent = telephony_agent.build_agent_session(
            session_id=session_id,
            caller_id=caller_id,
            backend=rig.backend,
            llm=build_realtime_model(rig.settings, http_options=rig.http_options),
            settings=rig.settings,
        )
    finally:
        telephony_agent.record_transcript = real
    return session, agent, watch


async def one_call(rig: Rig, round_no: int, c: int, n: int, transcripts: bool) -> CallResult:
    """One phone call of `n` turns, with or without transcripts, until every turn has arrived
    (and, with transcripts, been written)."""
    session_id = f"bench-r{round_no}-{c}-{'with' if transcripts else 'without'}"
    driven = rig.plan.saved(n)
    session, agent, watch = build_call(rig, session_id, caller_for(c), transcripts, sum(driven.values()))
    ud = session.userdata
    await session.start(agent)
    try:
        await asyncio.wait_for(watch.all_seen.wait(), timeout=CALL_TIMEOUT)
    except TimeoutError:
        raise SystemExit(
            f"{session_id}: saw {dict(watch.seen)} of the {dict(driven)} turns driven in {CALL_TIMEOUT:.0f} s"
        ) from None
    await call.drain_writes(ud)  # the store thread has finished this call's transcript writes
    await session.aclose()
    await call.finish_call(ud)  # the job's shutdown: the call log, the store thread shut down
    result = CallResult(session_id, n, watch.starts)
    if transcripts:
        timed = rig.saves.by_session.get(session_id, [])
        if len(timed) != len(watch.starts):
            raise SystemExit(f"{session_id}: {len(watch.starts)} turns arrived but {len(timed)} were written")
        result.ends = [end for _, end, _ in timed]
        result.writes = [end - begin for begin, end, _ in timed]
        result.cpu = [cpu for _, _, cpu in timed]
    # a LiveKit worker runs each call in a process that exits when the call ends, taking the
    # call's garbage with it; here the calls share one process, so collect between calls
    gc.collect()
    return result


async def one_round(rig: Rig, round_no: int) -> tuple[RunResult, RunResult]:
    """The plan's phone calls twice, with and without transcripts, alternated call by call (the
    first call of odd rounds with transcripts first, of even rounds without; then turn about), so
    what else the machine does lands on both alike. Returns (with, without)."""
    rig.probe.take()  # drop what the probe saw before the round
    calls: dict[bool, list[CallResult]] = {True: [], False: []}
    for c, n in enumerate(rig.plan.calls()):
        for transcripts in (True, False) if (round_no + c) % 2 else (False, True):
            calls[transcripts].append(await one_call(rig, round_no, c, n, transcripts))
    await asyncio.sleep(0.01)  # a last few probe callbacks after the last window
    ticks = rig.probe.take()
    return RunResult(round_no, True, calls[True], ticks), RunResult(round_no, False, calls[False], ticks)


def same_windows(baseline: RunResult, measured: RunResult) -> None:
    """The baseline's windows: from its own events, as long as the same turns' windows with transcripts."""
    for b, m in zip(baseline.calls, measured.calls, strict=True):
        if len(b.starts) != len(m.starts):
            raise SystemExit(f"{b.session_id}: {len(b.starts)} turns, but {len(m.starts)} with transcripts")
        b.ends = [s + (me - ms) for s, ms, me in zip(b.starts, m.starts, m.ends, strict=True)]


async def bench(
    data_dir: str, fsync: bool, plan: Plan, port: int, ca_pem: bytes, spoke: Callable[[], None]
) -> tuple[list[RunResult], list[float]]:
    env = {"DATA_DIR": data_dir, "STORE_FSYNC": "1" if fsync else "0", "GOOGLE_API_KEY": "bench-key"}
    settings = Settings.from_env(env, dotenv=False)
    warm_up_gemini_types()  # as the worker's prewarm does
    t0 = time.perf_counter()
    backend = telephony_agent.load_backend(settings)  # as prewarm opens it: index loaded, heap frozen
    print(f"store opened in {time.perf_counter() - t0:.1f} s")
    http_options = gemini_http_options(
        base_url=f"https://127.0.0.1:{port}", tls=ssl.create_default_context(cadata=ca_pem.decode()), proxy=None
    )
    probe = LoopProbe()
    rig = Rig(backend, settings, http_options, plan, probe, SaveClock(backend), spoke)
    probe.start()
    await asyncio.sleep(1.0)
    idle = probe.take().lateness()
    runs: list[RunResult] = []
    for r in range(1, plan.rounds + 1):
        with_, without = await one_round(rig, r)
        same_windows(without, with_)
        runs += [with_, without]
        print(run_line(with_), flush=True)
        print(run_line(without), flush=True)
    probe.stop()
    verify(backend, runs, plan)
    backend.close()
    return runs, idle


def verify(backend: BackendAgent, runs: list[RunResult], plan: Plan) -> None:
    """Read the transcripts back from the store: every driven turn with transcripts, none without."""
    saved, interrupted = Counter(), 0
    for run in runs:
        for c in run.calls:
            turns = backend.transcript(c.session_id)
            if turns is None:
                raise SystemExit(f"{c.session_id}: no such session in the store")
            got = Counter(t["speaker"] for t in turns)
            want = plan.saved(c.n) if run.transcripts else Counter()
            if got != want:
                raise SystemExit(
                    f"{c.session_id}: the store holds {dict(got)} transcript turns, {dict(want)} were driven"
                )
            if run.transcripts:
                saved += got
                interrupted += sum(bool(t.get("interrupted")) for t in turns)
    total = sum(saved.values())
    print(
        f"turns saved, read back from the store: {total:,} in the calls with transcripts "
        f"({saved['caller']:,} caller, {saved['agent']:,} agent, {saved['tool']:,} tool), as driven; "
        f"{interrupted} marked interrupted; none in the calls without"
    )


def run_line(run: RunResult) -> str:
    stalls = [x * 1000 for x in run.stalls()]
    lag = [x * 1000 for x in run.lag()]
    label = "with transcripts   " if run.transcripts else "without transcripts"
    line = (
        f"round {run.round}, {label}: {len(stalls):,} turns   stall per turn p50 {pct(stalls, 0.5):.2f}  "
        f"p99 {pct(stalls, 0.99):.2f}  max {max(stalls):.2f} ms   loop lag p99 {pct(lag, 0.99):.2f} ms"
    )
    if run.transcripts:
        writes = [x * 1000 for c in run.calls for x in c.writes]
        spans = [(e - s) * 1000 for s, e in run.windows()]
        line += (
            f"   store write p50 {pct(writes, 0.5):.2f} p99 {pct(writes, 0.99):.2f} ms"
            f"   event -> written p50 {pct(spans, 0.5):.2f} p99 {pct(spans, 0.99):.2f} ms"
        )
    return line


def report(runs: list[RunResult], idle: list[float], opts: argparse.Namespace, plan: Plan) -> None:
    def pooled(transcripts: bool, what: str) -> list[float]:
        return [x * 1000 for run in runs if run.transcripts == transcripts for x in getattr(run, what)()]

    with_, without = pooled(True, "stalls"), pooled(False, "stalls")
    lag_with, lag_without = pooled(True, "lag"), pooled(False, "lag")
    writes = [x * 1000 for run in runs if run.transcripts for c in run.calls for x in c.writes]
    spans = [(e - s) * 1000 for run in runs if run.transcripts for s, e in run.windows()]
    cpu = [x * 1000 for run in runs if run.transcripts for c in run.calls for x in c.cpu]
    per_round, per_round_p50 = [], []
    for r in range(1, plan.rounds + 1):
        w = [x * 1000 for run in runs if run.round == r and run.transcripts for x in run.stalls()]
        wo = [x * 1000 for run in runs if run.round == r and not run.transcripts for x in run.stalls()]
        per_round.append(f"{pct(w, 0.99) / pct(wo, 0.99):.2f}x")
        per_round_p50.append(f"{pct(w, 0.5) - pct(wo, 0.5):+.2f}")
    print(
        f"all {plan.rounds} rounds, {len(with_):,} saved turns each way "
        f"(STORE_FSYNC={0 if opts.no_fsync else 1}, store at {opts.records:,} records):"
    )
    print(
        f"  event loop stall per saved turn, with transcripts:    p50 {pct(with_, 0.5):.2f}  "
        f"p99 {pct(with_, 0.99):.2f}  max {max(with_):.2f} ms"
    )
    print(
        f"  the same windows without transcripts (baseline):     p50 {pct(without, 0.5):.2f}  "
        f"p99 {pct(without, 0.99):.2f}  max {max(without):.2f} ms"
    )
    print(
        f"  ratio with/without at p99: {pct(with_, 0.99) / pct(without, 0.99):.2f}x "
        f"({pct(with_, 0.99) - pct(without, 0.99):+.2f} ms; per round {', '.join(per_round)})"
    )
    print(
        f"  difference with - without at p50: {pct(with_, 0.5) - pct(without, 0.5):+.2f} ms "
        f"(per round {', '.join(per_round_p50)} ms)"
    )
    print(
        f"  event loop lag p99 while the calls talk: {pct(lag_with, 0.99):.2f} ms with, "
        f"{pct(lag_without, 0.99):.2f} ms without"
    )
    print(
        f"  store write per turn, in the call's store thread (off the loop): p50 {pct(writes, 0.5):.2f}  "
        f"p99 {pct(writes, 0.99):.2f} ms, of which the thread's CPU time p50 {pct(cpu, 0.5):.2f}  "
        f"p99 {pct(cpu, 0.99):.2f} ms; event -> written p50 {pct(spans, 0.5):.2f}  p99 {pct(spans, 0.99):.2f} ms"
    )
    print(
        f"  probe: a callback every {PROBE_INTERVAL * 1000:.0f} ms on the agent's event loop; idle lateness "
        f"p50 {pct(idle, 0.5) * 1000:.3f}  p99 {pct(idle, 0.99) * 1000:.3f}  max {max(idle) * 1000:.3f} ms "
        f"({len(idle):,} callbacks, before the runs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=500, help="caller + agent turns each way per round (default 500)")
    parser.add_argument("--records", type=int, default=100_000, help="records the store is filled with first")
    parser.add_argument("--per-call", type=int, default=50, help="turns per phone call (default 50)")
    parser.add_argument("--tool-every", type=int, default=5, help="a tool call every Nth turn (default 5)")
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between turns (default 0.05)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds, with and without transcripts alternated call by call (default 3)"
    )
    parser.add_argument("--no-fsync", action="store_true", help="STORE_FSYNC=0 (default: 1, as shipped)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 40 turns, 20 per call, 1k records")
    opts = parser.parse_args()
    if opts.quick:
        opts.turns, opts.per_call, opts.records = 40, 20, 1000
    plan = Plan(opts.turns, opts.per_call, opts.tool_every, opts.gap, opts.rounds)
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as data_dir:
        t0 = time.perf_counter()
        fill(data_dir, opts.records)
        print(f"store filled with {opts.records:,} records in {time.perf_counter() - t0:.1f} s")
        print(
            f"each round: {plan.turns} turns each way (the caller, then the agent), {plan.per_call} per phone "
            f"call, each {plan.gap * 1000:.0f} ms after the last answer, a share_information tool call every "
            f"{plan.tool_every}th; {plan.rounds} rounds, with and without transcripts alternated call by call"
        )
        parent, child = multiprocessing.Pipe()
        server = multiprocessing.get_context("spawn").Process(target=serve_fake_gemini, args=(plan, child))
        server.start()
        try:
            port, ca_pem = parent.recv()
            spoke = functools.partial(parent.send, "spoke")
            runs, idle = asyncio.run(bench(data_dir, not opts.no_fsync, plan, port, ca_pem, spoke))
        finally:
            parent.send("done")
            server.join(timeout=10)
            if server.is_alive():
                server.terminate()
        report(runs, idle, opts, plan)


if __name__ == "__main__":
    main()
