"""``POST /api/v1/auth/token``: trade an email and password for a JWT;
``POST /api/v1/auth/password``: change one's own password."""

from flask import Blueprint, Response, jsonify
from marshmallow import Schema, fields, validate

from ..apidoc import operation
from ..audit.capture.context import note_actor, note_credential
from ..audit.capture.hooks import audit_action
from ..db import get_db
from ..errors import ApiError, unauthorized
from ..organizations import repository as orgs
from ..organizations import service as organization_service
from ..ratelimit import limiter, login_email_key, login_limit
from ..schemas import ObjectIdField, load_body
from .passwords import verify_password
from .principal import login_account, require_authentication
from .tokens import INVITATIONS_SCOPE, issue_token

bp = Blueprint("auth", __name__)

INVALID_LOGIN = "The email or password is incorrect."


class TokenRequestSchema(Schema):
    email = fields.String(required=True, validate=validate.Length(min=3, max=320))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    organizationId = ObjectIdField(load_default=None)


class TokenSchema(Schema):
    token = fields.String(required=True)
    scope = fields.String(
        metadata={
            "description": "invitations: the token of an account in no organization, which "
            "can only accept invitations (POST /api/v1/invitations/accept)"
        }
    )
    tokenType = fields.String(required=True, metadata={"enum": ["Bearer"]})
    expiresIn = fields.Integer(required=True)
    organizationId = ObjectIdField(required=True)


@bp.post("/auth/token")
@audit_action("session.login", failed="session.loginFailed")
@operation(
    "Exchange an email and password for a JWT",
    body=TokenRequestSchema,
    response=(200, TokenSchema),
    errors=(400, 401, 403, 415, 429),
    security=[],
)
@limiter.limit(login_limit)
@limiter.shared_limit(login_limit, scope="login-email", key_func=login_email_key)
def create_token():
    data = load_body(TokenRequestSchema())
    account, organizations = login_account(data["email"])
    member_of = {o["_id"] for o in organizations}
    organization_id = data["organizationId"]
    if account is not None and organizations:
        attributed = organization_id if organization_id in member_of else organizations[0]["_id"]
        note_actor(account, attributed)
    if not verify_password(account["passwordHash"] if account else None, data["password"]):
        raise unauthorized(INVALID_LOGIN)
    if not organizations:
        assert account is not None  # (the password matched)
        return _invitation_token(account, organization_id)
    if organization_id is None:
        organization_id = organizations[0]["_id"]
    elif organization_id not in member_of:
        raise ApiError(
            403, "forbidden", "This account is not a member of that organization.", "organizationId"
        )
    issued = issue_token(account, organization_id)
    note_credential(
        issued.credential_id, "jwt"
    )  # this request opened the token: it carries its name
    answer = {
        "token": issued.token,
        "expiresIn": issued.lifetime,
        "organizationId": organization_id,
    }
    return jsonify(TokenSchema().dump({**answer, "tokenType": "Bearer"}))


def _invitation_token(account: dict, organization_id) -> Response:
    """An account that belongs to no organization (a former member invited back) gets a
    token that can do nothing but accept invitations: scoped to the organization of its
    newest pending invitation (or the one named), refused by every other endpoint."""
    invitation = orgs.newest_pending_invitation_for(get_db(), account["email"], organization_id)
    if invitation is None:
        raise ApiError(
            403,
            "forbidden",
            "This account belongs to no organization and has no pending invitation"
            + (" from that organization." if organization_id else "."),
            "organizationId" if organization_id else None,
        )
    note_actor(account, invitation["organizationId"])
    issued = issue_token(account, invitation["organizationId"], scope=INVITATIONS_SCOPE)
    note_credential(issued.credential_id, "jwt")
    answer = {
        "token": issued.token,
        "expiresIn": issued.lifetime,
        "organizationId": invitation["organizationId"],
        "scope": INVITATIONS_SCOPE,
    }
    return jsonify(TokenSchema().dump({**answer, "tokenType": "Bearer"}))


class PasswordChangeSchema(Schema):
    currentPassword = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    newPassword = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    revokeCreated = fields.Boolean(
        load_default=False,
        truthy={True},
        falsy={False},
        error_messages={"invalid": "Must be true or false."},
    )


class PasswordChangedSchema(Schema):
    apiKeysRevoked = fields.Integer(required=True)
    invitationsRevoked = fields.Integer(required=True)
    byOrganization = fields.Dict(required=True)


@bp.post("/auth/password")
@audit_action("account.passwordChange")
@operation(
    "Change your own password: every JWT and session of the account ends, and so do the "
    "invitations it sent; revokeCreated also revokes every API key and invitation it created",
    body=PasswordChangeSchema,
    response=(200, PasswordChangedSchema),
    errors=(400, 401, 403, 415, 429),
)
@limiter.limit(login_limit)
def change_password():
    principal = require_authentication()
    if principal.api_key_id is not None or principal.account_id is None:
        raise ApiError(
            403, "forbidden", "Only a person changes their password: use a JWT, not an API key."
        )
    data = load_body(PasswordChangeSchema())
    account = orgs.find_account(get_db(), principal.account_id)
    if account is None:
        raise unauthorized("The token's account no longer exists.")
    revoked = organization_service.change_password(
        account,
        data["currentPassword"],
        data["newPassword"],
        revoke_created=data["revokeCreated"],
    )
    return jsonify(PasswordChangedSchema().dump(revoked))
