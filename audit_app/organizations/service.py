"""Who may change access: every rule about members, roles and invitations, in one place.

The API, the web pages and the CLI parse their input, call one function here with the
acting ``Principal``, and render what it returns. The rules (PRODUCT.md, "Who may change
access"):

- nobody grants a permission they do not hold: not by editing a role, not by assigning a
  role, not by inviting with a role (API keys: ``api_keys.service``);
- nobody changes their own role, nor edits the role they hold;
- nobody changes or removes a member whose role holds permissions they lack;
- only an Owner gives or takes the Owner role; the Owner role cannot be edited;
- an organization always keeps an Owner, also under concurrent changes (the owners guard
  in the repository, one conditional update, run inside ``exclusive``);
- an organization adds people by invitation; a password is only ever chosen by the person
  who owns the account. The operator's CLI may create an account with a password; for an
  existing account it adds the membership and leaves the password alone.

Refusals are ``ApiError``s: 403 for what the actor may not do, 409 for a state that forbids
it, 404 for what is not in the organization.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bson import ObjectId
from flask import current_app
from marshmallow import Schema, fields, validate
from werkzeug.datastructures import MultiDict

from ..api_keys import repository as api_keys
from ..audit.actions import declare
from ..audit.capture.changes import Target, record_changes
from ..audit.capture.context import note_action, note_created
from ..audit.integrity import retention
from ..auth import sessions
from ..auth.passwords import verify_password
from ..auth.principal import OPERATOR_AUTH, Principal
from ..credentials import service as credentials
from ..db import Document, exclusive, get_db
from ..emails import InvalidEmail, clean_email
from ..errors import ApiError, bad_request, conflict, not_found, unauthorized
from ..ids import iso, utcnow
from ..pagination import (
    Page,
    PageQuerySchema,
    PageRequest,
    WebPageQuerySchema,
    load_page_query,
    make_page,
    paged,
    read_request,
)
from ..staff import repository as staff_grants
from . import repository as orgs
from .permissions import OWNER, PERMISSIONS

MIN_PASSWORD = 8
MAX_PASSWORD = 1024

(PERMISSIONS_CHANGE,) = declare("role.permissionsChange")
# What a reader of the audit log sees of each object, field by field (``changes``)
ORGANIZATION_FIELDS = ("name", "staffAccess", retention.DAYS, retention.HOLD, retention.PENDING)
# whether and how the platform's support staff may read the log (``staff.service``)
STAFF_ACCESS = "staffAccess"
STAFF_ACCESS_SETTINGS = ("open", "approval", "none")
DEFAULT_STAFF_ACCESS = "open"
ROLE_FIELDS = ("name", "description", "permissions")
MEMBER_FIELDS = ("email", "role", "roleId")
INVITATION_FIELDS = ("email", "role", "roleId", "expiresAt")


def refused(message: str, field: str | None = None) -> ApiError:
    return ApiError(403, "forbidden", message, field)


def checked_email(text: object, field: str = "email") -> str:
    """The one email rule, as the API's 400 naming the field."""
    try:
        return clean_email(text)
    except InvalidEmail as error:
        raise bad_request(str(error), field) from None


def checked_name(name: object, field: str = "name") -> str:
    """An organization's name: 1 to 200 characters, not only spaces."""
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 200:
        raise bad_request("A name has 1 to 200 characters (not only spaces).", field)
    return name.strip()


def checked_password(password: object, field: str = "password") -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise bad_request(f"A password has {MIN_PASSWORD} to {MAX_PASSWORD} characters.", field)
    return password


def operator(organization_id: ObjectId) -> Principal:
    """The operator at the server's command line: the CLI acts with every permission."""
    return Principal(
        auth_type=OPERATOR_AUTH,
        organization_id=organization_id,
        role_key=OWNER,
        permissions=frozenset(PERMISSIONS),
    )


# The rules -----------------------------------------------------------------------------


def _lacking(actor: Principal, permissions: Iterable[str]) -> list[str]:
    return sorted(set(permissions) - actor.permissions)


def check_may_grant(actor: Principal, role: Mapping[str, Any], field: str = "roleId") -> None:
    """Refuse giving ``role`` to anyone (a member, an invitee, a key) if the actor lacks any
    of its permissions, or if it is the Owner role and the actor is no Owner."""
    if role.get("key") == OWNER and not actor.is_owner:
        raise refused("Only an Owner can give the Owner role.", field)
    lacking = _lacking(actor, role["permissions"])
    if lacking:
        raise refused(f"You cannot grant permissions you do not hold: {', '.join(lacking)}.", field)


