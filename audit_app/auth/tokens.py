"""JSON Web Tokens for API clients: HS256 with ``SECRET_KEY``, nothing else accepted.

A token carries the account's credential version (``ver``): changing the password bumps
it, and every token issued before stops working.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
from bson import ObjectId
from bson.errors import InvalidId
from flask import current_app

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "org"]


class TokenError(Exception):
    """The token is not one this server issued, or no longer valid.

    ``attribution`` names whom a credential that *was* valid belonged to (its organization,
    account or API key), so the refused request is recorded in that organization's log.
    """

    def __init__(self, message: str, attribution: dict | None = None):
        super().__init__(message)
        self.attribution = attribution


def issue_token(account: dict, organization_id: ObjectId) -> tuple[str, int]:
    """Return a signed token for the account acting in the organization, and its lifetime."""
    lifetime = current_app.config["JWT_EXPIRES_SECONDS"]
    now = datetime.now(UTC)
    claims = {
        "sub": str(account["_id"]),
        "org": str(organization_id),
        "ver": credential_version(account),
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(seconds=lifetime),
    }
    token = jwt.encode(claims, current_app.config["SECRET_KEY"], algorithm=ALGORITHM)
    return token, lifetime


def credential_version(account: dict) -> int:
    return int(account.get("credentialVersion") or 0)


def check_version(claims_version: int, account: dict) -> None:
    """Refuse a token issued before the account's password last changed."""
    if claims_version != credential_version(account):
        raise TokenError("The token was issued before a password change; request a new one.")


def decode_token(token: str) -> tuple[ObjectId, ObjectId, int]:
    """Verify a token: return (account id, organization id, credential version) or raise."""
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
        return ObjectId(claims["sub"]), ObjectId(claims["org"]), version
    except (InvalidId, TypeError):  # a claim that is not an ObjectId string
        raise TokenError("The token's sub and org claims must be ObjectIds.") from None


def _expired_claims(token: str) -> dict | None:
    """The subject of a token whose signature is ours but whose time is up."""
    try:
        claims = jwt.decode(
            token,
            current_app.config["SECRET_KEY"],
            algorithms=[ALGORITHM],
            options={"verify_exp": False, "require": REQUIRED_CLAIMS},
        )
        return {"accountId": ObjectId(claims["sub"]), "organizationId": ObjectId(claims["org"])}
    except (jwt.InvalidTokenError, InvalidId, TypeError):
        return None
