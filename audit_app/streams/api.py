"""``/api/v1/audit-streams``: log streams and their health (permission manageAuditStreams)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request
from marshmallow import Schema, fields, pre_dump, validate

from ..apidoc import list_of, operation
from ..audit.capture.context import mask_bodies_of
from ..audit.capture.hooks import audit_action
from ..audit.store.query import FilterSchema, IsoDateTime
from ..auth.principal import current_principal, require_permission
from ..ids import parse_object_id
from ..pagination import PageQuerySchema
from ..schemas import ObjectIdField, Text, UtcDateTime, load_body
from . import formats, service
from .destinations import DESTINATION_TYPES, FAILURE_CODES

bp = Blueprint("auditStreams", __name__)
MANAGE = "manageAuditStreams"
mask_bodies_of("api.auditStreams.", service.masked_body)  # destination URLs: credentials


class DestinationSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(DESTINATION_TYPES))
    url = fields.String(validate=validate.Length(max=2000))
    host = fields.String(validate=validate.Length(max=255))
    port = fields.Integer(validate=validate.Range(min=1, max=65535), strict=True)
    tls = fields.Boolean()


class SetBySchema(Schema):
    accountId = ObjectIdField(allow_none=True)
    apiKeyId = ObjectIdField(allow_none=True)
    at = UtcDateTime()


# what health says of the records the filters matched (how many, when; a stream filtered
# on one person dates their actions): null for those without viewAuditLog
HIDDEN = "null without viewAuditLog"


def _matched(what: str) -> dict[str, str]:
    return {"description": f"{what}; {HIDDEN} (it dates or counts the records matched)"}


class HealthSchema(Schema):
    state = fields.String(metadata={"enum": ["active", "paused", "failing"]})
    lagSeconds = fields.Float(
        allow_none=True,
        metadata=_matched(
            "how long the oldest record not yet delivered has waited (0: caught up, shown to all)"
        ),
    )
    lastDeliveredAt = fields.String(allow_none=True, metadata=_matched("the last delivery"))
    lastError = fields.String(
        allow_none=True, metadata={"description": "why the last attempt failed (not when)"}
    )
    lastErrorCode = fields.String(
        allow_none=True,
        metadata={
            "description": "why the last attempt failed, as a code: "
            + "; ".join(f"{code}: {meaning}" for code, meaning in FAILURE_CODES.items())
            + "; paused: the deliverer paused it (pausedReason says why); null: no failure",
            "enum": [*FAILURE_CODES, "paused", None],
        },
    )
    lastErrorDetail = fields.String(
        allow_none=True,
        metadata={"description": f"what the destination answered; {HIDDEN}"},
    )
    lastErrorAt = fields.String(allow_none=True, metadata=_matched("the last failed attempt"))
    pausedReason = fields.String(
        allow_none=True, metadata={"description": "why the deliverer paused it, if it did"}
    )
    failingSince = fields.String(allow_none=True, metadata=_matched("the first failed attempt"))
    nextAttemptAt = fields.String(allow_none=True, metadata=_matched("the next attempt"))
    delivered = fields.Integer(allow_none=True, metadata=_matched("records delivered"))
    failed = fields.Integer(allow_none=True, metadata=_matched("records not delivered yet"))
    truncated = fields.Integer(
        allow_none=True,
        metadata=_matched("records too large for any delivery, delivered cut down"),
    )
    lastTruncatedId = fields.String(allow_none=True, metadata={"description": HIDDEN})
    lastTruncatedAt = fields.String(allow_none=True, metadata={"description": HIDDEN})


class StreamSchema(HealthSchema):
    """A stream, and its health: in ``health``, and at the top level too, as PRODUCT.md
    names the fields (the times of failures and attempts in ``health`` only)."""

    class Meta:
        exclude = ("lastErrorAt", "failingSince", "nextAttemptAt", "lastTruncatedAt")

    id = ObjectIdField(attribute="_id")
    name = fields.String()
    destination = fields.Nested(DestinationSchema)
    format = fields.String()
    filters = fields.Dict(keys=fields.String(), values=fields.String())
    start = UtcDateTime()
    secretSet = fields.Method("_secret_set")
    createdAt = UtcDateTime()
    updatedAt = UtcDateTime()
    health = fields.Nested(
        HealthSchema,
        metadata={
            "description": "the state, and why; what dates or counts the records the filters "
            f"matched (lag, times, counts) is {HIDDEN}"
        },
    )
    destinationSetBy = fields.Nested(
        SetBySchema,
        allow_none=True,
        metadata={"description": "who answers for the destination: it delivers while they may"},
    )

    def _secret_set(self, stream: dict[str, Any]) -> bool:
        return bool(stream.get("secret"))

    @pre_dump
    def _with_health(self, stream: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """The stream's health, worked out once, as ``health`` and at the top level."""
        health = service.health_for(current_principal(), stream)
        destination = service.shown_destination(stream["destination"])
        return {**stream, **health, "health": health, "destination": destination}


