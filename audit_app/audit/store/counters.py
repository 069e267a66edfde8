"""Each organization's records per hour and status class, counted as they are written.

The activity chart of an organization's unfiltered log, over weeks of a busy organization,
would otherwise have to walk millions of records; the histogram walks at most
``AUDIT_HISTOGRAM_MAX_RECORDS`` and, past that, answers an unfiltered view from here (a
filtered one says ``partial``). One document per organization and day in
``audit_counters``: ``{organizationId, day, count, statusClasses: {"2xx": n, ...}, hours:
{"09": {count, statusClasses}, ...}}``: a year of an organization is 365 small documents,
and a chart reads one per day of its range, whether it shows days or hours.

The writer adds each stored record to an in-memory tally (no extra write on the request
path); the tally is added to the store with ``$inc`` upserts every
``AUDIT_COUNTS_INTERVAL`` seconds by the background runner, before the histogram reads,
and at exit. A process killed in between loses at most that much of its tally: the chart
may under-count by a few seconds of one process's traffic, which it is allowed to (the
records themselves are never lost). The retention purge deletes the counts of the days
it purged.

Counting starts with the version that introduced it (the ``counters-since`` marker in
``app_upgrades``): every record of an organization created since went through a counting
writer (``migrate-store`` copies the counts with the records), so its counts are whole; for
an older organization they are whole from the hour after the marker, and the histogram
says so.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo
from bson import ObjectId
from pymongo import ASCENDING, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, PyMongoError, ServerSelectionTimeoutError
from pymongo.write_concern import WriteConcern

from ...db import Document, IndexSpec, TenantCollection
from ...ids import floor_to, utcnow

log = logging.getLogger(__name__)

COUNTERS = "audit_counters"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
SINCE_MARKER = "counters-since"
TIMEOUT_SECONDS = 2.0
# what a store that cannot take or give the counts raises (never the records' failure)
FAILURES = (PyMongoError, sqlite3.Error, OSError)
INDEXES: list[IndexSpec] = [
    (
        [("organizationId", ASCENDING), ("day", ASCENDING)],
        {"name": "org_day_unique", "unique": True},
    ),
]


def status_class(status: Any) -> str | None:
    """``4xx`` of 404, and of 404.0 (a whole number however it is stored: as a status
    filter matches it, and as the embedded store's SQL counts it); None of anything else."""
    whole = isinstance(status, int | float) and not isinstance(status, bool)
    if not whole or not math.isfinite(status) or not float(status).is_integer():
        return None
    family = f"{int(status) // 100}xx"
    return family if family in STATUS_CLASSES else None


class HourlyTally:
    """The counts of this process not yet added to the store."""

    def __init__(self) -> None:
        self._pending: Counter[tuple[ObjectId, datetime, str]] = Counter()
        self._lock = threading.Lock()
        # one flush at a time: a chart's flush that found the tally already taken by the
        # background task's would read the store before that one's additions landed
        self._flushing = threading.Lock()

    def add(self, record: Mapping[str, Any]) -> None:
        organization_id, at = record.get("organizationId"), record.get("createdAt")
        family = status_class(record.get("statusCode"))
        if isinstance(organization_id, ObjectId) and isinstance(at, datetime) and family:
            with self._lock:
                self._pending[(organization_id, floor_to(at, HOUR), family)] += 1

    def flush(self, db: Database[Document]) -> int:
        """Add the tally to the store, within ``TIMEOUT_SECONDS``. What was surely not
        applied is kept for the next flush; what may have been is not sent again (``$inc``
        is not idempotent: the counts may under-count, never over-count). A flush waits for
        the one under way, so the store holds every count taken before it returns."""
        with self._flushing:
            return self._flush(db)

    def _flush(self, db: Database[Document]) -> int:
        with self._lock:
            taken, self._pending = self._pending, Counter()
        if not taken:
            return 0
        increments: dict[tuple[ObjectId, datetime], Counter[str]] = {}
        parts: dict[tuple[ObjectId, datetime], Counter[tuple[ObjectId, datetime, str]]] = {}
        for (organization_id, hour, family), count in taken.items():
            key = (organization_id, floor_to(hour, DAY))
            slot = increments.setdefault(key, Counter())
            at = f"hours.{hour.hour:02d}"
            for path in ("count", f"statusClasses.{family}", f"{at}.count"):
                slot[path] += count
            slot[f"{at}.statusClasses.{family}"] += count
            parts.setdefault(key, Counter())[(organization_id, hour, family)] = count
        keys = list(increments)
        updates = [
            (
                {"organizationId": organization_id, "day": day},
                {"$inc": dict(increments[(organization_id, day)])},
            )
            for organization_id, day in keys
        ]
        unsent = self._send(db, updates)
        if unsent:
            with self._lock:
                for index in unsent:
                    self._pending.update(parts[keys[index]])
        return len(updates) - len(unsent)

    def _send(self, db: Database[Document], updates: list[tuple[Document, Document]]) -> list[int]:
        """Send the updates; return the indexes of those surely not applied."""
        collection = db[COUNTERS]
        if not isinstance(collection, Collection):
            # mongomock and the embedded store take no pymongo 4 bulk operations: one by one
            for index, (key, change) in enumerate(updates):
                try:
                    collection.update_one(key, change, upsert=True)
                except FAILURES as error:
                    log.warning("Activity counts not added (%s); kept for the next time", error)
                    return list(range(index, len(updates)))
            return []
        majority = collection.with_options(write_concern=WriteConcern(w="majority"))
        try:
            with pymongo.timeout(TIMEOUT_SECONDS):  # a majority out of reach waits no longer
                majority.bulk_write(
                    [UpdateOne(key, change, upsert=True) for key, change in updates],
                    ordered=False,
                )
        except BulkWriteError as error:  # applied, but for these (write concern errors: all)
            return [failure["index"] for failure in error.details.get("writeErrors", [])]
        except ServerSelectionTimeoutError as error:  # nothing was sent
            log.warning("Activity counts not added (%s); kept for the next time", error)
            return list(range(len(updates)))
        except PyMongoError as error:  # sent: may have been applied, so never sent twice
            log.warning("Activity counts may be short: an addition was not confirmed (%s)", error)
        return []


def counted(
    db: Database[Document],
    organization_id: ObjectId,
    start: datetime,
    end: datetime,
    step: timedelta,
) -> dict[datetime, dict[str, int]]:
    """The counts of ``[start, end]`` by ``step`` (an hour or a day), by status class, in
    whole hours: one document read per day of the range, on ``org_day_unique``."""
    first = floor_to(start, DAY)
    days = (
        TenantCollection(db[COUNTERS], organization_id)
        .find({"day": {"$gte": first, "$lte": end}})
        .sort("day", ASCENDING)
        .hint("org_day_unique")
        .limit(int((end - first) / DAY) + 2)
        .max_time_ms(int(TIMEOUT_SECONDS * 1000))
    )
    low = floor_to(start, HOUR)
    buckets: dict[datetime, dict[str, int]] = {}
    for document in days:
        day = _aware(document["day"])
        for key, hour in (document.get("hours") or {}).items():
            at = day + timedelta(hours=int(key)) if key.isdigit() else None
            if at is None or not low <= at <= end or not isinstance(hour, Mapping):
                continue
            bucket = buckets.setdefault(floor_to(at, step), dict.fromkeys(STATUS_CLASSES, 0))
            for family, count in (hour.get("statusClasses") or {}).items():
                if family in bucket and isinstance(count, int):
                    bucket[family] += count
    return buckets


def forget_before(db: Database[Document], organization_id: ObjectId, cutoff: datetime) -> int:
    """The counts of days that ended before the retention purge's cut-off."""
    counters = TenantCollection(db[COUNTERS], organization_id)
    return counters.delete_many({"day": {"$lte": cutoff - DAY}}).deleted_count


def mark_start(main_db: Database[Document]) -> None:
    """The moment counting began on this installation (once)."""
    main_db.app_upgrades.update_one(
        {"_id": SINCE_MARKER}, {"$setOnInsert": {"at": utcnow()}}, upsert=True
    )


EVER = datetime(1970, 1, 1, tzinfo=UTC)


def whole_from(main_db: Database[Document], organization: Mapping[str, Any]) -> datetime | None:
    """From when an organization's counts are whole: always (``EVER``) if it was created
    after counting began, else from the hour after that; None if counting never began."""
    marker = main_db.app_upgrades.find_one({"_id": SINCE_MARKER})
    if marker is None or not isinstance(marker.get("at"), datetime):
        return None
    began = _aware(marker["at"])
    created = organization.get("createdAt")
    if isinstance(created, datetime) and _aware(created) >= began:
        return EVER
    return floor_to(began, HOUR) + HOUR  # the hour it began in was counted in part


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