def _check_may_manage_member(
    actor: Principal, member: Mapping[str, Any], *, removing: bool
) -> None:
    account_id = member["account"]["_id"]
    themselves = account_id in (actor.account_id, actor.key_creator_id)  # a key speaks for them
    if themselves and not removing:
        raise refused("Nobody can change their own role; ask another administrator.", "roleId")
    if account_id == actor.account_id:
        return  # leaving the organization needs no power over oneself (the last Owner stays)
    role = member["role"] or {"permissions": [], "key": None}
    if role.get("key") == OWNER and not actor.is_owner:
        raise refused("Only an Owner can change or remove an Owner.", "accountId")
    lacking = _lacking(actor, role["permissions"])
    if lacking:
        raise refused(
            "This member's role holds permissions you do not hold "
            f"({', '.join(lacking)}); only someone who holds them can change it.",
            "accountId",
        )


def _check_may_edit_role(
    actor: Principal, role: Mapping[str, Any], new_permissions: Iterable[str] = ()
) -> None:
    if role.get("key") == OWNER:
        raise conflict("The Owner role cannot be edited or deleted.", "roleId")
    if role["_id"] == actor.role_id:
        raise refused("Nobody can edit the role they hold; ask another administrator.", "roleId")
    lacking = _lacking(actor, set(role["permissions"]) | set(new_permissions))
    if lacking:
        raise refused(
            f"You can only change roles within the permissions you hold; you lack "
            f"{', '.join(lacking)}.",
            "permissions",
        )


# Roles ---------------------------------------------------------------------------------


def _role(organization_id: ObjectId, role_id: ObjectId, *, status: int = 404) -> Document:
    role = orgs.find_role(get_db(), organization_id, role_id)
    if role is None:
        if status == 404:
            raise not_found("Role", "roleId")
        raise ApiError(
            status, "unprocessable", "No role with this id in the organization.", "roleId"
        )
    return role


def create_role(
    actor: Principal, name: str, permissions: list[str], description: str | None = None
) -> Document:
    lacking = _lacking(actor, permissions)
    if lacking:
        raise refused(
            f"You cannot grant permissions you do not hold: {', '.join(lacking)}.", "permissions"
        )
    role = orgs.create_role(get_db(), actor.org, name, permissions, description)
    note_created(role["_id"])
    record_changes(None, role, ROLE_FIELDS, target=_role_target(role))
    return role


def update_role(
    actor: Principal,
    role_id: ObjectId,
    *,
    name: str | None = None,
    permissions: list[str] | None = None,
    description: str | None = None,
) -> Document:
    role = _role(actor.org, role_id)
    _check_may_edit_role(actor, role, permissions or ())
    changes: dict[str, Any] = {}
    if name is not None and name.strip() != role["name"]:
        if role["builtIn"]:
            raise conflict("Built-in roles cannot be renamed.", "name")
        changes["name"] = name.strip()
    if description is not None:
        changes["description"] = description.strip() or None
    if permissions is not None:
        changes["permissions"] = sorted(set(permissions))
    if not changes:
        return role
    before, after = orgs.update_role(get_db(), actor.org, role_id, changes)
    if sorted(before["permissions"]) != after["permissions"]:
        note_action(PERMISSIONS_CHANGE)  # what an auditor looks for first
    record_changes(before, after, ROLE_FIELDS, target=_role_target(before))
    return after


def delete_role(actor: Principal, role_id: ObjectId) -> None:
    role = _role(actor.org, role_id)
    _check_may_edit_role(actor, role)
    if role["builtIn"]:
        raise conflict("Built-in roles cannot be deleted.", "roleId")
    if orgs.role_in_use(get_db(), actor.org, role_id):
        raise conflict(
            "The role is held by members, API keys or pending invitations; reassign them first.",
            "roleId",
        )
    orgs.delete_role(get_db(), actor.org, role_id)
    record_changes(role, None, ROLE_FIELDS, target=_role_target(role))


def _role_target(role: Mapping[str, Any]) -> Target:
    return ("role", role["_id"], role.get("name"))


