"""Rendering a list of records as NDJSON or CSV, streamed record by record.

CSV is UTF-8 with a byte-order mark (so spreadsheets pick the encoding) and a header row.
Text cells that begin with `=`, `+`, `-`, `@`, tab or carriage return are prefixed with `'`,
so a spreadsheet shows them as text instead of running them as formulas.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Response, stream_with_context

CSV_COLUMNS = ("seq", "id", "timestamp", "session_id", "caller_id", "category", "information", "fields", "status")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: Any) -> Any:
    """A cell that a spreadsheet would run as a formula, made plain text."""
    if isinstance(cell, str) and cell.startswith(_FORMULA_START):
        return "'" + cell
    return cell


def _ndjson_lines(records: Iterable[dict]) -> Iterator[str]:
    for record in records:
        yield json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def _csv_rows(records: Iterable[dict], columns: tuple[str, ...]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(columns)
    yield "\ufeff" + flush()
    for record in records:
        row = []
        for name in columns:
            value = record.get(name)
            if isinstance(value, dict | list):
                value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            row.append(neutralise("" if value is None else value))
        writer.writerow(row)
        yield flush()


def ndjson_response(records: Iterable[dict], headers: dict[str, str]) -> Response:
    """One JSON record per line, streamed."""
    return Response(stream_with_context(_ndjson_lines(records)), mimetype="application/x-ndjson", headers=headers)


def csv_response(records: Iterable[dict], headers: dict[str, str], filename: str = "information.csv") -> Response:
    """A CSV file with a header row, streamed."""
    headers = {**headers, "Content-Disposition": f'attachment; filename="{filename}"'}
    return Response(
        stream_with_context(_csv_rows(records, CSV_COLUMNS)), content_type="text/csv; charset=utf-8", headers=headers
    )
