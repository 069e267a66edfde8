"""The staff's pages: ``/staff`` (sign in, paste an id, state a reason, read the records)."""

from __future__ import annotations

import json

from bson import ObjectId
from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.datastructures import MultiDict

from ..audit import export
from ..audit import service as audit_service
from ..audit.capture.context import note_credential, note_error, note_target
from ..audit.capture.hooks import audit_action, audited
from ..audit.schemas import jsonable
from ..audit.store.query import AUTH_TYPES, METHODS
from ..auth.principal import current_principal
from ..errors import ApiError, not_found
from ..ids import parse_object_id
from ..ratelimit import limiter, login_email_key, login_limit
from ..web.forms import LoginForm
from ..web.session import safe_next
from ..web.times import viewer_zone
from . import service
from .principal import STAFF_COOKIE, STAFF_COOKIE_PATH, require_staff
from .ratelimits import GRANT_SCOPE, LOOKUP_SCOPE, no_lookup, staff_key, staff_limit

bp = Blueprint("staffPages", __name__, url_prefix="/staff")


def _staff_next(target: str | None) -> str:
    """After sign-in: a staff page asked for, else the search page (never an org page)."""
    if target and (target == "/staff" or target.startswith("/staff/")):
        return safe_next(target)
    return url_for("staffPages.home")


@bp.route("/login", methods=["GET", "POST"])
@audit_action("staff.login", failed="staff.loginFailed")
@limiter.limit(login_limit, methods=["POST"])
@limiter.shared_limit(
    login_limit, scope="staff-login-email", key_func=login_email_key, methods=["POST"]
)
def login():
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    if form.validate_on_submit():
        staff = service.authenticate(form.email.data, form.password.data)
        if staff is not None:
            token, session_id = service.start_session(staff)
            caller = service.StaffCaller(staff["_id"], staff["email"], f"stfs_{session_id}")
            note_credential(caller.credential_id, service.STAFF_AUTH)
            service.log_staff_action(caller, "staff.login", via="session")
            response = redirect(_staff_next(form.next.data))
            response.set_cookie(
                STAFF_COOKIE,
                token,
                max_age=int(service.session_lifetime().total_seconds()),
                path=STAFF_COOKIE_PATH,
                secure=current_app.config["SESSION_COOKIE_SECURE"],
                httponly=True,
                samesite="Strict",
            )
            return response
        form.password.errors.append("The email or password is incorrect.")
        note_error("invalid_login", form.password.errors[0])
        return render_template("staff/login.html", form=form), 401
    status = 400 if request.method == "POST" else 200
    return render_template("staff/login.html", form=form), status


@bp.post("/logout")
@audit_action("staff.logout")
def logout():
    service.end_session(request.cookies.get(STAFF_COOKIE))
    flash("You are signed out.")
    response = redirect(url_for("staffPages.login"))
    response.delete_cookie(STAFF_COOKIE, path=STAFF_COOKIE_PATH)
    return response


@bp.get("")
@audit_action("staff.lookup")
@audited
@limiter.shared_limit(staff_limit, scope=LOOKUP_SCOPE, key_func=staff_key, exempt_when=no_lookup)
def home():
    """One search box: what a pasted id is, and where; a grant form per organization."""
    caller = require_staff()
    text = request.args.get("id", "").strip()
    found, error = None, None
    if text:
        try:
            found = service.lookup(caller, text)
        except ApiError as refused:
            error = refused.message
            note_error(refused.code, refused.message)
    grants = service.list_grants(caller, limit=20)
    page = render_template(
        "staff/home.html", caller=caller, text=text, found=found, error=error, grants=grants
    )
    return page, 400 if error else 200


