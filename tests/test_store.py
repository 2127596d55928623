"""The store keeps every record once, in seq order, validated, and answers queries by its indexes.

Every test here runs against each store implementation (the `store` fixture)."""

from __future__ import annotations

import pytest

from backend.store.records import CATEGORIES, END_REASONS, StoreError

CALLER = "+15551234567"


def add(store, text="Has $25,000 of credit card debt", category="debt_info", caller=CALLER, **kw):
    return store.add_information(information=text, category=category, caller_id=caller, **kw)


def test_record_has_the_contract_shape(store):
    record, duplicate = add(store, session_id="s1", fields={"debt_type": "credit_card", "amount_usd": 25000})
    assert duplicate is False
    assert set(record) == {
        "id",
        "seq",
        "session_id",
        "caller_id",
        "category",
        "information",
        "fields",
        "timestamp",
        "status",
    }
    assert record["status"] == "received"
    assert record["timestamp"].endswith("Z") and len(record["timestamp"]) == 24
    assert record["fields"] == {"debt_type": "credit_card", "amount_usd": 25000}


def test_seq_strictly_increases_and_never_repeats(store):
    seqs = [add(store, text=f"fact {i}", session_id="s1")[0]["seq"] for i in range(30)]
    assert seqs == sorted(set(seqs))


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"text": ""}, "empty_information"),
        ({"text": "   "}, "empty_information"),
        ({"text": "x" * 2001}, "information_too_long"),
        ({"category": "gossip"}, "invalid_category"),
        ({"fields": {"amount_usd": "lots"}}, "invalid_fields"),
        ({"fields": {"debt_type": "yacht"}}, "invalid_fields"),
        ({"fields": ["not", "an", "object"]}, "invalid_fields"),
        ({"fields": {"note": "x" * 5000}}, "invalid_fields"),
    ],
)
def test_invalid_records_are_refused_and_nothing_is_written(store, kwargs, code):
    with pytest.raises(StoreError) as err:
        add(store, **kwargs)
    assert err.value.code == code
    assert store.summary()["total_information"] == 0
    assert store.last_seq() == 0


def test_information_of_exactly_2000_characters_is_accepted(store):
    record, _ = add(store, text="x" * 2000)
    assert len(record["information"]) == 2000


def test_duplicate_within_window_returns_first_record(store):
    first, _ = add(store, session_id="s1")
    again, duplicate = add(store, session_id="s1")
    assert duplicate is True
    assert again == first
    assert store.summary()["total_information"] == 1


def test_same_text_in_another_session_or_category_is_not_a_duplicate(store):
    add(store, session_id="s1")
    _, dup_other_session = add(store, session_id="s2")
    _, dup_other_category = add(store, session_id="s1", category="qualification")
    assert not dup_other_session and not dup_other_category
    assert store.summary()["total_information"] == 3


def test_record_without_session_joins_callers_active_session(store):
    store.start_session("s1", CALLER)
    record, _ = add(store)
    assert record["session_id"] == "s1"


def test_record_without_session_and_no_active_session_opens_one(store):
    record, _ = add(store)
    session = store.get_session(record["session_id"])
    assert session["status"] == "active" and session["caller_id"] == CALLER
    assert session["information_count"] == 1


def test_unknown_session_id_opens_that_session(store):
    add(store, session_id="new-one")
    assert store.get_session("new-one")["caller_id"] == CALLER


def test_start_session_twice_returns_the_first(store):
    _, created = store.start_session("s1", CALLER, "outbound", "+15557654321")
    again, created_again = store.start_session("s1", "+19999999999")
    assert created and not created_again
    assert again["caller_id"] == CALLER and again["direction"] == "outbound"
    assert again["called_number"] == "+15557654321"


def test_end_session_writes_exactly_one_call_log(store):
    store.start_session("s1", CALLER)
    add(store, session_id="s1")
    call, already = store.end_session(reason="customer_qualified_transfer", caller_id=CALLER, session_id="s1")
    assert not already
    assert call["outcome"] == "qualified" and call["information_count"] == 1
    again, already = store.end_session(reason="completed", caller_id=CALLER, session_id="s1")
    assert already and again == call
    assert store.summary()["total_calls"] == 1
    session = store.get_session("s1")
    assert session["status"] == "completed" and session["end_reason"] == "customer_qualified_transfer"
    assert session["duration_seconds"] == call["duration_seconds"]


@pytest.mark.parametrize(("reason", "outcome"), sorted(END_REASONS.items()))
def test_every_reason_maps_to_its_outcome(store, reason, outcome):
    call, _ = store.end_session(reason=reason, caller_id=CALLER, session_id=f"s-{reason}")
    assert call["outcome"] == outcome


