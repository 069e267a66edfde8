"""Organizations, accounts, memberships and roles: the only code that touches their collections.

Accounts are global (one email, one password); a membership ties an account to an
organization with one role. Everything an organization owns is read through a
``TenantCollection`` built from the caller's organization id.
"""

from __future__ import annotations

from bson import ObjectId
from pymongo import ASCENDING, ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from ..auth.passwords import hash_password
from ..db import TenantCollection
from ..errors import conflict, not_found, unprocessable
from ..ids import utcnow
from .permissions import BUILTIN_ROLES, OWNER, PERMISSIONS

INDEXES = {
    "accounts": [([("emailLower", ASCENDING)], {"name": "email_unique", "unique": True})],
    "memberships": [
        (
            [("organizationId", ASCENDING), ("accountId", ASCENDING)],
            {"name": "org_account_unique", "unique": True},
        ),
        ([("accountId", ASCENDING), ("createdAt", ASCENDING)], {"name": "account_orgs"}),
    ],
    "roles": [
        (
            [("organizationId", ASCENDING), ("nameLower", ASCENDING)],
            {"name": "org_name_unique", "unique": True},
        ),
    ],
}


def normalize_email(email: str) -> str:
    return email.strip().lower()


# Organizations -------------------------------------------------------------------------


def create_organization(
    db: Database,
    name: str,
    owner_email: str,
    owner_password: str | None,
    owner_name: str | None = None,
) -> dict:
    """Create an organization, its built-in roles and its first Owner.

    The owner account is created when the email is new, or reused when it exists.
    """
    now = utcnow()
    organization = {"_id": ObjectId(), "name": name.strip(), "createdAt": now, "updatedAt": now}
    account = find_account_by_email(db, owner_email)
    if account is None:
        if not owner_password:
            raise unprocessable("A password is needed for a new account.", "password")
        account = create_account(db, owner_email, owner_password, owner_name)
    db.organizations.insert_one(organization)
    roles = {}
    for key, spec in BUILTIN_ROLES.items():
        role = {
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
    add_membership(db, organization["_id"], account["_id"], roles[OWNER]["_id"])
    return {"organization": organization, "owner": account, "roles": roles}


def find_organization(db: Database, organization_id: ObjectId) -> dict | None:
    return db.organizations.find_one({"_id": organization_id})


def rename_organization(db: Database, organization_id: ObjectId, name: str) -> dict:
    return db.organizations.find_one_and_update(
        {"_id": organization_id},
        {"$set": {"name": name.strip(), "updatedAt": utcnow()}},
        return_document=ReturnDocument.AFTER,
    )


def list_organizations_of_account(db: Database, account_id: ObjectId) -> list[dict]:
    """The organizations an account belongs to, oldest membership first."""
    memberships = list(
        db.memberships.find({"accountId": account_id}).sort("createdAt", ASCENDING).limit(200)
    )
    ids = [m["organizationId"] for m in memberships]
    by_id = {o["_id"]: o for o in db.organizations.find({"_id": {"$in": ids}})}
    return [by_id[i] for i in ids if i in by_id]


def has_any_organization(db: Database) -> bool:
    return db.organizations.find_one({}, {"_id": 1}) is not None


# Accounts ------------------------------------------------------------------------------


def create_account(db: Database, email: str, password: str, name: str | None = None) -> dict:
    now = utcnow()
    account = {
        "_id": ObjectId(),
        "email": email.strip(),
        "emailLower": normalize_email(email),
        "name": (name or "").strip() or None,
        "passwordHash": hash_password(password),
        "createdAt": now,
        "updatedAt": now,
    }
    try:
        db.accounts.insert_one(account)
    except DuplicateKeyError:
        raise conflict("An account with this email already exists.", "email") from None
    return account


def find_account(db: Database, account_id: ObjectId) -> dict | None:
    return db.accounts.find_one({"_id": account_id})


def find_account_by_email(db: Database, email: str) -> dict | None:
    return db.accounts.find_one({"emailLower": normalize_email(email)})


# Memberships ---------------------------------------------------------------------------


def add_membership(
    db: Database, organization_id: ObjectId, account_id: ObjectId, role_id: ObjectId
) -> dict:
    membership = {
        "_id": ObjectId(),
        "accountId": account_id,
        "roleId": role_id,
        "createdAt": utcnow(),
    }
    try:
        TenantCollection(db.memberships, organization_id).insert_one(membership)
    except DuplicateKeyError:
        raise conflict("This account is already a member of the organization.", "email") from None
    return membership


def find_membership(db: Database, organization_id: ObjectId, account_id: ObjectId) -> dict | None:
    return TenantCollection(db.memberships, organization_id).find_one({"accountId": account_id})


def list_members(db: Database, organization_id: ObjectId, limit: int = 500) -> list[dict]:
    """Members with their account and role, oldest first."""
    memberships = list(
        TenantCollection(db.memberships, organization_id).find().sort("createdAt", 1).limit(limit)
    )
    accounts = {
        a["_id"]: a
        for a in db.accounts.find({"_id": {"$in": [m["accountId"] for m in memberships]}})
    }
    roles = {r["_id"]: r for r in TenantCollection(db.roles, organization_id).find()}
    return [
        {"membership": m, "account": accounts.get(m["accountId"]), "role": roles.get(m["roleId"])}
        for m in memberships
        if m["accountId"] in accounts
    ]


def find_member(db: Database, organization_id: ObjectId, account_id: ObjectId) -> dict | None:
    """One member with their account and role, in the shape ``list_members`` returns."""
    membership = find_membership(db, organization_id, account_id)
    account = membership and find_account(db, account_id)
    if not account:
        return None
    role = find_role(db, organization_id, membership["roleId"])
    return {"membership": membership, "account": account, "role": role}


def _owner_count(db: Database, organization_id: ObjectId) -> int:
    owner = find_role_by_key(db, organization_id, OWNER)
    return TenantCollection(db.memberships, organization_id).count_documents(
        {"roleId": owner["_id"]}
    )


def _is_owner_membership(db: Database, organization_id: ObjectId, membership: dict) -> bool:
    owner = find_role_by_key(db, organization_id, OWNER)
    return membership["roleId"] == owner["_id"]


def change_member_role(
    db: Database, organization_id: ObjectId, account_id: ObjectId, role_id: ObjectId
) -> dict:
    memberships = TenantCollection(db.memberships, organization_id)
    membership = memberships.find_one({"accountId": account_id})
    if membership is None:
        raise not_found("Member", "accountId")
    if find_role(db, organization_id, role_id) is None:
        raise unprocessable("No role with this id in the organization.", "roleId")
    owner = find_role_by_key(db, organization_id, OWNER)
    demoting_an_owner = membership["roleId"] == owner["_id"] and role_id != owner["_id"]
    if demoting_an_owner and _owner_count(db, organization_id) <= 1:
        raise conflict(
            "The last Owner cannot be demoted; make another member Owner first.", "roleId"
        )
    return memberships.find_one_and_update(
        {"accountId": account_id},
        {"$set": {"roleId": role_id, "updatedAt": utcnow()}},
        return_document=ReturnDocument.AFTER,
    )


def remove_member(db: Database, organization_id: ObjectId, account_id: ObjectId) -> None:
    memberships = TenantCollection(db.memberships, organization_id)
    membership = memberships.find_one({"accountId": account_id})
    if membership is None:
        raise not_found("Member", "accountId")
    if (
        _is_owner_membership(db, organization_id, membership)
        and _owner_count(db, organization_id) <= 1
    ):
        raise conflict(
            "The last Owner cannot be removed; make another member Owner first.", "accountId"
        )
    memberships.delete_one({"_id": membership["_id"]})


# Roles ---------------------------------------------------------------------------------


def list_roles(db: Database, organization_id: ObjectId) -> list[dict]:
    roles = list(TenantCollection(db.roles, organization_id).find().limit(500))
    order = {"owner": 0, "admin": 1, "member": 2}
    return sorted(roles, key=lambda r: (order.get(r.get("key"), 3), r["nameLower"]))


def find_role(db: Database, organization_id: ObjectId, role_id: ObjectId) -> dict | None:
    return TenantCollection(db.roles, organization_id).find_one({"_id": role_id})


def find_role_by_key(db: Database, organization_id: ObjectId, key: str) -> dict | None:
    return TenantCollection(db.roles, organization_id).find_one({"key": key})


def find_role_by_name(db: Database, organization_id: ObjectId, name: str) -> dict | None:
    return TenantCollection(db.roles, organization_id).find_one({"nameLower": name.strip().lower()})


def create_role(
    db: Database,
    organization_id: ObjectId,
    name: str,
    permissions: list[str],
    description: str | None = None,
) -> dict:
    now = utcnow()
    role = {
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
    db: Database,
    organization_id: ObjectId,
    role_id: ObjectId,
    *,
    name: str | None = None,
    permissions: list[str] | None = None,
    description: str | None = None,
) -> dict:
    """Rename a custom role or change any role's permissions; the Owner role is locked."""
    roles = TenantCollection(db.roles, organization_id)
    role = roles.find_one({"_id": role_id})
    if role is None:
        raise not_found("Role", "roleId")
    changes: dict = {}
    if name is not None and name.strip() != role["name"]:
        if role["builtIn"]:
            raise conflict("Built-in roles cannot be renamed.", "name")
        changes.update(name=name.strip(), nameLower=name.strip().lower())
    if description is not None:
        changes["description"] = description.strip() or None
    if permissions is not None:
        wanted = sorted(set(permissions))
        if role.get("key") == OWNER and wanted != sorted(PERMISSIONS):
            raise conflict("The Owner role always holds every permission.", "permissions")
        changes["permissions"] = wanted
    if not changes:
        return role
    changes["updatedAt"] = utcnow()
    try:
        return roles.find_one_and_update(
            {"_id": role_id}, {"$set": changes}, return_document=ReturnDocument.AFTER
        )
    except DuplicateKeyError:
        raise conflict("A role with this name already exists.", "name") from None


def delete_role(db: Database, organization_id: ObjectId, role_id: ObjectId) -> None:
    roles = TenantCollection(db.roles, organization_id)
    role = roles.find_one({"_id": role_id})
    if role is None:
        raise not_found("Role", "roleId")
    if role["builtIn"]:
        raise conflict("Built-in roles cannot be deleted.", "roleId")
    in_use = TenantCollection(db.memberships, organization_id).count_documents(
        {"roleId": role_id}, limit=1
    ) or TenantCollection(db.api_keys, organization_id).count_documents(
        {"roleId": role_id, "revokedAt": None}, limit=1
    )
    if in_use:
        raise conflict("The role is held by members or API keys; reassign them first.", "roleId")
    roles.delete_one({"_id": role_id})
