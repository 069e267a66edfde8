"""How audit records are shown: the list item, the full record, and JSON-safe values."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bson import ObjectId
from marshmallow import Schema, fields, missing
from marshmallow.utils import ensure_text_type

from ..ids import iso
from ..schemas import ObjectIdField, UtcDateTime
from .capture.redaction import unescape


def jsonable(value):
    """Make a stored value plain JSON: ids and dates as text, NaN and infinities as text."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


class AuditLogSchema(Schema):
    """A list item: everything but the request details."""

    id = ObjectIdField(attribute="_id")
    organizationId = ObjectIdField(allow_none=True)
    accountId = ObjectIdField(allow_none=True)
    accountEmail = fields.String(allow_none=True)
    apiKeyId = ObjectIdField(allow_none=True)
    apiKeyName = fields.String(allow_none=True)
    workspaceId = ObjectIdField(allow_none=True)
    authType = fields.String()
    credentialId = fields.String(allow_none=True)
    action = fields.String(allow_none=True)
    resource = fields.String()
    method = fields.String()
    path = fields.String()
    route = fields.String(allow_none=True)
    statusCode = fields.Integer()
    createdAt = UtcDateTime()
    durationMs = fields.Float(allow_none=True)
    ip = fields.String(allow_none=True)
    userAgent = fields.String(allow_none=True)
    requestId = fields.String(allow_none=True)
    response = fields.Method(
        "_response",
        metadata={
            "type": "object",
            "description": "{errorCode, errorMessage} for a 4xx or 5xx; {id} of what it created",
        },
    )
    changes = fields.Method(
        "_changes",
        metadata={
            "type": "array",
            "items": {"type": "object"},
            "description": "[{field, from, to}] of a change to a platform object; absent if none",
        },
    )

    outcome = fields.Method(
        "_outcome",
        metadata={
            "type": "string",
            "enum": ["success", "failure"],
            "description": "whether the request did what it asked (not only its status)",
        },
    )
    targets = fields.Method(
        "_targets",
        metadata={
            "type": "array",
            "items": {"type": "object"},
            "description": "[{type, id, name}] of each object the request acted on (member, "
            "role, apiKey, workspace, pathway, invitation, auditStream, organization, "
            "auditLog); names as they were at the time",
        },
    )
    matchedAs = fields.Method(
        "_matched",
        metadata={
            "type": "array",
            "items": {"type": "string", "enum": ["actor", "apiKey", "workspace", "target"]},
            "description": "in a search by id: how the record involves it (by the actor, "
            "the API key or in the workspace, or acting on it as a target); absent otherwise",
        },
    )

    def _response(self, record):
        return jsonable(record.get("response") or {})

    def _outcome(self, record):
        return outcome_of_record(record)

    def _targets(self, record):
        return jsonable(record.get("targets") or [])

    def _matched(self, record):
        return list(record["matchedAs"]) if "matchedAs" in record else missing

    def _changes(self, record):
        return jsonable(unescape(record["changes"])) if "changes" in record else missing


class AuditLogDetailSchema(AuditLogSchema):
    """One record with its full request details, keys shown as the client sent them."""

    request = fields.Method("_request", metadata={"type": "object"})

    def _request(self, record):
        return jsonable(unescape(record.get("request") or {}))


class AuditLogPageSchema(Schema):
    items = fields.List(fields.Nested(AuditLogSchema))
    nextCursor = fields.String(allow_none=True)


# The same output without marshmallow's per-field machinery, for the hot paths (a page of
# the list, every row of an export): read off AuditLogSchema's declared fields, so the two
# cannot drift; tests/test_embedded_store.py checks both give the same dicts.


def _converter(field: fields.Field):
    if isinstance(field, fields.Method):  # response, changes
        return lambda value: jsonable(unescape(value))
    if isinstance(field, ObjectIdField):
        return lambda value: None if value is None else str(value)
    if isinstance(field, UtcDateTime):
        return iso
    if isinstance(field, fields.Integer):
        return lambda value: None if value is None else int(value)
    if isinstance(field, fields.Float):
        return lambda value: None if value is None else float(value)
    if isinstance(field, fields.String):
        return lambda value: None if value is None else ensure_text_type(value)
    raise TypeError(f"no fast form for {type(field).__name__}")