def _member_target(account: Mapping[str, Any]) -> Target:
    """A member as a target: the account's id, named by its email."""
    return ("member", account["_id"], account.get("email"))


# Members -------------------------------------------------------------------------------


def _member(organization_id: ObjectId, account_id: ObjectId) -> dict[str, Any]:
    member = orgs.find_member(get_db(), organization_id, account_id)
    if member is None:
        raise not_found("Member", "accountId")
    return member


def find_member(actor: Principal, account_id: ObjectId) -> dict[str, Any]:
    """One member with their account and role (a 404 if not a member)."""
    return _member(actor.org, account_id)


def change_member_role(actor: Principal, account_id: ObjectId, role_id: ObjectId) -> dict[str, Any]:
    """Give a member another role; the Owner guard keeps the last Owner in place."""
    db = get_db()
    organization_id = actor.org
    member = _member(organization_id, account_id)
    _check_may_manage_member(actor, member, removing=False)
    role = _role(organization_id, role_id, status=422)
    check_may_grant(actor, role)
    current = member["membership"]["roleId"]
    if current == role_id:
        return member
    was_owner = member["role"] is not None and member["role"].get("key") == OWNER
    with exclusive(f"owners-{organization_id}"):
        if was_owner and not orgs.take_owner_out(db, organization_id, account_id):
            raise conflict(
                "The last Owner cannot be demoted; make another member Owner first.", "roleId"
            )
        if not orgs.set_member_role(db, organization_id, account_id, current, role_id):
            if was_owner:
                orgs.put_owner_in(db, organization_id, account_id)
            raise conflict("The member's role changed meanwhile; reload and try again.", "roleId")
        if role.get("key") == OWNER:
            orgs.put_owner_in(db, organization_id, account_id)
    changed = _member(organization_id, account_id)
    record_changes(
        _member_view(member),
        _member_view(changed),
        MEMBER_FIELDS,
        target=[_member_target(member["account"]), _role_target(role)],
    )
    return changed


def remove_member(actor: Principal, account_id: ObjectId) -> None:
    """Remove a member: their sessions end, their keys and pending invitations are revoked."""
    db = get_db()
    organization_id = actor.org
    member = _member(organization_id, account_id)
    _check_may_manage_member(actor, member, removing=True)
    role_id = member["membership"]["roleId"]
    was_owner = member["role"] is not None and member["role"].get("key") == OWNER
    with exclusive(f"owners-{organization_id}"):
        if was_owner and not orgs.take_owner_out(db, organization_id, account_id):
            raise conflict(
                "The last Owner cannot be removed; make another member Owner first.", "accountId"
            )
        if not orgs.delete_membership(db, organization_id, account_id, role_id):
            if was_owner:
                orgs.put_owner_in(db, organization_id, account_id)
            raise conflict("The member changed meanwhile; reload and try again.", "accountId")
    sessions.end_account_sessions(db, account_id)
    keys = api_keys.revoke_keys_created_by(db, organization_id, account_id)
    invitations = orgs.revoke_invitations_by(db, organization_id, account_id)
    went = {"keysRevoked": keys or None, "invitationsRevoked": invitations or None}
    record_changes(
        {**_member_view(member), **went},
        None,
        (*MEMBER_FIELDS, *went),
        target=_member_target(member["account"]),
    )


def _member_view(member: Mapping[str, Any]) -> dict[str, Any]:
    """A member as the audit log shows it: their email and their role by name."""
    role = member.get("role")
    return {
        "email": member["account"]["email"],
        "role": role["name"] if role else None,
        "roleId": member["membership"]["roleId"],
    }


# Invitations ---------------------------------------------------------------------------


