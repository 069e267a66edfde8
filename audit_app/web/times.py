"""Every time on every page, one way: a ``<time>`` element whose text is UTC and says so,
which ``static/app.js`` rewrites in the viewer's zone (or UTC, their choice, remembered).

Without JavaScript a page reads in UTC throughout; with it, in one stated zone. A page
that shows a time states the zone above its content (``base.html`` asks ``times_shown``).
Messages composed on the server (a flash, a confirmation, an integrity problem) name their
times in UTC text; ``times_in`` turns each into the same element.
"""

from __future__ import annotations

from datetime import UTC, datetime

import re2
from flask import g, request
from markupsafe import Markup, escape

from ..ids import iso
from ..zones import UTC_NAME, find_zone, zone_name

# the zone the viewer reads times in, as static/app.js tells it (an IANA name, or UTC):
# the activity charts count by its days or hours; without it (no JavaScript), by UTC's
ZONE_COOKIE = "auditLogTimeZone"

# what each precision shows without JavaScript (and what static/app.js shows for it)
_TEXT = {
    "second": lambda stamp: f"{stamp[:10]} {stamp[11:19]} UTC",
    "minute": lambda stamp: f"{stamp[:10]} {stamp[11:16]} UTC",
    "date": lambda stamp: f"{stamp[:10]} UTC",  # a day, in full
    "day": lambda stamp: f"{stamp[:10]} UTC",  # a day on the chart's axis, short
    "hour": lambda stamp: f"{stamp[11:16]} UTC",  # an hour on the chart's axis
}
# a UTC time in server text: ISO 8601 with Z (or +00:00), or as ``readable`` writes it
_STAMP = re2.compile(
    r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(:\d{2}(?:\.\d{1,6})?)?(?:Z|\+00:00| UTC)"
)


def _moment(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and 10 <= len(value) <= 40:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def when(value: object, precision: str = "second", missing: str = "never") -> Markup:
    """A time (a datetime or an ISO 8601 string) as the ``<time>`` element every page uses;
    ``missing`` when there is none; text that is no time, as it is."""
    moment = _moment(value)
    if moment is None:
        return escape(value) if isinstance(value, str) and value else escape(missing)
    g.times_shown = True
    stamp = iso(moment) or ""
    return Markup('<time datetime="{0}" title="{0} (UTC)" data-local="{1}">{2}</time>').format(
        stamp, precision, _TEXT[precision](stamp)
    )


def times_in(text: object) -> Markup:
    """Server text with its UTC times as ``<time>`` elements (everything else escaped)."""
    escaped = str(escape(text))

    def element(match) -> str:
        date, minutes, seconds = match.group(1), match.group(2), match.group(3)
        moment = f"{date}T{minutes}{seconds or ':00'}+00:00"
        if _moment(moment) is None:  # no such date: the text as it was
            return match.group(0)
        return str(when(moment, "second" if seconds else "minute"))

    # escaped above; what is added are ``when``'s own elements
    return Markup(_STAMP.sub(element, escaped))  # noqa: S704 # nosec B704


def viewer_zone() -> str:
    """The name of the zone the viewer reads times in; UTC when the browser named none
    (or none this server knows)."""
    zone = find_zone(request.cookies.get(ZONE_COOKIE))
    return zone_name(zone) if zone is not None else UTC_NAME


def times_shown() -> bool:
    """Whether the page rendered so far shows a time (so it states the zone)."""
    return bool(g.get("times_shown"))