_LIST_FIELDS = [
    (name, field.attribute or name, _converter(field))
    for name, field in AuditLogSchema().dump_fields.items()
]


def outcome_of_record(record: Mapping[str, Any]) -> str:
    """A record's ``outcome``; one stored before outcomes were (no field) by its status."""
    stored = record.get("outcome")
    if stored in ("success", "failure"):
        return str(stored)
    status = record.get("statusCode")
    return "failure" if isinstance(status, int) and status >= 400 else "success"


def present(record: dict, *, details: bool = False) -> dict:
    """``AuditLogSchema().dump(record)`` (``details``: the detail schema's), only faster."""
    shown = {name: convert(record[key]) for name, key, convert in _LIST_FIELDS if key in record}
    shown.setdefault("response", {})
    shown.setdefault("targets", [])
    shown["outcome"] = outcome_of_record(record)
    if details:
        shown["request"] = jsonable(unescape(record.get("request") or {}))
    return shown


class IntegrityProblemSchema(Schema):
    type = fields.String(required=True)
    message = fields.String(required=True)
    recordId = fields.String()
    acknowledged = fields.Boolean(
        metadata={"description": "true: an operator acknowledged it (acknowledge-integrity)"}
    )


class AcknowledgementSchema(Schema):
    at = fields.String(required=True, metadata={"format": "date-time"})
    by = fields.String(required=True, metadata={"description": "the operator"})
    reason = fields.String(required=True)
    problems = fields.Integer(required=True, metadata={"description": "how many it covered"})


class FailedWindowSchema(Schema):
    sequence = fields.Integer(required=True)
    windowStart = fields.String(required=True, metadata={"format": "date-time"})
    windowEnd = fields.String(required=True, metadata={"format": "date-time"})
    status = fields.String(required=True, metadata={"enum": ["failed"]})
    problems = fields.List(fields.Nested(IntegrityProblemSchema), required=True)


class IntegritySchema(Schema):
    """The state of the tamper evidence, as ``sealing.integrity_state`` returns it."""

    state = fields.String(
        required=True,
        metadata={
            "enum": ["verified", "failed", "acknowledged", "unsealed"],
            "description": "failed stays until a full verification passes or an operator "
            "acknowledges it; acknowledged: every problem found was acknowledged",
        },
    )
    verifiedUpTo = fields.String(allow_none=True)
    checkedWindows = fields.Integer()
    unsealedRecords = fields.Integer()
    problems = fields.List(
        fields.Nested(IntegrityProblemSchema),
        metadata={"description": "problems of the chain as a whole (a digest deleted, ...)"},
    )
    failedWindows = fields.List(
        fields.Nested(FailedWindowSchema),
        metadata={"description": "sealed windows whose records no longer match their digest"},
    )
    scope = fields.String(
        metadata={
            "enum": ["full", "recent", "error"],
            "description": "what the last verification checked (every window, the newest)",
        }
    )
    checkedAt = fields.String(metadata={"format": "date-time"})
    failingSince = fields.String(allow_none=True, metadata={"format": "date-time"})
    lastFullAt = fields.String(
        allow_none=True,
        metadata={"format": "date-time", "description": "when every window last was verified"},
    )
    acknowledgements = fields.List(
        fields.Nested(AcknowledgementSchema),
        metadata={"description": "the acknowledgements of the problems listed"},
    )
    verifiableLog = fields.Nested(
        "VerifiableLogSchema",
        metadata={
            "description": "the verifiable log's latest signed checkpoint (docs/integrity.md)"
        },
    )


