"""Agent benchmark: how long a caller waits on a tool call.

    python bench/agent_bench.py                 # 1,000 tool calls, store pre-filled to 100k records
    python bench/agent_bench.py --no-fsync      # the same with STORE_FSYNC=0
    python bench/agent_bench.py --stages        # then an instrumented run: where the time goes

The real agent (build_agent_session: the shipped RealtimeModel, google-genai, the tools, the
BackendAgent on a temporary DATA_DIR filled with 100k records by `bench/fill.py`) talks to the
local fake Gemini Live server (in its own process, so its work does not share the agent's event
loop), which sends `--calls` share_information tool calls back to back, `--per-call` of them per
phone call (a new session each time, as in production). For each tool call the server notes when
it sent the `toolCall` and when the `toolResponse` arrived; the difference (LiveKit's tool
dispatch, our tool, the store write, google-genai and the loopback both ways) is reported as
p50 / p99 / max. Target: p99 <= 10 ms.

Two baselines are measured in the same run: google-genai alone answering each toolCall at once
(no LiveKit, no store), and the same agent with its tools given their store result at once
(LiveKit, google-genai and the loopback; no thread hop, no store write), so the part our store
path adds can be read off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import multiprocessing
import ssl
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

from google.genai import types

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import telephony_agent  # noqa: E402
from backend.backend_agent import BackendAgent  # noqa: E402
from backend.settings import Settings  # noqa: E402
from backend.store import freeze_loaded_heap  # noqa: E402
from backend.voice.model import (  # noqa: E402
    build_realtime_model,
    gemini_http_options,
    gemini_tls_context,
    warm_up_gemini_types,
)
from bench.agent_stages import StageClock  # noqa: E402
from bench.fill import caller_for, fill  # noqa: E402
from tests.fakes.gemini_live import FakeGeminiLive, pause, speech, tool_call  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def serve_fake_gemini(calls: int, per_call: int, gap: float, conn: Connection) -> None:
    """Child process: the fake Gemini Live server, scripted with `calls` share_information calls,
    `per_call` per phone call. Sends back (port, CA certificate), then, when the parent says so,
    {call id: [toolCall sent, toolResponse received]} on the system-wide perf_counter clock."""

    async def run() -> None:
        async with FakeGeminiLive() as server:
            for i in range(calls):
                args = {"debt_type": "credit_card", "amount_usd": 1000 + i, "creditor": "Chase"}
                info = f"Owes ${1000 + i} to Chase"
                server.reply(
                    pause(gap),
                    tool_call(f"c{i}", "share_information", information=info, category="debt_info", fields=args),
                )
                if (i + 1) % per_call == 0 or i + 1 == calls:
                    server.reply(speech("That is everything."))
            conn.send((server.port, server.ca.cert_pem.bytes()))
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)
            conn.send({cid: t for cid, t in server.tool_timings.items() if len(t) == 2})

    asyncio.run(run())


async def drive_agent(
    data_dir: str, calls: int, per_call: int, fsync: bool, port: int, ca_pem: bytes, store: bool = True
) -> int:
    """Phone calls one after the other, each built exactly as the entrypoint builds it, each
    talking to the fake server until its tool calls are answered. Returns the records stored
    (with `store` False, the tool calls answered: see `one_call`)."""
    env = {"DATA_DIR": data_dir, "STORE_FSYNC": "1" if fsync else "0", "GOOGLE_API_KEY": "bench-key"}
    settings = Settings.from_env(env, dotenv=False)
    warm_up_gemini_types()  # as the worker's prewarm does
    backend = telephony_agent.load_backend(settings)
    http_options = gemini_http_options(
        base_url=f"https://127.0.0.1:{port}", tls=ssl.create_default_context(cadata=ca_pem.decode()), proxy=None
    )
    stored = 0
    for n, first in enumerate(range(0, calls, per_call)):
        expected = min(per_call, calls - first)
        stored += await one_call(backend, settings, http_options, f"bench-call-{n}", caller_for(n), expected, store)
        # a LiveKit worker runs each call in a process that exits when the call ends, taking the
        # call's garbage with it; here the calls share one process, so collect between calls
        # (else one collection of many calls' cycles lands, ~100 ms, inside a later call)
        gc.collect()
    backend.close()
    return stored


async def one_call(
    backend, settings, http_options, session_id: str, caller_id: str, expected: int, store: bool = True
) -> int:
    """One phone call until its `expected` tool calls are answered; returns the records it stored.

    Waits on LiveKit's `function_tools_executed` event rather than polling the store: a poll on
    the agent's event loop would itself delay the tool calls being measured.

    With `store` False (the baseline), this call's tools get their store result at once, on the
    event loop, with nothing written: what is left is LiveKit, google-genai and the loopback.
    Returns the tool calls answered then."""
    session, agent = telephony_agent.build_agent_session(
        session_id=session_id,
        caller_id=caller_id,
        backend=backend,
        llm=build_realtime_model(settings, http_options=http_options),
        settings=settings,
    )
    if not store:

        async def stored_at_once(method: str, **kwargs) -> dict:
            return {"success": True, "record": {}}

        session.userdata.backend_call = stored_at_once
    answered, all_answered = 0, asyncio.Event()

    def on_executed(ev) -> None:
        nonlocal answered
        answered += len(ev.function_call_outputs)
        if answered >= expected:
            all_answered.set()

    session.on("function_tools_executed", on_executed)
    await session.start(agent)
    with contextlib.suppress(TimeoutError):  # reported by the caller as missing records
        await asyncio.wait_for(all_answered.wait(), timeout=300)
    await asyncio.sleep(0.3)  # let the last toolResponse leave and the closing speech play
    await session.aclose()
    if not store:
        return answered
    return backend.get_shared_information(session_id=session_id, limit=1000)["count"]


def measure(
    data_dir: str, calls: int, fsync: bool, gap: float = 0.0, per_call: int = 50, store: bool = True
) -> dict[str, list[float]]:
    """{call id: [toolCall sent, toolResponse received]} (seconds) of `calls` tool calls; the fake
    server runs in its own process so its work does not share the agent's event loop."""
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(target=serve_fake_gemini, args=(calls, per_call, gap, child))
    server.start()
    try:
        port, ca_pem = parent.recv()
        stored = asyncio.run(drive_agent(data_dir, calls, per_call, fsync, port, ca_pem, store))
        parent.send("done")
        timings = parent.recv()
    finally:
        server.join(timeout=30)
        if server.is_alive():
            server.terminate()
    if stored != calls or len(timings) != calls:
        raise SystemExit(f"expected {calls} answered calls, got {len(timings)} ({stored} records)")
    return timings


