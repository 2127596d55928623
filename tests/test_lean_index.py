"""The agent's lean store answers every read exactly as the full store does, over the same
journal: records, sessions, call logs, transcripts, disclosures, jobs, the do-not-call list and
leases, with corrupt, odd and torn lines, and with other processes appending; its write rules
(the duplicate guard, one call log per session, the caller's active session) hold; an agent's
calls never make it index the whole journal; and it keeps no index snapshot."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from backend.backend_agent import BackendAgent
from backend.calls import dnc, outbound
from backend.calls.leases import this_process
from backend.postcall import jobs
from backend.store import JournalStore, open_store
from backend.store.journal import JOURNAL, QUARANTINE, SNAPSHOT
from backend.store.records import DISCLOSURES, line_of

pytestmark = pytest.mark.json_store_only  # the JSON store's lean index against its full one

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CALLERS = ["+15550000001", "+15550000002", "+15550000003"]
CATEGORIES = ["debt_info", "personal_info", "qualification"]


def write_history(store) -> dict:
    """Calls of three callers through the store's own writes: records (one joining another
    caller's session), call logs with costs, transcripts (one split in parts), disclosure
    evidence, jobs in every state, do-not-call changes, outbound call events and a lease."""
    sids = []
    for i in range(9):
        caller = CALLERS[i % 3]
        sid = f"s{i}"
        store.start_session(sid, caller, direction="outbound" if i % 4 == 0 else "inbound")
        sids.append(sid)
        for k in range(3 + i % 3):
            fields = {"amount_usd": 1000 * (k + 1)} if CATEGORIES[k % 3] == "debt_info" else None
            store.add_information(
                information=f"Fact {k} of call {i}, Chase",
                category=CATEGORIES[k % 3],
                caller_id=caller,
                session_id=sid,
                fields=fields,
            )
        store.add_turn(session_id=sid, speaker="agent", text=f"Hello {i}", start_s=0.0, end_s=1.0)
        store.add_turn(session_id=sid, speaker="caller", text="word " * (2500 if i == 2 else 3), start_s=1, end_s=4)
        store.append_event(
            DISCLOSURES, sid, {"required": ["ai_assistant"], "heard": {}, "missing": ["ai_assistant"] if i % 3 else []}
        )
        if i % 3 != 2:  # one call in three stays open
            cost = {"total_usd": 0.25 * i, "model_usd": 0.2 * i, "telephony_usd": 0.05 * i} if i % 2 else None
            reason = ["customer_qualified_transfer", "do_not_call_request", "caller_hung_up"][i % 3]
            store.end_session(reason=reason, caller_id=caller, session_id=sid, duration_seconds=60.0 + i, cost=cost)
            jobs.enqueue(store, f"summary:{sid}", "summary", {"session_id": sid})
    store.add_information(
        information="Joined someone else's call", category="debt_info", caller_id=CALLERS[1], session_id="s2"
    )
    store.add_information(information="No session given", category="personal_info", caller_id=CALLERS[2])
    store.add_information(information="A new caller", category="debt_info", caller_id="+15550000099")
    claimed = jobs.claim(store, ("summary",), worker="w1")
    jobs.finish(store, claimed["id"], {"summary": "Qualified caller", "lead": {"qualified": True}})
    jobs.skip(store, jobs.claim(store, ("summary",), worker="w1")["id"], "nothing said")
    jobs.fail(store, jobs.claim(store, ("summary",), worker="w2")["id"], "model down", jobs.Policy())
    dnc.add(store, CALLERS[1], source="opt_out", session_id="s1")
    dnc.add(store, "+15557770000", source="api", note="asked by email")
    dnc.remove(store, "+15557770000", by="admin", reason="mistake")
    outbound.record_state(store, "out-1", "queued", phone_number="+15550000001")
    outbound.record_state(store, "out-1", "dialing", session_id="s0")
    store.put_lease(this_process("s2", CALLERS[2]))
    return {
        "sids": [*sids, "unknown"],
        "callers": [*CALLERS, "+15550000099", "+15559999999"],
        "jobs": [f"summary:{sid}" for sid in sids] + ["summary:unknown"],
    }


def every_read(store, known: dict) -> dict:
    """The answer of every read of `Store`, and of the write rules' view, in plain values."""
    out: dict = {}
    q = store.query_information
    out["info"] = [
        q(limit=1000),
        q(limit=3),
        q(categories=["debt_info"], limit=1000),
        q(categories=["debt_info", "qualification"], caller_id=CALLERS[0], limit=2),
        q(text="chase", limit=1000),
        q(text="chase", caller_id=CALLERS[1], limit=1000),
        q(since=0, until=4_102_444_800, limit=1000),
        q(since=4_102_444_800, caller_id=CALLERS[0]),
        q(after_seq=10, limit=5),
        q(after_seq=10, caller_id=CALLERS[1], limit=5),
    ]
    first, _more = q(caller_id=CALLERS[1], limit=2)
    out["pages"] = q(caller_id=CALLERS[1], limit=2, before_seq=first[-1]["seq"])
    for sid in known["sids"]:
        out[sid] = (
            store.get_session(sid),
            store.session_information(sid),
            store.session_call(sid),
            store.session_transcript(sid),
            q(session_id=sid, limit=1),
            q(session_id=sid, caller_id=CALLERS[1]),
            store.events(DISCLOSURES, sid),
        )
    for caller in known["callers"]:
        out[caller] = (q(caller_id=caller, limit=20), store.query_sessions(caller_id=caller), dnc.lookup(store, caller))
        out[caller, "calls"] = store.query_calls(caller_id=caller)
    out["sessions"] = [
        store.query_sessions(),
        store.query_sessions(status="active"),
        store.query_sessions(status="completed", limit=2),
        store.query_sessions(outcome="qualified"),
        store.query_sessions(missing_disclosure=True),
        store.query_sessions(since=0, limit=3, before_seq=20),
    ]
    calls, _more = store.query_calls(limit=2)
    out["calls"] = [
        store.query_calls(),
        store.query_calls(outcome="do_not_call"),
        store.query_calls(limit=2, before_seq=calls[-1]["seq"]),
        store.query_calls(since=0, until=4_102_444_800),
        store.count_calls(0),
        store.call_totals(),
        dataclasses.asdict(store.call_figures()),
        store.sessions_with_call_logs(),
    ]
    out["jobs"] = [store.job(job_id) for job_id in known["jobs"]]
    out["jobs_of_kind"] = [store.jobs_of_kind("summary"), store.jobs_of_kind("summary", states=["done"], limit=1)]
    out["due"] = store.due_jobs(4_102_444_800)
    out["events"] = [store.events(kind) for kind in ("dnc", "job", "outbound_call", DISCLOSURES, "none")]
    out["event_keys"] = [store.event_keys(kind) for kind in ("dnc", "job", "outbound_call", "none")]
    out["dnc"] = dnc.listed(store)
    out["outbound"] = outbound.call_view(store, "out-1")
    out["summary"] = store.summary()
    out["active"] = sorted(store.active_sessions(), key=lambda s: s["session_id"])  # a set's order, even in full
    out["last_seq"] = store.last_seq()
    export = store.export()
    export.pop("exported_at")
    out["export"] = export
    out["stats"] = store.stats()
    out["leases"] = sorted(lease.session_id for lease in store.leases())
    with store._write() as (view, _append):
        out["view"] = [(view.session(s), view.session_facts(s)) for s in known["sids"]]
        out["view", "active"] = [view.active_session_id(c) for c in known["callers"]]
        out["view", "dup"] = view.recent_duplicate("s1", "personal_info", "Fact 1 of call 1, Chase", 4e9, 5e9)
    return out