class VerifiableLogSchema(Schema):
    treeSize = fields.Integer(metadata={"description": "records in the signed tree"})
    rootHash = fields.String(allow_none=True)
    checkpointAt = fields.String(allow_none=True, metadata={"format": "date-time"})
    publicKey = fields.String(metadata={"description": "the key that signs checkpoints"})
    timestamp = fields.Nested(
        "CheckpointTimestampSchema",
        allow_none=True,
        metadata={"description": "the checkpoint's RFC 3161 timestamp (AUDIT_TSA_URL), or null"},
    )


class CheckpointTimestampSchema(Schema):
    authority = fields.String(metadata={"description": "the timestamp authority's URL"})
    genTime = fields.String(metadata={"format": "date-time", "description": "its time"})
    token = fields.String(metadata={"description": "base64 of the DER TimeStampResp"})


class BucketSchema(Schema):
    start = fields.String(required=True, metadata={"format": "date-time"})
    end = fields.String(
        allow_none=True,
        metadata={
            "format": "date-time",
            "description": "where the bucket ends (the next one's start; a day of daylight "
            "saving time change lasts 23 or 25 hours); null past 9999-12-31",
        },
    )
    count = fields.Integer(required=True)
    statusClasses = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)


class HistogramSchema(Schema):
    """``GET /api/v1/audit-logs/histogram``: buckets of the filtered set, by status class."""

    interval = fields.String(required=True, metadata={"enum": ["hour", "day"]})
    timeZone = fields.String(
        metadata={"description": "the zone whose days or hours the buckets are (tz)"}
    )
    from_ = fields.String(data_key="from", attribute="from", metadata={"format": "date-time"})
    to = fields.String(metadata={"format": "date-time"})
    buckets = fields.List(fields.Nested(BucketSchema), required=True)
    partial_ = fields.Boolean(
        data_key="partial",
        attribute="partial",
        required=True,
        metadata={"description": "true when the range held more records than are counted"},
    )
    countedFrom = fields.String(
        allow_none=True,
        metadata={"description": "with partial: the counts are whole from this moment on"},
    )
    source = fields.String(
        metadata={
            "enum": ["records", "counters"],
            "description": "records: counted by walking the records (up to a cap); counters: "
            "an unfiltered view past the cap, from the counts kept at write time (whole hours)",
        }
    )


class CheckpointSchema(Schema):
    """The latest signed checkpoint of the organization's verifiable log."""

    origin = fields.String(required=True, metadata={"description": "<AUDIT_LOG_ORIGIN>/<orgId>"})
    publicKey = fields.String(
        required=True, metadata={"description": "the Ed25519 note key that signs checkpoints"}
    )
    treeSize = fields.Integer(required=True)
    rootHash = fields.String(allow_none=True, metadata={"description": "base64 SHA-256"})
    checkpoint = fields.String(allow_none=True, metadata={"description": "C2SP signed note"})
    createdAt = fields.String(allow_none=True)
    timestamp = fields.Nested(
        "CheckpointTimestampSchema",
        allow_none=True,
        metadata={"description": "the checkpoint's RFC 3161 timestamp (AUDIT_TSA_URL), or null"},
    )


class RecordProofSchema(Schema):
    """A record with its RFC 9162 inclusion proof: what ``python -m audit_app.verifier``
    checks offline."""

    format = fields.String(required=True)
    origin = fields.String(required=True)
    publicKey = fields.String(required=True)
    leafIndex = fields.Integer(required=True)
    treeSize = fields.Integer(required=True)
    inclusionProof = fields.List(fields.String(), required=True)
    checkpoint = fields.String(required=True)
    proof = fields.String(required=True, metadata={"description": "c2sp.org/tlog-proof@v1"})
    record = fields.Dict(
        required=True, metadata={"description": "the record in canonical Extended JSON"}
    )
    timestamp = fields.Nested(
        "CheckpointTimestampSchema",
        metadata={"description": "the checkpoint's RFC 3161 timestamp, when it has one"},
    )


class ConsistencyProofSchema(Schema):
    origin = fields.String(required=True)
    proof = fields.List(fields.String(), required=True)
    checkpoint = fields.String(allow_none=True)

    class Meta:
        include = {"from": fields.Integer(required=True), "to": fields.Integer(required=True)}
