"""The permission names and the built-in roles that hold them.

Permissions are plain strings stored on roles, so a custom role is just a name and a list.
``viewAuditLog`` is the one the audit log is gated by.
"""

VIEW_AUDIT_LOG = "viewAuditLog"

PERMISSIONS: dict[str, str] = {
    VIEW_AUDIT_LOG: "See the organization's audit log, its details and exports.",
    "manageOrganization": "Rename the organization.",
    "viewMembers": "List the organization's members and their roles.",
    "manageMembers": "Add members, change their role and remove them.",
    "viewRoles": "List roles and their permissions.",
    "manageRoles": "Create, edit and delete custom roles; grant and revoke permissions.",
    "viewApiKeys": "List the organization's API keys (never their secrets).",
    "manageApiKeys": "Create and revoke API keys.",
    "viewWorkspaces": "List and read workspaces.",
    "manageWorkspaces": "Create, rename and delete workspaces.",
    "viewPathways": "List and read pathways in a workspace.",
    "managePathways": "Create, edit and delete pathways in a workspace.",
    "manageAuditStreams": "Stream the audit log to a SIEM: create, change and delete log streams.",
    "manageAuditRetention": "Set how long the audit log keeps records, and put it on legal hold.",
}
# permissions added after organizations existed: given once to their built-in Owner and
# Admin roles by ``grant_added_permissions`` (an Admin role trimmed later stays trimmed)
ADDED_PERMISSIONS = ("manageAuditStreams", "manageAuditRetention")

OWNER = "owner"
ADMIN = "admin"
MEMBER = "member"

BUILTIN_ROLES: dict[str, dict] = {
    OWNER: {
        "name": "Owner",
        "description": "Full control. The Owner role cannot lose permissions.",
        "permissions": sorted(PERMISSIONS),
    },
    ADMIN: {
        "name": "Admin",
        "description": "Manages the organization, its members and its audit log.",
        "permissions": sorted(PERMISSIONS),
    },
    MEMBER: {
        "name": "Member",
        "description": "Works with workspaces and pathways.",
        "permissions": sorted(
            ["viewMembers", "viewRoles", "viewWorkspaces", "viewPathways", "managePathways"]
        ),
    },
}


def unknown_permissions(names) -> list[str]:
    return [name for name in names if name not in PERMISSIONS]
