"""`python -m backend` stats, verify, export and import-legacy work on a real store folder, as a
person would run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from backend.calls import leases
from backend.store.journal import JOURNAL, QUARANTINE
from tests.postgres import configured_store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CALLER = "+15551234567"

LEGACY = {
    "shared_information": [
        {
            "id": "a1",
            "session_id": "old-1",
            "information": "Customer name: John Doe",
            "category": "contact_details",
            "caller_id": "john_555-1234",
            "timestamp": "2025-09-29T10:03:00",
            "status": "received",
        },
        {
            "id": "a2",
            "session_id": "old-1",
            "information": "$25,000 credit card debt",
            "category": "debt_info",
            "caller_id": "john_555-1234",
            "timestamp": "2025-09-29T10:04:00",
            "status": "received",
        },
        {
            "id": "a3",
            "session_id": "old-1",
            "information": "bad category",
            "category": "weather",
            "caller_id": "john_555-1234",
            "timestamp": "2025-09-29T10:05:00",
        },
    ],
    "sessions": {"old-1": {"caller_id": "john_555-1234", "start_time": "2025-09-29T10:00:00", "status": "completed"}},
    "call_logs": [
        {
            "session_id": "old-1",
            "caller_id": "john_555-1234",
            "reason": "customer_qualified_transfer",
            "duration": 420,
            "timestamp": "2025-09-29T10:07:00",
        }
    ],
}


def cli(data_dir, *args):
    env = dict(os.environ, PYTHONPATH=ROOT, DATA_DIR=str(data_dir))
    return subprocess.run(
        [sys.executable, "-m", "backend", *args], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def seeded(data_dir):
    store = configured_store(data_dir)
    store.start_session("s1", CALLER)
    store.add_information(information="Owes $12,000", category="debt_info", caller_id=CALLER, session_id="s1")
    store.end_session(reason="completed", caller_id=CALLER, session_id="s1")
    store.close()


def test_stats(data_dir):
    seeded(data_dir)
    result = cli(data_dir, "stats")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["total_information"] == 1 and stats["total_calls"] == 1 and stats["by_outcome"] == {"completed": 1}


@pytest.mark.json_store_only  # repairs the journal's torn lines
def test_verify_healthy_then_repairs_and_reports(data_dir):
    seeded(data_dir)
    assert cli(data_dir, "verify").returncode == 0
    with open(data_dir / JOURNAL, "ab") as fh:
        fh.write(b'{broken\n{"seq":9')
    result = cli(data_dir, "verify")
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["repaired"] and len(report["quarantined"]) == 2
    assert "quarantined" in result.stderr
    assert len(list((data_dir / QUARANTINE).iterdir())) == 2
    assert json.loads(cli(data_dir, "verify").stdout)["healthy"]


def test_verify_closes_the_calls_of_dead_agent_processes(data_dir):
    store = configured_store(data_dir)
    store.start_session("crashed", CALLER)
    store.add_information(information="Owes $12,000", category="debt_info", caller_id=CALLER, session_id="crashed")
    store.start_session("running", "+12025550143")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    store.put_lease(leases.this_process("running", "+12025550143"))  # held by this test's process: alive
    exited = replace(leases.this_process("crashed", CALLER), pid=int(dead.stdout), process_start="1")
    store.put_lease(exited)
    store.close()

    result = cli(data_dir, "verify")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["closed_calls"] == ["crashed"]
    assert "closed call crashed" in result.stderr
    store = configured_store(data_dir)
    assert (store.session_call("crashed")["reason"], store.session_call("crashed")["information_count"]) == (
        "agent_error",
        1,
    )
    assert store.get_session("running")["status"] == "active"
    assert json.loads(cli(data_dir, "verify").stdout)["closed_calls"] == []


def test_export_to_stdout_and_file(data_dir, tmp_path):
    seeded(data_dir)
    doc = json.loads(cli(data_dir, "export").stdout)
    assert doc["information"][0]["information"] == "Owes $12,000"
    assert doc["calls"][0]["outcome"] == "completed"
    target = tmp_path / "out.json"
    assert cli(data_dir, "export", "-o", str(target)).returncode == 0
    assert json.loads(target.read_text()) | {"exported_at": None} == doc | {"exported_at": None}


def test_import_legacy_once(data_dir, tmp_path):
    path = tmp_path / "shared_information.json"
    path.write_text(json.dumps(LEGACY))
    result = cli(data_dir, "import-legacy", str(path))
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)
    assert counts["information"] == 2 and counts["rejected"] == 1 and counts["calls"] == 1 and counts["sessions"] == 1
    store = configured_store(data_dir)
    records = store.session_information("old-1")
    assert [r["id"] for r in records] == ["a1", "a2"]
    assert records[0]["timestamp"] == "2025-09-29T10:03:00.000Z"
    assert store.session_call("old-1")["duration_seconds"] == 420
    again = json.loads(cli(data_dir, "import-legacy", str(path)).stdout)
    assert again["skipped"] is True
    assert configured_store(data_dir).summary()["total_information"] == 2


def test_import_legacy_bad_file_is_a_clear_error(data_dir, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    result = cli(data_dir, "import-legacy", str(path))
    assert result.returncode == 2 and "is not a JSON document" in result.stderr
    missing = cli(data_dir, "import-legacy", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