def invite(actor: Principal, email: str, role_id: ObjectId) -> tuple[Document, str]:
    """Invite an email with a role; return the invitation and its one-time token.

    The answer is the same whether or not the email has an account, so inviting cannot be
    used to learn who has one. An email that is already a member of this organization is a
    409: the inviter can see the members anyway.
    """
    db = get_db()
    email = checked_email(email)
    role = _role(actor.org, role_id, status=422)
    check_may_grant(actor, role)
    account = orgs.find_account_by_email(db, email)
    if account is not None and orgs.find_membership(db, actor.org, account["_id"]):
        raise conflict("This email is already a member of the organization.", "email")
    # a key invites on behalf of the person who made it: their leaving revokes this too.
    # The credential that sent it is kept, so that the invitation dies with it: the key's
    # revocation, or the sender's password change (credentialVersion) for a JWT or session.
    invited_by = {
        "accountId": actor.account_id or actor.key_creator_id,
        "apiKeyId": actor.api_key_id,
        "credentialId": actor.credential_id,
        "credentialVersion": _credential_version(actor),
    }
    invitation, token = orgs.create_invitation(
        db,
        actor.org,
        email=email,
        role_id=role["_id"],
        invited_by=invited_by,
        lifetime=timedelta(hours=current_app.config["INVITATION_LIFETIME_HOURS"]),
    )
    note_created(invitation["_id"])
    record_changes(
        None,
        {**invitation, "role": role["name"]},
        INVITATION_FIELDS,
        target=[("invitation", invitation["_id"], email), _role_target(role)],
    )
    return invitation, token


def _credential_version(actor: Principal) -> int | None:
    """The version of the password behind a logged-in actor's credential (a JWT or a web
    session); None for an API key or the operator."""
    if actor.api_key_id is not None or actor.account_id is None:
        return None
    return actor.credential_version  # read with the account when the principal was made


def list_invitations(
    actor: Principal, args: MultiDict[str, str] | None = None, schema: Schema | None = None
) -> Page:
    """A page of the pending invitations, soonest to expire first."""
    db = get_db()
    return paged(
        args if args is not None else MultiDict(),
        orgs.INVITATIONS,
        actor.org,
        lambda request: orgs.list_pending_invitations(db, actor.org, request),
        schema,
    )


def find_pending_invitation(actor: Principal, invitation_id: ObjectId) -> Document:
    invitation = orgs.find_pending_invitation_by_id(get_db(), actor.org, invitation_id)
    if invitation is None:
        raise not_found("Pending invitation", "invitationId")
    return invitation


def revoke_invitation(actor: Principal, invitation_id: ObjectId) -> Document:
    revoked = orgs.revoke_invitation(get_db(), actor.org, invitation_id)
    record_changes(
        {"revokedAt": None},
        revoked,
        ("revokedAt",),
        target=("invitation", revoked["_id"], revoked.get("email")),
    )
    return revoked


@dataclass(frozen=True)
class InvitationView:
    """What the acceptance page shows about a pending invitation."""

    invitation: Document
    organization: Document
    role: Document | None
    account_exists: bool


def find_invitation(token: str) -> InvitationView:
    db = get_db()
    invitation = orgs.find_pending_invitation(db, token)
    if invitation is None:
        raise not_found("Invitation (it may have expired, been revoked or used)", "token")
    organization = orgs.find_organization(db, invitation["organizationId"]) or {
        "_id": invitation["organizationId"],
        "name": "(deleted organization)",
    }
    role = orgs.find_role(db, invitation["organizationId"], invitation["roleId"])
    exists = orgs.find_account_by_email(db, invitation["email"]) is not None
    return InvitationView(invitation, organization, role, exists)


def accept_invitation(
    token: str, *, account: Mapping[str, Any] | None = None, password: str | None = None
) -> dict[str, Any]:
    """Accept an invitation: as the logged-in account it names, or by creating that account.

    ``account`` is the caller's account when logged in (a JWT or a web session). Returns
    ``{"organizationId", "accountId", "roleId", "accountCreated"}``.
    """
    db = get_db()
    view = find_invitation(token)
    invitation = view.invitation
    if view.role is None:
        raise conflict("The role of this invitation no longer exists; ask for a new one.", "token")
    existing = orgs.find_account_by_email(db, invitation["email"])
    if account is not None and (existing is None or existing["_id"] != account["_id"]):
        raise refused(
            f"This invitation is for {invitation['email']}; you are logged in as "
            f"{account['email']}. Log in as {invitation['email']} to accept it.",
            "token",
        )
    if existing is not None and account is None:
        raise unauthorized(
            f"This invitation is for the existing account {invitation['email']}: accept it "
            "logged in as that account (Authorization: Bearer <its token>), without a password."
        )
    if existing is not None and password is not None:
        raise bad_request("An existing account keeps its own password; leave it out.", "password")
    new_password = checked_password(password) if existing is None else None
    _check_inviter_still_may_grant(invitation, view.role)
    _check_sender_credential(invitation)
    claimant = existing["_id"] if existing else ObjectId()
    if not orgs.claim_invitation(db, invitation, claimant):
        raise not_found("Invitation (it may have expired, been revoked or used)", "token")
    try:
        if existing is None:
            assert new_password is not None  # (checked above for a new account)
            existing = orgs.create_account(
                db, invitation["email"], new_password, account_id=claimant
            )
        with exclusive(f"owners-{invitation['organizationId']}"):
            orgs.add_membership(
                db, invitation["organizationId"], existing["_id"], invitation["roleId"]
            )
            if view.role.get("key") == OWNER:
                orgs.put_owner_in(db, invitation["organizationId"], existing["_id"])
    except Exception:  # not accepted after all: the link works again
        orgs.release_invitation(db, invitation)
        raise
    member = {"email": existing["email"], "role": view.role["name"], "roleId": view.role["_id"]}
    record_changes(
        None,
        member,
        MEMBER_FIELDS,
        target=[
            ("invitation", invitation["_id"], invitation["email"]),
            _member_target(existing),
        ],
    )
    return {
        "organizationId": invitation["organizationId"],
        "accountId": existing["_id"],
        "roleId": invitation["roleId"],
        "accountCreated": account is None,
        "account": existing,
    }


