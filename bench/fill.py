"""Fill a store folder fast with realistic synthetic calls, for benchmarks.

Writes journal lines in exactly the format `JournalStore` writes (one session entry, about
seven information records and one call log per call), without the lock and fsync of the
normal write path, so a million records take seconds rather than minutes. Use only on a
folder no other process is writing.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from backend.store.journal import JOURNAL
from backend.store.records import CATEGORIES, END_REASONS, iso, line_of

FACTS = {
    "contact_details": ("Caller's name is Pat Doe", {"full_name": "Pat Doe"}),
    "debt_info": ("Has $12,500 of credit card debt with Chase", {"debt_type": "credit_card", "amount_usd": 12500}),
    "personal_info": ("Lives in Ohio, employed, $4,200 a month", {"state": "OH", "monthly_income_usd": 4200}),
    "qualification": ("Qualified: unsecured debt over $10,000", {"qualified": True}),
    "conversation_flow": ("Disclosures given", {"disclosures": ["business_name", "ai_assistant", "call_recorded"]}),
}


def caller_for(i: int) -> str:
    return f"+1555{i:07d}"


def fill(data_dir: str | Path, n_records: int, *, callers: int = 20000, per_call: int = 7, seed: int = 7) -> dict:
    """Append `n_records` information records (in calls of `per_call`) to the journal."""
    rng = random.Random(seed)
    path = Path(data_dir) / JOURNAL
    path.parent.mkdir(parents=True, exist_ok=True)
    seq = _last_seq(path)
    start = datetime.now(UTC) - timedelta(seconds=n_records * 2)
    written = 0
    reasons = list(END_REASONS)
    with open(path, "ab", buffering=1 << 20) as fh:
        while written < n_records:
            sid = str(uuid.uuid4())
            caller = caller_for(rng.randrange(callers))
            t = start + timedelta(seconds=written * 2)
            lines = []
            seq += 1
            lines.append(
                {
                    "seq": seq,
                    "type": "session",
                    "session_id": sid,
                    "caller_id": caller,
                    "direction": "inbound",
                    "called_number": None,
                    "started_at": iso(t),
                }
            )
            count = min(per_call, n_records - written)
            for k in range(count):
                cat = CATEGORIES[k % len(CATEGORIES)]
                text, fields = FACTS[cat]
                seq += 1
                lines.append(
                    {
                        "seq": seq,
                        "type": "info",
                        "id": str(uuid.uuid4()),
                        "session_id": sid,
                        "caller_id": caller,
                        "category": cat,
                        "information": f"{text} #{written + k}",
                        "timestamp": iso(t + timedelta(seconds=k)),
                        "status": "received",
                        "fields": fields,
                    }
                )
            written += count
            reason = rng.choice(reasons)
            seq += 1
            lines.append(
                {
                    "seq": seq,
                    "type": "call",
                    "id": str(uuid.uuid4()),
                    "session_id": sid,
                    "caller_id": caller,
                    "reason": reason,
                    "outcome": END_REASONS[reason],
                    "duration_seconds": 60.0 + count,
                    "information_count": count,
                    "ended_at": iso(t + timedelta(seconds=count + 1)),
                }
            )
            fh.write(b"".join(line_of(e) + b"\n" for e in lines))
    return {"records": written, "last_seq": seq, "callers": callers}


def _last_seq(path: Path) -> int:
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - 65536))
        tail = fh.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return json.loads(tail)["seq"]
