"""The JSON store: categorized, session-tagged records that many processes write at once.

`JournalStore` keeps an append-only JSON Lines journal, `DATA_DIR/journal.jsonl`. A write
takes the writers' lock (a blocking `flock`, see `JournalLock`), catches up on what other
processes appended, checks the rules, appends one line with one `write`, releases the lock and
`fsync`s (unless `STORE_FSYNC=0`) before it returns: its cost does not grow with the size of
the store. Readers follow the journal from the
offset they last read and keep compact indexes in memory. A torn last line (a writer killed
mid-write, a full disk) and corrupt lines are copied into `DATA_DIR/quarantine/` and blanked
in place with spaces, so offsets never move and live readers are never confused.

`lean=True` (the agent's processes) keeps a `LeanIndex` (`lean.py`) instead of the full one:
what a call writes and reads, in a few bytes a record; it neither reads nor writes the index
snapshot (a full index's, which it has no use for: it opens from the journal itself), and
answers the API's reads by indexing the whole journal for each (`_read`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import marshal
import os
import threading
import time
import uuid
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from backend.store.index import Index
from backend.store.interface import Store
from backend.store.lean import LeanIndex
from backend.store.leases import Lease, LeaseFiles
from backend.store.lines import index_lines
from backend.store.lock import JournalLock
from backend.store.records import Entry, StoreError, StoreUnavailable, line_of

log = logging.getLogger(__name__)

JOURNAL = "journal.jsonl"
LOCK = "journal.lock"
QUARANTINE = "quarantine"
SNAPSHOT = "index.snapshot"
SNAPSHOT_EVERY_BYTES = 16 << 20  # an open that indexes more than this refreshes the snapshot
READ_BYTES = 1 << 20  # how much of the journal a reader indexes at a time


class JournalStore(Store):
    """Append-only JSON Lines journal under a file lock; see the module docstring."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        fsync: bool = True,
        read_only: bool = False,
        lean: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / JOURNAL
        self.fsync = fsync
        self.read_only = read_only
        self.lean = lean
        self.full_scans = 0  # reads a lean store answered by indexing the whole journal
        # `_mutex` guards the indexes and offsets, held for work in memory and reads of the file;
        # `_writers` is held by whoever of this process waits for or holds the file lock (a flock
        # is the open file's, it cannot tell this process's threads apart). A write takes
        # `_writers`, the file lock, then `_mutex`: it waits for another process without holding
        # `_mutex`, so reads go on meanwhile. Nobody waits for `_writers` holding `_mutex` alone.
        self._mutex = threading.RLock()
        self._writers = threading.RLock()
        self._quarantined: list[dict[str, Any]] = []
        try:
            if not read_only:
                self.data_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            else:
                fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise StoreUnavailable(f"The store at {self.data_dir} cannot be opened ({exc.strerror}).") from exc
        self._fd = fd
        self._lock = JournalLock(self.data_dir / LOCK, read_only=read_only)
        self._leases = LeaseFiles(self.data_dir)
        self._sections: dict[str, threading.Lock] = {}
        self._read_off = 0
        self._appends = 0
        self._pending: list[tuple[int, int]] = []  # corrupt lines found by this reader, to quarantine
        self.index = self._new_index()
        if not lean:
            self._load_snapshot()
        self._snapshot_off = self._read_off
        self._catch_up()
        if self._read_off - self._snapshot_off > SNAPSHOT_EVERY_BYTES:
            self.write_snapshot()
        if not read_only:
            with self._locked():
                self._repair_tail()
                self._catch_up()
            self._quarantine_pending()

    # ---- Store primitives -----------------------------------------------------------------
    @contextmanager
    def _write(self):
        if self.read_only:
            raise StoreUnavailable("The store is open read-only.")
        with self._locked(), self._mutex:
            self._repair_tail()
            self._catch_up()
            before = self._appends
            yield self.index, self._append
            appended = self._appends != before
        # Group commit: fsync after letting go of the lock, so the next writer appends while this
        # one waits for the disk; an fsync makes every earlier write of the file durable too, so
        # a record is acknowledged only once it and everything before it are on disk.
        if appended and self.fsync:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                log.error("store fsync failed: %s", exc.strerror or exc)
                raise StoreUnavailable("The store cannot confirm the save right now (disk error).") from exc

    def _lookups(self) -> Index | LeanIndex:
        with self._mutex:
            self._catch_up()
            quarantine = bool(self._pending) and not self.read_only
        if quarantine:
            self._quarantine_pending()  # takes `_writers`: not while holding `_mutex`
        return self.index

    def _read(self) -> Index:
        index = self._lookups()
        return self._full_index() if self.lean else index

    def _new_index(self) -> Index | LeanIndex:
        return LeanIndex(self._fetch, self._full_index) if self.lean else Index(self._fetch)

    def _full_index(self) -> Index:
        """A lean store's answer to a read its index cannot narrow: a full `Index` of what the
        lean one has read (the same entries: corrupt lines are the lean reader's to quarantine),
        built for this read and dropped after it. As slow as opening a store without its
        snapshot; an agent process makes no such read (`tests/test_lean_index.py` checks)."""
        with self._mutex:
            end = self._read_off
        self.full_scans += 1
        log.debug("lean store: indexing the whole journal (%d bytes) for one read", end)
        index = Index(self._fetch)
        for chunk, cut, off in self._whole_lines(0, end):
            index_lines(index.add_line, chunk, cut, off)
        return index

    def close(self) -> None:
        """Close the journal; save the index snapshot first when it is far behind."""
        with self._mutex:
            if self._fd >= 0:
                if not self.read_only and self._read_off - self._snapshot_off > SNAPSHOT_EVERY_BYTES:
                    self.write_snapshot()
                os.close(self._fd)
                self._fd = -1

    @contextmanager
    def exclusive(self, name: str):
        with self._sections.setdefault(name, threading.Lock()):
            lock = JournalLock(self.data_dir / f"{name}.lock", read_only=self.read_only)
            lock.acquire()
            try:
                yield
            finally:
                lock.release()
                lock.close()

    def put_lease(self, lease: Lease) -> None:
        self._leases.put(lease)

    def touch_lease(self, session_id: str) -> None:
        self._leases.touch(session_id)

    def drop_lease(self, session_id: str) -> None:
        self._leases.drop(session_id)

    def leases(self) -> list[Lease]:
        return self._leases.all()

    # ---- internals ------------------------------------------------------------------------
    @contextmanager
    def _locked(self):
        with self._writers:
            try:
                self._lock.acquire()
            except OSError as exc:
                raise StoreUnavailable(f"The store cannot be locked ({exc.strerror}).") from exc
            try:
                yield
            finally:
                self._lock.release()

    def _append(self, entry: Entry) -> Entry:
        entry["seq"] = self.index.last_seq + 1
        line = line_of(entry) + b"\n"
        size = os.fstat(self._fd).st_size
        try:
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, "short write")
        except OSError as exc:
            self._undo_to(size)
            entry.pop("seq", None)
            log.error("store write failed: %s", exc.strerror or exc)
            raise StoreUnavailable("The store cannot save right now (disk full or read-only).") from exc
        if self._read_off != size:  # nothing else can have written: we hold the lock
            self._catch_up()
        else:
            self.index.add(entry, size)
            self._read_off = size + len(line)
        self._appends += 1
        return entry

    def _undo_to(self, size: int) -> None:
        try:
            os.ftruncate(self._fd, size)
        except OSError:
            log.error("store: could not truncate a failed write; the next writer will quarantine it")

    def _fetch(self, off: int) -> Entry:
        chunk = os.pread(self._fd, 4096, off)
        end = chunk.find(b"\n")
        while end < 0:
            more = os.pread(self._fd, 65536, off + len(chunk))
            if not more:
                raise StoreError("A record ends before its line does.", "store_corrupt")
            chunk += more
            end = chunk.find(b"\n")
        return json.loads(chunk[:end])

    def _catch_up(self) -> None:
        """Index every complete line appended since the last call."""
        size = os.fstat(self._fd).st_size
        if size < self._read_off:  # truncated behind our back: start again
            log.warning("store journal shrank; re-reading it")
            self.index = self._new_index()
            self._read_off = 0
        for chunk, cut, off in self._whole_lines(self._read_off, size):
            self._index_chunk(chunk, cut, off)
            self._read_off = off + cut

    def _whole_lines(self, off: int, end: int) -> Iterator[tuple[bytes, int, int]]:
        """`(chunk, cut, offset)`: the journal from `offset` read in chunks of whole lines (the
        first `cut` bytes of `chunk`), up to `end` or to an incomplete last line (a write in
        progress, or torn). A few MB at a time: the lines read are short-lived objects."""
        want = READ_BYTES
        while off < end:
            chunk = os.pread(self._fd, min(end - off, want), off)
            cut = chunk.rfind(b"\n") + 1
            if cut == 0:
                if len(chunk) >= end - off:
                    return
                want *= 2  # a line longer than a chunk
                continue
            yield chunk, cut, off
            off += cut
            want = READ_BYTES

    def _index_chunk(self, chunk: bytes, end: int, base: int) -> None:
        for off, length in index_lines(self.index.add_line, chunk, end, base):
            self._pending.append((off, length))
            log.warning("store: corrupt line at byte %d of the journal; quarantining it", off)

    def _repair_tail(self) -> None:
        """With the lock held: a last line without its newline is torn. Quarantine it."""
        size = os.fstat(self._fd).st_size
        if size == 0 or os.pread(self._fd, 1, size - 1) == b"\n":
            return
        start = max(0, size - 65536)
        while True:
            tail = os.pread(self._fd, size - start, start)
            nl = tail.rfind(b"\n")
            if nl >= 0 or start == 0:
                break
            start = max(0, start - 65536)
        cut = start + nl + 1 if nl >= 0 else 0
        torn = os.pread(self._fd, size - cut, cut)
        self._save_quarantine(torn, cut, "torn")
        os.ftruncate(self._fd, cut)
        if self.fsync:
            os.fsync(self._fd)
        log.warning("store: torn last line (%d bytes at byte %d) moved to quarantine", len(torn), cut)

    def _quarantine_pending(self) -> None:
        if not self._pending:
            return
        with self._locked(), self._mutex:
            # pwrite on an O_APPEND descriptor appends on Linux: blank through a second one
            wfd = os.open(self.path, os.O_WRONLY)
            try:
                for off, length in self._pending:
                    line = os.pread(self._fd, length, off)
                    if len(line) != length or line.isspace():
                        continue
                    self._save_quarantine(line, off, "corrupt")
                    os.pwrite(wfd, b" " * length, off)
                if self.fsync:
                    os.fsync(wfd)
            finally:
                os.close(wfd)
            self._pending.clear()

    def _save_quarantine(self, data: bytes, off: int, why: str) -> None:
        qdir = self.data_dir / QUARANTINE
        qdir.mkdir(exist_ok=True)
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{why}-at-{off}-{uuid.uuid4().hex[:8]}.bin"
        target = qdir / name
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._quarantined.append({"file": str(target), "offset": off, "bytes": len(data), "why": why})

    def _text_positions(self, index: Index | LeanIndex, text: str) -> list[int] | None:
        """Scan the journal's bytes for the text (lower-cased, as JSON writes it): about a
        gigabyte a second, where fetching and parsing every record is a hundred times slower.
        Candidates are checked record by record afterwards, so a match in another key is harmless."""
        if not text.isascii():
            return None
        needle = json.dumps(text.lower())[1:-1].encode()
        found: list[int] = []
        offsets = index.info_off
        off, end = 0, self._read_off
        while off < end:
            chunk = os.pread(self._fd, min(end - off, 16 << 20), off)
            cut = chunk.rfind(b"\n") + 1
            if cut == 0:
                break
            low = chunk[:cut].lower()
            hit = low.find(needle)
            while hit >= 0:
                line_start = off + low.rfind(b"\n", 0, hit) + 1
                pos = bisect_left(offsets, line_start)
                if pos < len(offsets) and offsets[pos] == line_start and (not found or found[-1] != pos):
                    found.append(pos)
                next_nl = low.find(b"\n", hit)
                hit = low.find(needle, next_nl + 1) if next_nl >= 0 else -1
            off += cut
        return found

    # ---- index snapshots -------------------------------------------------------------------
    # Opening a store means indexing its journal: about 20 us a line in Python, so 20 s or more
    # at a million records. A snapshot of the indexes (plain values written with `marshal`, which
    # cannot run code) lets an open start from where the snapshot ends. It is only a cache: it
    # names the journal's inode and a hash of the bytes before its offset, and is ignored unless
    # both still match.
    def _snapshot_key(self, off: int) -> str:
        start = max(0, off - 4096)
        return hashlib.sha256(os.pread(self._fd, off - start, start)).hexdigest()

    def _load_snapshot(self) -> None:
        path = self.data_dir / SNAPSHOT
        try:
            with open(path, "rb") as fh:
                snap = marshal.load(fh)  # noqa: S302 - our own file in DATA_DIR (0600), plain values only
            st = os.fstat(self._fd)
            off = snap["offset"]
            if snap["ino"] != st.st_ino or off > st.st_size or snap["key"] != self._snapshot_key(off):
                log.info("store: index snapshot does not match the journal; indexing from the start")
                return
            self.index = Index.load_state(snap["index"], self._fetch)
            self._pending = list(snap.get("pending", []))
            self._read_off = off
        except FileNotFoundError:
            return
        except (OSError, EOFError, ValueError, TypeError, KeyError) as exc:
            log.warning("store: index snapshot unreadable (%s); indexing from the start", exc)
            self.index = Index(self._fetch)
            self._read_off = 0

    def write_snapshot(self) -> bool:
        """Save the indexes up to the current offset (atomically); False when the folder is
        read-only, or the store is lean (it keeps no snapshot: a full store would misread one)."""
        if self.lean:
            return False
        with self._mutex:
            snap = {
                "ino": os.fstat(self._fd).st_ino,
                "offset": self._read_off,
                "key": self._snapshot_key(self._read_off),
                "pending": self._pending,
                "index": self.index.dump_state(),
            }
            tmp = self.data_dir / f"{SNAPSHOT}.{os.getpid()}.tmp"
            try:
                with open(tmp, "wb") as fh:
                    marshal.dump(snap, fh)
                os.chmod(tmp, 0o600)
                os.replace(tmp, self.data_dir / SNAPSHOT)
                self._snapshot_off = snap["offset"]
            except OSError as exc:
                log.warning("store: could not save the index snapshot (%s)", exc.strerror or exc)
                tmp.unlink(missing_ok=True)
                return False
            return True

    # ---- whole-store copies (`backend/store/copier.py`) ------------------------------------
    def entries(self, after_seq: int = 0) -> Iterator[Entry]:
        """Every entry with `seq` and `type`, in seq order (a corrupt line is skipped: it is
        quarantined by the reader that finds it)."""
        off = 0
        end = os.fstat(self._fd).st_size
        while off < end:
            chunk = os.pread(self._fd, min(end - off, 4 << 20), off)
            cut = chunk.rfind(b"\n") + 1
            if cut == 0:
                return  # a torn last line
            for line in chunk[:cut].split(b"\n"):
                if not line or line.isspace():
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and isinstance(entry.get("seq"), int) and entry["seq"] > after_seq:
                    yield entry
            off += cut

    def load(self, entries: Iterable[Entry], *, batch_bytes: int = 1 << 20) -> int:
        """Append entries that carry their seqs (each above the journal's last), fsynced; returns
        how many. The rules are not run again: the entries come from a store that applied them."""
        n = 0
        with self._locked(), self._mutex:
            self._repair_tail()
            self._catch_up()
            last = self.index.last_seq
            buf: list[bytes] = []
            size = 0
            for entry in entries:
                if entry["seq"] <= last:
                    raise StoreError(f"seq {entry['seq']} does not follow the store's last ({last}).", "seq_order")
                last = entry["seq"]
                line = line_of(entry) + b"\n"
                buf.append(line)
                size += len(line)
                n += 1
                if size >= batch_bytes:
                    self._write_all(b"".join(buf))
                    buf, size = [], 0
            if buf:
                self._write_all(b"".join(buf))
            if n and self.fsync:
                os.fsync(self._fd)
            self._catch_up()
        return n

    def _write_all(self, data: bytes) -> None:
        size = os.fstat(self._fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self._undo_to(size)
            raise StoreUnavailable(f"The store cannot save right now ({exc.strerror}).") from exc

    def verify(self) -> dict[str, Any]:
        """Re-read the whole journal, repair what can be repaired; report what was quarantined."""
        with self._writers, self._mutex:  # `_writers` first, as every writer takes them
            if not self.read_only:
                with self._locked():
                    self._repair_tail()
            self.index = self._new_index()
            self._read_off = 0
            self._catch_up()
            found = len(self._pending)
            if not self.read_only:
                self._quarantine_pending()
                self.write_snapshot()
            # what this process quarantined since it opened the store (or last verified it)
            quarantined, self._quarantined = self._quarantined, []
            return {
                "healthy": not quarantined and not found,
                "repaired": bool(quarantined),
                "quarantined": quarantined,
                "last_seq": self.index.last_seq,
                "entries_bytes": self._read_off,
            }
