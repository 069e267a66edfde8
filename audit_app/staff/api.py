"""``/api/v1/staff/...`` for the platform's support staff, and
``/api/v1/staff-requests/...`` for an organization's Owners and Admins to decide on them.

Under a grant the staff read an organization's log through the very service the
organization's own readers use (``audit.service``), as a principal of kind ``staff`` bound
to the grant's organization: one place for the filters, the cursors (signed and bound to
the organization) and the export.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from marshmallow import Schema, fields, validate

from ..apidoc import EXPORT, operation
from ..audit import export
from ..audit import service as audit_service
from ..audit.capture.context import note_created, note_credential, note_target
from ..audit.capture.hooks import audit_action
from ..audit.schemas import AuditLogDetailSchema, AuditLogPageSchema, HistogramSchema, present
from ..audit.store.query import ExportQuerySchema, HistogramQuerySchema, ListQuerySchema
from ..auth.principal import current_principal, require_permission
from ..errors import ApiError, not_found, unauthorized
from ..ids import iso, parse_object_id
from ..ratelimit import limiter, login_email_key, login_limit
from ..schemas import ObjectIdField, load_body
from . import service
from .principal import require_staff
from .ratelimits import GRANT_SCOPE, LOOKUP_SCOPE, staff_key, staff_limit

bp = Blueprint("staff", __name__, url_prefix="/staff")
STAFF_SECURITY: list[dict[str, list[str]]] = [
    {"staffBearerAuth": []}
]  # a staff token; no organization's credential
requests_bp = Blueprint("staffRequests", __name__, url_prefix="/staff-requests")


class StaffTokenRequestSchema(Schema):
    email = fields.String(required=True, validate=validate.Length(min=3, max=320))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class StaffTokenSchema(Schema):
    token = fields.String(required=True)
    tokenType = fields.String(required=True, metadata={"enum": ["Bearer"]})
    expiresIn = fields.Integer(required=True)


class LookupOrganizationSchema(Schema):
    id = fields.String()
    name = fields.String()
    staffAccess = fields.String(metadata={"enum": list(service.ACCESS_SETTINGS)})


class LookupMatchSchema(Schema):
    kind = fields.String()
    organizationIds = fields.List(fields.String())
    ambiguous = fields.Boolean(
        metadata={"description": "a request id sent to more than one organization"}
    )
    message = fields.String(metadata={"description": "what to do when it is ambiguous"})


class LookupSchema(Schema):
    id = fields.String()
    kind = fields.String(allow_none=True)
    kinds = fields.List(fields.String())
    matches = fields.List(fields.Nested(LookupMatchSchema))
    organizations = fields.List(fields.Nested(LookupOrganizationSchema))


class LookupQuerySchema(Schema):
    id = fields.String(required=True, metadata={"description": "a 24-hex ObjectId or a request id"})


class GrantRequestSchema(Schema):
    organizationId = ObjectIdField(required=True)
    justification = fields.String(required=True, metadata={"description": "10 to 500 characters"})
    ticket = fields.String(load_default=None, allow_none=True)


class GrantSchema(Schema):
    grantId = fields.String(attribute="_id")
    organizationId = ObjectIdField()
    state = fields.String(metadata={"enum": ["active", "pending", "denied", "revoked", "expired"]})
    justification = fields.String()
    ticket = fields.String(allow_none=True)
    createdAt = fields.Function(lambda g: iso(g.get("createdAt")))
    expiresAt = fields.Function(lambda g: iso(g.get("expiresAt")))


def _grant(grant: dict) -> dict:
    shown = GrantSchema().dump(grant)
    shown["grantId"] = str(grant["_id"])
    return shown


class GrantListSchema(Schema):
    items = fields.List(fields.Nested(GrantSchema))


# Signing in -----------------------------------------------------------------------------


@bp.post("/token")
@audit_action("staff.login", failed="staff.loginFailed")
@operation(
    "Exchange a staff email and password for a staff token (valid only under /api/v1/staff)",
    body=StaffTokenRequestSchema,
    response=(200, StaffTokenSchema),
    errors=(400, 401, 415, 429),
    security=[],
)
@limiter.limit(login_limit)
@limiter.shared_limit(login_limit, scope="staff-login-email", key_func=login_email_key)
def create_staff_token():
    data = load_body(StaffTokenRequestSchema())
    staff = service.authenticate(data["email"], data["password"])
    if staff is None:
        raise unauthorized("The email or password is incorrect.")
    token, lifetime = service.issue_token(staff)
    caller = service.caller_of_token(token)
    note_credential(caller.credential_id, service.STAFF_AUTH)
    service.log_staff_action(caller, "staff.login", via="token")
    return jsonify(token=token, tokenType="Bearer", expiresIn=lifetime)


# The lookup and the grants --------------------------------------------------------------


@bp.get("/lookup")
@audit_action("staff.lookup")
@operation(
    "What an id is and which organization(s) it belongs to; no record content",
    response=(200, LookupSchema),
    errors=(400, 401, 429),
    query=LookupQuerySchema,
    security=STAFF_SECURITY,
)
@limiter.shared_limit(staff_limit, scope=LOOKUP_SCOPE, key_func=staff_key)
def lookup():
    caller = require_staff()
    return jsonify(service.lookup(caller, request.args.get("id")))


@bp.post("/grants")
@audit_action("staff.grantRequested")
@operation(
    "Ask to read one organization's log, with a justification (and a ticket)",
    body=GrantRequestSchema,
    response=(201, GrantSchema),
    errors=(400, 401, 403, 404, 415, 429),
    security=STAFF_SECURITY,
)
@limiter.shared_limit(staff_limit, scope=GRANT_SCOPE, key_func=staff_key)
def request_grant():
    caller = require_staff()
    data = load_body(GrantRequestSchema())
    grant = service.request_grant(
        caller, data["organizationId"], data["justification"], data.get("ticket")
    )
    note_created(grant["_id"])
    return jsonify(_grant(grant)), 201


@bp.get("/grants")
@audit_action("staff.listGrants")
@operation(
    "The staff member's own grants, newest first",
    response=(200, GrantListSchema),
    errors=(401,),
    security=STAFF_SECURITY,
)
def list_grants():
    caller = require_staff()
    return jsonify(items=[_grant(g) for g in service.list_grants(caller)])


# Reading under a grant ------------------------------------------------------------------


def _under_grant(organization_id: str, what: str):
    caller = require_staff()
    org = parse_object_id(organization_id, "organizationId", status=404, what="Organization")
    return caller, service.enter_grant(caller, org, what)


@bp.get("/organizations/<organizationId>/audit-logs")
@audit_action("staff.access")
@operation(
    "An organization's audit log under an active grant, as its own readers see it",
    response=(200, AuditLogPageSchema),
    errors=(400, 401, 403, 404, 503),
    query=ListQuerySchema,
    security=STAFF_SECURITY,
)
def staff_list_audit_logs(organizationId):
    _under_grant(organizationId, "list")
    page = audit_service.list_page(current_principal(), request.args)
    return jsonify(items=[present(item) for item in page.items], nextCursor=page.next_cursor)


@bp.get("/organizations/<organizationId>/audit-logs/histogram")
@audit_action("staff.access")
@operation(
    "Activity over time of an organization's log under an active grant",
    response=(200, HistogramSchema),
    errors=(400, 401, 403, 404, 503),
    query=HistogramQuerySchema,
    security=STAFF_SECURITY,
)
def staff_audit_log_histogram(organizationId):
    _under_grant(organizationId, "histogram")
    found = audit_service.histogram(current_principal(), request.args)
    return jsonify(HistogramSchema().dump(found))


@bp.get("/organizations/<organizationId>/audit-logs/export")
@audit_action("staff.access")
@operation(
    "An organization's filtered log as a file, under an active grant",
    response=(200, EXPORT),
    errors=(400, 401, 403, 404),
    query=ExportQuerySchema,
    security=STAFF_SECURITY,
)
def staff_export_audit_logs(organizationId):
    _under_grant(organizationId, "export")
    fmt, query, records, organization = audit_service.open_export(current_principal(), request.args)
    return export.streamed_response(fmt, query, records, organization)


@bp.get("/organizations/<organizationId>/audit-logs/<auditLogId>")
@audit_action("staff.access")
@operation(
    "One record of an organization's log under an active grant",
    response=(200, AuditLogDetailSchema),
    errors=(401, 403, 404),
    security=STAFF_SECURITY,
)
def staff_get_audit_log(organizationId, auditLogId):
    _under_grant(organizationId, "detail")
    record_id = parse_object_id(auditLogId, "auditLogId", status=404, what="Audit log record")
    note_target("auditLog", record_id)
    record = audit_service.get_record(current_principal(), record_id)
    if record is None:
        raise not_found("Audit log record", "auditLogId")
    return jsonify(AuditLogDetailSchema().dump(record))


# The organization's decisions -----------------------------------------------------------


class StaffRequestListSchema(Schema):
    items = fields.List(fields.Nested(GrantSchema))


@requests_bp.get("")
@audit_action("staff.listRequests")
@operation(
    "Platform staff's pending requests to read this organization's log",
    response=(200, StaffRequestListSchema),
    errors=(401, 403),
)
@require_permission(None)
def list_staff_requests():
    principal = current_principal()
    if not service.may_decide(principal):
        raise ApiError(
            403, "forbidden", "Only an Owner or an Admin sees platform staff's requests."
        )
    items = []
    for grant in service.pending_requests(principal):
        shown = _grant(grant)
        shown["staffEmail"] = grant["staffEmail"]
        items.append(shown)
    return jsonify(items=items)


@requests_bp.post("/<grantId>/approve")
@audit_action("staff.grantApproved")
@operation(
    "Approve a pending request of platform staff (an Owner or Admin)",
    response=(200, GrantSchema),
    errors=(401, 403, 404, 409),
)
@require_permission(None)
def approve_staff_request(grantId):
    grant_id = parse_object_id(grantId, "grantId", status=404, what="Staff request")
    return jsonify(_grant(service.decide(current_principal(), grant_id, approve=True)))


@requests_bp.post("/<grantId>/deny")
@audit_action("staff.grantDenied")
@operation(
    "Deny a pending request of platform staff (an Owner or Admin)",
    response=(200, GrantSchema),
    errors=(401, 403, 404, 409),
)
@require_permission(None)
def deny_staff_request(grantId):
    grant_id = parse_object_id(grantId, "grantId", status=404, what="Staff request")
    return jsonify(_grant(service.decide(current_principal(), grant_id, approve=False)))


@requests_bp.post("/<grantId>/revoke")
@audit_action("staff.grantRevoked")
@operation(
    "End an active grant of platform staff at once (an Owner or Admin)",
    response=(200, GrantSchema),
    errors=(401, 403, 404, 409),
)
@require_permission(None)
def revoke_staff_grant(grantId):
    grant_id = parse_object_id(grantId, "grantId", status=404, what="Staff request")
    return jsonify(_grant(service.revoke(current_principal(), grant_id)))
