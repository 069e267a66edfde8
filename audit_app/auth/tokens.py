"""JSON Web Tokens for API clients: HS256 with ``SECRET_KEY``, nothing else accepted.

A token carries the account's credential version (``ver``): changing the password bumps
it, and every token issued before stops working. Its random ``jti`` names it in the audit
log (``credentialId`` ``jwt_<jti>``), so everything done with one token is one filter.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import jwt
from bson import ObjectId
from bson.errors import InvalidId
from flask import current_app

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "org"]
_JTI = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


class Issued(NamedTuple):
    token: str
    lifetime: int
    credential_id: str


class Claims(NamedTuple):
    account_id: ObjectId
    organization_id: ObjectId
    version: int
    credential_id: str
    scope: str | None = None


def credential_id(token: str, claims: dict) -> str:
    """The token's name in the audit log: its ``jti``; for a token issued before tokens had
    one, a hash of it (never the token itself)."""
    jti = claims.get("jti")
    if isinstance(jti, str) and _JTI.match(jti):
        return f"jwt_{jti}"
    return "jwt_" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:32]


class TokenError(Exception):
    """The token is not one this server issued, or no longer valid.

    ``attribution`` names whom a credential that *was* valid belonged to (its organization,
    account or API key), so the refused request is recorded in that organization's log.
    """

    def __init__(self, message: str, attribution: dict | None = None):
        super().__init__(message)
        self.attribution = attribution


# The scope of a token that can only accept invitations (an account in no organization).
INVITATIONS_SCOPE = "invitations"


def issue_token(account: dict, organization_id: ObjectId, scope: str | None = None) -> Issued:
    """A signed token for the account acting in the organization, its lifetime and name."""
    lifetime = current_app.config["JWT_EXPIRES_SECONDS"]
    now = datetime.now(UTC)
    claims = {
        "sub": str(account["_id"]),
        "org": str(organization_id),
        "ver": credential_version(account),
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(seconds=lifetime),
        "jti": secrets.token_urlsafe(16),
    }
    if scope is not None:
        claims["scope"] = scope
    token = jwt.encode(claims, current_app.config["SECRET_KEY"], algorithm=ALGORITHM)
    return Issued(token, lifetime, credential_id(token, claims))


def credential_version(account: dict) -> int:
    return int(account.get("credentialVersion") or 0)


def check_version(claims_version: int, account: dict) -> None:
    """Refuse a token issued before the account's password last changed."""
    if claims_version != credential_version(account):
        raise TokenError("The token was issued before a password change; request a new one.")


def decode_token(token: str) -> Claims:
    """Verify a token: return whom it speaks for, where, its version and name; or raise."""
    try:
        claims = jwt.decode(
            token,
            current_app.config["SECRET_KEY"],
            algorithms=[ALGORITHM],
            options={"require": REQUIRED_CLAIMS},
            leeway=5,
        )
    except jwt.ExpiredSignatureError:
        raise TokenError(
            "The token has expired; request a new one.", _expired_claims(token)
        ) from None
    except jwt.ImmatureSignatureError:
        raise TokenError("The token is not valid yet.") from None
    except jwt.MissingRequiredClaimError as error:
        raise TokenError(f"The token lacks the required claim {error.claim!r}.") from None
    except jwt.InvalidTokenError:
        raise TokenError("The token is malformed or its signature is invalid.") from None
    version = claims.get("ver", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise TokenError("The token's ver claim must be an integer.")
    try:
        subject, organization = ObjectId(claims["sub"]), ObjectId(claims["org"])
    except (InvalidId, TypeError):  # a claim that is not an ObjectId string
        raise TokenError("The token's sub and org claims must be ObjectIds.") from None
    scope = claims.get("scope")
    return Claims(
        subject,
        organization,
        version,
        credential_id(token, claims),
        scope if isinstance(scope, str) else None,
    )


def _expired_claims(token: str) -> dict | None:
    """The subject of a token whose signature is ours but whose time is up."""
    try:
        claims = jwt.decode(
            token,
            current_app.config["SECRET_KEY"],
            algorithms=[ALGORITHM],
            options={"verify_exp": False, "require": REQUIRED_CLAIMS},
        )
        return {
            "accountId": ObjectId(claims["sub"]),
            "organizationId": ObjectId(claims["org"]),
            "credentialId": credential_id(token, claims),
        }
    except (jwt.InvalidTokenError, InvalidId, TypeError):
        return None