class StreamCreatedSchema(StreamSchema):
    secret = fields.String(
        allow_none=True,
        metadata={"description": "the webhook's signing secret: shown in this answer only"},
    )


FILTER_NAMES = tuple(f.data_key or n for n, f in FilterSchema().load_fields.items())
Filters = fields.Dict(
    keys=fields.String(validate=validate.OneOf(FILTER_NAMES, error="Must be one of {choices}.")),
    values=fields.String(validate=validate.Length(max=200)),
    metadata={"description": "the audit log's filters: q (with its qualifiers), statusCode, ..."},
)


class StreamCreateSchema(Schema):
    name = Text(required=True, validate=validate.Length(max=200))
    destination = fields.Nested(DestinationSchema, required=True)
    format = fields.String(load_default="json", validate=validate.OneOf(formats.FORMATS))
    filters = Filters
    start = IsoDateTime(load_default=None, metadata={"description": "a past date to backfill"})
    token = fields.String(validate=validate.Length(min=1, max=500), load_only=True)
    paused = fields.Boolean(load_default=False)


class StreamUpdateSchema(Schema):
    name = Text(validate=validate.Length(max=200))
    destination = fields.Nested(DestinationSchema)
    format = fields.String(validate=validate.OneOf(formats.FORMATS))
    filters = Filters
    token = fields.String(validate=validate.Length(min=1, max=500), load_only=True)
    paused = fields.Boolean()
    rotateSecret = fields.Boolean()


class TestResultSchema(Schema):
    delivered = fields.Boolean(required=True)
    error = fields.String(allow_none=True)
    errorCode = fields.String(
        allow_none=True,
        metadata={
            "description": "why it was not delivered, as health's lastErrorCode says it",
            "enum": [*FAILURE_CODES, None],
        },
    )


StreamListSchema = list_of("AuditStreamList", StreamSchema)


def _stream_id(raw: str):
    return parse_object_id(raw, "streamId", status=404, what="Audit stream")


def _dumped(stream: dict[str, Any], secret: str | None = None) -> dict[str, Any]:
    shown = StreamSchema().dump(stream)
    if secret is not None:
        shown["secret"] = secret
    return shown


@bp.get("/audit-streams")
@audit_action("auditStream.list")
@operation(
    "List log streams and their health, newest first, a page at a time",
    response=(200, StreamListSchema),
    errors=(400, 401, 403),
    query=PageQuerySchema,
)
@require_permission(MANAGE)
def list_streams():
    page = service.list_streams(current_principal(), request.args)
    return jsonify(items=[_dumped(s) for s in page.items], nextCursor=page.next_cursor)


@bp.post("/audit-streams")
@audit_action("auditStream.create")
@operation(
    "Create a log stream (a webhook's secret is in this answer only)",
    body=StreamCreateSchema,
    response=(201, StreamCreatedSchema),
    errors=(400, 401, 403, 409, 415, 422),
)
@require_permission(MANAGE)
def create_stream():
    data = load_body(StreamCreateSchema())
    stream, secret = service.create_stream(current_principal(), data)
    return jsonify(_dumped(stream, secret)), 201


@bp.get("/audit-streams/<streamId>")
@audit_action("auditStream.view")
@operation("Read a log stream and its health", response=(200, StreamSchema), errors=(401, 403, 404))
@require_permission(MANAGE)
def get_stream(streamId):
    return jsonify(_dumped(service.find_stream(current_principal(), _stream_id(streamId))))


@bp.patch("/audit-streams/<streamId>")
@audit_action("auditStream.update")
@operation(
    "Change a log stream: name, destination, format, filters, pause, secret",
    body=StreamUpdateSchema,
    response=(200, StreamCreatedSchema),
    errors=(400, 401, 403, 404, 415, 422),
)
@require_permission(MANAGE)
def update_stream(streamId):
    stream_id = _stream_id(streamId)
    data = load_body(StreamUpdateSchema())
    stream, secret = service.update_stream(current_principal(), stream_id, data)
    return jsonify(_dumped(stream, secret))


@bp.delete("/audit-streams/<streamId>")
@audit_action("auditStream.delete")
@operation("Delete a log stream", response=(204, None), errors=(401, 403, 404))
@require_permission(MANAGE)
def delete_stream(streamId):
    service.delete_stream(current_principal(), _stream_id(streamId))
    return "", 204


@bp.post("/audit-streams/<streamId>/test")
@audit_action("auditStream.test")
@operation(
    "Send one test event to the stream's destination now",
    response=(200, TestResultSchema),
    errors=(401, 403, 404),
)
@require_permission(MANAGE)
def test_stream(streamId):
    result = service.send_test_event(current_principal(), _stream_id(streamId))
    return jsonify(TestResultSchema().dump(result))