def test_end_session_refuses_bad_reason_and_duration(store):
    with pytest.raises(StoreError) as err:
        store.end_session(reason="bored", caller_id=CALLER)
    assert err.value.code == "invalid_reason"
    with pytest.raises(StoreError) as err:
        store.end_session(reason="completed", caller_id=CALLER, duration_seconds=-1)
    assert err.value.code == "invalid_duration"
    assert store.last_seq() == 0


def test_query_by_caller_category_and_session(store):
    add(store, text="a", session_id="s1")
    add(store, text="b", category="personal_info", session_id="s1")
    add(store, text="c", caller="+15550000000", session_id="s2")
    records, more = store.query_information(caller_id=CALLER)
    assert [r["information"] for r in records] == ["b", "a"] and not more
    assert [r["information"] for r in store.query_information(categories=["personal_info"])[0]] == ["b"]
    assert [r["information"] for r in store.query_information(session_id="s2")[0]] == ["c"]
    both = store.query_information(categories=["personal_info", "debt_info"], caller_id=CALLER)[0]
    assert [r["information"] for r in both] == ["b", "a"]


def test_query_text_is_case_insensitive_and_searches_fields(store):
    add(store, text="Owes Chase on a card", session_id="s1")
    add(store, text="Income", category="personal_info", session_id="s1", fields={"state": "OH"})
    assert [r["information"] for r in store.query_information(text="chase")[0]] == ["Owes Chase on a card"]
    assert [r["information"] for r in store.query_information(text="oh")[0]] == ["Income"]


def test_cursor_pagination_returns_each_record_once_while_writes_continue(store):
    for i in range(25):
        add(store, text=f"fact {i}", session_id="s1")
    seen, before = [], None
    while True:
        page, more = store.query_information(limit=7, before_seq=before)
        seen.extend(r["seq"] for r in page)
        add(store, text=f"late {len(seen)}", session_id="s2")  # newer records must not disturb paging
        if not more:
            break
        before = page[-1]["seq"]
    assert len(seen) == 25 == len(set(seen))
    assert seen == sorted(seen, reverse=True)


def test_after_seq_returns_newer_records_in_write_order(store):
    seqs = [add(store, text=f"fact {i}", session_id="s1")[0]["seq"] for i in range(10)]
    records, more = store.query_information(after_seq=seqs[3], limit=4)
    assert [r["seq"] for r in records] == seqs[4:8] and more
    assert store.query_information(after_seq=seqs[-1])[0] == []


def test_since_until_filter_by_timestamp(store):
    from backend.store.records import epoch

    first, _ = add(store, text="first", session_id="s1")
    t = epoch(first["timestamp"])
    assert store.query_information(since=t + 3600)[0] == []
    assert [r["information"] for r in store.query_information(until=t + 1)[0]] == ["first"]


def test_sessions_and_calls_listing(store):
    store.start_session("s1", CALLER)
    store.start_session("s2", "+15550000000")
    store.end_session(reason="do_not_call_request", caller_id=CALLER, session_id="s1")
    sessions, next_before = store.query_sessions()
    assert [s["session_id"] for s in sessions] == ["s2", "s1"] and next_before is None
    assert [s["session_id"] for s in store.query_sessions(status="active")[0]] == ["s2"]
    assert [s["session_id"] for s in store.query_sessions(outcome="do_not_call")[0]] == ["s1"]
    page, next_before = store.query_sessions(limit=1)
    assert [s["session_id"] for s in page] == ["s2"]
    assert [s["session_id"] for s in store.query_sessions(limit=1, before_seq=next_before)[0]] == ["s1"]
    calls, more = store.query_calls(caller_id=CALLER)
    assert [c["reason"] for c in calls] == ["do_not_call_request"] and not more
    assert store.query_calls(outcome="qualified")[0] == []


def test_summary_counts(store):
    store.start_session("s1", CALLER)
    for category in CATEGORIES:
        add(store, text=f"about {category}", category=category, session_id="s1")
    store.end_session(reason="customer_not_qualified", caller_id=CALLER, session_id="s1")
    summary = store.summary()
    assert summary["total_sessions"] == 1 and summary["active_sessions"] == 0
    assert summary["total_information"] == 5 and summary["total_calls"] == 1
    assert summary["by_category"] == {c: 1 for c in CATEGORIES}
    assert summary["by_outcome"] == {"not_qualified": 1}
    assert [r["category"] for r in summary["recent_information"]] == list(reversed(CATEGORIES))
    assert summary["recent_calls"][0]["reason"] == "customer_not_qualified"


