"""Who is making the request: resolved once, before any view, for every request.

The principal carries the organization every data-layer call is scoped to, the permissions
of the caller's role, and what the audit record needs (auth type, account, API key,
workspace binding). API paths accept ``Authorization: Bearer <jwt>`` or ``X-API-Key``;
web pages accept the flask-login session. Bad credentials leave an anonymous principal and
an ``auth_error`` that protected endpoints answer with a 401.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import wraps

from bson import ObjectId
from flask import g, redirect, request, session, url_for
from flask_login import current_user

from ..api_keys import repository as api_keys
from ..audit.capture.context import note_actor, note_former_credential
from ..db import get_db
from ..errors import ApiError, forbidden, unauthorized
from ..organizations import repository as orgs
from ..organizations.permissions import PERMISSIONS
from ..ratelimit import login_email_key
from .tokens import Claims, TokenError, check_version, credential_version, decode_token

JWT = "jwt"
API_KEY = "apiKey"
SESSION = "session"
OPERATOR_AUTH = "cli"
NONE = "none"
OWNER_ROLE_KEY = "owner"


@dataclass(frozen=True)
class Principal:
    auth_type: str = NONE
    organization_id: ObjectId | None = None
    account_id: ObjectId | None = None
    account_email: str | None = None
    api_key_id: ObjectId | None = None
    api_key_name: str | None = None
    bound_workspace_id: ObjectId | None = None
    role_id: ObjectId | None = None
    role_name: str | None = None
    role_key: str | None = None
    key_creator_id: ObjectId | None = None
    credential_id: str | None = None  # the audit log's non-reversible name of the credential
    # the password's version behind a person's JWT or session (what dies with a change)
    credential_version: int | None = None
    permissions: frozenset = field(default_factory=frozenset)

    @property
    def org(self) -> ObjectId:
        """The organization of an authenticated principal (services act for no one else)."""
        if self.organization_id is None:
            raise RuntimeError("no organization: the principal is not authenticated")
        return self.organization_id

    @property
    def is_authenticated(self) -> bool:
        return self.auth_type != NONE and self.organization_id is not None

    @property
    def is_owner(self) -> bool:
        """An Owner in person (or the operator); an API key never counts as one."""
        return self.role_key == OWNER_ROLE_KEY and self.api_key_id is None

    def can(self, permission: str) -> bool:
        return self.is_authenticated and permission in self.permissions


ANONYMOUS = Principal()


def current_principal() -> Principal:
    return g.get("principal", ANONYMOUS)


def _member_principal(auth_type: str, account: dict, organization_id: ObjectId) -> Principal | None:
    db = get_db()
    membership = orgs.find_membership(db, organization_id, account["_id"])
    if membership is None:
        return None
    role = orgs.find_role(db, organization_id, membership["roleId"])
    return Principal(
        auth_type=auth_type,
        organization_id=organization_id,
        account_id=account["_id"],
        account_email=account["email"],
        role_id=role["_id"] if role else None,
        role_name=role["name"] if role else None,
        role_key=role.get("key") if role else None,
        permissions=frozenset(role["permissions"]) if role else frozenset(),
        credential_version=credential_version(account),
    )


def account_of_token(token: str) -> tuple[dict, Claims]:
    """The account a JWT speaks for, and its claims (organization, name); or TokenError."""
    try:
        claims = decode_token(token)
    except TokenError as error:
        if error.attribution:  # expired, but ours: whose it was
            expired = error.attribution
            account = orgs.find_account(get_db(), expired["accountId"])
            error.attribution = _former(
                JWT, expired["organizationId"], account, credential=expired["credentialId"]
            )
        raise
    account = orgs.find_account(get_db(), claims.account_id)
    if account is None:
        raise TokenError("The token's account no longer exists.")
    try:
        check_version(claims.version, account)
    except TokenError as error:
        error.attribution = _former(
            JWT, claims.organization_id, account, credential=claims.credential_id
        )
        raise
    return account, claims


def _former(
    auth_type: str,
    organization_id: ObjectId,
    account: dict | None = None,
    key=None,
    *,
    credential: str | None = None,
):
    """Who a refused credential belonged to, for the audit record of the refusal."""
    if account is None and key is None:
        return None
    return {
        "organizationId": organization_id,
        "authType": auth_type,
        "accountId": account["_id"] if account else None,
        "accountEmail": account["email"] if account else None,
        "apiKeyId": key["_id"] if key else None,
        "apiKeyName": key["name"] if key else None,
        "credentialId": credential or (api_key_credential(key["_id"]) if key else None),
    }


def api_key_credential(key_id: ObjectId) -> str:
    """An API key's name in the audit log: its id (the secret is never stored)."""
    return f"key_{key_id}"


