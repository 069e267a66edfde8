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


def note_former_credential(attribution: dict) -> None:
    """Attribute a request refused for a credential that *was* valid to its owner.

    A revoked or expired API key, the JWT of a removed member or of a changed password:
    the organization sees these attempts by its former insiders in its own log.
    """
    g.audit_actor = attribution