def assert_same_reads(lean, full, known) -> None:
    lean_reads, full_reads = every_read(lean, known), every_read(full, known)
    assert lean_reads.keys() == full_reads.keys()
    for key in full_reads:
        assert lean_reads[key] == full_reads[key], key


ODD_LINES = [
    # (line, what a reader must make of it)
    (
        b'{"seq":%d,"type":"info","session_id":"s0","caller_id":"+15550000001","category":"debt_info",'
        b'"information":"odd but fine: NaN elsewhere","timestamp":"2026-01-01T10:00:00.000Z","x":NaN}',
        "kept",
    ),
    (b'\xef\xbb\xbf{"seq":%d,"type":"turn","session_id":"s0","speaker":"agent","text":"a BOM"}', "kept"),
    (b'{"seq":%d,"type":"event","kind":"note","key":"k"}', "kept"),  # no data: the index reads none
    (
        b'{"seq":%d,"type":"info","session_id":7,"caller_id":"+15550000001","category":"debt_info",'
        b'"information":"a number for a session id","timestamp":"2026-01-01T10:00:00Z"}',
        "kept",
    ),
    (
        b'{"seq":%d,"type":"info","session_id":"s0","caller_id":"+15550000001","category":"debt_info",'
        b'"information":"bad UTF-8 where no index looks","timestamp":"2026-01-01T10:00:00.000Z","x":"\xc0\x80"}',
        "corrupt",
    ),
    (
        b'{"seq":%d,"type":"info","session_id":"s0","caller_id":"+15550000001","category":"debts",'
        b'"information":"no such category","timestamp":"2026-01-01T10:00:00.000Z"}',
        "corrupt",
    ),
    (
        b'{"seq":%d,"type":"info","session_id":"s0","caller_id":"+15550000001","category":"debt_info",'
        b'"information":["a","list"],"timestamp":"2026-01-01T10:00:00.000Z"}',
        "corrupt",
    ),
    (
        b'{"seq":%d,"type":"info","session_id":"s0","caller_id":"+15550000001","category":"debt_info",'
        b'"information":"a bad time","timestamp":"yesterday"}',
        "corrupt",
    ),
    (
        b'{"seq":%d,"type":"session","session_id":"s1","caller_id":"+15550000001","direction":"inbound",'
        b'"started_at":"2026-01-01T10:00:00.000Z"}',
        "corrupt",
    ),  # started twice
    (
        b'{"seq":%d,"type":"call","session_id":"nowhere","caller_id":"+1555","reason":"completed",'
        b'"outcome":"completed","duration_seconds":1,"information_count":0,"ended_at":"2026-01-01T10:00:00.000Z"}',
        "corrupt",
    ),
    (
        b'{"seq":%d,"type":"call","session_id":"s0","caller_id":"+15550000001","reason":"completed",'
        b'"outcome":"completed","duration_seconds":1,"information_count":0,"ended_at":"2026-01-01T10:00:00.000Z"}',
        "corrupt",
    ),  # ended twice
    (b'{"seq":%d,"type":"event","kind":"job","key":"summary:s0","data":["not","an","object"]}', "corrupt"),
    (b'{"seq":%d,"type":"event","kind":"disclosures","key":"s0","data":"missing nothing"}', "corrupt"),
    (b'{"seq":%d,"type":"mystery"}', "corrupt"),
    (b'{"seq":1,"type":"turn","session_id":"s0","speaker":"agent","text":"an old seq"}', "corrupt"),
    (b'{"seq":%d,"type":"turn","session_id":"s0","type":"info"}', "corrupt"),  # json keeps the last type
    (b"not json at all", "corrupt"),
    (b"      ", "blank"),
]


