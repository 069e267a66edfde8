"""CSV and NDJSON exports, produced a record at a time so memory stays flat."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from datetime import datetime

from flask import Response, stream_with_context
from pymongo.errors import ExecutionTimeout, OperationFailure

from ..ids import iso, utcnow
from ..streams.formats import ocsf, targets_text
from .actions import record_label
from .capture.hooks import record_export_outcome
from .schemas import present

CSV_COLUMNS = [
    "id",
    "createdAt",
    "organizationId",
    "accountId",
    "accountEmail",
    "apiKeyId",
    "apiKeyName",
    "workspaceId",
    "authType",
    "resource",
    "method",
    "path",
    "route",
    "statusCode",
    "durationMs",
    "ip",
    "userAgent",
    "requestId",
    "action",
    "label",
    "outcome",
    "targets",
    "credentialId",
    "errorCode",
    "errorMessage",
    "changes",
    "request",
]
_JSON_COLUMNS = ("changes", "request")  # as JSON text in their cell
# A spreadsheet runs a cell as a formula when it starts with one of these (OWASP's list,
# with LF, and NUL as ASVS 5 adds), even after blanks or a quote in some of them. One whose
# list separator is ';' (many European locales) starts a cell after every ';', and a row
# after every line break (it does not see this file's quotes): there too. '|' starts
# nothing (a DDE payload needs one of these first) and is left alone.
_FORMULA = re.compile(r"""(^|[;\r\n])(?=[ "]*[=+\-@\t\r\n\x00])""")
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "ndjson": "application/x-ndjson; charset=utf-8",
    "ocsf": "application/x-ndjson; charset=utf-8",  # NDJSON of OCSF API Activity events
}
EXTENSIONS = {"csv": "csv", "ndjson": "ndjson", "ocsf": "ocsf.ndjson"}


def neutralize(cell: str) -> str:
    """Keep a spreadsheet from running a cell as a formula (OWASP CSV injection): a ``'``
    before whatever would start one, at the cell's start and after each ``;`` and line
    break. The CSV is for reading in a spreadsheet; NDJSON keeps every value exactly."""
    return _FORMULA.sub(r"\1'", cell)


def _csv_line(values: list) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue()


def csv_chunks(records: Iterable[dict], details: bool = True) -> Iterator[str]:
    """A UTF-8 CSV (with a BOM, so spreadsheets read it as UTF-8), one row a record: the
    action also as it reads (``label``), ``outcome``, and ``targets`` as ``type:name (id)``;
    ``details=False`` leaves the bulky request details out."""
    columns = CSV_COLUMNS if details else [c for c in CSV_COLUMNS if c != "request"]
    yield "\ufeff" + _csv_line(columns)
    for record in records:
        row = present(record, details=details)
        row.update(errorCode=row["response"].get("errorCode"))
        row.update(errorMessage=row["response"].get("errorMessage"))
        row.update(label=record_label(record), targets=targets_text(record.get("targets")))
        cells = []
        for column in columns:
            value = row.get(column)
            if column in _JSON_COLUMNS and (value is not None or column == "request"):
                value = json.dumps(value, ensure_ascii=False, sort_keys=True)
            cells.append("" if value is None else neutralize(str(value)))
        yield _csv_line(cells)


def ndjson_chunks(records: Iterable[dict], details: bool = True) -> Iterator[str]:
    for record in records:
        yield json.dumps(present(record, details=details), ensure_ascii=False) + "\n"


def ocsf_chunks(records: Iterable[dict], details: bool = True) -> Iterator[str]:
    for record in records:
        yield json.dumps(ocsf(record), ensure_ascii=False, default=str) + "\n"


class ExportTimedOut(Exception):
    """The store stopped the export at its time budget after some rows were sent."""

    def __init__(self, rows: int):
        super().__init__(f"the export stopped at its time budget after {rows} rows")
        self.rows = rows


