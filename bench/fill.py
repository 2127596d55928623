"""Fill a store folder fast with realistic synthetic calls, for benchmarks.

Writes journal lines in exactly the format `JournalStore` writes (one session entry, about
seven information records and one call log per call), without the lock and fsync of the
normal write path, so a million records take seconds rather than minutes. Use only on a
folder no other process is writing.

By default calls are 2 s apart per record, ending now, all alike but for their end reason. With
`span_seconds` they are spread evenly over that much time up to now; with `figures=True` they
vary as analytics reads them: durations, a cost on most call logs, and on some calls a
disclosure check that found a required disclosure missing.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from backend.store.journal import JOURNAL
from backend.store.records import CATEGORIES, DISCLOSURES, END_REASONS, iso, line_of

FACTS = {
    "contact_details": ("Caller's name is Pat Doe", {"full_name": "Pat Doe"}),
    "debt_info": ("Has $12,500 of credit card debt with Chase", {"debt_type": "credit_card", "amount_usd": 12500}),
    "personal_info": ("Lives in Ohio, employed, $4,200 a month", {"state": "OH", "monthly_income_usd": 4200}),
    "qualification": ("Qualified: unsecured debt over $10,000", {"qualified": True}),
    "conversation_flow": ("Disclosures given", {"disclosures": ["business_name", "ai_assistant", "call_recorded"]}),
}


def caller_for(i: int) -> str:
    return f"+1555{i:07d}"


def fill(
    data_dir: str | Path,
    n_records: int,
    *,
    callers: int = 20000,
    per_call: int = 7,
    seed: int = 7,
    span_seconds: float | None = None,
    figures: bool = False,
) -> dict:
    """Append `n_records` information records (in calls of `per_call`) to the journal."""
    rng = random.Random(seed)
    path = Path(data_dir) / JOURNAL
    path.parent.mkdir(parents=True, exist_ok=True)
    seq = _last_seq(path)
    step = 2.0 if span_seconds is None else span_seconds / max(n_records, 1)
    start = datetime.now(UTC) - timedelta(seconds=n_records * step)
    written = 0
    reasons = list(END_REASONS)
    with open(path, "ab", buffering=1 << 20) as fh:
        while written < n_records:
            sid = str(uuid.uuid4())
            caller = caller_for(rng.randrange(callers))
            t = start + timedelta(seconds=written * step)
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
            call = {
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
            if figures:
                check = _vary(rng, call, t + timedelta(seconds=count))
                if check is not None:
                    seq += 1
                    lines.append({"seq": seq, **check})
            seq += 1
            lines.append({"seq": seq, **call})
            fh.write(b"".join(line_of(e) + b"\n" for e in lines))
    return {"records": written, "last_seq": seq, "callers": callers}


LONG_CALLS = ("qualified", "callback", "not_qualified")  # a conversation that went through the questions


def _vary(rng: random.Random, call: dict, when: datetime) -> dict | None:
    """Give `call` a duration fitting its outcome and (11 calls in 12) a cost; about 1 call in
    25 gets a disclosure check that found one missing, returned as the event to write first."""
    long = call["outcome"] in LONG_CALLS
    call["duration_seconds"] = round(rng.uniform(240, 900) if long else rng.uniform(10, 180), 3)
    if rng.random() < 11 / 12:
        telephony = round(call["duration_seconds"] / 60 * 0.0085, 6)
        model = round(call["duration_seconds"] * 0.0021, 6)
        call["cost"] = {"total_usd": round(telephony + model, 6), "model_usd": model, "telephony_usd": telephony}
    if rng.random() >= 1 / 25:
        return None
    call["missing_disclosures"] = ["ai_assistant"]
    data = {"required": ["business_name", "ai_assistant"], "heard": {"business_name": 1.2}, "missing": ["ai_assistant"]}
    return {"type": "event", "kind": DISCLOSURES, "key": call["session_id"], "timestamp": iso(when), "data": data}


def _last_seq(path: Path) -> int:
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - 65536))
        tail = fh.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return json.loads(tail)["seq"]