def _check_inviter_still_may_grant(invitation: Mapping[str, Any], role: Mapping[str, Any]) -> None:
    """An invitation grants at most what its inviter holds *now*, as an API key does.

    An Admin or Owner who sent an invitation and was then demoted or removed cannot get back
    in through it: it is refused here, whatever happened to it before.
    """
    inviter_id = (invitation.get("invitedBy") or {}).get("accountId")
    if inviter_id is None:
        return  # sent by the operator or by a key the operator made
    db = get_db()
    organization_id = invitation["organizationId"]
    membership = orgs.find_membership(db, organization_id, inviter_id)
    inviter_role = membership and orgs.find_role(db, organization_id, membership["roleId"])
    inviter = Principal(
        auth_type="jwt",
        organization_id=organization_id,
        account_id=inviter_id,
        role_key=inviter_role.get("key") if inviter_role else None,
        permissions=frozenset(inviter_role["permissions"]) if inviter_role else frozenset(),
    )
    try:
        check_may_grant(inviter, role, "token")
    except ApiError:
        raise refused(
            "Whoever sent this invitation can no longer grant its role; ask for a new one.",
            "token",
        ) from None


def _check_sender_credential(invitation: Mapping[str, Any]) -> None:
    """An invitation dies with the credential that sent it: refused (and revoked, saying
    why) when that key was revoked or its sender's password changed since."""
    reason = credentials.sender_credential_ended(invitation)
    if reason is None:
        return
    orgs.revoke_invitation_for(get_db(), invitation, reason)
    raise refused(
        f"This invitation was revoked: {credentials.REASONS[reason]}; ask for a new one.",
        "token",
    )


# Accounts ------------------------------------------------------------------------------


def change_password(
    account: Mapping[str, Any], current: str, new: str, *, revoke_created: bool = False
) -> dict[str, Any]:
    """Change one's own password: every session and every JWT issued before it ends, and
    so do the invitations sent with them; ``revoke_created`` also revokes every API key and
    invitation the person created (incident response after a stolen credential)."""
    if not verify_password(account["passwordHash"], current):
        raise bad_request("The current password is incorrect.", "currentPassword")
    checked_password(new, "newPassword")
    db = get_db()
    orgs.set_password(db, account["_id"], new)
    revoked = credentials.after_password_change(account["_id"], revoke_created=revoke_created)
    went = {
        "keysRevoked": revoked["apiKeysRevoked"] or None,
        "invitationsRevoked": revoked["invitationsRevoked"] or None,
    }
    record_changes(
        {"password": current},
        {"password": new, **went},
        ("password", *went),
        target=_member_target(account),
    )
    return revoked


