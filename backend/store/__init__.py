"""The store: categorized, session-tagged records, sessions, call logs and events.

- `interface.py`: `Store`, the operations every implementation offers, and the rules they share;
- `journal.py`: `JournalStore`, the embedded default (a JSON Lines journal under `DATA_DIR`),
  with its writers' lock (`lock.py`) and call lease files (`leases.py`);
- `memory.py`: `MemoryStore`, the same in one process's memory (tests, development);
- `postgres.py`: `PgStore`, the same in a PostgreSQL database (`STORE_URL`), for many machines;
  `copier.py` copies a whole store from one implementation into another;
- `index.py`: the in-memory indexes the JSON and memory stores query; `lean.py`: the agent
  processes' lean index of the JSON store; `lines.py`: reading the journal's lines;
- `records.py`: the record vocabulary, errors and validation against `backend/schemas/`;
- `legacy.py`: importing the seed's single-file store.

Only `backend/backend_agent.py` opens a store (`open_store`); everything else reaches it through
the backend functions.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

from backend.store.interface import Store
from backend.store.journal import JournalStore
from backend.store.leases import Lease
from backend.store.memory import MemoryStore
from backend.store.records import InvalidRecord, StoreError, StoreUnavailable

IMPLEMENTATIONS: dict[str, Callable[..., Store]] = {"journal": JournalStore, "memory": MemoryStore}


def open_store(settings, *, lean: bool = False) -> Store:
    """The store `settings` configure: the PostgreSQL store at `STORE_URL` when it is set, else
    the JSON store under `DATA_DIR`, with the agent's lean index when `lean` (the PostgreSQL
    store keeps no index: it ignores `lean`)."""
    url = getattr(settings, "store_url", None)
    if url:
        from backend.store.postgres import PgStore  # psycopg is imported only when it is used

        return PgStore(url, pool_size=getattr(settings, "store_pool_size", 10))
    return JournalStore(settings.data_dir, fsync=settings.store_fsync, lean=lean)


def freeze_loaded_heap() -> None:
    """Call once a long-running process has opened its store (the agent's prewarm, a gunicorn
    worker after loading the app): moves everything alive now out of the cyclic garbage
    collector's sight.

    A store's in-memory index is hundreds of thousands of long-lived objects; left in the
    collector's generations, every full collection walks them all while the event loop or the
    request waits: 124-220 ms with 100k records (bench/agent_bench.py prints it), enough to
    delay a tool call audibly. Records caught up later are few and young.
    """
    gc.collect()  # garbage made while loading is freed, not frozen
    gc.freeze()


__all__ = [
    "IMPLEMENTATIONS",
    "InvalidRecord",
    "JournalStore",
    "Lease",
    "MemoryStore",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "freeze_loaded_heap",
    "open_store",
]