def append_odd_lines(data_dir) -> list[int]:
    """Append ODD_LINES (each with the next seq) to the journal; the offsets of the corrupt ones."""
    path = data_dir / JOURNAL
    seq = JournalStore(data_dir, read_only=True).last_seq()
    corrupt = []
    with open(path, "ab") as fh:
        for line, fate in ODD_LINES:
            if b"%d" in line:
                seq += 1
                line = line % seq
            if fate == "corrupt":
                corrupt.append(fh.tell())
            fh.write(line + b"\n")
        seq += 1
        fh.write(line_of({"seq": seq, "type": "turn", "session_id": "s1", "speaker": "agent", "text": "after"}) + b"\n")
    return corrupt


@pytest.fixture
def history(data_dir) -> dict:
    writer = JournalStore(data_dir)
    known = write_history(writer)
    writer.close()
    return known


def test_every_read_of_a_lean_store_equals_the_full_stores(data_dir, history):
    lean, full = JournalStore(data_dir, lean=True), JournalStore(data_dir)
    assert lean.get_session("s0") is not None and lean.query_calls(outcome="do_not_call")[0]
    assert_same_reads(lean, full, history)


def test_events_whose_keys_hash_alike_are_told_apart(data_dir, history, monkeypatch):
    """The lean index knows an event key by its hash; with every key colliding, each read still
    gets the events of its own key only."""
    monkeypatch.setattr("backend.store.lean.hash", lambda _key: 7, raising=False)
    lean = JournalStore(data_dir, lean=True)
    assert len(lean.index._last_event) == 1
    assert_same_reads(lean, JournalStore(data_dir), history)


