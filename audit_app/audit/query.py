"""The audit log query: parameters, their validation, filters and the keyset cursor.

One builder serves the API list, the export and the web list. The organization is never a
parameter: the repository adds it from the principal. Search text is always literal
(``re.escape``), case-insensitive and capped in length.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from bson import ObjectId
from itsdangerous import BadSignature, URLSafeSerializer
from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema
from werkzeug.datastructures import MultiDict

from ..db import Document
from ..errors import bad_request
from ..schemas import ObjectIdField

MAX_SEARCH_LENGTH = 200
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CLI")
AUTH_TYPES = ("jwt", "apiKey", "session", "none")
_STATUS = re.compile(r"^(?:[1-5][0-9]{2}|[1-5]xx)$", re.IGNORECASE)
_RESOURCE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,39}$")


class IsoDateTime(fields.Field[datetime]):
    """An ISO 8601 date or date-time; without an offset it is taken as UTC."""

    default_error_messages = {
        "invalid": "Must be an ISO 8601 date or date-time, e.g. 2026-11-25 or 2026-11-25T17:00:00Z."
    }

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> datetime:
        if not isinstance(value, str) or not 10 <= len(value) <= 40:
            raise self.make_error("invalid")
        text = value.strip().replace("z", "Z")
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            parsed = parsed.astimezone(UTC)
        except (ValueError, OverflowError):  # 0001-01-01T00:00+14:00 is before year 1
            raise self.make_error("invalid") from None
        if not 1970 <= parsed.year <= 9999:
            raise ValidationError("Must be a date between the years 1970 and 9999.")
        return parsed


_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")


def _no_controls(value: str) -> None:
    """A NUL or another control character cannot be searched for (MongoDB refuses it)."""
    if _CONTROLS.search(value):
        raise ValidationError("Must not contain control characters (such as NUL or a newline).")


class FilterSchema(Schema):
    """The filters shared by the list, the export and the web page."""

    q = fields.String(validate=[validate.Length(min=1, max=MAX_SEARCH_LENGTH), _no_controls])
    path = fields.String(validate=[validate.Length(min=1, max=MAX_SEARCH_LENGTH), _no_controls])
    accountId = ObjectIdField()
    workspaceId = ObjectIdField()
    apiKeyId = ObjectIdField()
    method = fields.String(validate=validate.OneOf(METHODS, error="Must be one of {choices}."))
    statusCode = fields.String()
    authType = fields.String(validate=validate.OneOf(AUTH_TYPES, error="Must be one of {choices}."))
    resource = fields.String()
    from_ = IsoDateTime(data_key="from")
    to = IsoDateTime()

    @validates("statusCode")
    def _status(self, value: str, **kwargs: Any) -> None:
        if not _STATUS.fullmatch(value):
            raise ValidationError("Must be a status code such as 404 or a class such as 4xx.")

    @validates("resource")
    def _resource(self, value: str, **kwargs: Any) -> None:
        if not _RESOURCE.fullmatch(value):
            raise ValidationError("Must be a controller name such as pathways or apiKeys.")

    @validates_schema
    def _range(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        if data.get("from_") and data.get("to") and data["from_"] > data["to"]:
            raise ValidationError("Must not be after 'to'.", "from")


class ListQuerySchema(FilterSchema):
    limit = fields.Integer(
        load_default=DEFAULT_LIMIT,
        validate=validate.Range(min=1, max=MAX_LIMIT, error="Must be between 1 and 200."),
        strict=False,
    )
    cursor = fields.String(validate=validate.Length(max=500))


class WebListQuerySchema(ListQuerySchema):
    """The web list also pages towards newer records."""

    before = fields.String(validate=validate.Length(max=500))


class ExportQuerySchema(FilterSchema):
    format = fields.String(
        required=True, validate=validate.OneOf(("csv", "ndjson"), error="Must be csv or ndjson.")
    )


ID_FIELDS = ("accountId", "apiKeyId", "workspaceId")  # also the order of index preference
EQUALITY_FIELDS = (*ID_FIELDS, "method", "authType", "resource")


@dataclass
class AuditQuery:
    """Validated filters and the keyset position of a page.

    ``branches()`` is the MongoDB filter (without the organization, which the repository
    adds) as one or more branches, each answerable by walking one index newest first:

    - the equality filters (ids, method, auth type, resource, status code or class) stay
      at the top level, where the repository picks the index to walk (ESR: equality,
      then the sort on ``createdAt, _id``, then the range);
    - ``createdAt`` is one top-level range holding the date filters *and* the keyset
      position, so a page N walks from its cursor, not from the newest record; the
      tie-break on ``_id`` for records of the same millisecond sits beside it;
    - a 24-hex search is an id: one branch per id field (account, workspace, API key),
      each an equality on its own index; the repository merges the branches, each
      stopped after ``limit + 1`` entries. It is never OR-ed with a path regex, which
      would make the server scan every key of the organization.
    """

    filters: dict[str, Any] = field(default_factory=dict)
    limit: int = DEFAULT_LIMIT
    after: tuple[datetime, ObjectId] | None = None
    before: tuple[datetime, ObjectId] | None = None

    def branches(self) -> list[Document]:
        """The filter branches; an empty list when the filters cannot match anything."""
        f = self.filters
        base: Document = {name: f[name] for name in EQUALITY_FIELDS if name in f}
        if "statusCode" in f:
            base["statusCode"] = status_clause(f["statusCode"])
        created = self._created_range()
        if created:
            base["createdAt"] = created
        others: list[Document] = []
        tie_break = self._tie_break()
        if tie_break:
            others.append(tie_break)
        if "path" in f:
            others.append({"path": literal_regex(f["path"])})
        search = f.get("q", "").strip()
        searched_id = _as_id(search)
        if search and searched_id is None:
            others.append({"path": literal_regex(search)})
        if others:
            base["$and"] = others
        if searched_id is None:
            return [base]
        if any(base.get(name) == searched_id for name in ID_FIELDS):
            return [base]  # a filter pins the searched id already: the rest are subsets
        # one branch per id field the filters leave free, led by the searched field (the
        # repository walks the index of a branch's leading id)
        return [{name: searched_id, **base} for name in ID_FIELDS if name not in base]

    def _created_range(self) -> dict[str, datetime]:
        f = self.filters
        lower, upper = f.get("from_"), f.get("to")
        if self.after is not None:
            upper = self.after[0] if upper is None else min(upper, self.after[0])
        if self.before is not None:
            lower = self.before[0] if lower is None else max(lower, self.before[0])
        created: dict[str, datetime] = {}
        if lower is not None:
            created["$gte"] = lower
        if upper is not None:
            created["$lte"] = upper
        return created

    def _tie_break(self) -> Document | None:
        """Within the position's millisecond, only records past its ``_id``."""
        if self.after is not None:
            at, record_id = self.after
            return {"$or": [{"createdAt": {"$lt": at}}, {"_id": {"$lt": record_id}}]}
        if self.before is not None:
            at, record_id = self.before
            return {"$or": [{"createdAt": {"$gt": at}}, {"_id": {"$gt": record_id}}]}
        return None

    def fingerprint(self) -> str:
        """A short hash of the filters, so a cursor cannot be reused with other filters."""
        canonical = json.dumps(self.filters, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _as_id(text: str) -> ObjectId | None:
    return ObjectId(text) if len(text) == 24 and ObjectId.is_valid(text) else None


def literal_regex(text: str) -> dict[str, str]:
    return {"$regex": re.escape(text), "$options": "i"}


def status_clause(value: str) -> int | dict[str, list[int]]:
    """An exact code, or a class as the list of its codes.

    A class is ``$in`` of its 100 codes, not a range: with the status index that is 100
    point intervals before the sort key, which MongoDB merges in order ("explode for
    sort", up to 200 points) instead of sorting every matching record in memory.
    """
    if value[1:].lower() == "xx":
        base = int(value[0]) * 100
        return {"$in": list(range(base, base + 100))}
    return int(value)


def parse_query(args: MultiDict[str, str], schema: Schema) -> dict[str, Any]:
    """Validate query parameters (a MultiDict) or raise a 400 that names the parameter."""
    repeated = [key for key in args if len(args.getlist(key)) > 1]
    if repeated:
        raise bad_request(f"{repeated[0]}: give this parameter once.", repeated[0])
    try:
        return cast("dict[str, Any]", schema.load(args.to_dict()))
    except ValidationError as error:
        errors = error.messages if isinstance(error.messages, dict) else {"_schema": error.messages}
        name, messages = next(iter(errors.items()))
        message = messages[0] if isinstance(messages, list) else str(messages)
        if message == "Unknown field.":
            accepted = sorted(f.data_key or n for n, f in schema.load_fields.items())
            message = f"Unknown parameter; accepted: {', '.join(accepted)}."
        raise bad_request(f"{name}: {message}", name) from None


class CursorCodec:
    """Opaque, signed page cursors bound to one organization and one set of filters."""

    def __init__(self, secret_key: str) -> None:
        self._serializer = URLSafeSerializer(secret_key, salt="audit-log-cursor")

    def encode(
        self, organization_id: ObjectId, query: AuditQuery, record: Mapping[str, Any]
    ) -> str:
        at = record["createdAt"]
        millis = round(at.timestamp() * 1000)  # int() truncated 9 ms to 8.999 -> 8
        payload = [str(organization_id), query.fingerprint(), millis, str(record["_id"])]
        return self._serializer.dumps(payload)

    def decode(
        self, token: str, organization_id: ObjectId, query: AuditQuery, field_name: str = "cursor"
    ) -> tuple[datetime, ObjectId]:
        try:
            org, fingerprint, millis, record_id = self._serializer.loads(token)
            at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(millis))
            after = (at, ObjectId(record_id))
        except (BadSignature, ValueError, TypeError, OverflowError):
            raise bad_request(
                f"{field_name}: not a cursor this server issued; use nextCursor as returned.",
                field_name,
            ) from None
        if org != str(organization_id) or fingerprint != query.fingerprint():
            raise bad_request(
                f"{field_name}: it belongs to another query; keep the filters of the first page.",
                field_name,
            )
        return after
