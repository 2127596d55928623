"""Properties of append and query, for any sequence of writes (hypothesis), on every store:
queries return exactly what a plain list model says, and both schema validators agree."""

from __future__ import annotations

import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.store import JournalStore, MemoryStore
from backend.store.postgres import PgStore
from backend.store.records import CATEGORIES, fast_validator, validator
from tests.postgres import empty_database

callers = st.sampled_from(["+15550000001", "+15550000002", "+15550000003"])
sessions = st.sampled_from(["a", "b", "c", "d"])
texts = st.text(min_size=1, max_size=40).filter(lambda t: t.strip())
writes = st.lists(st.tuples(texts, st.sampled_from(CATEGORIES), callers, sessions), min_size=1, max_size=40)


def model_after_writes(store, ops):
    """Apply the writes; return the records the store acknowledged as new, in order."""
    kept, sessions_of = [], {}
    for text, category, caller, session in ops:
        sid = f"{caller}-{session}"
        record, duplicate = store.add_information(information=text, category=category, caller_id=caller, session_id=sid)
        sessions_of.setdefault(sid, caller)
        if not duplicate:
            kept.append(record)
        else:
            assert any(r["id"] == record["id"] for r in kept)
    return kept


def stores():
    yield MemoryStore()
    with tempfile.TemporaryDirectory() as d:
        yield JournalStore(d, fsync=False)
    if os.environ.get("STORE_URL"):  # each example starts from an empty database
        empty_database(os.environ["STORE_URL"])
        store = PgStore(os.environ["STORE_URL"], pool_size=2)
        try:
            yield store
        finally:
            store.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=writes, limit=st.integers(1, 15), category=st.sampled_from(CATEGORIES), caller=callers)
def test_queries_match_a_list_model(ops, limit, category, caller):
    for store in stores():
        kept = model_after_writes(store, ops)
        newest_first = list(reversed(kept))
        # duplicates are exactly repeats of (session, category, stripped text)
        keys = [(r["session_id"], r["category"], r["information"]) for r in kept]
        assert len(keys) == len(set(keys))
        got, more = store.query_information(limit=limit)
        assert got == newest_first[:limit] and more == (len(kept) > limit)
        by_cat = [r for r in newest_first if r["category"] == category]
        assert store.query_information(categories=[category], limit=1000)[0] == by_cat
        by_caller = [r for r in newest_first if r["caller_id"] == caller]
        assert store.query_information(caller_id=caller, limit=1000)[0] == by_caller
        # paging by cursor and pulling by after_seq both give every record once, in order
        paged, before = [], None
        while True:
            page, more = store.query_information(limit=limit, before_seq=before)
            paged.extend(page)
            if not more:
                break
            before = page[-1]["seq"]
        assert paged == newest_first
        pulled, after = [], 0
        while page := store.query_information(limit=limit, after_seq=after)[0]:
            pulled.extend(page)
            after = page[-1]["seq"]
        assert pulled == kept
        summary = store.summary()
        assert summary["total_information"] == len(kept)
        assert sum(summary["by_category"].values()) == len(kept)
        store.close()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**9), 10**9)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=12,
)
field_docs = st.dictionaries(
    st.sampled_from(
        [
            "debt_type",
            "amount_usd",
            "creditor",
            "state",
            "monthly_income_usd",
            "employment_status",
            "qualified",
            "email",
            "disclosures",
            "household_size",
            "other",
        ]
    ),
    json_values | st.sampled_from(["credit_card", "OH", "employed", "a@b.co", ["ai_assistant"], 12000]),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(doc=field_docs, category=st.sampled_from(CATEGORIES))
def test_fast_and_reference_validators_agree(doc, category):
    name = f"fields/{category}"
    assert fast_validator(name).is_valid(doc) == validator(name).is_valid(doc)
