"""The journal survives what real disks and processes do: reopening, torn and corrupt lines, a
full disk, a read-only folder, and a stale or foreign index snapshot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from backend.store.journal import JOURNAL, QUARANTINE, SNAPSHOT, JournalStore
from backend.store.records import StoreError, StoreUnavailable

pytestmark = pytest.mark.json_store_only  # the JSON store's own files

CALLER = "+15551234567"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fill(store, n, session="s1"):
    return [
        store.add_information(information=f"fact {i}", category="debt_info", caller_id=CALLER, session_id=session)[0]
        for i in range(n)
    ]


def run_child(code: str, data_dir, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT, DATA_DIR=str(data_dir))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=60, **kw
    )


def test_reopened_store_has_everything(data_dir):
    store = JournalStore(data_dir)
    written = fill(store, 20)
    store.end_session(reason="completed", caller_id=CALLER, session_id="s1")
    store.close()
    again = JournalStore(data_dir)
    records, _ = again.query_information(limit=1000)
    assert [r["id"] for r in reversed(records)] == [r["id"] for r in written]
    assert again.get_session("s1")["status"] == "completed"


def test_a_second_process_sees_new_records_without_reopening(data_dir):
    reader = JournalStore(data_dir)
    assert reader.summary()["total_information"] == 0
    writer = JournalStore(data_dir)
    fill(writer, 5)
    assert reader.summary()["total_information"] == 5
    seq = reader.last_seq()
    fill(writer, 3, session="s2")
    assert [r["information"] for r in reader.query_information(after_seq=seq)[0]] == ["fact 0", "fact 1", "fact 2"]


def test_torn_last_line_is_quarantined_not_dropped(data_dir, caplog):
    store = JournalStore(data_dir)
    written = fill(store, 3)
    store.close()
    torn = b'{"seq":99,"type":"info","id":"half-writ'
    with open(data_dir / JOURNAL, "ab") as fh:
        fh.write(torn)
    reopened = JournalStore(data_dir)
    assert reopened.summary()["total_information"] == 3
    files = list((data_dir / QUARANTINE).iterdir())
    assert len(files) == 1 and files[0].read_bytes() == torn
    assert "torn last line" in caplog.text
    assert (data_dir / JOURNAL).read_bytes().endswith(b"\n")
    record, _ = reopened.add_information(information="after", category="debt_info", caller_id=CALLER)
    assert record["seq"] > written[-1]["seq"]
    assert JournalStore(data_dir).summary()["total_information"] == 4


def test_reader_does_not_consume_a_line_being_written(data_dir):
    store = JournalStore(data_dir)
    fill(store, 2)
    line = (data_dir / JOURNAL).read_bytes().splitlines(keepends=True)[-1]
    line = line.replace(b'"fact 1"', b'"fact 2"').replace(b'"seq":3', b'"seq":4')
    with open(data_dir / JOURNAL, "ab") as fh:
        fh.write(line[:20])
        fh.flush()
        assert store.summary()["total_information"] == 2  # half a line is not a record yet
        fh.write(line[20:])
    assert store.summary()["total_information"] == 3


def test_corrupt_middle_line_is_quarantined_and_the_rest_stays_readable(data_dir, caplog):
    store = JournalStore(data_dir)
    fill(store, 5)
    store.close()
    lines = (data_dir / JOURNAL).read_bytes().splitlines(keepends=True)
    bad = b'{"seq": garbage that is not json}\n'
    lines[2] = bad
    (data_dir / JOURNAL).write_bytes(b"".join(lines))
    reopened = JournalStore(data_dir)
    assert reopened.summary()["total_information"] == 4
    assert "corrupt line" in caplog.text
    [qfile] = (data_dir / QUARANTINE).iterdir()
    assert qfile.read_bytes() == bad.rstrip(b"\n")
    # the line is blanked in place: offsets are unchanged and later readers skip it silently
    assert len((data_dir / JOURNAL).read_bytes()) == sum(len(x) for x in lines)
    report = JournalStore(data_dir).verify()
    assert report["healthy"] and report["quarantined"] == []


def test_line_with_valid_json_but_wrong_shape_is_quarantined(data_dir):
    store = JournalStore(data_dir)
    fill(store, 2)
    with open(data_dir / JOURNAL, "ab") as fh:
        fh.write(b'{"seq": 3, "type": "info"}\n')
    fill(store, 1, session="s2")
    assert store.summary()["total_information"] == 3
    assert len(list((data_dir / QUARANTINE).iterdir())) == 1


def test_verify_reports_and_repairs(data_dir):
    store = JournalStore(data_dir)
    fill(store, 3)
    with open(data_dir / JOURNAL, "ab") as fh:
        fh.write(b'not json at all\n{"seq":')
    report = store.verify()
    assert not report["healthy"] and report["repaired"]
    assert sorted(q["why"] for q in report["quarantined"]) == ["corrupt", "torn"]
    assert store.verify()["healthy"]


def test_full_disk_gives_store_unavailable_and_no_half_record(data_dir):
    store = JournalStore(data_dir)
    fill(store, 3)
    store.close()
    size = (data_dir / JOURNAL).stat().st_size
    # A real short write: the child may not grow any file past `size + 50` bytes.
    result = run_child(
        f"""
        import json, resource, signal
        from backend.backend_agent import BackendAgent
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        agent = BackendAgent()
        resource.setrlimit(resource.RLIMIT_FSIZE, ({size + 50}, {size + 50}))
        print(json.dumps(agent.share_information("x" * 300, "debt_info", "{CALLER}", "s1")))
        """,
        data_dir,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer == {"success": False, "error": "store_unavailable", "message": answer["message"]}
    assert (data_dir / JOURNAL).stat().st_size == size
    reopened = JournalStore(data_dir)
    assert reopened.summary()["total_information"] == 3
    assert not (data_dir / QUARANTINE).exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_read_only_folder_gives_store_unavailable(data_dir):
    fill(JournalStore(data_dir), 2)
    os.chmod(data_dir, 0o755)
    os.chmod(data_dir / JOURNAL, 0o644)
    os.chmod(data_dir.parent, 0o755)
    result = run_child(
        f"""
        import json, os
        from backend.backend_agent import BackendAgent
        from backend.store.records import StoreError
        os.setgid(65534); os.setuid(65534)  # now the folder is read-only for this process
        try:
            agent = BackendAgent()
        except StoreError as exc:
            print(json.dumps({{"open_error": exc.code}}))
        else:
            print(json.dumps(agent.share_information("fact", "debt_info", "{CALLER}", "s1")))
        """,
        data_dir,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"open_error": "store_unavailable"}
    assert JournalStore(data_dir).summary()["total_information"] == 2


def test_read_only_store_refuses_writes(data_dir):
    fill(JournalStore(data_dir), 1)
    ro = JournalStore(data_dir, read_only=True)
    assert ro.summary()["total_information"] == 1
    with pytest.raises(StoreUnavailable):
        ro.add_information(information="x", category="debt_info", caller_id=CALLER)


def test_snapshot_speeds_open_and_matches_a_full_scan(data_dir, monkeypatch):
    import backend.store.journal as store_module

    monkeypatch.setattr(store_module, "SNAPSHOT_EVERY_BYTES", 1000)
    store = JournalStore(data_dir)
    fill(store, 30)
    store.end_session(reason="completed", caller_id=CALLER, session_id="s1")
    store.append_event("dnc", CALLER, {"action": "add"})
    store.close()
    JournalStore(data_dir).close()  # this open indexed > 1000 bytes: it writes a snapshot
    assert (data_dir / SNAPSHOT).exists()
    fill(JournalStore(data_dir), 3, session="s2")  # more after the snapshot
    from_snapshot = JournalStore(data_dir)
    (data_dir / SNAPSHOT).unlink()
    full_scan = JournalStore(data_dir)
    assert from_snapshot.export()["information"] == full_scan.export()["information"]
    assert from_snapshot.summary() == full_scan.summary()
    assert from_snapshot.events("dnc") == full_scan.events("dnc")
    # the duplicate guard still works for records indexed from a snapshot
    last = full_scan.query_information(limit=1)[0][0]
    again, duplicate = from_snapshot.add_information(
        information=last["information"], category="debt_info", caller_id=CALLER, session_id="s2"
    )
    assert duplicate and again["id"] == last["id"]


def test_snapshot_of_another_journal_is_ignored(data_dir, monkeypatch):
    import backend.store.journal as store_module

    monkeypatch.setattr(store_module, "SNAPSHOT_EVERY_BYTES", 100)
    fill(JournalStore(data_dir), 10)
    JournalStore(data_dir).close()
    snapshot = (data_dir / SNAPSHOT).read_bytes()
    # replace the journal by a different one; the old snapshot must not be trusted
    (data_dir / JOURNAL).unlink()
    (data_dir / SNAPSHOT).unlink()
    fill(JournalStore(data_dir), 2)
    (data_dir / SNAPSHOT).write_bytes(snapshot)
    assert JournalStore(data_dir).summary()["total_information"] == 2
    (data_dir / SNAPSHOT).write_bytes(b"garbage")
    assert JournalStore(data_dir).summary()["total_information"] == 2


def test_unopenable_folder_is_store_unavailable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError) as err:
        JournalStore(blocker / "data")
    assert err.value.code == "store_unavailable"


def test_close_saves_the_snapshot_when_far_behind(data_dir, monkeypatch):
    import backend.store.journal as store_module

    monkeypatch.setattr(store_module, "SNAPSHOT_EVERY_BYTES", 500)
    store = JournalStore(data_dir)
    fill(store, 20)
    assert not (data_dir / SNAPSHOT).exists()
    store.close()
    assert (data_dir / SNAPSHOT).exists()
    assert JournalStore(data_dir).summary()["total_information"] == 20


def test_call_totals_survive_the_index_snapshot(data_dir):
    store = JournalStore(data_dir)
    store.start_session("s1", "+15551234567")
    store.end_session(reason="completed", caller_id="+15551234567", session_id="s1", cost={"total_usd": 1.5})
    assert store.write_snapshot()
    store.close()
    again = JournalStore(data_dir)  # opened from the snapshot
    assert again.call_totals()["cost_total_usd"] == 1.5 and again.call_totals()["calls_with_cost"] == 1
