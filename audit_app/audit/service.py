"""Reading the audit log for a principal: one place for the API, the export and the web UI."""

from __future__ import annotations

import bisect
import contextlib
import itertools
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from flask import current_app
from marshmallow import Schema
from pymongo.database import Database
from pymongo.errors import ExecutionTimeout, OperationFailure
from werkzeug.datastructures import MultiDict

from ..api_keys.repository import find_api_keys_by_ids
from ..auth.principal import Principal
from ..db import Document, get_audit_db, get_db
from ..errors import ApiError, bad_request
from ..ids import floor_to, iso, utcnow
from ..organizations.repository import find_account_by_email, find_organization
from ..staff.repository import find_staff_by_email
from ..workspaces.repository import find_workspace_by_name, find_workspaces_by_ids
from ..zones import bucket_starts, zone_name
from .actions import canonical_action, known_actions, of_resource
from .capture.hooks import WRITER_KEY, store_journaled
from .export import is_time_limit
from .integrity.digests import TimeEvidence, time_suspicion
from .integrity.sealing import anchor
from .store import counters
from .store.counters import EVER, HOUR, STATUS_CLASSES
from .store.counters import FAILURES as COUNTS_FAILURES
from .store.query import (
    ACTOR_EMAIL,
    ACTOR_NO_ACCOUNT,
    EXCLUDE,
    HIDE_VIEWS_OF,
    MATCHED_AS,
    NOTHING,
    STAFF_AUTH_TYPE,
    AuditQuery,
    CursorCodec,
    ExportQuerySchema,
    HistogramQuerySchema,
    ListQuerySchema,
    merge_search,
    parse_query,
)
from .store.repository import (
    count_by_bucket,
    find_record,
    find_records_by_ids,
    iter_records,
    search_records,
)


@dataclass
class Page:
    items: list[Document]
    next_cursor: str | None
    query: AuditQuery
    newer_cursor: str | None = None
    suggestion: str | None = None  # a qualifier that would find what the text looked like
    workspace: Document | None = None  # the workspace the text names, if it names one


def build_query(
    organization_id: ObjectId,
    loaded: dict[str, Any],
    limit: int = 50,
    *,
    hide_views_of: ObjectId | None = None,
) -> AuditQuery:
    """The query for validated parameters: the qualifiers of ``q`` folded in, an actor's
    email resolved to the account's id, an action to its declared spelling (any case) and
    ``action:<resource>.*`` to that resource's actions; the same for what ``-`` excludes.
    ``hide_views_of``: leave out this account's own reads of the log (the web list)."""
    filters = merge_search(loaded)
    email = filters.pop("actor", None)
    if email is not None:
        if (
            "accountId" not in filters
            and filters.get("authType") in (None, STAFF_AUTH_TYPE)
            and find_staff_by_email(get_db(), email) is not None
        ):
            filters[ACTOR_EMAIL] = email  # a platform staff member's records too (no account)
        account = find_account_by_email(get_db(), email)
        if account is None:
            filters[ACTOR_NO_ACCOUNT if ACTOR_EMAIL in filters else NOTHING] = True
        elif filters.get("accountId") not in (None, account["_id"]):
            filters[NOTHING] = True  # two accounts at once: nothing (and no word on which exists)
        else:
            filters["accountId"] = account["_id"]
    declared = known_actions(current_app)
    action = filters.get("action")
    if isinstance(action, str):
        filters["action"] = _actions_named(declared, action)
    excluded = filters.get(EXCLUDE)
    if excluded:
        excluded = filters[EXCLUDE] = dict(excluded)
        emails = excluded.pop("actor", [])
        accounts = [find_account_by_email(get_db(), email) for email in emails]
        # an email with no account excludes nobody; the ids stay within the organization's
        # log whatever they are: the tenant filter is beside them, never under them
        ids = [account["_id"] for account in accounts if account is not None]
        if ids:
            excluded["accountId"] = ids
        # a platform staff member's records (no account): left out by their email, as
        # actor: finds them by it
        staff = [email for email in emails if find_staff_by_email(get_db(), email) is not None]
        if staff:
            excluded["accountEmail"] = staff
        names = excluded.pop("action", [])
        left_out: list[str] = []
        for name in names:
            found = _actions_named(declared, name)
            for one in [found] if isinstance(found, str) else found:
                if one not in left_out:
                    left_out.append(one)
        if left_out:
            excluded["action"] = left_out
            kept = filters.get("action")  # what is asked and left out at once: not asked
            if isinstance(kept, list):
                filters["action"] = [one for one in kept if one not in left_out]
            elif isinstance(kept, str) and kept in left_out:
                filters[NOTHING] = True
    if hide_views_of is not None:
        filters[HIDE_VIEWS_OF] = hide_views_of
    return AuditQuery(filters=filters, limit=limit)


