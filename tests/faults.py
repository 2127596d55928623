"""A full disk under either store, for the tests of what a failed write does: the JSON store's
journal refuses to grow (the file size limit, or ENOSPC from `write`), PostgreSQL's COMMIT fails
with the server's `disk_full` error (what it answers when it cannot extend a file)."""

from __future__ import annotations

import errno
import os
import resource
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from backend.store import journal, postgres
from backend.store.records import line_of


def _on_postgresql() -> bool:
    return bool(os.environ.get("STORE_URL"))


def _disk_full_error() -> psycopg.Error:
    return psycopg.errors.DiskFull('could not extend file "base/16384/16390": No space left on device')


@contextmanager
def full_disk(data_dir: Path) -> Iterator[None]:
    """Within the block, every store write fails as on a full disk."""
    if _on_postgresql():
        real_commit = postgres._Tx.commit

        def commit(tx):
            raise _disk_full_error()

        postgres._Tx.commit = commit
        try:
            yield
        finally:
            postgres._Tx.commit = real_commit
        return
    path = Path(data_dir) / journal.JOURNAL
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def refuse_writes(monkeypatch, match: bytes, failures: int | None = None) -> list[int]:
    """Writes of an entry whose JSON line holds `match` fail as on a full disk, `failures` times
    or always (None), until `monkeypatch.undo()`. Returns the list of refused writes' sizes."""
    refused: list[int] = []

    def refuse(size: int) -> bool:
        if failures is None or len(refused) < failures:
            refused.append(size)
            return True
        return False

    if _on_postgresql():
        real_commit = postgres._Tx.commit

        def commit(tx):
            lines = [line_of(e) for e in tx.appended]
            if any(match in line for line in lines) and refuse(sum(map(len, lines))):
                raise _disk_full_error()
            return real_commit(tx)

        monkeypatch.setattr(postgres._Tx, "commit", commit)
        return refused
    real_write = journal.os.write

    def write(fd, data):
        if match in data and refuse(len(data)):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(journal.os, "write", write)
    return refused
