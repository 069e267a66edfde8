"""Organizations, accounts, memberships and roles: the only code that touches their collections.

Accounts are global (one email, one password); a membership ties an account to an
organization with one role. Everything an organization owns is read through a
``TenantCollection`` built from the caller's organization id.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from ..auth.passwords import hash_password
from ..db import Document, IndexSpec, TenantCollection
from ..emails import email_key
from ..errors import conflict, not_found
from ..ids import utcnow
from ..pagination import Listing, PageRequest, find_page, prefix_range
from .permissions import ADDED_PERMISSIONS, ADMIN, BUILTIN_ROLES, OWNER

# the lists of the API, each walked on its index (``pagination``)
MEMBERS = Listing("members", "memberships", "org_email_id", "emailLower", 1)
ROLES = Listing("roles", "roles", "org_name_id", "nameLower", 1)
INVITATIONS = Listing("invitations", "invitations", "org_pending_expiry", "expiresAt", 1)
INDEXES: dict[str, list[IndexSpec]] = {
    "accounts": [([("emailLower", ASCENDING)], {"name": "email_unique", "unique": True})],
    "memberships": [
        (
            [("organizationId", ASCENDING), ("accountId", ASCENDING)],
            {"name": "org_account_unique", "unique": True},
        ),
        ([("accountId", ASCENDING), ("createdAt", ASCENDING)], {"name": "account_orgs"}),
        # the members list by email, and its search by the start of an email
        (
            [("organizationId", ASCENDING), ("emailLower", ASCENDING), ("_id", ASCENDING)],
            {"name": "org_email_id"},
        ),
    ],
    "roles": [
        (
            [("organizationId", ASCENDING), ("nameLower", ASCENDING)],
            {"name": "org_name_unique", "unique": True},
        ),
        (
            [("organizationId", ASCENDING), ("nameLower", ASCENDING), ("_id", ASCENDING)],
            {"name": "org_name_id"},
        ),
    ],
    "invitations": [
        ([("tokenHash", ASCENDING)], {"name": "token_unique", "unique": True}),
        (
            [("organizationId", ASCENDING), ("emailLower", ASCENDING)],
            {"name": "org_email"},
        ),
        # the pending ones (neither accepted nor revoked), soonest to expire first: the
        # range expiresAt > now is the walk itself
        (
            [
                ("organizationId", ASCENDING),
                ("acceptedAt", ASCENDING),
                ("revokedAt", ASCENDING),
                ("expiresAt", ASCENDING),
                ("_id", ASCENDING),
            ],
            {"name": "org_pending_expiry"},
        ),
        # an account that belongs to no organization logs in to accept one (its newest)
        ([("emailLower", ASCENDING), ("createdAt", DESCENDING)], {"name": "email_newest"}),
    ],
}

INVITATION_PREFIX = "inv_"


# Organizations -------------------------------------------------------------------------


def create_organization(
    db: Database[Document], name: str, owner_account_id: ObjectId
) -> dict[str, Any]:
    """Create an organization, its built-in roles and its first Owner's membership."""
    now = utcnow()
    organization_id = ObjectId()
    organization: Document = {
        "_id": organization_id,
        "name": name.strip(),
        "owners": [owner_account_id],
        "createdAt": now,
        "updatedAt": now,
    }
    db.organizations.insert_one(organization)
    roles: dict[str, Document] = {}
    for key, spec in BUILTIN_ROLES.items():
        role: Document = {
            "_id": ObjectId(),
            "organizationId": organization["_id"],
            "key": key,
            "name": spec["name"],
            "nameLower": spec["name"].lower(),
            "description": spec["description"],
            "builtIn": True,
            "permissions": list(spec["permissions"]),
            "createdAt": now,
            "updatedAt": now,
        }
        db.roles.insert_one(role)
        roles[key] = role
    add_membership(db, organization_id, owner_account_id, roles[OWNER]["_id"])
    return {"organization": organization, "roles": roles}


