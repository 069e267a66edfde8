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
import threading
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.write_concern import WriteConcern

from ..db import Document, IndexSpec, TenantCollection
from ..ids import floor_to, utcnow

log = logging.getLogger(__name__)

COUNTERS = "audit_counters"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
SINCE_MARKER = "counters-since"
INDEXES: list[IndexSpec] = [
    (
        [("organizationId", ASCENDING), ("day", ASCENDING)],
        {"name": "org_day_unique", "unique": True},
    ),
]


def status_class(status: Any) -> str | None:
    family = f"{int(status) // 100}xx" if isinstance(status, int) else None
    return family if family in STATUS_CLASSES else None


class HourlyTally:
    """The counts of this process not yet added to the store."""

    def __init__(self) -> None:
        self._pending: Counter[tuple[ObjectId, datetime, str]] = Counter()
        self._lock = threading.Lock()

    def add(self, record: Mapping[str, Any]) -> None:
        organization_id, at = record.get("organizationId"), record.get("createdAt")
        family = status_class(record.get("statusCode"))
        if isinstance(organization_id, ObjectId) and isinstance(at, datetime) and family:
            with self._lock:
                self._pending[(organization_id, floor_to(at, HOUR), family)] += 1

    def flush(self, db: Database[Document]) -> int:
        """Add the tally to the store; on failure it is kept for the next flush."""
        with self._lock:
            taken, self._pending = self._pending, Counter()
        if not taken:
            return 0
        increments: dict[tuple[ObjectId, datetime], Counter[str]] = {}
        for (organization_id, hour, family), count in taken.items():
            slot = increments.setdefault((organization_id, floor_to(hour, DAY)), Counter())
            at = f"hours.{hour.hour:02d}"
            for path in ("count", f"statusClasses.{family}", f"{at}.count"):
                slot[path] += count
            slot[f"{at}.statusClasses.{family}"] += count
        updates = [
            ({"organizationId": organization_id, "day": day}, {"$inc": dict(inc)})
            for (organization_id, day), inc in increments.items()
        ]
        collection = db[COUNTERS]
        try:
            if isinstance(collection, Collection):  # MongoDB: one round trip
                majority = collection.with_options(write_concern=WriteConcern(w="majority"))
                majority.bulk_write(
                    [UpdateOne(key, change, upsert=True) for key, change in updates],
                    ordered=False,
                )
            else:  # mongomock and the embedded store take no pymongo 4 bulk operations
                for key, change in updates:
                    collection.update_one(key, change, upsert=True)
        except Exception:
            with self._lock:
                self._pending.update(taken)
            raise
        return len(updates)


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