def add_member_as_operator(
    organization_id: ObjectId, email: str, password: str | None, role: Mapping[str, Any]
) -> dict[str, Any]:
    """The CLI's ``create-user``: a new account gets the password, an existing one keeps its.

    Returns ``{"account", "accountCreated", "passwordChanged": False}``.
    """
    db = get_db()
    email = checked_email(email)
    account = orgs.find_account_by_email(db, email)
    created = account is None
    if account is None:
        if password is None:
            raise bad_request("A new account needs a password.", "password")
        account = orgs.create_account(db, email, checked_password(password))
    with exclusive(f"owners-{organization_id}"):
        orgs.add_membership(db, organization_id, account["_id"], role["_id"])
        if role.get("key") == OWNER:
            orgs.put_owner_in(db, organization_id, account["_id"])
    note_created(account["_id"])
    member = {"email": account["email"], "role": role["name"], "roleId": role["_id"]}
    record_changes(None, member, MEMBER_FIELDS, target=_member_target(account))
    return {"account": account, "accountCreated": created, "passwordChanged": False}


def create_organization(name: str, owner_email: str, owner_password: str | None) -> dict[str, Any]:
    """The CLI's ``create-org`` (and the demo): an organization with its first Owner."""
    db = get_db()
    name = checked_name(name)  # the API's rule; everything is checked before anything is made
    email = checked_email(owner_email, "ownerEmail")
    account = orgs.find_account_by_email(db, email)
    created = account is None
    if account is None:
        if owner_password is None:
            raise bad_request("A new account needs a password.", "ownerPassword")
        account = orgs.create_account(db, email, checked_password(owner_password, "ownerPassword"))
    made = orgs.create_organization(db, name, account["_id"])
    note_created(made["organization"]["_id"])
    record_changes(
        None,
        {"name": name, "owner": email},
        ("name", "owner"),
        target=[("organization", made["organization"]["_id"], name), _member_target(account)],
    )
    return {**made, "owner": account, "accountCreated": created, "passwordChanged": False}


# The organization ----------------------------------------------------------------------


def _stored_organization(actor: Principal) -> Document:
    organization = orgs.find_organization(get_db(), actor.org)
    if organization is None:
        raise not_found("Organization", "organizationId")
    return organization


def _shown(organization: Document, settings: retention.Retention | None = None) -> Document:
    """The organization with the audit retention that is enforced (``retention``), its
    pending shortening, and the installation's bounds and grace."""
    low, high = retention.bounds()
    settings = settings or retention.settings_of(organization)
    return {
        **organization,
        STAFF_ACCESS: staff_access_of(organization),
        **settings.as_fields(),
        "auditRetentionBounds": {
            "minDays": low,
            "maxDays": high,
            "graceDays": retention.grace().days,
        },
    }


def staff_access_of(organization: Document) -> str:
    """The organization's ``staffAccess``: ``open`` until it chooses otherwise."""
    value = organization.get(STAFF_ACCESS)
    return value if value in STAFF_ACCESS_SETTINGS else DEFAULT_STAFF_ACCESS


def _as_changed(organization: Document) -> Document:
    """What ``changes`` shows of the organization: a pending change's moment as ISO 8601."""
    pending = organization.get(retention.PENDING)
    if pending is None:
        return organization
    return {
        **organization,
        retention.PENDING: {**pending, "effectiveAt": iso(pending["effectiveAt"])},
    }


def find_organization(actor: Principal) -> Document:
    return _shown(_stored_organization(actor))


def retention_disagreement(actor: Principal) -> str | None:
    """Whether the database's copy of the retention settings was changed outside the app."""
    return retention.disagreement(_stored_organization(actor))


def _end_refused_grants(actor: Principal, update: Mapping[str, Any]) -> None:
    """A new ``staffAccess`` ends at once the platform staff's grants it refuses (every read
    under a grant checks the setting too: this keeps them ended if it is switched back)."""
    if STAFF_ACCESS in update:
        staff_grants.end_grants_refused_by(get_db(), actor.org, update[STAFF_ACCESS], utcnow())