def serve_sdk_floor(calls: int, conn: Connection) -> None:
    """Child process: the same fake server, answering a bare google-genai client (baseline)."""

    async def run() -> None:
        async with FakeGeminiLive() as server:
            for i in range(calls):
                server.reply(tool_call(f"f{i}", "share_information", information=f"fact {i}", category="debt_info"))
            conn.send((server.port, server.ca.cert_pem.bytes()))
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)
            conn.send({cid: t for cid, t in server.tool_timings.items() if len(t) == 2})

    asyncio.run(run())


async def bare_sdk_client(calls: int, port: int, ca_pem: bytes) -> None:
    """The floor: google-genai over TLS answering each toolCall at once, with no LiveKit and no store."""
    from google import genai

    options = types.HttpOptions(
        base_url=f"https://127.0.0.1:{port}",
        async_client_args={"ssl": ssl.create_default_context(cadata=ca_pem.decode()), "proxy": None},
    )
    client = genai.Client(api_key="bench-key", http_options=options)
    config = types.LiveConnectConfig(response_modalities=[types.Modality.AUDIO])
    async with client.aio.live.connect(model="bench", config=config) as live:
        await live.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="hi")]))
        answered = 0
        while answered < calls:
            async for msg in live.receive():
                for fc in msg.tool_call.function_calls if msg.tool_call else []:
                    response = types.FunctionResponse(id=fc.id, name=fc.name, response={"output": "Saved."})
                    await live.send_tool_response(function_responses=[response])
                    answered += 1
                if answered >= calls:
                    break


def measure_floor(calls: int) -> dict[str, list[float]]:
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(target=serve_sdk_floor, args=(calls, child))
    server.start()
    try:
        port, ca_pem = parent.recv()
        asyncio.run(bare_sdk_client(calls, port, ca_pem))
        time.sleep(0.2)
        parent.send("done")
        return parent.recv()
    finally:
        server.join(timeout=30)
        if server.is_alive():
            server.terminate()


def client_build_ms(http_options: types.HttpOptions | None) -> float:
    """What building a call's google-genai client (as LiveKit's plugin does at every call's
    start, on its event loop) takes, best of 3, in ms."""
    from google import genai

    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        genai.Client(api_key="bench-key", http_options=http_options)
        runs.append((time.perf_counter() - t0) * 1000)
    return min(runs)