def _actions_named(declared: list[str], name: str) -> str | list[str]:
    """An action in its declared spelling, or a resource's actions for ``<resource>.*``."""
    if name.endswith(".*"):
        return of_resource(declared, name[:-2])
    return canonical_action(declared, name)


_SUGGESTIONS = (
    (re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$"), "actor"),
    (re.compile(r"^(?:\d{1,3}\.){3}\d{1,3}$|^[0-9a-fA-F:]*:[0-9a-fA-F:]+$"), "ip"),
    (re.compile(r"^(?:jwt|ses|key|stfs|stft)_[A-Za-z0-9_-]+$"), "credential"),
    (re.compile(r"^[0-9a-fA-F]{32}$|^[0-9a-fA-F-]{36}$"), "requestId"),
    (re.compile(r"^[a-z][A-Za-z0-9]*\.[a-z][A-Za-z0-9]*$"), "action"),
)


def suggestion_for(query: AuditQuery) -> str | None:
    """For a plain-text search that found nothing: the search it probably meant, when the
    text looks like an email, an address, a credential, a request id or an action."""
    text = query.filters.get("q", "")
    for pattern, qualifier in _SUGGESTIONS:
        if pattern.match(text):
            return f"{qualifier}:{text}"
    return None


def _log() -> Database[Document]:
    """The audit store, with every record answered before this request in it: in the
    journal write mode, what waits in the journal is folded first (waiting for a fold in
    progress elsewhere), so a reader sees what was answered before theirs."""
    try:
        store_journaled()
    except OSError as error:  # the journal's disk: read what the store has
        log.warning("Audit journal not folded before a read: %s", error)
    return get_audit_db()


def _codec() -> CursorCodec:
    return CursorCodec(current_app.config["SECRET_KEY"])


def list_page(
    principal: Principal,
    args: MultiDict[str, str],
    *,
    schema: Schema | None = None,
    hide_views_of: ObjectId | None = None,
) -> Page:
    """Validate the parameters and return one page of the caller's organization's log.

    ``cursor`` pages towards older records (the API's ``nextCursor``); the web list also
    sends ``before`` to page towards newer ones, and ``hide_views_of`` (its viewer) to
    leave that account's own reads of the log out.
    """
    loaded = parse_query(args, schema or ListQuerySchema())
    limit = loaded.pop("limit")
    cursor = loaded.pop("cursor", None)
    before = loaded.pop("before", None)
    query = build_query(principal.org, loaded, limit, hide_views_of=hide_views_of)
    if cursor and before:
        raise ApiError(400, "bad_request", "cursor: give cursor or before, not both.", "cursor")
    codec = _codec()
    if cursor:
        query.after = codec.decode(cursor, principal.org, query)
    if before:
        query.before = codec.decode(before, principal.org, query, "before")
    with _time_budget():
        items, more = search_records(
            _log(),
            principal.org,
            query.branches(),
            limit,
            current_app.config["AUDIT_QUERY_TIMEOUT_MS"],
            towards_newer=bool(before),
        )
    if not items:
        if cursor:
            return Page(items, None, query)
        text = query.filters.get("q", "")
        named = find_workspace_by_name(get_db(), principal.org, text) if text else None
        return Page(items, None, query, suggestion=suggestion_for(query), workspace=named)
    _mark_matches(items, query)
    older = more if not before else True
    newer = bool(cursor) if not before else more
    return Page(
        items,
        codec.encode(principal.org, query, items[-1]) if older else None,
        query,
        codec.encode(principal.org, query, items[0]) if newer else None,
    )


def suspicious_times(principal: Principal, records: list[Document]) -> dict[str, str]:
    """The records whose times no request explains, and why: judged as sealing and verify
    judge them (the anchor's dating bound, its replay ledger, an export's genuine start)."""
    organization_id = principal.organization_id
    if organization_id is None:
        return {}
    anchored = anchor()
    backdated = anchored.backdated_until(organization_id)
    evidence = TimeEvidence(get_audit_db(), organization_id, anchored)
    found: dict[str, str] = {}
    for record in records:
        why = time_suspicion(dict(record), backdated, evidence)
        if why is not None:
            found[str(record["_id"])] = why
    return found


def _mark_matches(items: list[Document], query: AuditQuery) -> None:
    """In a search by id, say how each record involves it (``matchedAs``): by the actor,
    the API key, in the workspace, or acting on it (a target)."""
    searched = query.searched_id()
    if searched is None:
        return
    for item in items:
        matched = [role for name, role in MATCHED_AS.items() if item.get(name) == searched]
        if any(t.get("id") == searched for t in item.get("targets") or ()):
            matched.append("target")
        item["matchedAs"] = matched


def get_record(principal: Principal, record_id: ObjectId) -> Document | None:
    return find_record(_log(), principal.org, record_id)


def open_export(
    principal: Principal, args: MultiDict[str, str], *, hide_views_of: ObjectId | None = None
) -> tuple[str, AuditQuery, Iterator[Document], Document | None]:
    """Validate the export parameters; return (format, query, records, organization)."""
    loaded = parse_query(args, ExportQuerySchema())
    fmt = loaded.pop("format")
    query = build_query(principal.org, loaded, hide_views_of=hide_views_of)
    records = export_records(principal.org, query)
    organization = find_organization(get_db(), principal.org)
    return fmt, query, records, organization


def export_records(organization_id: ObjectId, query: AuditQuery) -> Iterator[Document]:
    """The records of an export, within ``AUDIT_EXPORT_TIMEOUT_MS`` of server time.

    The first batch is read here, so a search the server cannot answer in time is a 503
    before anything is sent; a timeout later ends the stream early (the export's outcome
    record says it did not complete).
    """
    records = iter_records(
        _log(),
        organization_id,
        query.branches(),
        current_app.config["AUDIT_EXPORT_TIMEOUT_MS"],
    )
    with _time_budget():
        first = next(records, None)
    if first is None:
        return iter(())
    return itertools.chain((first,), records)


@contextlib.contextmanager
def _time_budget() -> Iterator[None]:
    """A query the server stopped at its ``maxTimeMS`` is a 503 that says what to do."""
    try:
        yield
    except (ExecutionTimeout, OperationFailure) as error:
        if isinstance(error, OperationFailure) and not is_time_limit(error):
            raise
        raise ApiError(
            503,
            "query_timeout",
            "The search took too long; narrow it with a time range, an id or more filters.",
        ) from None


def names_for(
    principal: Principal, items: list[Document]
) -> tuple[dict[ObjectId, Document], dict[ObjectId, Document]]:
    """The workspaces and API keys the records name, by id, to show names beside ids."""
    db = get_db()
    workspaces = find_workspaces_by_ids(db, principal.org, [i.get("workspaceId") for i in items])
    keys = find_api_keys_by_ids(db, principal.org, [i.get("apiKeyId") for i in items])
    return workspaces, keys


def existing_records(principal: Principal, record_ids: list[str]) -> set[str]:
    """Which of these record ids (from a verification) are still in the log."""
    wanted = [ObjectId(i) for i in record_ids[:200] if ObjectId.is_valid(i)]
    if not wanted:
        return set()
    return {str(r["_id"]) for r in find_records_by_ids(get_audit_db(), principal.org, wanted)}


log = logging.getLogger(__name__)
HISTOGRAM_SPANS = {"hour": timedelta(hours=48), "day": timedelta(days=14)}  # the defaults
HISTOGRAM_MAX_BUCKETS = 400


def histogram(
    principal: Principal,
    args: MultiDict[str, str],
    *,
    max_records: int | None = None,
    hide_views_of: ObjectId | None = None,
) -> dict[str, Any]:
    """Requests per hour or day of the viewer's zone (``tz``, UTC by default) for the
    filtered set, by status class, at bounded cost.

    The records of the range are walked newest first on the list's own indexes, two fields
    each, up to ``AUDIT_HISTOGRAM_MAX_RECORDS`` (and the query time budget): past that, an
    unfiltered view is answered from the counts kept at write time (``counters``; whole
    UTC hours, so only for a zone whose days or hours begin on a whole UTC hour), and a
    filtered one is ``partial``, with ``countedFrom`` saying from which moment on its
    counts are whole.
    """
    loaded = parse_query(args, HistogramQuerySchema())
    interval = loaded.pop("interval")
    zone = loaded.pop("tz")
    end = loaded.get("to") or utcnow()
    start = loaded.get("from_") or end - HISTOGRAM_SPANS[interval]
    found = bucket_starts(start, end, interval == "hour", zone, HISTOGRAM_MAX_BUCKETS)
    if found is None:
        raise bad_request(
            f"interval: {interval}s from {iso(start)} to {iso(end)} are more than "
            f"{HISTOGRAM_MAX_BUCKETS} buckets; use day, or a shorter range.",
            "interval",
        )
    starts, after = found
    query = build_query(
        principal.org, {**loaded, "from_": start, "to": end}, hide_views_of=hide_views_of
    )
    _log()  # the journal folded: its records counted, by the walk and by the tally
    cap = max_records or current_app.config["AUDIT_HISTOGRAM_MAX_RECORDS"]
    # an organization's unfiltered view: its counts kept at write time, once they hold more
    # than the walk would count (a walk of the records stays exact to the second)
    # (the viewer's hidden views too: past ``cap`` records they are too few to change a bar,
    # and below it the walk counts without them, so a bar never leads to an empty page)
    unfiltered = not any(value for name, value in loaded.items() if name not in ("from_", "to"))
    kept = _kept_counts(principal.org, start, starts, end) if unfiltered else None
    if kept is not None and kept[1] is None and sum(map(_total, kept[0].values())) > cap:
        counts, counted_from, source = kept[0], kept[1], "counters"
    else:
        counts, counted_from = _walked_counts(principal, query, starts, after, cap)
        source = "records"
        # the walk stopped short: the counts answer if they are whole further back
        if counted_from is not None and kept is not None and (kept[1] or EVER) <= counted_from:
            counts, counted_from, source = kept[0], kept[1], "counters"
    if source == "counters":
        counts, counted_from = _without_edges(
            principal, counts, counted_from, (start, end), starts, after, cap
        )
    buckets = []
    for index, moment in enumerate(starts):
        classes = counts.get(moment, dict.fromkeys(STATUS_CLASSES, 0))
        ends = starts[index + 1] if index + 1 < len(starts) else after
        buckets.append(
            {
                "start": iso(moment),
                "end": iso(ends),
                "count": _total(classes),
                "statusClasses": classes,
            }
        )
    return {
        "interval": interval,
        "timeZone": zone_name(zone),
        "from": iso(start),
        "to": iso(end),
        "buckets": buckets,
        "partial": counted_from is not None,
        "countedFrom": iso(counted_from) if counted_from is not None else None,
        "source": source,
    }


def _without_edges(
    principal: Principal,
    counts: dict[datetime, dict[str, int]],
    counted_from: datetime | None,
    span: tuple[datetime, datetime],
    starts: list[datetime],
    after: datetime | None,
    cap: int,
) -> tuple[dict[datetime, dict[str, int]], datetime | None]:
    """The counts kept at write time are per whole UTC hour: take out the records of the
    first hour before ``from`` and of the last after ``to``, walked as the list would (each
    edge at most an hour, up to the walk's cap), so the bars count what their links list.
    An edge with more records than the cap leaves its hour as kept, and the answer says
    its counts are whole from the hour after it (``countedFrom``)."""
    start, end = span
    ms = timedelta(milliseconds=1)
    first, last = floor_to(start, HOUR), floor_to(end, HOUR) + HOUR
    edges = [(first, start - ms)] if first < start else []
    if end + ms < last:
        edges.append((end + ms, last - ms))
    for low, high in edges:
        query = build_query(principal.org, {"from_": low, "to": high})
        outside, short = _walked_counts(principal, query, starts, after, cap)
        if short is not None:  # too many to walk: that hour stays as kept, and is said so
            if low == first:
                counted_from = max(counted_from or EVER, first + HOUR)
            continue
        for moment, classes in outside.items():
            bucket = counts.get(moment)
            for family, count in classes.items():
                if bucket is not None and family in bucket:
                    bucket[family] = max(0, bucket[family] - count)
    return counts, counted_from


def _bucket_of(moment: datetime, starts: list[datetime]) -> datetime | None:
    """The start of the bucket that holds a moment (None: before the first)."""
    index = bisect.bisect_right(starts, moment) - 1
    return starts[index] if index >= 0 else None


def _grain(starts: list[datetime], after: datetime | None) -> timedelta:
    """The longest span from the epoch that every bucket's start (and the last one's end)
    is a whole number of: what the store may count by, for its counts to add up to the
    buckets exactly (a day of UTC; an hour of New York; half an hour of Kolkata)."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    ms = timedelta(milliseconds=1)
    edges = [*starts, after] if after is not None else starts
    return ms * (math.gcd(*((edge - epoch) // ms for edge in edges)) or 1)


def _walked_counts(
    principal: Principal,
    query: AuditQuery,
    starts: list[datetime],
    after: datetime | None,
    cap: int,
) -> tuple[dict[datetime, dict[str, int]], datetime | None]:
    """Counts by walking the records newest first, two fields each, up to ``cap``; and
    from when they are whole, when the walk stopped short (None: whole). The embedded
    store counts the same records in SQL, over its indexes, without decoding them, by a
    grain the buckets are made of (``_grain``)."""
    counts: dict[datetime, dict[str, int]] = {}
    with _time_budget():  # the store's own counts, where it keeps them in SQL
        counted = count_by_bucket(
            get_audit_db(),
            principal.org,
            query.branches(),
            _grain(starts, after),
            cap,
            current_app.config["AUDIT_QUERY_TIMEOUT_MS"],
        )
    if counted is not None:
        rows, counted_from = counted
        for grain, digit, count in rows:
            start = _bucket_of(grain, starts)
            name = f"{digit}xx"
            if start is None:
                continue
            bucket = counts.setdefault(start, dict.fromkeys(STATUS_CLASSES, 0))
            if name in bucket:
                bucket[name] += count
        return counts, counted_from
    seen = 0
    with _time_budget():
        records = iter_records(
            get_audit_db(),
            principal.org,
            query.branches(),
            current_app.config["AUDIT_QUERY_TIMEOUT_MS"],
            projection={"createdAt": 1, "statusCode": 1},
        )
        for record in records:
            if seen >= cap:
                return counts, record["createdAt"]
            seen += 1
            start = _bucket_of(record["createdAt"], starts)
            if start is None:
                continue
            bucket = counts.setdefault(start, dict.fromkeys(STATUS_CLASSES, 0))
            family = counters.status_class(record.get("statusCode"))
            if family is not None:
                bucket[family] += 1
    return counts, None


def _total(classes: dict[str, int]) -> int:
    return sum(classes.values())


def _kept_counts(
    organization_id: ObjectId, start: datetime, starts: list[datetime], end: datetime
) -> tuple[dict[datetime, dict[str, int]], datetime | None] | None:
    """The counts kept at write time, by bucket, and from when they are whole (None:
    whole); None when this installation has none for the organization's range, or they
    cannot be read, or cannot add up to the buckets: they are kept per UTC hour, so a
    zone whose days or hours begin on a half hour (Kolkata) is counted from the records
    (the walk answers then: the counts never fail a chart)."""
    if not starts or any(first.minute or first.second or first.microsecond for first in starts):
        return None  # (no bucket: a range that begins after it ends, "from" in the future)
    try:
        organization = find_organization(get_db(), organization_id)
        whole = counters.whole_from(get_db(), organization or {})
        if whole is None:
            return None
        writer = current_app.extensions.get(WRITER_KEY)
        if writer is not None:
            try:  # this process's tally too, so a count never lags its own page
                writer.flush_counts()
            except COUNTS_FAILURES as error:
                log.warning("Activity counts not added before a chart (%s)", error)
        # from the hour of ``start``, as the walk counts from ``start`` (whole hours)
        hours = counters.counted(get_audit_db(), organization_id, start, end, counters.HOUR)
    except COUNTS_FAILURES as error:
        log.warning("Activity counts unreadable, counting the records instead (%s)", error)
        return None
    counts: dict[datetime, dict[str, int]] = {}
    for hour, classes in hours.items():
        begins = _bucket_of(hour, starts)
        if begins is not None:
            bucket = counts.setdefault(begins, dict.fromkeys(STATUS_CLASSES, 0))
            for family, count in classes.items():
                bucket[family] += count
    return counts, (whole if whole > starts[0] else None)