def session_credential(session_id: ObjectId) -> str:
    """A web session's name in the audit log: its server-side id (not the cookie's token)."""
    return f"ses_{session_id}"


def _from_jwt(token: str) -> Principal:
    account, claims = account_of_token(token)
    if claims.scope is not None:  # an invitations-only token is nobody anywhere else
        raise TokenError(
            "This token can only accept invitations (POST /api/v1/invitations/accept); "
            "request a new one once you are a member."
        )
    principal = _member_principal(JWT, account, claims.organization_id)
    if not principal:
        raise TokenError(
            "The token's account is no longer a member of its organization.",
            _former(JWT, claims.organization_id, account, credential=claims.credential_id),
        )
    return replace(principal, credential_id=claims.credential_id)


def _from_api_key(secret: str) -> Principal:
    db = get_db()
    key = api_keys.authenticate_api_key(db, secret)
    if key is None:
        raise TokenError("The API key is not valid.")
    if key.get("revokedAt") is not None:
        raise TokenError(
            "The API key has been revoked.", _former(API_KEY, key["organizationId"], key=key)
        )
    role = orgs.find_role(db, key["organizationId"], key["roleId"])
    permissions = frozenset(role["permissions"]) if role else frozenset()
    creator_id = key.get("createdBy")
    if creator_id is not None:  # never more than its creator holds now
        creator = _creator_permissions(key["organizationId"], creator_id)
        if creator is None:
            raise TokenError(
                "The API key's creator is no longer a member; the key is revoked.",
                _former(API_KEY, key["organizationId"], key=key),
            )
        permissions &= creator
    api_keys.touch_last_used(db, key)
    return Principal(
        auth_type=API_KEY,
        organization_id=key["organizationId"],
        api_key_id=key["_id"],
        api_key_name=key["name"],
        bound_workspace_id=key.get("workspaceId"),
        role_id=role["_id"] if role else None,
        role_name=role["name"] if role else None,
        role_key=role.get("key") if role else None,
        key_creator_id=creator_id,
        permissions=permissions,
        credential_id=api_key_credential(key["_id"]),
    )


def _creator_permissions(organization_id: ObjectId, account_id: ObjectId) -> frozenset | None:
    db = get_db()
    membership = orgs.find_membership(db, organization_id, account_id)
    if membership is None:
        return None
    role = orgs.find_role(db, organization_id, membership["roleId"])
    return frozenset(role["permissions"]) if role else frozenset()


def _from_session() -> Principal:
    if not current_user.is_authenticated:
        return ANONYMOUS
    account = current_user.account
    wanted = session.get("organizationId")
    credential = session_credential(current_user.session_id)
    if wanted and ObjectId.is_valid(wanted):
        principal = _member_principal(SESSION, account, ObjectId(wanted))
        if principal:  # the usual case: one membership lookup, no listing
            return replace(principal, credential_id=credential)
    for organization in account_organizations(account["_id"]):
        principal = _member_principal(SESSION, account, organization["_id"])
        if principal:
            session["organizationId"] = str(organization["_id"])
            return replace(principal, credential_id=credential)
    return ANONYMOUS


def account_organizations(account_id: ObjectId) -> list[dict]:
    """The account's organizations, read once per request (principal and navigation share it)."""
    cached = g.get("account_organizations")
    if cached is None or cached[0] != account_id:
        cached = g.account_organizations = (
            account_id,
            orgs.list_organizations_of_account(get_db(), account_id),
        )
    return cached[1]


