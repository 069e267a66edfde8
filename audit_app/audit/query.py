"""The audit log query: parameters, their validation, filters and the keyset cursor.

One builder serves the API list, the export and the web list. The organization is never a
parameter: the repository adds it from the principal. Search text is always literal
(``re.escape``), case-insensitive and capped in length.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bson import ObjectId
from itsdangerous import BadSignature, URLSafeSerializer
from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from ..errors import bad_request
from ..schemas import ObjectIdField

MAX_SEARCH_LENGTH = 200
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CLI")
AUTH_TYPES = ("jwt", "apiKey", "session", "none")
_STATUS = re.compile(r"^(?:[1-5][0-9]{2}|[1-5]xx)$", re.IGNORECASE)
_RESOURCE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,39}$")


class IsoDateTime(fields.Field):
    """An ISO 8601 date or date-time; without an offset it is taken as UTC."""

    default_error_messages = {
        "invalid": "Must be an ISO 8601 date or date-time, e.g. 2026-11-25 or 2026-11-25T17:00:00Z."
    }

    def _deserialize(self, value, attr, data, **kwargs):
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
    def _status(self, value, **kwargs):
        if not _STATUS.match(value):
            raise ValidationError("Must be a status code such as 404 or a class such as 4xx.")

    @validates("resource")
    def _resource(self, value, **kwargs):
        if not _RESOURCE.match(value):
            raise ValidationError("Must be a controller name such as pathways or apiKeys.")

    @validates_schema
    def _range(self, data, **kwargs):
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


@dataclass
class AuditQuery:
    """Validated filters; ``criteria()`` is the MongoDB filter without the organization."""

    filters: dict = field(default_factory=dict)
    limit: int = DEFAULT_LIMIT
    after: tuple[datetime, ObjectId] | None = None
    before: tuple[datetime, ObjectId] | None = None

    def criteria(self) -> dict:
        f = self.filters
        clauses: list[dict] = []
        for name in ("accountId", "workspaceId", "apiKeyId", "method", "authType", "resource"):
            if name in f:
                clauses.append({name: f[name]})
        if "path" in f:
            clauses.append({"path": literal_regex(f["path"])})
        if "q" in f:
            clauses.append(search_clause(f["q"]))
        if "statusCode" in f:
            clauses.append({"statusCode": status_clause(f["statusCode"])})
        created = {}
        if f.get("from_"):
            created["$gte"] = f["from_"]
        if f.get("to"):
            created["$lte"] = f["to"]
        if created:
            clauses.append({"createdAt": created})
        if self.after is not None:
            at, record_id = self.after
            clauses.append(
                {"$or": [{"createdAt": {"$lt": at}}, {"createdAt": at, "_id": {"$lt": record_id}}]}
            )
        if self.before is not None:
            at, record_id = self.before
            clauses.append(
                {"$or": [{"createdAt": {"$gt": at}}, {"createdAt": at, "_id": {"$gt": record_id}}]}
            )
        if not clauses:
            return {}
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}

    def fingerprint(self) -> str:
        """A short hash of the filters, so a cursor cannot be reused with other filters."""
        canonical = json.dumps(self.filters, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def literal_regex(text: str) -> dict:
    return {"$regex": re.escape(text), "$options": "i"}


def search_clause(text: str) -> dict:
    """The search bar: an ObjectId finds account, workspace, API key or path; text, the path."""
    text = text.strip()
    if len(text) == 24 and ObjectId.is_valid(text):
        oid = ObjectId(text)
        return {
            "$or": [
                {"accountId": oid},
                {"workspaceId": oid},
                {"apiKeyId": oid},
                {"path": literal_regex(text)},
            ]
        }
    return {"path": literal_regex(text)}


def status_clause(value: str):
    if value[1:].lower() == "xx":
        base = int(value[0]) * 100
        return {"$gte": base, "$lt": base + 100}
    return int(value)


def parse_query(args, schema: Schema) -> dict:
    """Validate query parameters (a MultiDict) or raise a 400 that names the parameter."""
    repeated = [key for key in args if len(args.getlist(key)) > 1]
    if repeated:
        raise bad_request(f"{repeated[0]}: give this parameter once.", repeated[0])
    try:
        return schema.load(args.to_dict())
    except ValidationError as error:
        name, messages = next(iter(error.messages.items()))
        message = messages[0] if isinstance(messages, list) else str(messages)
        if message == "Unknown field.":
            accepted = sorted(f.data_key or n for n, f in schema.load_fields.items())
            message = f"Unknown parameter; accepted: {', '.join(accepted)}."
        raise bad_request(f"{name}: {message}", name) from None


class CursorCodec:
    """Opaque, signed page cursors bound to one organization and one set of filters."""

    def __init__(self, secret_key: str):
        self._serializer = URLSafeSerializer(secret_key, salt="audit-log-cursor")

    def encode(self, organization_id: ObjectId, query: AuditQuery, record: dict) -> str:
        at = record["createdAt"]
        millis = round(at.timestamp() * 1000)  # int() truncated 9 ms to 8.999 -> 8
        payload = [str(organization_id), query.fingerprint(), millis, str(record["_id"])]
        return self._serializer.dumps(payload)

    def decode(
        self, token: str, organization_id: ObjectId, query: AuditQuery, field_name: str = "cursor"
    ):
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
