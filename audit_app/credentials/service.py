"""What a credential creates dies with it (docs/security.md, "Credentials and what they made").

A credential is a web session, a JWT or an API key. What one can create that grants access
or reads the log outlives the request that made it: API keys, invitations, audit streams.
Here, in one place, what happens to them when the credential ends:

- an API key revoked: the keys it made (to any depth) and the invitations any of them sent
  are revoked too;
- a password changed: every JWT and web session of the account ends (``credentialVersion``),
  and so do the pending invitations it sent logged in (with a JWT or a session); with
  ``revoke_created`` also every key and invitation it created, in every organization;
- a member removed: their keys and invitations (``organizations.service.remove_member``);
- ``flask revoke-credentials``: all of the above at once, for an operator.

An invitation also checks its sender's credential when it is accepted, so one that the
database still shows as pending after its credential ended is refused all the same.
Streams pause by themselves when whoever set their destination can no longer read the log
(``streams.delivery``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bson import ObjectId

from ..api_keys import repository as api_keys
from ..audit.capture.context import note_target
from ..auth import sessions
from ..db import Document, get_db
from ..organizations import repository as orgs

# Why an invitation was revoked (``revokedReason``), as its record and the acceptance say.
KEY_REVOKED = "apiKeyRevoked"
PASSWORD_CHANGED = "passwordChanged"
CREDENTIALS_REVOKED = "credentialsRevoked"
SENDER_REMOVED = "senderRemoved"

REASONS = {
    KEY_REVOKED: "the API key that sent it was revoked",
    PASSWORD_CHANGED: "its sender's password changed",
    CREDENTIALS_REVOKED: "its sender's credentials were revoked",
    SENDER_REMOVED: "its sender left the organization",
    "revoked": "it was revoked",
}


def after_key_revoked(organization_id: ObjectId, key_id: ObjectId) -> dict[str, Any]:
    """A key was revoked: revoke the keys it made and the invitations they all sent."""
    db = get_db()
    made = api_keys.revoke_keys_made_with(db, organization_id, [key_id])
    invitations = orgs.revoke_invitations_sent_with_keys(
        db, organization_id, [key_id, *made], KEY_REVOKED
    )
    return {"keysRevoked": [str(k) for k in made] or None, "invitationsRevoked": invitations}


def after_password_change(account_id: ObjectId, *, revoke_created: bool) -> dict[str, Any]:
    """The password changed (it already bumped ``credentialVersion``, ending every JWT):
    end the sessions and the invitations sent logged in; with ``revoke_created``, also every
    key and invitation the account created, in each of its organizations."""
    db = get_db()
    sessions.end_account_sessions(db, account_id)
    reason = CREDENTIALS_REVOKED if revoke_created else PASSWORD_CHANGED
    return _revoke_made_by(db, account_id, None, reason=reason, everything=revoke_created)


def revoke_credentials(
    account: Mapping[str, Any], organization_id: ObjectId | None = None
) -> dict[str, Any]:
    """The operator's incident response: end every session and JWT of the account and
    revoke the keys and invitations it created (in one organization, or in all of them)."""
    db = get_db()
    note_target("member", account["_id"], account.get("email"))
    ended = sessions.end_account_sessions(db, account["_id"])
    orgs.bump_credential_version(db, account["_id"])
    revoked = _revoke_made_by(
        db, account["_id"], organization_id, reason=CREDENTIALS_REVOKED, everything=True
    )
    return {"sessionsEnded": ended, "jwtsEnded": True, **revoked}


def _revoke_made_by(
    db: Any,
    account_id: ObjectId,
    organization_id: ObjectId | None,
    *,
    reason: str,
    everything: bool,
) -> dict[str, Any]:
    by_organization: dict[str, dict[str, int]] = {}
    organizations = [o["_id"] for o in orgs.list_organizations_of_account(db, account_id)]
    if organization_id is not None:
        organizations = [o for o in organizations if o == organization_id]
    for org in organizations:
        keys: list[ObjectId] = []
        if everything:  # a key made by a key carries the person at the root as its creator
            keys = api_keys.revoke_keys_where(db, org, {"createdBy": account_id})
            invitations = orgs.revoke_invitations_by(db, org, account_id, reason)
        else:
            invitations = orgs.revoke_invitations_sent_with_password(db, org, account_id, reason)
        if keys or invitations:
            by_organization[str(org)] = {"apiKeys": len(keys), "invitations": invitations}
    return {
        "apiKeysRevoked": sum(v["apiKeys"] for v in by_organization.values()),
        "invitationsRevoked": sum(v["invitations"] for v in by_organization.values()),
        "byOrganization": by_organization,
    }


def sender_credential_ended(invitation: Mapping[str, Any]) -> str | None:
    """Why the credential that sent a pending invitation no longer stands, or None.

    Checked at acceptance whatever the database says of the invitation: the key that sent it
    revoked (or gone), or the sender's password changed since (their credentials then all
    ended)."""
    sender: Document = invitation.get("invitedBy") or {}
    db = get_db()
    organization_id = invitation["organizationId"]
    key_id = sender.get("apiKeyId")
    if key_id is not None:
        found = api_keys.find_api_keys_by_ids(db, organization_id, [key_id]).get(key_id)
        if found is None or found.get("revokedAt") is not None:
            return KEY_REVOKED
    version = sender.get("credentialVersion")
    account_id = sender.get("accountId")
    if key_id is None and version is not None and account_id is not None:
        account = orgs.find_account(db, account_id)
        if account is None or int(account.get("credentialVersion") or 0) != version:
            return PASSWORD_CHANGED
    return None