def test_events_by_kind_and_key(store):
    store.append_event("dnc", "+15551234567", {"action": "add"})
    store.append_event("dnc", "+15550000000", {"action": "add"})
    store.append_event("dnc", "+15551234567", {"action": "remove"})
    assert [e["data"]["action"] for e in store.events("dnc", "+15551234567")] == ["add", "remove"]
    assert len(store.events("dnc")) == 3
    assert sorted(store.event_keys("dnc")) == ["+15550000000", "+15551234567"]
    with pytest.raises(StoreError):
        store.append_event("Bad Kind", "k", {})


def test_export_holds_everything(store):
    store.start_session("s1", CALLER)
    add(store, session_id="s1")
    store.end_session(reason="completed", caller_id=CALLER, session_id="s1")
    doc = store.export()
    assert len(doc["sessions"]) == 1 and len(doc["information"]) == 1 and len(doc["calls"]) == 1
    assert doc["sessions"][0]["status"] == "completed"


def test_query_text_with_quotes_and_non_ascii(store):
    add(store, text='He said "stop calling" twice', session_id="s1")
    add(store, text="Vive à Montréal", category="personal_info", session_id="s1")
    add(store, text="Unrelated", category="personal_info", session_id="s1")
    assert [r["information"] for r in store.query_information(text='"STOP calling"')[0]] == [
        'He said "stop calling" twice'
    ]
    assert [r["information"] for r in store.query_information(text="MONTRÉAL")[0]] == ["Vive à Montréal"]
    assert store.query_information(text="personal_info")[0] == []  # a key's value is not the text


def test_calls_page_by_seq_exactly_once(store):
    for i in range(9):
        store.end_session(reason="completed", caller_id=CALLER, session_id=f"s{i}")
    seen, before = [], None
    while True:
        page, more = store.query_calls(limit=4, before_seq=before)
        seen.extend(c["session_id"] for c in page)
        if not more:
            break
        before = page[-1]["seq"]
    assert seen == [f"s{i}" for i in reversed(range(9))]
    assert store.query_calls(caller_id=CALLER, limit=2, before_seq=page[-1]["seq"])[0] == []


# ---- call leases and exclusive sections: part of the interface, kept by each implementation ----
def test_a_lease_is_kept_renewed_and_dropped(store):
    from dataclasses import replace

    from backend.store import Lease

    lease = Lease("s1", CALLER, pid=4242, process_start="77", host="worker-a")
    store.put_lease(lease)
    store.put_lease(replace(lease, session_id="s2"))
    [first, _second] = sorted(store.leases(), key=lambda x: x.session_id)
    assert (first.session_id, first.caller_id, first.pid, first.process_start, first.host) == (
        "s1",
        CALLER,
        4242,
        "77",
        "worker-a",
    )
    before = first.touched
    assert before > 0
    store.touch_lease("s1")
    assert next(x for x in store.leases() if x.session_id == "s1").touched >= before
    store.drop_lease("s1")
    store.drop_lease("never-held")  # dropping what is not held is no error
    store.touch_lease("never-held")
    assert [x.session_id for x in store.leases()] == ["s2"]


def test_an_exclusive_section_admits_one_thread_at_a_time(store):
    import threading
    import time

    inside, most = [0], [0]

    def work():
        with store.exclusive("outbound"):
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            time.sleep(0.01)
            inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1
    with store.exclusive("outbound"), store.exclusive("another"):  # sections are independent
        pass


def test_call_figures_come_from_the_index_by_time_range(store):
    import time

    store.start_session("f1", CALLER)
    store.end_session(reason="customer_qualified_transfer", caller_id=CALLER, session_id="f1", duration_seconds=300)
    store.start_session("f2", CALLER)
    store.append_event("disclosures", "f2", {"missing": ["ai_assistant"]})
    store.end_session(reason="caller_hung_up", caller_id=CALLER, session_id="f2", duration_seconds=12.5)
    figures = store.call_figures()
    assert figures.outcome == ["qualified", "incomplete"]
    assert figures.duration == [300.0, 12.5]
    assert figures.cost == [-1.0, -1.0]  # no price table: no cost
    assert figures.missing_disclosure == [False, True]
    assert store.call_figures(since=time.time() + 60).outcome == []
    assert len(store.call_figures(until=time.time() + 60).ended) == 2


def test_call_totals_are_kept_as_calls_end(store):
    cost = {"total_usd": 0.25, "model_usd": 0.2, "telephony_usd": 0.05}
    for sid, reason, priced in (("t1", "customer_qualified_transfer", cost), ("t2", "voicemail", None)):
        store.start_session(sid, CALLER)
        store.end_session(reason=reason, caller_id=CALLER, session_id=sid, duration_seconds=60, cost=priced)
    assert store.call_totals() == {"calls": 2, "qualified": 1, "cost_total_usd": 0.25, "calls_with_cost": 1}
