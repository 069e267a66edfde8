"""``/api/v1/audit-logs``: the list, one record, and the export, for ``viewAuditLog`` holders."""

from flask import Blueprint, Response, jsonify, request

from ..apidoc import EXPORT, operation
from ..auth.principal import current_principal, require_permission
from ..db import get_audit_db
from ..errors import bad_request, not_found
from ..ids import parse_object_id
from ..organizations.permissions import VIEW_AUDIT_LOG
from . import export, proofs, service
from .capture.hooks import audit_action
from .integrity.sealing import integrity_state
from .schemas import (
    AuditLogDetailSchema,
    AuditLogPageSchema,
    CheckpointSchema,
    ConsistencyProofSchema,
    HistogramSchema,
    IntegritySchema,
    RecordProofSchema,
    present,
)
from .store.query import ExportQuerySchema, HistogramQuerySchema, ListQuerySchema

bp = Blueprint("auditLogs", __name__)


@bp.get("/audit-logs")
@audit_action("auditLog.list")
@operation(
    "The audit log, newest first, a page at a time",
    response=(200, AuditLogPageSchema),
    errors=(400, 401, 403, 503),
    query=ListQuerySchema,
)
@require_permission(VIEW_AUDIT_LOG)
def list_audit_logs():
    page = service.list_page(current_principal(), request.args)
    return jsonify(items=[present(item) for item in page.items], nextCursor=page.next_cursor)


@bp.get("/audit-logs/histogram")
@audit_action("auditLog.histogram")
@operation(
    "Requests per hour or day for the filtered set, by status class, at bounded cost",
    response=(200, HistogramSchema),
    errors=(400, 401, 403, 503),
    query=HistogramQuerySchema,
)
@require_permission(VIEW_AUDIT_LOG)
def audit_log_histogram():
    return jsonify(HistogramSchema().dump(service.histogram(current_principal(), request.args)))


@bp.get("/audit-logs/export")
@audit_action("auditLog.export")
@operation(
    "The filtered audit log as CSV or NDJSON, streamed",
    response=(200, EXPORT),
    errors=(400, 401, 403),
    query=ExportQuerySchema,
)
@require_permission(VIEW_AUDIT_LOG)
def export_audit_logs():
    """Stream the filtered set; the app holds one batch of records at a time."""
    fmt, query, records, organization = service.open_export(current_principal(), request.args)
    return export.streamed_response(fmt, query, records, organization)


@bp.get("/audit-logs/integrity")
@audit_action("auditLog.viewIntegrity")
@operation(
    "Whether the latest sealed windows of the organization's audit log verify",
    response=(200, IntegritySchema),
    errors=(401, 403),
)
@require_permission(VIEW_AUDIT_LOG)
def audit_log_integrity():
    """Whether the latest sealed windows of the caller's organization verify."""
    return jsonify(IntegritySchema().dump(integrity_state(current_principal().organization_id)))


@bp.get("/audit-logs/checkpoint")
@audit_action("auditLog.viewCheckpoint")
@operation(
    "The latest signed checkpoint of the organization's verifiable log, and its public key",
    response=(200, CheckpointSchema),
    errors=(401, 403),
)
@require_permission(VIEW_AUDIT_LOG)
def audit_log_checkpoint():
    return jsonify(proofs.checkpoint(get_audit_db(), current_principal().organization_id))


@bp.get("/audit-logs/consistency")
@audit_action("auditLog.viewConsistency")
@operation(
    "An RFC 9162 consistency proof: the tree of size `to` extends the tree of size `from`",
    response=(200, ConsistencyProofSchema),
    errors=(400, 401, 403, 503),
)
@require_permission(VIEW_AUDIT_LOG)
def audit_log_consistency():
    old = _size_arg("from", required=True, minimum=0)
    new = _size_arg("to", required=False, minimum=0)
    answer = proofs.consistency(get_audit_db(), current_principal().organization_id, old, new)
    return jsonify(answer)


@bp.get("/audit-logs/<auditLogId>/proof")
@audit_action("auditLog.viewProof")
@operation(
    "One record in canonical Extended JSON with its inclusion proof and signed checkpoint "
    "(`?format=tlog-proof`: the C2SP tlog-proof text)",
    response=(200, RecordProofSchema),
    errors=(400, 401, 403, 404, 409, 410, 503),
)
@require_permission(VIEW_AUDIT_LOG)
def audit_log_proof(auditLogId):
    record_id = parse_object_id(auditLogId, "auditLogId", status=404, what="Audit log record")
    fmt = request.args.get("format", "json")
    if fmt not in ("json", "tlog-proof"):
        raise bad_request("format must be json or tlog-proof.", "format")
    size = _size_arg("treeSize", required=False, minimum=1)
    organization_id = current_principal().organization_id
    answer = proofs.record_proof(get_audit_db(), organization_id, record_id, size)
    if fmt == "tlog-proof":
        response = Response(answer["proof"], mimetype="text/plain")
        response.headers["Content-Disposition"] = f'attachment; filename="{auditLogId}.tlog-proof"'
        return response
    response = jsonify(answer)
    if request.args.get("download"):
        response.headers["Content-Disposition"] = (
            f'attachment; filename="audit-record-{auditLogId}.proof.json"'
        )
    return response


def _size_arg(name: str, *, required: bool, minimum: int) -> int | None:
    text = request.args.get(name)
    if text is None or text == "":
        if required:
            raise bad_request(f"{name} is required: a tree size (a whole number).", name)
        return None
    # ASCII digits only: str.isdigit() also takes "²" and "٣", which int() refuses or reads
    if not (text.isascii() and text.isdigit()) or len(text) > 15 or int(text) < minimum:
        raise bad_request(f"{name} must be a whole number of at least {minimum}.", name)
    return int(text)


@bp.get("/audit-logs/<auditLogId>")
@audit_action("auditLog.view")
@operation(
    "One audit record with its request details",
    response=(200, AuditLogDetailSchema),
    errors=(401, 403, 404),
)
@require_permission(VIEW_AUDIT_LOG)
def get_audit_log(auditLogId):
    record_id = parse_object_id(auditLogId, "auditLogId", status=404, what="Audit log record")
    record = service.get_record(current_principal(), record_id)
    if record is None:
        raise not_found("Audit log record", "auditLogId")
    return jsonify(AuditLogDetailSchema().dump(record))
