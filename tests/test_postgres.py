"""What only the PostgreSQL store has to prove: seq in commit order across writers whose
transactions finish out of order, the rules under races between processes, migrations, copies
to and from the JSON store, and its faults (the server restarting mid-call, a full pool, a
connection dropped in the middle of a write). The contract tests run against it too, through the
`store` fixture and the `store_kind` parameter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psycopg
import pytest
import requests

from backend.backend_agent import BackendAgent, copy_store
from backend.settings import override_settings
from backend.store import postgres
from backend.store.journal import JournalStore
from backend.store.postgres import PgStore, _Tx, migrate, schema_version
from backend.store.records import StoreError, StoreUnavailable
from tests.servers import free_port, wait_until_up

pytestmark = pytest.mark.json_store_only  # each test here picks its stores itself


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CALLER = "+15551234567"


def add(store, text, session_id="s1", caller=CALLER):
    return store.add_information(information=text, category="debt_info", caller_id=caller, session_id=session_id)


@pytest.fixture
def pg(pg_url):
    store = PgStore(pg_url, pool_size=4)
    yield store
    store.close()


# ---- seq in commit order ---------------------------------------------------------------------
class _NextvalTx(_Tx):
    """A broken design kept for the control: seqs from a database sequence, no lock to commit."""

    def begin(self) -> None:
        self.conn.execute("BEGIN")

    def append(self, entry):
        entry["seq"] = self.conn.execute("SELECT nextval('control_seq')").fetchone()[0]
        self.insert(entry)
        self.last_seq = max(self.last_seq, entry["seq"])
        self.appended.append(entry)
        return entry


def _late_committer_race(store: PgStore) -> tuple[int, int, list[int]]:
    """Writer A takes its seq and waits before COMMIT; writer B writes meanwhile; a reader follows
    `after_seq` throughout. Returns (A's seq, B's seq, every seq the reader saw, in order)."""
    a_has_seq, a_may_commit = threading.Event(), threading.Event()
    seqs: dict[str, int] = {}

    def hold(stage, tx):
        if stage == "before_commit" and threading.current_thread().name == "A":
            a_has_seq.set()
            a_may_commit.wait(3)

    store.fault = hold
    seen: list[int] = []
    done = threading.Event()

    def reader():
        cursor = 0
        while True:
            finished = done.is_set()
            records, _more = store.query_information(after_seq=cursor, limit=1000)
            for r in records:
                seen.append(r["seq"])
                cursor = r["seq"]
            if finished:
                return
            time.sleep(0.005)

    def writer(name):
        seqs[name] = add(store, f"written by {name}", session_id=f"s-{name}")[0]["seq"]

    add(store, "first", session_id="s-0")  # the sessions exist before the race
    add(store, "first", session_id="s-A")
    add(store, "first", session_id="s-B")
    follower = threading.Thread(target=reader)
    follower.start()
    a = threading.Thread(target=writer, args=("A",), name="A")
    a.start()
    assert a_has_seq.wait(5)
    b = threading.Thread(target=writer, args=("B",), name="B")
    b.start()
    b.join(2)  # B commits now if nothing stops it (ours: it waits for A's COMMIT)
    if not b.is_alive():  # it committed: let the reader move past it before A commits
        deadline = time.monotonic() + 3
        while seqs["B"] not in seen and time.monotonic() < deadline:
            time.sleep(0.005)
    a_may_commit.set()
    a.join(5)
    b.join(5)
    time.sleep(0.05)
    done.set()
    follower.join(5)
    store.fault = None
    return seqs["A"], seqs["B"], seen


def test_a_reader_following_after_seq_never_misses_a_write_that_commits_late(pg):
    a_seq, b_seq, seen = _late_committer_race(pg)
    assert a_seq < b_seq  # B waited for A's COMMIT, and came after it
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert a_seq in seen and b_seq in seen
    assert seen == [r["seq"] for r in pg.query_information(after_seq=0, limit=1000)[0]]


def test_the_race_harness_catches_a_store_whose_seqs_do_not_follow_commit_order(pg, monkeypatch):
    """The control: with seqs from a sequence and no lock to COMMIT, B commits first with the
    higher seq, the reader moves past A's, and A's record is missed. Our store passes the same
    harness (above), so the harness can tell the two apart."""
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE control_seq START 1000")
    monkeypatch.setattr(postgres, "_Tx", _NextvalTx)
    a_seq, b_seq, seen = _late_committer_race(pg)
    assert a_seq < b_seq
    assert b_seq in seen
    assert a_seq not in seen  # committed late, below the reader's cursor: missed


def test_four_processes_with_random_commit_delays_lose_nothing_and_keep_seq_order(pg_url):
    writer = textwrap.dedent(
        """
        import random, sys, time
        from backend.store.postgres import PgStore
        name = sys.argv[2]
        store = PgStore(sys.argv[1], pool_size=2)
        store.fault = lambda stage, tx: stage == "before_commit" and time.sleep(random.random() / 200)
        for i in range(60):
            record, _ = store.add_information(information=f"{name} {i}", category="debt_info",
                                              caller_id="+15550000001", session_id=f"s-{name}")
            print(record["seq"], flush=True)
        """
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    store = PgStore(pg_url)
    procs = [
        subprocess.Popen([sys.executable, "-c", writer, pg_url, f"w{n}"], env=env, stdout=subprocess.PIPE, text=True)
        for n in range(4)
    ]
    seen, cursor = [], 0
    while any(p.poll() is None for p in procs) or cursor < store.last_seq():
        records, _more = store.query_information(after_seq=cursor, limit=1000)
        for r in records:
            seen.append(r["seq"])
            cursor = r["seq"]
        time.sleep(0.002)
    acknowledged = sorted(int(line) for p in procs for line in p.stdout.read().split())
    assert all(p.wait() == 0 for p in procs)
    assert len(acknowledged) == 240
    # every acknowledged record was seen by the follower, in increasing order, none twice
    assert seen == sorted(set(seen))
    assert seen == acknowledged  # the follower saw every record, each once, none it was not told of
    store.close()


# ---- the rules under races between processes ------------------------------------------------
def test_racing_processes_write_exactly_one_call_log_and_one_record_per_duplicate(pg_url):
    racer = textwrap.dedent(
        """
        import sys
        from backend.store.postgres import PgStore
        store = PgStore(sys.argv[1], pool_size=2)
        record, duplicate = store.add_information(information="Owes $9,000 on a Visa card", category="debt_info",
                                                  caller_id="+15551234567", session_id="race")
        call, already = store.end_session(reason="caller_hung_up", caller_id="+15551234567", session_id="race")
        print(record["id"], call["id"], flush=True)
        """
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [
        subprocess.Popen([sys.executable, "-c", racer, pg_url], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    answers = [p.communicate(timeout=60)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len({a[0] for a in answers}) == 1  # one record; the others got it back as a duplicate
    assert len({a[1] for a in answers}) == 1  # one call log
    store = PgStore(pg_url)
    assert store.summary()["total_calls"] == 1
    assert store.summary()["total_information"] == 1
    assert store.session_call("race")["id"] == answers[0][1]
    store.close()


def test_a_database_constraint_backs_one_call_log_per_session(pg, pg_url):
    """Even a write that went round the rules cannot give a session a second call log."""
    pg.end_session(reason="caller_hung_up", caller_id=CALLER, session_id="s1")

    def second_call_log(tx, append):
        append({**pg.session_call("s1"), "type": "call", "id": "another"})

    with pytest.raises(StoreError) as err:
        pg._transact(second_call_log)
    assert err.value.code == "store_conflict"
    assert pg.summary()["total_calls"] == 1


def test_leases_live_in_the_database_and_another_machine_sees_them(pg, pg_url):
    from backend.calls import leases

    lease = leases.this_process("s1", CALLER)
    pg.put_lease(lease)
    other = PgStore(pg_url)  # another machine's handle
    [seen] = other.leases()
    assert (seen.session_id, seen.pid, seen.host) == ("s1", lease.pid, lease.host)
    before = seen.touched
    time.sleep(0.02)
    pg.touch_lease("s1")
    assert other.leases()[0].touched > before
    other.drop_lease("s1")
    assert pg.leases() == []
    other.close()


# ---- schema -------------------------------------------------------------------------------------
def test_migrate_is_versioned_and_safe_to_run_again(pg_cluster):
    url = pg_cluster.url(pg_cluster.create_database("fresh_schema"))
    assert schema_version(url) == 0
    with pytest.raises(StoreUnavailable, match="python -m backend migrate"):
        PgStore(url)
    assert migrate(url) == {
        "from": 0,
        "to": postgres.SCHEMA_VERSION,
        "applied": list(range(1, postgres.SCHEMA_VERSION + 1)),
    }
    assert migrate(url)["applied"] == []
    assert schema_version(url) == postgres.SCHEMA_VERSION
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO store_schema (version) VALUES (%s)", (postgres.SCHEMA_VERSION + 1,))
    with pytest.raises(StoreUnavailable, match="newer"):
        PgStore(url)


def test_a_store_written_at_an_older_schema_is_upgraded_in_place(pg_cluster, monkeypatch):
    url = pg_cluster.url(pg_cluster.create_database("old_schema"))
    monkeypatch.setattr(postgres, "SCHEMA_VERSION", 1)  # the code as it shipped with version 1
    migrate(url)
    old = PgStore(url)
    first = add(old, "Owes $5,000 to a card")[0]
    assert add(old, "Owes $5,000 to a card") == (first, True)
    old.close()
    monkeypatch.undo()
    with pytest.raises(StoreUnavailable, match="schema version 1"):
        PgStore(url)
    assert migrate(url)["applied"] == list(range(2, postgres.SCHEMA_VERSION + 1))
    new = PgStore(url)
    assert new.session_information("s1") == [first]
    assert add(new, "Owes $5,000 to a card") == (first, True)  # the duplicate guard without its index
    assert add(new, "Owes $7,000 to a bank")[0]["seq"] > first["seq"]
    assert [r["information"] for r in new.query_information(after_seq=first["seq"])[0]] == ["Owes $7,000 to a bank"]
    new.close()


def test_migrate_on_the_command_line(pg_cluster):
    url = pg_cluster.url(pg_cluster.create_database("cli_schema"))
    env = dict(os.environ, PYTHONPATH=ROOT, STORE_URL=url)
    out = subprocess.run([sys.executable, "-m", "backend", "migrate"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["to"] == postgres.SCHEMA_VERSION
    assert pg_cluster.password not in out.stdout + out.stderr


def test_store_url_selects_the_postgresql_store_and_is_never_printed(pg_url, pg_cluster, monkeypatch, data_dir):
    monkeypatch.setenv("STORE_URL", pg_url)
    with override_settings() as settings:
        backend = BackendAgent()
        try:
            assert isinstance(backend.store, PgStore)
            backend.share_information("Owes $9,000", "debt_info", CALLER, session_id="s1")
        finally:
            backend.close()
        assert pg_cluster.password not in repr(settings)
    assert not (data_dir / "journal.jsonl").exists()  # nothing went to the JSON store
    reader = PgStore(pg_url)
    assert [r["information"] for r in reader.session_information("s1")] == ["Owes $9,000"]
    reader.close()


def test_run_migrates_a_new_database_then_serves_from_it(pg_cluster, tmp_path):
    """The README's run command pointed at an empty database: it creates the schema, and the API
    under gunicorn (gevent workers) reads and writes PostgreSQL."""
    url = pg_cluster.url(pg_cluster.create_database("run_fresh"))
    port = free_port()
    env = dict(
        os.environ,
        PYTHONPATH=ROOT,
        STORE_URL=url,
        DATA_DIR=str(tmp_path / "data"),
        API_TOKENS="run-token",
        PORT=str(port),
        HOST="127.0.0.1",
        WEB_CONCURRENCY="1",
    )
    for key in ("GOOGLE_API_KEY", "LIVEKIT_URL"):
        env.pop(key, None)
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "backend", "run"], cwd=ROOT, env=env, stdout=log, stderr=log)
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": "Bearer run-token"}
    try:
        wait_until_up(proc, base, tmp_path / "run.log", timeout=60)
        assert schema_version(url) == postgres.SCHEMA_VERSION
        fact = {"information": "Owes $15,000 on two cards", "category": "debt_info", "caller_id": CALLER}
        body = {"function": "share_information", "arguments": fact}
        saved = requests.post(f"{base}/api/test_function", json=body, headers=auth, timeout=10)
        assert saved.status_code == 200 and saved.json()["success"], saved.text
        got = requests.get(f"{base}/api/information", headers=auth, timeout=10).json()
        assert [r["information"] for r in got["information"]] == ["Owes $15,000 on two cards"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
    printed = (tmp_path / "run.log").read_text()
    assert "store: PostgreSQL at" in printed and pg_cluster.password not in printed
    reader = PgStore(url)
    assert reader.summary()["total_information"] == 1
    reader.close()


# ---- copy ---------------------------------------------------------------------------------------
def _filled_journal(data_dir):
    backend = BackendAgent(store=JournalStore(data_dir))
    for n in range(5):
        sid = f"call-{n}"
        backend.start_session(sid, f"+1555000{n:04d}")
        backend.share_information(f"Owes ${n + 1},000 on a card", "debt_info", f"+1555000{n:04d}", sid)
        backend.share_information("Lives in Ohio — “quoted” ünïcode", "personal_info", f"+1555000{n:04d}", sid)
        backend.save_turn(sid, "agent", "Hello, this is an AI assistant; the call is recorded.", 0.0, 2.0)
        backend.record_disclosures(sid, {"missing": [] if n % 2 else ["ai_assistant"], "checked": True})
        backend.end_call("caller_hung_up", f"+1555000{n:04d}", session_id=sid)
    backend.add_to_do_not_call("+15550009999", source="api")
    return backend


def _analyze_count(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'entries'").fetchone()
    return row[0]


def test_copy_json_to_postgresql_and_back_gives_the_same_store_and_is_safe_to_rerun(data_dir, pg_url, tmp_path):
    source = _filled_journal(data_dir)
    analyzed = _analyze_count(pg_url)
    report = copy_store(str(data_dir), pg_url)
    assert report["verified"] and report["copied"] == source.last_seq()
    assert _analyze_count(pg_url) > analyzed  # the planner's statistics refreshed after the load
    assert report["target"]["entries"] == report["source"]["entries"]
    again = copy_store(str(data_dir), pg_url)
    assert again["copied"] == 0 and again["already_there"] == source.last_seq() and again["verified"]
    # the copy answers as the original does
    pg = PgStore(pg_url)
    original = source.store
    for read in ("summary", "stats", "call_totals", "active_sessions"):
        assert getattr(pg, read)() == getattr(original, read)(), read
    assert pg.query_sessions(missing_disclosure=True) == original.query_sessions(missing_disclosure=True)
    assert pg.session_transcript("call-3") == original.session_transcript("call-3")
    assert pg.events("dnc") == original.events("dnc")
    # more calls on the original, then copy again: only the new entries go
    source.share_information("Owes $3,000 to a hospital", "debt_info", "+15550000001", "late")
    assert copy_store(str(data_dir), pg_url)["copied"] == 2  # its session and the record
    # and back into a new folder: the same lines, byte for byte
    back = tmp_path / "back"
    assert copy_store(pg_url, str(back))["verified"]
    assert (back / "journal.jsonl").read_bytes() == (data_dir / "journal.jsonl").read_bytes()
    pg.close()


def test_copy_refuses_a_target_that_holds_another_store(data_dir, pg_url):
    _filled_journal(data_dir)
    other = PgStore(pg_url)
    add(other, "a different store's first record")
    with pytest.raises(StoreError) as err:
        copy_store(str(data_dir), pg_url)
    assert err.value.code == "copy_diverged"
    assert other.summary()["total_information"] == 1  # nothing mixed in
    other.close()


def test_copy_on_the_command_line_reports_and_redacts(data_dir, pg_url, pg_cluster):
    _filled_journal(data_dir)
    env = dict(os.environ, PYTHONPATH=ROOT, DATA_DIR=str(data_dir))
    env.pop("STORE_URL", None)
    out = subprocess.run(
        [sys.executable, "-m", "backend", "copy", "--to", pg_url], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["verified"] is True and report["copied"] > 0
    assert pg_cluster.password not in out.stdout + out.stderr
    assert "***" in report["to"]


# ---- faults -------------------------------------------------------------------------------------
def test_the_database_restarting_mid_call_loses_no_acknowledged_write(pg_cluster, pg_url, settings):
    backend = BackendAgent(store=PgStore(pg_url), settings=settings)
    backend.start_session("call", CALLER)
    results, stop = [], threading.Event()

    def talk():
        n = 0
        while not stop.is_set():
            results.append((n, backend.share_information(f"fact number {n}", "debt_info", CALLER, "call")))
            n += 1
            time.sleep(0.01)

    talker = threading.Thread(target=talk)
    talker.start()
    time.sleep(0.3)
    pg_cluster.restart()  # fast shutdown: every connection is cut
    time.sleep(0.5)
    stop.set()
    talker.join(30)
    saved = {r["information"] for r in backend.store.session_information("call")}
    acknowledged = {f"fact number {n}" for n, r in results if r["success"]}
    refused = [r for _n, r in results if not r["success"]]
    assert acknowledged <= saved  # every write the model was told is saved, is saved
    assert all(r["error"] == "store_unavailable" for r in refused)  # and the others were told so
    assert len(saved) == len(acknowledged) + sum(
        1 for n, r in results if not r["success"] and f"fact number {n}" in saved
    )
    # the call goes on: the next write and the call log work
    assert backend.share_information("after the restart", "debt_info", CALLER, "call")["success"]
    assert backend.end_call("caller_hung_up", CALLER, session_id="call")["success"]
    backend.close()


def test_a_write_during_an_outage_is_retried_and_saved_once_the_server_is_back(pg_cluster, pg_url, monkeypatch):
    monkeypatch.setattr(postgres, "RETRY_SECONDS", 20.0)  # longer than a slow machine's restart
    store = PgStore(pg_url)
    add(store, "before the outage")
    pg_cluster.stop()
    restarter = threading.Timer(0.8, pg_cluster.start)
    restarter.start()
    t0 = time.monotonic()
    _record, duplicate = add(store, "said while the database was down")
    assert time.monotonic() - t0 > 0.7  # it waited for the server, trying again
    restarter.join()
    assert not duplicate
    assert [r["information"] for r in store.session_information("s1")] == [
        "before the outage",
        "said while the database was down",
    ]
    store.close()


def test_a_longer_outage_reports_store_unavailable_to_the_model(pg_cluster, pg_url, settings, monkeypatch):
    monkeypatch.setattr(postgres, "RETRY_SECONDS", 0.5)
    backend = BackendAgent(store=PgStore(pg_url), settings=settings)
    backend.start_session("call", CALLER)
    pg_cluster.stop()
    try:
        result = backend.share_information("Owes $12,000", "debt_info", CALLER, "call")
    finally:
        pg_cluster.start()
    assert result["success"] is False and result["error"] == "store_unavailable"
    assert backend.store.session_information("call") == []  # nothing half-written
    assert backend.share_information("Owes $12,000", "debt_info", CALLER, "call")["success"]
    backend.close()


def test_a_full_pool_makes_a_write_wait_then_report_busy_never_hang(pg_url, settings, monkeypatch):
    monkeypatch.setattr(postgres, "POOL_TIMEOUT_SECONDS", 0.3)
    store = PgStore(pg_url, pool_size=2)
    backend = BackendAgent(store=store, settings=settings)
    backend.start_session("call", CALLER)
    holding, release = threading.Barrier(3), threading.Event()

    def hold_a_connection():
        with store._connection():
            holding.wait()
            release.wait(10)

    holders = [threading.Thread(target=hold_a_connection) for _ in range(2)]
    for h in holders:
        h.start()
    holding.wait()
    t0 = time.monotonic()
    result = backend.share_information("Owes $5,000", "debt_info", CALLER, "call")
    waited = time.monotonic() - t0
    release.set()
    for h in holders:
        h.join()
    assert result["success"] is False and result["error"] == "store_unavailable"
    assert "busy" in result["message"]
    assert 0.25 < waited < 2
    assert backend.share_information("Owes $5,000", "debt_info", CALLER, "call")["success"]
    assert len(store.session_information("call")) == 1
    backend.close()


def test_a_connection_dropped_in_the_middle_of_a_write_is_retried_once(pg, pg_url):
    add(pg, "first")
    killed = []

    def drop_it(stage, tx):
        if stage == "before_commit" and not killed:
            pid = tx.conn.info.backend_pid
            with psycopg.connect(pg_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            killed.append(pid)

    pg.fault = drop_it
    record, duplicate = add(pg, "second")
    pg.fault = None
    assert killed and not duplicate
    assert [r["information"] for r in pg.session_information("s1")] == ["first", "second"]
    assert record["seq"] == pg.last_seq()
    assert pg.verify()["healthy"]


def test_a_commit_whose_answer_is_lost_is_not_written_twice(pg):
    add(pg, "first")
    lost = []

    def lose_the_answer(stage, tx):
        if stage == "after_commit" and not lost:
            lost.append(tx.appended[0]["seq"])
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    pg.fault = lose_the_answer
    turns = pg.add_turn(session_id="s1", speaker="caller", text="I owe about ten thousand.", start_s=1, end_s=3)
    pg.fault = None
    assert lost
    assert [t["text"] for t in pg.session_transcript("s1")] == ["I owe about ten thousand."]
    assert turns[0]["seq"] == lost[0] == pg.last_seq()