def grant_added_permissions(db: Database[Document]) -> list[str]:
    """Give each permission of ``ADDED_PERMISSIONS`` to every organization's built-in Owner
    and Admin roles, once (a marker in ``app_upgrades`` says it was done). Returns the
    permissions granted by this call."""
    granted = []
    for permission in ADDED_PERMISSIONS:
        marker = f"grant-{permission}"
        if db.app_upgrades.find_one({"_id": marker}) is not None:
            continue
        db.roles.update_many(
            {"builtIn": True, "key": {"$in": [OWNER, ADMIN]}, "permissions": {"$ne": permission}},
            {"$push": {"permissions": permission}},
        )
        db.app_upgrades.update_one({"_id": marker}, {"$setOnInsert": {"at": utcnow()}}, upsert=True)
        granted.append(permission)
    return granted


def find_organization(db: Database[Document], organization_id: ObjectId) -> Document | None:
    return db.organizations.find_one({"_id": organization_id})


def update_organization(
    db: Database[Document], organization_id: ObjectId, changes: Mapping[str, Any]
) -> tuple[Document, Document]:
    """Apply checked changes; return the organization before and after (one update)."""
    update = {**changes, "updatedAt": utcnow()}
    before = db.organizations.find_one_and_update(
        {"_id": organization_id}, {"$set": update}, return_document=ReturnDocument.BEFORE
    )
    if before is None:
        raise not_found("Organization", "organizationId")
    return before, {**before, **update}


def list_organizations_of_account(db: Database[Document], account_id: ObjectId) -> list[Document]:
    """The organizations an account belongs to, oldest membership first."""
    memberships = list(
        db.memberships.find({"accountId": account_id}).sort("createdAt", ASCENDING).limit(200)
    )
    ids = [m["organizationId"] for m in memberships]
    by_id = {o["_id"]: o for o in db.organizations.find({"_id": {"$in": ids}})}
    return [by_id[i] for i in ids if i in by_id]


def has_any_organization(db: Database[Document]) -> bool:
    return db.organizations.find_one({}, {"_id": 1}) is not None


# The owners guard --------------------------------------------------------------------
#
# ``organizations.owners`` lists accounts that hold the Owner role, and never one that does
# not: an Owner is added there only after the membership says Owner, and taken out before
# the membership stops saying so. Taking one out is a single conditional update that needs
# a second entry, so two Owners demoting each other at the same moment cannot both succeed:
# the organization always keeps at least one Owner.


def ensure_owner_guard(db: Database[Document], organization_id: ObjectId) -> None:
    """Fill ``owners`` for an organization made before the guard existed."""
    if db.organizations.find_one({"_id": organization_id, "owners": {"$exists": True}}, {"_id": 1}):
        return
    owner = find_role_by_key(db, organization_id, OWNER)
    holders = [
        m["accountId"]
        for m in TenantCollection(db.memberships, organization_id).find(
            {"roleId": owner["_id"]} if owner else {"_id": None}, {"accountId": 1}
        )
    ]
    db.organizations.update_one(
        {"_id": organization_id, "owners": {"$exists": False}}, {"$set": {"owners": holders}}
    )


def take_owner_out(db: Database[Document], organization_id: ObjectId, account_id: ObjectId) -> bool:
    """Remove an Owner from the guard unless they are the last one; False when refused."""
    ensure_owner_guard(db, organization_id)
    result = db.organizations.update_one(
        {"_id": organization_id, "owners": account_id, "owners.1": {"$exists": True}},
        {"$pull": {"owners": account_id}},
    )
    return result.modified_count == 1


def put_owner_in(db: Database[Document], organization_id: ObjectId, account_id: ObjectId) -> None:
    """Add an account to the guard once its membership holds the Owner role."""
    ensure_owner_guard(db, organization_id)
    db.organizations.update_one({"_id": organization_id}, {"$addToSet": {"owners": account_id}})


# Accounts ------------------------------------------------------------------------------