def load_principal() -> None:
    """Resolve the caller of this request into ``g.principal`` (a before_request hook)."""
    g.principal = ANONYMOUS
    g.auth_error = None
    g.login_account = None
    g.account_organizations = None
    if request.endpoint in ("static", "health.healthz", "health.readyz"):
        return
    if is_staff_path(request.path):
        # the platform's support staff: their own credentials, resolved by
        # ``staff.principal.load_staff``; no organization's session, JWT or key counts here
        return
    if request.method == "POST" and request.endpoint in _LOGIN_ENDPOINTS:
        # a login names its own subject, whose organization's log it belongs in (before a
        # rate limit or CSRF refuses it); a credential sent along is not its caller
        _attribute_login_attempt()
        return
    if not request.path.startswith("/api/"):
        g.principal = _from_session()
        return
    authorization = request.headers.get("Authorization")
    key = request.headers.get("X-API-Key")
    try:
        if authorization and key:
            raise TokenError("Send either Authorization or X-API-Key, not both.")
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise TokenError("The Authorization header must be 'Bearer <token>'.")
            g.principal = _from_jwt(token.strip())
        elif key:
            g.principal = _from_api_key(key.strip())
    except TokenError as error:
        g.auth_error = str(error)
        if error.attribution:
            note_former_credential(error.attribution)


def is_staff_path(path: str) -> bool:
    """Under ``/staff`` or ``/api/v1/staff/``: where only staff credentials count (and
    nowhere else do they)."""
    return path in ("/staff", "/api/v1/staff") or path.startswith(("/staff/", "/api/v1/staff/"))


_LOGIN_ENDPOINTS = frozenset({"api.auth.create_token", "web.session.login"})


def _attribute_login_attempt() -> None:
    """A login attempt for a known account belongs in its organization's log, refused or not."""
    email = login_email_key().partition(":")[2]
    if not email:
        return
    account, organizations = login_account(email)
    if account is not None and organizations:
        note_actor(account, organizations[0]["_id"])


def login_account(email: str) -> tuple[dict | None, list[dict]]:
    """The account a login names and its organizations, looked up once per request (the
    hook that attributes the attempt and the login view share it)."""
    key = email.strip().lower()
    cached = g.get("login_account")
    if cached is None or cached[0] != key:
        db = get_db()
        account = orgs.find_account_by_email(db, key)
        organizations = orgs.list_organizations_of_account(db, account["_id"]) if account else []
        cached = g.login_account = (key, account, organizations)
    return cached[1], cached[2]


def require_authentication() -> Principal:
    principal = current_principal()
    if not principal.is_authenticated:
        if request.path.startswith("/api/"):
            raise unauthorized(
                g.get("auth_error")
                or "Authentication required: send 'Authorization: Bearer <token>' or 'X-API-Key'."
            )
        raise _LoginRedirect()
    return principal


class _LoginRedirect(ApiError):
    def __init__(self):
        super().__init__(401, "unauthorized", "Log in to continue.")


def login_redirect(_error):
    return redirect(url_for("web.session.login", next=request.full_path.rstrip("?")))


def require_permission(permission: str | None, *, workspace_scoped: bool = False):
    """Guard a view: the caller must be authenticated and, if given, hold the permission.

    An API key bound to a workspace acts only inside it: views that are not
    ``workspace_scoped`` (members, roles, keys, the organization, its audit log) refuse it.
    A permission name that does not exist fails at import time: a typo would otherwise
    lock everyone out of the view, silently.
    """
    if permission is not None and permission not in PERMISSIONS:
        raise ValueError(
            f"require_permission({permission!r}): no such permission; "
            f"known: {', '.join(sorted(PERMISSIONS))}"
        )

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            principal = require_authentication()
            if principal.bound_workspace_id is not None and not workspace_scoped:
                raise ApiError(
                    403,
                    "forbidden",
                    f"This API key is bound to workspace {principal.bound_workspace_id}: it "
                    "acts only on that workspace and its pathways, not on the organization.",
                )
            if permission is not None and not principal.can(permission):
                raise forbidden(permission)
            return view(*args, **kwargs)

        wrapped.required_permission = permission
        wrapped.workspace_scoped = workspace_scoped
        return wrapped

    return decorator
