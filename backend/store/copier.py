"""Copying a whole store into another (`python -m backend copy --to ...`): the JSON store into
PostgreSQL, or back.

Every entry is copied as it is, seq included, in seq order, so the copy answers every query as
the original does. A copy is safe to run again: the target must hold a prefix of the source (the
same entries, byte for byte, up to its last seq; an empty target is one), and only the rest is
appended. Afterwards both are read again from the start and compared: entries of each type
counted, and a SHA-256 over every entry's journal line in seq order. Leases (calls in progress)
are not copied: copy a store while no agent is taking calls on it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from typing import Any, Protocol

from backend.store.records import Entry, StoreError, line_of


class Copyable(Protocol):
    def entries(self, after_seq: int = 0) -> Iterator[Entry]:
        """Every entry, with `seq` and `type`, in seq order."""

    def load(self, entries: Iterator[Entry]) -> int:
        """Append entries that carry their seqs; returns how many."""

    def last_seq(self) -> int: ...


def fingerprint(store: Copyable, upto: int | None = None) -> dict[str, Any]:
    """Entries by type, the last seq and a SHA-256 of every entry's line (up to seq `upto`)."""
    digest = hashlib.sha256()
    counts: Counter[str] = Counter()
    last = 0
    for entry in store.entries():
        if upto is not None and entry["seq"] > upto:
            break
        digest.update(line_of(entry) + b"\n")
        counts[entry["type"]] += 1
        last = entry["seq"]
    return {"entries": dict(sorted(counts.items())), "last_seq": last, "sha256": digest.hexdigest()}


def copy_store(source: Copyable, target: Copyable) -> dict[str, Any]:
    """Append to `target` what `source` has beyond it, then verify both match; the report has
    `copied`, the `source` and `target` fingerprints and `verified`."""
    held = target.last_seq()
    if held:
        mine, theirs = fingerprint(target), fingerprint(source, upto=held)
        if mine != theirs:
            raise StoreError(
                f"The target already holds entries (up to seq {held}) that are not the same as the "
                "source's: refusing to mix two stores. Copy into an empty target.",
                "copy_diverged",
            )
    copied = target.load(source.entries(after_seq=held))
    before, after = fingerprint(source), fingerprint(target)
    return {
        "copied": copied,
        "already_there": held,
        "source": before,
        "target": after,
        "verified": before == after,
    }