def test_odd_and_corrupt_lines_are_read_alike_and_quarantined_alike(tmp_path, data_dir, history):
    corrupt = append_odd_lines(data_dir)
    twin = tmp_path / "twin"
    shutil.copytree(data_dir, twin)
    lean, full = JournalStore(data_dir, lean=True), JournalStore(twin)
    for store, folder in ((lean, data_dir), (full, twin)):
        assert sorted(q["offset"] for q in store._quarantined) == corrupt
        assert len(list((folder / QUARANTINE).iterdir())) == len(corrupt)
    assert lean.session_transcript("s1")[-1]["text"] == "after"  # the lines after them are read
    assert [r["information"] for r in lean.query_information(caller_id=CALLERS[0], limit=2)[0]] == [
        "a number for a session id",
        "odd but fine: NaN elsewhere",
    ]
    assert_same_reads(lean, full, history)
    assert (data_dir / JOURNAL).read_bytes() == (twin / JOURNAL).read_bytes()  # blanked alike


def test_a_torn_tail_is_quarantined_and_the_lean_store_writes_after_it(data_dir, history):
    torn = b'{"seq":999,"type":"info","session_id":"s0","caller_id":"+1555'
    with open(data_dir / JOURNAL, "ab") as fh:
        fh.write(torn)
    lean = JournalStore(data_dir, lean=True)
    [qfile] = (data_dir / QUARANTINE).iterdir()
    assert qfile.read_bytes() == torn
    record, duplicate = lean.add_information(information="After the tear", category="debt_info", caller_id=CALLERS[0])
    assert not duplicate and record["seq"] == lean.last_seq()
    assert_same_reads(lean, JournalStore(data_dir), history)


def test_a_lean_store_reads_what_other_processes_append(data_dir, history):
    lean = JournalStore(data_dir, lean=True)
    assert lean.query_information(caller_id="+15550000042")[0] == []
    code = """
        import sys
        from backend.backend_agent import BackendAgent
        agent = BackendAgent(sys.argv[1])
        agent.start_session("other", "+15550000042")
        print(agent.share_information("Owes $9,000 to Citi", "debt_info", "+15550000042")["record"]["seq"])
        agent.end_call("customer_not_interested", "+15550000042", session_id="other")
        agent.opt_out("+15550000042", session_id="other")
    """
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    [record], _more = lean.query_information(caller_id="+15550000042")
    assert record["seq"] == int(out.stdout) and record["session_id"] == "other"
    assert lean.get_session("other")["outcome"] == "not_interested"
    assert dnc.contains(lean, "+15550000042")
    history["sids"].append("other")
    history["callers"].append("+15550000042")
    assert_same_reads(lean, JournalStore(data_dir), history)


def test_the_write_rules_hold_on_a_lean_store_with_a_full_one_writing_too(data_dir):
    lean, full = JournalStore(data_dir, lean=True), JournalStore(data_dir)
    first, duplicate = lean.add_information(information="Owes $5,000", category="debt_info", caller_id=CALLERS[0])
    assert not duplicate
    sid = first["session_id"]
    # the caller's active session takes records given without one, from either process
    again, duplicate = full.add_information(information="Owes $5,000", category="debt_info", caller_id=CALLERS[0])
    assert duplicate and again == first  # the duplicate guard saw the lean store's write
    other, duplicate = lean.add_information(information="Lives in Ohio", category="personal_info", caller_id=CALLERS[0])
    assert not duplicate and other["session_id"] == sid
    repeat, duplicate = lean.add_information(information="Owes $5,000", category="debt_info", caller_id=CALLERS[0])
    assert duplicate and repeat == first
    _other_category, duplicate = lean.add_information(
        information="Owes $5,000", category="qualification", caller_id=CALLERS[0]
    )
    assert not duplicate
    # one call log per session, whoever writes it
    call, already = full.end_session(reason="completed", caller_id=CALLERS[0])
    assert not already and call["session_id"] == sid and call["information_count"] == 3
    again, already = lean.end_session(reason="voicemail", caller_id=CALLERS[0], session_id=sid)
    assert already and again == call
    # the ended session is no longer active: the next record opens a new one
    later, _ = lean.add_information(information="Called back", category="debt_info", caller_id=CALLERS[0])
    assert later["session_id"] != sid
    assert lean.get_session(later["session_id"])["status"] == "active"
    assert lean.add_turn(session_id=sid, speaker="agent", text="bye", start_s=1, end_s=2)[0]["after_call_log"]
    assert lean.get_session(sid) == full.get_session(sid)