def create_account(
    db: Database[Document],
    email: str,
    password: str,
    name: str | None = None,
    *,
    account_id: ObjectId | None = None,
) -> Document:
    """Create an account for a checked email (``emails.clean_email``); 409 if it exists."""
    now = utcnow()
    account: Document = {
        "_id": account_id or ObjectId(),
        "email": email,
        "emailLower": email_key(email),
        "name": (name or "").strip() or None,
        "passwordHash": hash_password(password),
        "credentialVersion": 0,
        "createdAt": now,
        "updatedAt": now,
    }
    try:
        db.accounts.insert_one(account)
    except DuplicateKeyError:
        raise conflict("An account with this email already exists.", "email") from None
    return account


def find_account(db: Database[Document], account_id: ObjectId) -> Document | None:
    return db.accounts.find_one({"_id": account_id})


def find_account_by_email(db: Database[Document], email: str) -> Document | None:
    return db.accounts.find_one({"emailLower": email_key(email)})


def set_password(db: Database[Document], account_id: ObjectId, password: str) -> Document | None:
    """Store a new password and bump the version that every issued JWT must carry."""
    return db.accounts.find_one_and_update(
        {"_id": account_id},
        {
            "$set": {"passwordHash": hash_password(password), "updatedAt": utcnow()},
            "$inc": {"credentialVersion": 1},
        },
        return_document=ReturnDocument.AFTER,
    )


# Memberships ---------------------------------------------------------------------------


def add_membership(
    db: Database[Document], organization_id: ObjectId, account_id: ObjectId, role_id: ObjectId
) -> Document:
    account = db.accounts.find_one({"_id": account_id}, {"emailLower": 1})
    membership: Document = {
        "_id": ObjectId(),
        "accountId": account_id,
        # the account's email (it never changes), so the members list sorts and searches by it
        "emailLower": account.get("emailLower") if account else None,
        "roleId": role_id,
        "createdAt": utcnow(),
    }
    try:
        TenantCollection(db.memberships, organization_id).insert_one(membership)
    except DuplicateKeyError:
        raise conflict("This account is already a member of the organization.", "email") from None
    return membership


def find_membership(
    db: Database[Document], organization_id: ObjectId, account_id: ObjectId
) -> Document | None:
    return TenantCollection(db.memberships, organization_id).find_one({"accountId": account_id})


def list_memberships(
    db: Database[Document],
    organization_id: ObjectId,
    request: PageRequest,
    email_prefix: str | None = None,
) -> tuple[list[Document], bool]:
    """A page of memberships by email (only emails starting with ``email_prefix``, lower
    case, when given), and whether more follow."""
    filter_ = {"emailLower": prefix_range(email_prefix)} if email_prefix else {}
    memberships = TenantCollection(db.memberships, organization_id)
    return find_page(memberships, MEMBERS, filter_, request)


def members_of(
    db: Database[Document], organization_id: ObjectId, memberships: list[Document]
) -> list[dict[str, Any]]:
    """Memberships with their account and role (two reads by id, whatever the page)."""
    accounts = {
        a["_id"]: a
        for a in db.accounts.find({"_id": {"$in": [m["accountId"] for m in memberships]}})
    }
    roles = {
        r["_id"]: r
        for r in find_roles_by_ids(db, organization_id, [m["roleId"] for m in memberships])
    }
    return [
        {"membership": m, "account": accounts.get(m["accountId"]), "role": roles.get(m["roleId"])}
        for m in memberships
        if m["accountId"] in accounts
    ]


def fill_membership_emails(db: Database[Document]) -> int:
    """Copy each account's email onto memberships made before they carried it, once (a
    marker in ``app_upgrades``); returns how many were filled."""
    marker = "membership-emails"
    if db.app_upgrades.find_one({"_id": marker}) is not None:
        return 0
    filled = 0
    missing = list(db.memberships.find({"emailLower": {"$exists": False}}, {"accountId": 1}))
    for start in range(0, len(missing), 500):
        batch = missing[start : start + 500]
        emails = {
            a["_id"]: a.get("emailLower")
            for a in db.accounts.find(
                {"_id": {"$in": [m["accountId"] for m in batch]}}, {"emailLower": 1}
            )
        }
        for membership in batch:
            db.memberships.update_one(
                {"_id": membership["_id"], "emailLower": {"$exists": False}},
                {"$set": {"emailLower": emails.get(membership["accountId"])}},
            )
            filled += 1
    db.app_upgrades.update_one({"_id": marker}, {"$setOnInsert": {"at": utcnow()}}, upsert=True)
    return filled


