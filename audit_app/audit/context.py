"""What a view tells the audit hook about its request, beyond what Flask already knows."""

from flask import g


def note_workspace(workspace_id) -> None:
    """Mark the request as workspace-specific, so its record carries the workspace."""
    g.audit_workspace_id = workspace_id


def note_actor(account: dict, organization_id) -> None:
    """Attribute an unauthenticated request (a login) to the account it names.

    A login attempt against a known account, successful or not, belongs in the log of that
    account's organization: admins need to see failed logins of their members.
    """
    g.audit_actor = {
        "accountId": account["_id"],
        "accountEmail": account["email"],
        "organizationId": organization_id,
    }
