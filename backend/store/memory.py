"""The same store in one process's memory: for tests and development, one process only."""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from backend.store.index import Index
from backend.store.interface import Store
from backend.store.leases import Lease
from backend.store.records import Entry, line_of


class MemoryStore(Store):
    """Entries in a list, indexed by position; leases in a dict."""

    def __init__(self) -> None:
        self._lines: list[bytes] = []
        self._mutex = threading.RLock()
        self._leases: dict[str, Lease] = {}
        self._sections: dict[str, threading.Lock] = {}
        self.index = Index(lambda off: json.loads(self._lines[off]))

    @contextmanager
    def _write(self):
        with self._mutex:
            yield self.index, self._append

    def _append(self, entry: Entry) -> Entry:
        entry["seq"] = self.index.last_seq + 1
        self._lines.append(line_of(entry))
        self.index.add(entry, len(self._lines) - 1)
        return entry

    def _read(self) -> Index:
        return self.index

    def verify(self) -> dict[str, Any]:
        return {"healthy": True, "repaired": False, "quarantined": [], "last_seq": self.index.last_seq}

    def exclusive(self, name: str):
        with self._mutex:
            section = self._sections.setdefault(name, threading.Lock())
        return section

    def put_lease(self, lease: Lease) -> None:
        with self._mutex:
            self._leases[lease.session_id] = replace(lease, touched=time.time())

    def touch_lease(self, session_id: str) -> None:
        with self._mutex:
            if session_id in self._leases:
                self._leases[session_id] = replace(self._leases[session_id], touched=time.time())

    def drop_lease(self, session_id: str) -> None:
        with self._mutex:
            self._leases.pop(session_id, None)

    def leases(self) -> list[Lease]:
        with self._mutex:
            return list(self._leases.values())
