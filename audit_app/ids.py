"""ObjectIds and dates as the API shows them: 24-hex strings and ISO 8601 UTC."""

from __future__ import annotations

import functools
import ipaddress
from datetime import UTC, datetime, timedelta

from bson import ObjectId
from bson.errors import InvalidId

from .errors import ApiError, bad_request


def parse_object_id(value, field: str, *, status: int = 400, what: str | None = None) -> ObjectId:
    """Turn a 24-hex string into an ObjectId, or raise an error that names the field.

    Path segments use ``status=404`` (an id that cannot exist is simply not found); query
    parameters and bodies use 400 so the client learns which value was malformed.
    """
    if isinstance(value, str) and len(value) == 24:
        try:
            return ObjectId(value)
        except (InvalidId, TypeError):
            pass
    if status == 404:
        raise ApiError(404, "not_found", f"{what or field} not found.", field)
    raise bad_request(f"{field} must be a 24-character hexadecimal ObjectId.", field)


def utcnow() -> datetime:
    """Now in UTC at millisecond precision, which is what BSON keeps."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def iso(value: datetime | None) -> str | None:
    """Format a date as ISO 8601 UTC with milliseconds and a ``Z``."""
    if value is None:
        return None
    if value.tzinfo is not None and value.utcoffset():
        value = value.astimezone(UTC)
    return (  # by hand: strftime costs more than the rest of an exported row's dates
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:"
        f"{value.minute:02d}:{value.second:02d}.{value.microsecond // 1000:03d}Z"
    )


@functools.lru_cache(maxsize=4096)  # the same few addresses, request after request
def canonical_ip(text: str | None) -> str | None:
    """An address as records keep it and ``ip:`` searches it: IPv6 compressed and lower
    case, an IPv4 address mapped into IPv6 (a dual-stack server's ``::ffff:a.b.c.d``) as
    plain IPv4; anything else unchanged."""
    if not text:
        return text
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return address.compressed


AUTH_LABELS = {
    "jwt": "JWT",
    "apiKey": "API key",
    "session": "Web session",
    "cli": "Command line",
    "staff": "Platform staff",
    "none": "Unauthenticated",
}


def auth_label(auth_type: str | None) -> str:
    """How the UI names an auth type (the stored value is the contract's)."""
    return AUTH_LABELS.get(auth_type or "none", auth_type or "")


def readable(value: datetime | None) -> str:
    """A date as people read it, in UTC and saying so: ``2026-11-25 17:21 UTC``."""
    stamp = iso(value)
    return f"{stamp[:10]} {stamp[11:16]} UTC" if stamp else "never"


def floor_to(moment: datetime, step: timedelta) -> datetime:
    """The start of the ``step``-long slot (an hour, a day, a sealing window) a moment falls
    in, counted from the epoch in UTC."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((moment - epoch) // step) * step
