"""``changes``: what a request changed in a platform object, field by field.

A service reads the object before and after its change (or builds the readable view of
what it created or deleted) and calls ``record_changes``; the request's record then carries
``[{field, from, to}]`` (list fields also ``added`` and ``removed``). Values are what a
reader understands (a role's name, not only its id) and are redacted like request bodies:
a field whose name looks secret shows the redaction marker, and secrets inside text are
masked (docs/audit-schema.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from bson import ObjectId

from ...ids import iso
from .context import note_changes, note_target
from .record import redactor
from .redaction import REDACTED

Values = Mapping[str, Any]


def diff(before: Values | None, after: Values | None, fields: Sequence[str]) -> list[dict]:
    """The entries for ``fields`` that differ between two readable views of one object.

    ``before=None`` is a creation (every non-empty field, from null), ``after=None`` a
    deletion (a snapshot of what was deleted, to null).
    """
    clean = redactor()
    entries = []
    for name in fields:
        old = _plain(before.get(name)) if before is not None else None
        new = _plain(after.get(name)) if after is not None else None
        if old == new or (before is None and new in (None, "", [])):
            continue
        if after is None and old in (None, "", []):
            continue
        if clean.is_secret(name):
            entry = {"field": name, "from": _masked(old), "to": _masked(new)}
        else:
            entry = {"field": name, "from": clean.clean(old), "to": clean.clean(new)}
            if _scalars(old) and _scalars(new) and (old or new):
                was, now = set(map(str, old or [])), set(map(str, new or []))
                entry["added"] = sorted(now - was)
                entry["removed"] = sorted(was - now)
        entries.append(entry)
    return entries


Target = tuple[str, ObjectId | None, str | None]  # (type, id, name as it is now)


def record_changes(
    before: Values | None,
    after: Values | None,
    fields: Sequence[str],
    *,
    target: Target | Sequence[Target] | None = None,
) -> None:
    """Note the differences for the request's (or the command's) record, and what it acted
    on (``targets``): one call, so a change never goes without the object it changed."""
    note_changes(diff(before, after, fields))
    if target is None:
        return
    targets = [target] if isinstance(target[0], str) else target
    for kind, object_id, name in cast("Sequence[Target]", targets):
        note_target(kind, object_id, name)


def _scalars(value: Any) -> bool:
    """A list of names or numbers (or nothing): its changes read as added and removed."""
    if value is None:
        return True
    return isinstance(value, list) and all(isinstance(item, str | int) for item in value)


def _masked(value: Any) -> Any:
    return None if value is None else REDACTED


def _plain(value: Any) -> Any:
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, tuple | list | set | frozenset):
        items = [_plain(item) for item in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    return value