def test_the_duplicate_guard_forgets_after_its_window(data_dir, monkeypatch):
    lean = JournalStore(data_dir, lean=True)
    first, _ = lean.add_information(information="Owes $5,000", category="debt_info", caller_id=CALLERS[0])
    monkeypatch.setattr("backend.store.interface.DUPLICATE_WINDOW_SECONDS", 0.0)
    again, duplicate = lean.add_information(information="Owes $5,000", category="debt_info", caller_id=CALLERS[0])
    assert not duplicate and again["id"] != first["id"] and again["session_id"] == first["session_id"]


def test_an_agents_calls_never_index_the_whole_journal(data_dir, history, settings, monkeypatch):
    """What an agent process does, from its prewarm to a call's end (with the webhook on, so
    ending a call queues its delivery), reads through the lean index alone."""
    monkeypatch.setenv("WEBHOOK_URL", "https://hooks.example.com/calls")
    monkeypatch.setenv("WEBHOOK_SECRET", "whsec_" + "A" * 32)
    agent = BackendAgent(
        settings=type(settings).from_env(dict(os.environ, DATA_DIR=str(data_dir)), dotenv=False), lean=True
    )
    store = agent.store
    assert store.lean and not (data_dir / SNAPSHOT).exists()
    agent.close_orphaned_calls()
    agent.reconcile_opt_outs()
    agent.start_session("call-1", CALLERS[2])
    assert agent.get_shared_information(caller_id=CALLERS[2])["count"] == 16
    assert agent.share_information("Owes $7,000", "debt_info", CALLERS[2], session_id="call-1")["success"]
    assert agent.share_information("Owes $7,000", "debt_info", CALLERS[2], session_id="call-1")["duplicate"]
    assert agent.save_turn("call-1", "caller", "I owe seven thousand", 1.0, 3.0)["success"]
    assert agent.record_disclosures(
        "call-1", {"required": ["ai_assistant"], "heard": {"ai_assistant": 1.0}, "missing": []}
    )["success"]
    assert agent.claim_lease("call-1", CALLERS[2])
    assert agent.record_recording("call-1", state="started", egress_id="EG_1")
    assert agent.opt_out(CALLERS[2], session_id="call-1") == {"success": True, "created": True}
    ended = agent.end_call("do_not_call_request", CALLERS[2], session_id="call-1", usage=[])
    assert ended["success"] and ended["call"]["information_count"] == 1
    assert agent.end_call("completed", CALLERS[2], session_id="call-1")["already_ended"]
    assert agent.summary_of("call-1")["state"] == "queued"
    assert store.job("webhook:call.ended:call-1")["state"] == "queued"
    assert store.full_scans == 0
    assert store.summary()["total_calls"] == 7  # an API read: right, by indexing everything
    assert store.full_scans == 1


def test_a_lean_store_neither_writes_nor_reads_the_index_snapshot(data_dir, history, monkeypatch):
    monkeypatch.setattr("backend.store.journal.SNAPSHOT_EVERY_BYTES", 100)
    lean = JournalStore(data_dir, lean=True)
    lean.add_information(information="one more", category="debt_info", caller_id=CALLERS[0])
    assert not lean.write_snapshot()
    lean.verify()
    lean.close()
    assert not (data_dir / SNAPSHOT).exists()
    full = JournalStore(data_dir)  # writes one: it indexed more than SNAPSHOT_EVERY_BYTES
    full.close()
    assert (data_dir / SNAPSHOT).exists()
    lean = JournalStore(data_dir, lean=True)
    assert lean.index.last_seq == full.index.last_seq and len(lean.index.info_off) == len(full.index.info_off)
    assert_same_reads(lean, JournalStore(data_dir), history)


def test_open_store_and_the_backend_open_a_lean_store_only_when_asked(settings, data_dir):
    assert open_store(settings, lean=True).lean and not open_store(settings).lean
    assert BackendAgent(settings=settings, lean=True).store.lean
    assert BackendAgent(data_dir, lean=True).store.lean and not BackendAgent(data_dir).store.lean
