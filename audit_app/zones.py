"""Time zones: the viewer's, by its IANA name, and where its days and hours begin.

Records keep their times in UTC; a person reads them in their own zone. The activity chart
counts per day or hour of the viewer's zone, so its buckets begin at the zone's midnights
(or whole hours), which move with daylight saving time: a day of 23 or 25 hours, an hour
that happens twice, or one that never happens.
"""

from __future__ import annotations

import contextlib
import functools
import zoneinfo
from datetime import UTC, datetime, timedelta, tzinfo

from .errors import bad_request

UTC_NAME = "UTC"
MAX_NAME_LENGTH = 64  # the longest IANA name is 32 characters
# names zoneinfo finds that name no place: the server's own zone, and "no zone at all"
_NOT_PLACES = frozenset({"localtime", "Factory"})
ACCEPTED = "an IANA time zone name such as Europe/Paris, America/New_York or UTC"


@functools.cache
def _known() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones() - _NOT_PLACES) | {UTC_NAME}


def find_zone(name: object) -> zoneinfo.ZoneInfo | None:
    """The zone of an IANA name (``America/New_York``), or None if it names none."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH:
        return None
    if name not in _known():  # only names of the zone database: never a path
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


def parse_zone(name: object, field: str = "tz") -> zoneinfo.ZoneInfo:
    """The zone of an IANA name, or a 400 that names the field and what is accepted."""
    zone = find_zone(name)
    if zone is None:
        raise bad_request(f"{field}: Must be {ACCEPTED}.", field)
    return zone


def zone_name(zone: tzinfo) -> str:
    return getattr(zone, "key", None) or UTC_NAME


def bucket_starts(
    start: datetime, end: datetime, hourly: bool, zone: tzinfo, most: int
) -> tuple[list[datetime], datetime | None] | None:
    """The UTC moments at which the zone's days (or hours) begin, from the one that holds
    ``start`` through the one that holds ``end``, and where the last one ends (None: past
    the calendar's end, 9999-12-31); None when there would be more than ``most``.

    Each local midnight (or whole hour) is taken each time it happens: an hour that happens
    twice (daylight saving time ends) is two buckets, an hour that never happens (it
    begins) is none, and a midnight that never happens begins its day when the day does
    (as the part of an hour after a half-hour change does, on Lord Howe Island).
    """
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    local = start.astimezone(zone)
    wall = datetime(local.year, local.month, local.day, local.hour if hourly else 0)
    with contextlib.suppress(OverflowError):  # (year 1: no step before)
        wall -= step  # from a step before: a fold can put the bucket of start earlier
    found: list[datetime] = []
    after: datetime | None = None
    for _ in range(2 * most + 8):  # a step adds a bucket, or two (a fold), or none (a gap)
        moments = _beginnings(wall, zone)
        for moment in moments:
            if found and moment <= found[-1]:
                continue
            if moment > end:
                after = moment
                break
            if moment <= start:
                found = [moment]  # a later beginning of the bucket that holds start
            else:
                found.append(moment)
        if len(found) > most:
            return None
        if after is not None or not moments:  # past the end, or past the calendar's in UTC
            break
        try:
            wall += step
        except OverflowError:  # 9999-12-31: the calendar's last bucket
            break
    return found, after


def _beginnings(wall: datetime, zone: tzinfo) -> list[datetime]:
    """The moments a wall-clock time happens in the zone: once, twice (the hour that is
    repeated), or, in a gap, the moment the gap ends (what ``fold=0`` gives: the time read
    with the offset before the change)."""
    moments = []
    for fold in (0, 1):
        try:
            moment = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
            back = moment.astimezone(zone).replace(tzinfo=None)
        except OverflowError:  # the calendar ends in UTC or in the zone
            continue
        if back == wall and moment not in moments:
            moments.append(moment)
    if not moments:
        with contextlib.suppress(OverflowError):
            moments.append(wall.replace(tzinfo=zone, fold=0).astimezone(UTC))
    return sorted(moments)