def chunks(fmt: str, records: Iterable[dict], details: bool = True) -> Iterator[str]:
    """The export's text; if the store's time budget runs out midway, a last line says the
    file is incomplete (a reader must not take a cut file for the whole log), then
    ``ExportTimedOut``."""
    rows = 0
    try:
        writers = {"csv": csv_chunks, "ndjson": ndjson_chunks, "ocsf": ocsf_chunks}
        for chunk in writers[fmt](records, details):
            yield chunk
            rows += 1
    except (ExecutionTimeout, OperationFailure) as error:
        if isinstance(error, OperationFailure) and not is_time_limit(error):
            raise
        rows = max(rows - 1, 0) if fmt == "csv" else rows
        message = (
            f"EXPORT INCOMPLETE: the search took too long after {rows} records; narrow it "
            "with a time range or more filters and export again."
        )
        if fmt == "csv":
            yield _csv_line(["# " + message] + [""] * (len(CSV_COLUMNS) - 1))
        else:
            marker = {"exportIncomplete": {"code": "query_timeout", "rowsWritten": rows}}
            marker["exportIncomplete"]["message"] = message
            yield json.dumps(marker) + "\n"
        raise ExportTimedOut(rows) from None


def is_time_limit(error: OperationFailure) -> bool:
    """MaxTimeMSExpired (50) from a server, ExceededTimeLimit (262) from a mongos."""
    return error.code in (50, 262)


def tallied(fmt: str, records: Iterable[dict], on_end, details: bool = True) -> Iterator[str]:
    """The export's chunks; ``on_end(rows, outcome)`` runs however the export ends:
    ``completed``, ``interrupted`` (the client went away) or ``timedOut``."""
    written, outcome = 0, "interrupted"
    try:
        for chunk in chunks(fmt, records, details):
            written += 1  # handed on: the buffer sends it before anything else happens
            yield chunk
        outcome = "completed"
    except ExportTimedOut as stopped:
        outcome, written = "timedOut", stopped.rows + (1 if fmt == "csv" else 0)
        raise  # the connection is cut too, so an HTTP/1.1 client sees a failed download
    finally:
        on_end(max(written - 1, 0) if fmt == "csv" else written, outcome)


def streamed_response(fmt: str, query, records: Iterable[dict], organization: dict) -> Response:
    """The download: streamed from the cursor, named for the organization and the date range.

    The request's own record says an export started; when the stream ends (completed, or
    cut short by the client) a second record with the same ``requestId`` says how it ended.
    """
    name = file_name(
        organization["name"], fmt, query.filters.get("from_"), query.filters.get("to"), utcnow()
    )
    details = query.filters.get("details", True) is not False
    on_end = record_export_outcome(fmt)
    body = stream_with_context(buffered(tallied(fmt, records, on_end, details)))
    response = Response(body, mimetype=CONTENT_TYPES[fmt].split(";")[0])
    response.headers["Content-Type"] = CONTENT_TYPES[fmt]
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "no-store"
    return response


def buffered(chunks: Iterable[str], size: int = 1 << 16) -> Iterator[bytes]:
    """Rows joined into blocks of about ``size`` bytes: one write to the client per block,
    not per row. Whatever ends the rows, the block in hand is sent first."""
    block: list[bytes] = []
    held = 0
    iterator = iter(chunks)
    try:
        while True:
            try:
                chunk = next(iterator)
            except StopIteration:
                break
            except Exception:  # the rows ended in an error (e.g. the time budget): send
                if block:  # the block in hand, which ends with the line saying so; fail
                    yield b"".join(block)
                raise
            data = chunk.encode("utf-8")
            block.append(data)
            held += len(data)
            if held >= size:
                yield b"".join(block)
                block, held = [], 0
        if block:
            yield b"".join(block)
    finally:  # the client went away: end the rows now, so the export's outcome is recorded
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def file_name(
    organization_name: str, fmt: str, start: datetime | None, end: datetime | None, now: datetime
) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", organization_name.lower()).strip("-")[:40] or "organization"
    first = (iso(start) or "")[:10] if start else "start"
    last = (iso(end or now) or "")[:10]
    return f"audit-log_{slug}_{first}_{last}.{EXTENSIONS[fmt]}"
