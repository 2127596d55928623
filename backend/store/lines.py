"""The journal's lines as the indexes read them: only the fields they use, decoded by msgspec.

`json.loads` builds every value of a line (its `fields`, ids, status...) where an index reads
five; msgspec decodes a line into one of the structs below, skipping the rest, in about a
third of the time (bench/agent_memory_bench.py). Every field is `Any`: the checks of what a
well-formed entry is live in one place, `entry_facts()` in `index.py`. A line msgspec refuses
(it is stricter than `json`: NaN, a lone surrogate, a repeated `type`) is read again with
`json.loads`, so both readers accept exactly what `json` accepts; msgspec skips the fields it
does not decode without checking their UTF-8, so a chunk is checked as a whole first.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import accumulate
from typing import Any

import msgspec

from backend.store.records import Entry

_ABSENT: Any = msgspec.UNSET  # an optional field the line does not have


class Line(msgspec.Struct, tag_field="type", gc=False):
    seq: Any


class InfoLine(Line, tag="info"):
    session_id: Any
    caller_id: Any
    category: Any
    timestamp: Any
    information: Any


class SessionLine(Line, tag="session"):
    session_id: Any
    caller_id: Any
    started_at: Any


class CallLine(Line, tag="call"):
    session_id: Any
    caller_id: Any
    outcome: Any
    ended_at: Any
    duration_seconds: Any
    cost: Any = None


class TurnLine(Line, tag="turn"):
    session_id: Any


class EventLine(Line, tag="event"):
    kind: Any
    key: Any
    data: Any = _ABSENT


LINE = InfoLine | SessionLine | CallLine | TurnLine | EventLine
_decode = msgspec.json.Decoder(LINE).decode


def as_line(entry: Entry) -> Line:
    """An entry (a dict) as the indexes read it; ValueError when it is not an entry at all."""
    return msgspec.convert(entry, LINE)


def index_lines(add: Callable[[Line, int], None], chunk: bytes, end: int, base: int) -> list[tuple[int, int]]:
    """Index the complete lines of `chunk[:end]` (which starts at byte `base` of the journal)
    with `add(line, offset)`; returns the (offset, length) of each line that is not an entry
    (`add` raised for it, or it is not JSON). Blank lines (quarantined ones) are skipped."""
    lines = chunk[:end].split(b"\n")
    lines.pop()  # what follows the last newline: nothing
    starts = accumulate(map((1).__add__, map(len, lines)), initial=base)  # each line's offset
    check_utf8 = not chunk.isascii()
    bad: list[tuple[int, int]] = []
    for raw, off in zip(lines, starts, strict=False):
        try:
            try:
                line = _decode(raw)
                if check_utf8:
                    raw.decode("utf-8", "surrogatepass")
            except msgspec.MsgspecError:
                if not raw or raw.isspace():
                    continue
                line = as_line(json.loads(raw))
            add(line, off)
        except (ValueError, KeyError, TypeError, AttributeError):
            bad.append((off, len(raw)))
    return bad