def find_member(
    db: Database[Document], organization_id: ObjectId, account_id: ObjectId
) -> dict[str, Any] | None:
    """One member with their account and role, in the shape ``list_members`` returns."""
    membership = find_membership(db, organization_id, account_id)
    account = find_account(db, account_id) if membership else None
    if membership is None or account is None:
        return None
    role = find_role(db, organization_id, membership["roleId"])
    return {"membership": membership, "account": account, "role": role}


def set_member_role(
    db: Database[Document],
    organization_id: ObjectId,
    account_id: ObjectId,
    from_role_id: ObjectId,
    to_role_id: ObjectId,
) -> bool:
    """Change a membership's role if it still holds ``from_role_id``; False otherwise."""
    result = TenantCollection(db.memberships, organization_id).update_one(
        {"accountId": account_id, "roleId": from_role_id},
        {"$set": {"roleId": to_role_id, "updatedAt": utcnow()}},
    )
    return result.modified_count == 1


def delete_membership(
    db: Database[Document], organization_id: ObjectId, account_id: ObjectId, role_id: ObjectId
) -> bool:
    """Delete a membership if it still holds ``role_id``; False otherwise."""
    result = TenantCollection(db.memberships, organization_id).delete_one(
        {"accountId": account_id, "roleId": role_id}
    )
    return result.deleted_count == 1


# Roles ---------------------------------------------------------------------------------


def list_roles(
    db: Database[Document], organization_id: ObjectId, request: PageRequest
) -> tuple[list[Document], bool]:
    """A page of the organization's roles by name, and whether more follow."""
    return find_page(TenantCollection(db.roles, organization_id), ROLES, {}, request)


def find_roles_by_ids(
    db: Database[Document], organization_id: ObjectId, ids: list[ObjectId]
) -> list[Document]:
    wanted = list({i for i in ids if i is not None})
    if not wanted:
        return []
    return list(TenantCollection(db.roles, organization_id).find({"_id": {"$in": wanted}}))


def find_role(
    db: Database[Document], organization_id: ObjectId, role_id: ObjectId
) -> Document | None:
    return TenantCollection(db.roles, organization_id).find_one({"_id": role_id})


def find_role_by_key(
    db: Database[Document], organization_id: ObjectId, key: str
) -> Document | None:
    return TenantCollection(db.roles, organization_id).find_one({"key": key})


def find_role_by_name(
    db: Database[Document], organization_id: ObjectId, name: str
) -> Document | None:
    return TenantCollection(db.roles, organization_id).find_one({"nameLower": name.strip().lower()})


def create_role(
    db: Database[Document],
    organization_id: ObjectId,
    name: str,
    permissions: list[str],
    description: str | None = None,
) -> Document:
    now = utcnow()
    role: Document = {
        "_id": ObjectId(),
        "key": None,
        "name": name.strip(),
        "nameLower": name.strip().lower(),
        "description": (description or "").strip() or None,
        "builtIn": False,
        "permissions": sorted(set(permissions)),
        "createdAt": now,
        "updatedAt": now,
    }
    try:
        TenantCollection(db.roles, organization_id).insert_one(role)
    except DuplicateKeyError:
        raise conflict("A role with this name already exists.", "name") from None
    return role


