"""The web UI: one parent blueprint whose children are the pages of each feature."""

from flask import Blueprint, current_app, redirect, render_template, request, url_for

from ..api_keys.views import bp as api_keys_bp
from ..audit.views import bp as audit_logs_bp
from ..auth.principal import account_organizations, current_principal
from ..organizations.permissions import VIEW_AUDIT_LOG
from ..organizations.views import members_bp, roles_bp, settings_bp
from ..staff.org_views import requests_page_bp as staff_requests_bp
from ..staff.service import may_decide
from ..streams.views import bp as audit_streams_bp
from ..workspaces.views import bp as workspaces_bp
from . import invitations, session
from .confirm import confirm_text


def create_web_blueprint() -> Blueprint:
    web = Blueprint("web", __name__)
    for child in (
        session.bp,
        invitations.bp,
        audit_logs_bp,
        roles_bp,
        members_bp,
        workspaces_bp,
        api_keys_bp,
        audit_streams_bp,
        settings_bp,
        staff_requests_bp,
    ):
        web.register_blueprint(child)
    web.add_app_template_global(confirm_text, "confirm_text")

    @web.get("/")
    def home():
        principal = current_principal()
        if not principal.is_authenticated:
            return redirect(url_for("web.session.login"))
        return render_template("home.html", can_view_audit_log=principal.can(VIEW_AUDIT_LOG))

    return web


def navigation_context():
    """Template globals: the caller, their organizations, and which menu items they may use."""
    principal = current_principal()
    if principal.auth_type == "staff":  # the staff pages have their own header
        return {"principal": principal, "organizations": [], "nav_items": []}
    organizations = []
    if principal.auth_type == "session" and principal.account_id:
        organizations = account_organizations(principal.account_id)
    current = next((o for o in organizations if o["_id"] == principal.organization_id), None)
    return {
        "principal": principal,
        "organizations": organizations,
        "current_organization": current,
        "nav_items": _nav_items(principal),
    }


# (label, endpoint, permission): Organization -> Audit Logs, Members, Roles, Workspaces, ...
NAVIGATION = (
    ("Audit Logs", "web.auditLogs.list_page", VIEW_AUDIT_LOG),
    ("Members", "web.members.members_page", "viewMembers"),
    ("Roles", "web.roles.roles_page", "viewRoles"),
    ("Workspaces", "web.workspaces.workspaces_page", "viewWorkspaces"),
    ("API Keys", "web.apiKeys.api_keys_page", "viewApiKeys"),
    ("Audit Streams", "web.auditStreams.streams_page", "manageAuditStreams"),
    ("Settings", "web.settings.settings_page", ("manageOrganization", "manageAuditRetention")),
    ("Staff requests", "web.staffRequests.requests_page", may_decide),  # Owners and Admins
)


def _nav_items(principal) -> list[dict]:
    if not principal.is_authenticated:
        return []
    items = []
    for label, endpoint, permission in NAVIGATION:
        if callable(permission):
            allowed = permission(principal)
        else:
            needed = (permission,) if isinstance(permission, str) else permission
            allowed = any(map(principal.can, needed))
        if endpoint in current_app.view_functions and allowed:
            url = url_for(endpoint)
            items.append({"label": label, "url": url, "active": request.path.startswith(url)})
    return items