def cold_process_costs(data_dir: str, conn: Connection) -> None:
    """Child process, fresh as a LiveKit job process: what `prewarm` takes off the first call.
    Sends (full garbage collection with the store open, the same after prewarm's
    `freeze_loaded_heap()`, building google-genai's type schemas, a call's google-genai client
    without and with the process's TLS context), in ms; collections are best of 3."""

    def full_collection_ms() -> float:
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            gc.collect()
            runs.append((time.perf_counter() - t0) * 1000)
        return min(runs)

    t0 = time.perf_counter()
    warm_up_gemini_types()
    schemas = (time.perf_counter() - t0) * 1000
    backend = BackendAgent(settings=Settings.from_env({"DATA_DIR": data_dir}, dotenv=False))
    before = full_collection_ms()
    freeze_loaded_heap()
    after = full_collection_ms()
    gemini_tls_context()  # prewarm
    conn.send((before, after, schemas, client_build_ms(None), client_build_ms(gemini_http_options())))
    backend.close()


def measure_cold_process_costs(data_dir: str) -> tuple[float, ...]:
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("spawn").Process(target=cold_process_costs, args=(data_dir, child))
    proc.start()
    try:
        return parent.recv()
    finally:
        proc.join(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--per-call", type=int, default=50, help="tool calls per phone call (default 50)")
    parser.add_argument("--gap", type=float, default=0.0, help="seconds the fake model waits before each call")
    parser.add_argument("--no-fsync", action="store_true", help="STORE_FSYNC=0 (default: 1, as shipped)")
    parser.add_argument("--stages", action="store_true", help="then an instrumented run: where the time goes")
    opts = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as data_dir:
        t0 = time.perf_counter()
        fill(data_dir, opts.records)
        print(f"store filled with {opts.records:,} records in {time.perf_counter() - t0:.1f} s")
        unfrozen, frozen, schemas, client_default, client_shared = measure_cold_process_costs(data_dir)
        print(
            f"a full garbage collection with the store open stalls the event loop {unfrozen:.1f} ms; "
            f"{frozen:.2f} ms after the worker's freeze_loaded_heap()"
        )
        print(f"first use of google-genai's types (schema builds): {schemas:.0f} ms; prewarm does it before a call")
        print(
            f"a call's google-genai client, built on the call's event loop as it connects: "
            f"{client_default:.1f} ms with the SDK's own TLS setup, {client_shared:.1f} ms with the "
            f"process's TLS context ({client_default / client_shared:.0f}x)"
        )
        timings = measure(data_dir, opts.calls, fsync=not opts.no_fsync, gap=opts.gap, per_call=opts.per_call)
        ms = [(received - sent) * 1000 for sent, received in timings.values()]
        report(ms, opts, data_dir)
        if opts.stages:  # last: the hooks stay installed in this process
            clock = StageClock()
            clock.install()
            timings = measure(data_dir, opts.calls, fsync=not opts.no_fsync, gap=opts.gap, per_call=opts.per_call)
            print("\n".join(clock.table(timings, pct)))


def report(ms: list[float], opts: argparse.Namespace, data_dir: str) -> None:
    print(
        f"toolCall -> toolResponse over {len(ms)} share_information calls "
        f"(STORE_FSYNC={0 if opts.no_fsync else 1}, store at {opts.records:,} records):"
    )
    print(
        f"  p50 {pct(ms, 0.50):.2f} ms   p99 {pct(ms, 0.99):.2f} ms   max {max(ms):.2f} ms   "
        f"mean {statistics.mean(ms):.2f} ms"
    )
    print(f"  target p99 <= 10 ms: {'met' if pct(ms, 0.99) <= 10 else 'NOT met'}")
    floor = [(received - sent) * 1000 for sent, received in measure_floor(min(opts.calls, 500)).values()]
    print(
        f"baseline, google-genai alone over TLS answering at once (no LiveKit, no store), {len(floor)} calls:\n"
        f"  p50 {pct(floor, 0.50):.2f} ms   p99 {pct(floor, 0.99):.2f} ms   "
        f"(the agent's p50 is {pct(ms, 0.50) / pct(floor, 0.50):.1f}x this floor)"
    )
    timings = measure(data_dir, opts.calls, fsync=not opts.no_fsync, gap=opts.gap, per_call=opts.per_call, store=False)
    bare = [(received - sent) * 1000 for sent, received in timings.values()]
    print(
        f"baseline, the same agent with its tools given their store result at once (LiveKit, google-genai, "
        f"loopback; no thread hop, no store), {len(bare)} calls:\n"
        f"  p50 {pct(bare, 0.50):.2f} ms   p99 {pct(bare, 0.99):.2f} ms   "
        f"(our store path adds {pct(ms, 0.50) - pct(bare, 0.50):+.2f} ms at p50, "
        f"{pct(ms, 0.99) - pct(bare, 0.99):+.2f} ms at p99)"
    )


if __name__ == "__main__":
    main()