def update_role(
    db: Database[Document], organization_id: ObjectId, role_id: ObjectId, changes: Mapping[str, Any]
) -> tuple[Document, Document]:
    """Apply checked changes (name, description, permissions) to a role; return the role
    before and after them (one atomic update)."""
    changes = dict(changes)
    if "name" in changes:
        changes["nameLower"] = changes["name"].lower()
    changes["updatedAt"] = utcnow()
    try:
        before = TenantCollection(db.roles, organization_id).find_one_and_update(
            {"_id": role_id}, {"$set": changes}, return_document=ReturnDocument.BEFORE
        )
    except DuplicateKeyError:
        raise conflict("A role with this name already exists.", "name") from None
    if before is None:
        raise not_found("Role", "roleId")
    return before, {**before, **changes}


def role_in_use(db: Database[Document], organization_id: ObjectId, role_id: ObjectId) -> bool:
    """Whether members, live API keys or pending invitations hold the role."""
    return bool(
        TenantCollection(db.memberships, organization_id).count_documents(
            {"roleId": role_id}, limit=1
        )
        or TenantCollection(db.api_keys, organization_id).count_documents(
            {"roleId": role_id, "revokedAt": None}, limit=1
        )
        or TenantCollection(db.invitations, organization_id).count_documents(
            {
                "roleId": role_id,
                "acceptedAt": None,
                "revokedAt": None,
                "expiresAt": {"$gt": utcnow()},
            },
            limit=1,
        )
    )


def delete_role(db: Database[Document], organization_id: ObjectId, role_id: ObjectId) -> None:
    TenantCollection(db.roles, organization_id).delete_one({"_id": role_id})


# Invitations ---------------------------------------------------------------------------
#
# The token is shown once, in the inviter's answer, and only its SHA-256 is stored: like an
# API key it is a random 256-bit secret, so a fast hash is enough and lookups go by hash.


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _pending(now: datetime) -> Document:
    return {"acceptedAt": None, "revokedAt": None, "expiresAt": {"$gt": now}}


def create_invitation(
    db: Database[Document],
    organization_id: ObjectId,
    *,
    email: str,
    role_id: ObjectId,
    invited_by: Mapping[str, Any],
    lifetime: timedelta,
) -> tuple[Document, str]:
    """Invite an email with a role, replacing its pending invitation; return (doc, token)."""
    now = utcnow()
    invitations = TenantCollection(db.invitations, organization_id)
    invitations.update_many(
        {"emailLower": email_key(email), **_pending(now)}, {"$set": {"revokedAt": now}}
    )
    token = INVITATION_PREFIX + secrets.token_urlsafe(32)
    invitation: Document = {
        "_id": ObjectId(),
        "email": email,
        "emailLower": email_key(email),
        "roleId": role_id,
        "tokenHash": _token_hash(token),
        "invitedBy": invited_by,
        "createdAt": now,
        "expiresAt": now + lifetime,
        "acceptedAt": None,
        "acceptedBy": None,
        "revokedAt": None,
    }
    invitations.insert_one(invitation)
    return invitation, token


def list_pending_invitations(
    db: Database[Document], organization_id: ObjectId, request: PageRequest
) -> tuple[list[Document], bool]:
    """A page of the pending invitations, soonest to expire first, and whether more follow."""
    invitations = TenantCollection(db.invitations, organization_id)
    return find_page(invitations, INVITATIONS, _pending(utcnow()), request, {"tokenHash": 0})


def find_pending_invitation(db: Database[Document], token: str) -> Document | None:
    """The pending invitation a token belongs to, in whichever organization it is."""
    if (
        not isinstance(token, str)
        or not token.isascii()
        or not token.startswith(INVITATION_PREFIX)
        or len(token) > 200
    ):
        return None
    return db.invitations.find_one({"tokenHash": _token_hash(token), **_pending(utcnow())})


def find_pending_invitation_by_id(
    db: Database[Document], organization_id: ObjectId, invitation_id: ObjectId
) -> Document | None:
    """A pending invitation of the organization by its id (without its token's hash)."""
    return TenantCollection(db.invitations, organization_id).find_one(
        {"_id": invitation_id, **_pending(utcnow())}, {"tokenHash": 0}
    )