def update_organization(actor: Principal, changes: Mapping[str, Any]) -> Document:
    """Change the organization's settings: its name (``manageOrganization``), its audit
    retention and legal hold (``manageAuditRetention``). Retention changes are anchored
    before the database holds them, under the lock the purge takes."""
    organization_wide = ("name", STAFF_ACCESS)
    asked = [
        name for name in (*organization_wide, retention.DAYS, retention.HOLD) if name in changes
    ]
    if not asked:
        raise bad_request(
            "Send at least one of name, staffAccess, auditRetentionDays and auditLegalHold.",
            "name",
        )
    for name in asked:
        permission = "manageOrganization" if name in organization_wide else "manageAuditRetention"
        if not actor.can(permission):
            raise refused(f"Changing {name} needs the {permission} permission.", name)
    update: dict[str, Any] = {}
    if "name" in changes:
        update["name"] = checked_name(changes["name"])
    if STAFF_ACCESS in changes:
        if changes[STAFF_ACCESS] not in STAFF_ACCESS_SETTINGS:
            raise bad_request(
                "staffAccess: is one of open (platform staff read the log under a grant "
                "with a reason), approval (an Owner or Admin approves each grant first) "
                "and none.",
                STAFF_ACCESS,
            )
        update[STAFF_ACCESS] = changes[STAFF_ACCESS]
    if retention.DAYS not in changes and retention.HOLD not in changes:
        before, after = orgs.update_organization(get_db(), actor.org, update)
        _end_refused_grants(actor, update)
        record_changes(
            _as_changed(_shown(before)),
            _as_changed(_shown(after)),
            ORGANIZATION_FIELDS,
            target=("organization", before["_id"], before.get("name")),
        )
        return _shown(after)
    with retention.locked(actor.org) as anchor:
        stored = _stored_organization(actor)
        current = retention.settings_of(stored)
        wanted = retention.checked_change(changes, current)
        if current.hold and not wanted.hold and not actor.is_owner:
            raise refused(
                "Only an Owner lifts a legal hold (an API key never does); nothing changed.",
                retention.HOLD,
            )
        retention.anchor_settings(anchor, actor.org, wanted)
        try:
            _, after = orgs.update_organization(
                get_db(), actor.org, {**update, **wanted.as_fields()}
            )
        except Exception:
            # the database did not take it: neither does the anchor (the purge follows it)
            retention.anchor_settings(anchor, actor.org, current)
            raise
    _end_refused_grants(actor, update)
    record_changes(
        _as_changed(_shown(stored, current)),
        _as_changed(_shown(after)),
        ORGANIZATION_FIELDS,
        target=("organization", stored["_id"], stored.get("name")),
    )
    return _shown(after)


# Reading members and roles (the pages and the API show the same) -------------------------


class MemberPageQuerySchema(PageQuerySchema):
    email = fields.String(
        validate=validate.Length(min=1, max=254, error="Must be 1 to 254 characters.")
    )


class WebMemberPageQuerySchema(MemberPageQuerySchema, WebPageQuerySchema):
    pass


def list_members(
    actor: Principal, args: MultiDict[str, str] | None = None, schema: Schema | None = None
) -> Page:
    """A page of the members by email, each with their account and role; ``email`` keeps
    the members whose email starts with it (any case): an index range, not a scan."""
    db = get_db()
    loaded = load_page_query(
        args if args is not None else MultiDict(), schema or MemberPageQuerySchema()
    )
    prefix = loaded.get("email", "").strip().lower()
    if any(ord(c) < 32 or ord(c) == 127 for c in prefix):
        raise bad_request("email: control characters are not accepted.", "email")
    filters = {"email": prefix} if prefix else {}
    request = read_request(loaded, orgs.MEMBERS, actor.org, filters)
    memberships, more = orgs.list_memberships(db, actor.org, request, prefix or None)
    page = make_page(memberships, more, request, orgs.MEMBERS, actor.org, filters)
    page.items = orgs.members_of(db, actor.org, memberships)
    return page


def list_roles(
    actor: Principal, args: MultiDict[str, str] | None = None, schema: Schema | None = None
) -> Page:
    """A page of the roles by name."""
    db = get_db()
    return paged(
        args if args is not None else MultiDict(),
        orgs.ROLES,
        actor.org,
        lambda request: orgs.list_roles(db, actor.org, request),
        schema,
    )


def roles_by_ids(actor: Principal, ids: list[ObjectId]) -> list[Document]:
    return orgs.find_roles_by_ids(get_db(), actor.org, ids)


def role_choices(actor: Principal) -> list[Document]:
    """The roles a form offers: the first ``CHOICES`` by name."""
    return orgs.list_roles(get_db(), actor.org, PageRequest(CHOICES))[0]


CHOICES = 200


def find_role(actor: Principal, role_id: ObjectId) -> Document:
    return _role(actor.org, role_id)


def invitation_of(token: str) -> Document | None:
    """The pending invitation a token names (to attribute a refused acceptance), or None."""
    return orgs.find_pending_invitation(get_db(), token)
