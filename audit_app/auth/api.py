"""``POST /api/v1/auth/token``: trade an email and password for a JWT."""

from flask import Blueprint, jsonify
from marshmallow import Schema, fields, validate

from ..apidoc import operation
from ..audit.capture import audit_action
from ..audit.context import note_actor, note_credential
from ..errors import ApiError, unauthorized
from ..ratelimit import limiter, login_email_key, login_limit
from ..schemas import ObjectIdField, load_body
from .passwords import verify_password
from .principal import login_account
from .tokens import issue_token

bp = Blueprint("auth", __name__)

INVALID_LOGIN = "The email or password is incorrect."


class TokenRequestSchema(Schema):
    email = fields.String(required=True, validate=validate.Length(min=3, max=320))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    organizationId = ObjectIdField(load_default=None)


class TokenSchema(Schema):
    token = fields.String(required=True)
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
        raise ApiError(403, "forbidden", "This account belongs to no organization.")
    if organization_id is None:
        organization_id = organizations[0]["_id"]
    elif organization_id not in member_of:
        raise ApiError(
            403, "forbidden", "This account is not a member of that organization.", "organizationId"
        )
    issued = issue_token(account, organization_id)
    note_credential(issued.credential_id)  # this request opened the token: it carries its name
    answer = {
        "token": issued.token,
        "expiresIn": issued.lifetime,
        "organizationId": organization_id,
    }
    return jsonify(TokenSchema().dump({**answer, "tokenType": "Bearer"}))