def revoke_invitation(
    db: Database[Document], organization_id: ObjectId, invitation_id: ObjectId
) -> Document:
    now = utcnow()
    revoked = TenantCollection(db.invitations, organization_id).find_one_and_update(
        {"_id": invitation_id, **_pending(now)},
        {"$set": {"revokedAt": now, "revokedReason": "revoked"}},
        projection={"tokenHash": 0},
        return_document=ReturnDocument.AFTER,
    )
    if revoked is None:
        raise not_found("Pending invitation", "invitationId")
    return revoked


def revoke_invitations_by(
    db: Database[Document],
    organization_id: ObjectId,
    account_id: ObjectId,
    reason: str = "senderRemoved",
) -> int:
    """Revoke the pending invitations an account sent, with any of its credentials or with a
    key it created (it is leaving the organization, or revoking what it made)."""
    return _revoke_invitations(db, organization_id, {"invitedBy.accountId": account_id}, reason)


def revoke_invitations_sent_with_keys(
    db: Database[Document], organization_id: ObjectId, key_ids: list[ObjectId], reason: str
) -> int:
    """Revoke the pending invitations these API keys sent (the keys were revoked)."""
    if not key_ids:
        return 0
    return _revoke_invitations(
        db, organization_id, {"invitedBy.apiKeyId": {"$in": key_ids}}, reason
    )


def revoke_invitations_sent_with_password(
    db: Database[Document], organization_id: ObjectId, account_id: ObjectId, reason: str
) -> int:
    """Revoke the pending invitations an account sent logged in (a JWT or a web session), not
    with a key: its password changed, so every credential it had then is gone."""
    selector = {"invitedBy.accountId": account_id, "invitedBy.apiKeyId": None}
    return _revoke_invitations(db, organization_id, selector, reason)


def _revoke_invitations(
    db: Database[Document], organization_id: ObjectId, selector: Document, reason: str
) -> int:
    now = utcnow()
    return (
        TenantCollection(db.invitations, organization_id)
        .update_many(
            {**selector, **_pending(now)}, {"$set": {"revokedAt": now, "revokedReason": reason}}
        )
        .modified_count
    )


def revoke_invitation_for(
    db: Database[Document], invitation: Mapping[str, Any], reason: str
) -> None:
    """Revoke one pending invitation, saying why (its sender's credential ended)."""
    _revoke_invitations(db, invitation["organizationId"], {"_id": invitation["_id"]}, reason)


def newest_pending_invitation_for(
    db: Database[Document], email: str, organization_id: ObjectId | None = None
) -> Document | None:
    """The newest pending invitation of an email, in one organization or in any."""
    selector: Document = {"emailLower": email_key(email), **_pending(utcnow())}
    if organization_id is not None:
        selector["organizationId"] = organization_id
    found = db.invitations.find(selector, {"tokenHash": 0}).sort("createdAt", DESCENDING).limit(1)
    return next(iter(found), None)


def bump_credential_version(db: Database[Document], account_id: ObjectId) -> None:
    """End every JWT the account holds, as a password change does, without changing it."""
    db.accounts.update_one(
        {"_id": account_id}, {"$inc": {"credentialVersion": 1}, "$set": {"updatedAt": utcnow()}}
    )


def claim_invitation(
    db: Database[Document], invitation: Mapping[str, Any], account_id: ObjectId
) -> bool:
    """Mark a pending invitation accepted, once: False when another request was first."""
    now = utcnow()
    result = TenantCollection(db.invitations, invitation["organizationId"]).update_one(
        {"_id": invitation["_id"], **_pending(now)},
        {"$set": {"acceptedAt": now, "acceptedBy": account_id}},
    )
    return result.modified_count == 1


def release_invitation(db: Database[Document], invitation: Mapping[str, Any]) -> None:
    """Undo a claim whose acceptance could not be completed."""
    TenantCollection(db.invitations, invitation["organizationId"]).update_one(
        {"_id": invitation["_id"]}, {"$set": {"acceptedAt": None, "acceptedBy": None}}
    )
