"""The organization's page of platform staff's requests (``/organization/staff-requests``),
where an Owner or Admin approves or denies each one."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for

from ..audit.capture.context import note_error
from ..audit.capture.hooks import audit_action
from ..auth.principal import current_principal, require_permission
from ..errors import ApiError
from ..ids import parse_object_id
from ..web.confirm import ask_first, confirmed
from . import service

requests_page_bp = Blueprint("staffRequests", __name__, url_prefix="/organization/staff-requests")


# The organization's page of staff requests ----------------------------------------------


@requests_page_bp.get("")
@require_permission(None)
def requests_page():
    principal = current_principal()
    if not service.may_decide(principal):
        raise ApiError(
            403, "forbidden", "Only an Owner or an Admin sees platform staff's requests."
        )
    return render_template(
        "organization/staff_requests.html",
        requests=service.pending_requests(principal),
        active=service.active_grants(principal),
    )


@requests_page_bp.post("/<grantId>/approve")
@audit_action("staff.grantApproved")
@require_permission(None)
def approve_page(grantId):
    return _decide(grantId, approve=True)


@requests_page_bp.post("/<grantId>/deny")
@audit_action("staff.grantDenied")
@require_permission(None)
def deny_page(grantId):
    return _decide(grantId, approve=False)


def _decide(grant_id_text: str, *, approve: bool):
    grant_id = parse_object_id(grant_id_text, "grantId", status=404, what="Staff request")
    try:
        decided = service.decide(current_principal(), grant_id, approve=approve)
    except ApiError as refused:
        if refused.status in (403, 404):
            raise
        note_error(refused.code, refused.message)
        flash(refused.message, "error")
    else:
        flash(
            f"Approved: {decided['staffEmail']} may read this organization's log until "
            f"{decided['expiresAt']:%Y-%m-%d %H:%M} UTC."
            if decided["state"] == service.ACTIVE
            else f"Denied the request of {decided['staffEmail']}."
        )
    return redirect(url_for(".requests_page"))


@requests_page_bp.post("/<grantId>/revoke")
@audit_action("staff.grantRevoked")
@require_permission(None)
def revoke_page(grantId):
    """End an active grant; the first POST asks (``web/confirm.py``), ``confirm=yes`` ends it."""
    grant_id = parse_object_id(grantId, "grantId", status=404, what="Staff request")
    principal = current_principal()
    if not confirmed():
        if not service.may_decide(principal):
            raise ApiError(
                403, "forbidden", "Only an Owner or an Admin revokes platform staff's access."
            )
        grant = service.find_grant_of(principal, grant_id)
        return ask_first(
            "staffGrant.revoke",
            grant["staffEmail"],
            cancel_url=url_for(".requests_page"),
            target=("staffGrant", grant["_id"], grant["staffEmail"]),
        )
    try:
        revoked = service.revoke(principal, grant_id)
    except ApiError as refused:
        if refused.status in (403, 404):
            raise
        note_error(refused.code, refused.message)
        flash(refused.message, "error")
    else:
        flash(f"Revoked: {revoked['staffEmail']} no longer reads this organization's log.")
    return redirect(url_for(".requests_page"))