@bp.post("/grants")
@audit_action("staff.grantRequested")
@limiter.shared_limit(staff_limit, scope=GRANT_SCOPE, key_func=staff_key)
def request_grant():
    caller = require_staff()
    form = request.form
    text = form.get("id", "").strip()
    organization_id = parse_object_id(form.get("organizationId", ""), "organizationId")
    try:
        grant = service.request_grant(
            caller, organization_id, form.get("justification", ""), form.get("ticket")
        )
    except ApiError as refused:
        note_error(refused.code, refused.message)
        flash(refused.message, "error")
        return redirect(url_for(".home", id=text) if text else url_for(".home"))
    if grant["state"] != service.ACTIVE:
        flash(
            "Requested: the organization approves platform staff's access first. "
            "The request waits for an Owner or Admin for 24 hours.",
        )
        return redirect(url_for(".home", id=text) if text else url_for(".home"))
    return redirect(
        url_for(".audit_logs_page", organizationId=str(organization_id), q=timeline_of(text))
    )


def timeline_of(text: str) -> str | None:
    """The search that starts from a pasted id: an ObjectId as itself (the actor, the
    workspace, the key or a target), anything else as the request id it was looked up as."""
    if not text:
        return None
    if len(text) == 24 and ObjectId.is_valid(text):
        return text
    return f"requestId:{text}"


def _under_grant(organization_id: str, what: str):
    caller = require_staff()
    org = parse_object_id(organization_id, "organizationId", status=404, what="Organization")
    return caller, service.enter_grant(caller, org, what)


@bp.get("/organizations/<organizationId>/audit-logs")
@audit_action("staff.access")
@audited
def audit_logs_page(organizationId):
    caller, grant = _under_grant(organizationId, "list")
    principal = current_principal()
    organization = service.organization_name(grant["organizationId"])
    args = request.args.copy()
    for name in [k for k, v in args.items() if not v.strip()]:
        args.pop(name)
    try:
        page = audit_service.list_page(principal, args)
        activity = _activity(principal, args)
    except ApiError as refused:
        note_error(refused.code, refused.message)
        return render_template(
            "staff/audit_logs.html",
            caller=caller,
            grant=grant,
            organization=organization,
            items=[],
            older=None,
            args=args,
            error=refused.message,
            activity=[],
            methods=METHODS,
            auth_types=AUTH_TYPES,
        ), refused.status
    return render_template(
        "staff/audit_logs.html",
        caller=caller,
        grant=grant,
        organization=organization,
        items=page.items,
        older=url_for(
            ".audit_logs_page",
            organizationId=organizationId,
            **{**args.to_dict(), "cursor": page.next_cursor},
        )
        if page.next_cursor
        else None,
        args=args,
        error=None,
        activity=activity,
        activity_zone=viewer_zone(),
        methods=METHODS,
        auth_types=AUTH_TYPES,
    )


def _activity(principal, args) -> list[dict]:
    """The days of the filtered set that had requests (the organization's own chart's
    service, at its bounded cost), newest first."""
    wanted = MultiDict(
        [(k, v) for k, v in args.items(multi=True) if k not in ("cursor", "limit", "before")]
    )
    wanted["interval"] = "day"
    wanted["tz"] = viewer_zone()  # the days of the zone the page states
    found = audit_service.histogram(principal, wanted)
    return [b for b in reversed(found["buckets"]) if b["count"]]


@bp.get("/organizations/<organizationId>/audit-logs/export")
@audit_action("staff.access")
@audited
def export_page(organizationId):
    _under_grant(organizationId, "export")
    fmt, query, records, organization = audit_service.open_export(current_principal(), request.args)
    return export.streamed_response(fmt, query, records, organization)


@bp.get("/organizations/<organizationId>/audit-logs/<auditLogId>")
@audit_action("staff.access")
@audited
def detail_page(organizationId, auditLogId):
    caller, grant = _under_grant(organizationId, "detail")
    record_id = parse_object_id(auditLogId, "auditLogId", status=404, what="Audit log record")
    note_target("auditLog", record_id)
    record = audit_service.get_record(current_principal(), record_id)
    if record is None:
        raise not_found("Audit log record", "auditLogId")
    return render_template(
        "staff/detail.html",
        caller=caller,
        grant=grant,
        organization=service.organization_name(grant["organizationId"]),
        record=record,
        pretty=json.dumps(jsonable(record), indent=2, ensure_ascii=False, default=str),
    )
