"""JSON Web Tokens for API clients: HS256 with ``SECRET_KEY``, nothing else accepted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
from bson import ObjectId
from bson.errors import InvalidId
from flask import current_app

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "org"]


class TokenError(Exception):
    """The token is not one this server issued, or no longer valid."""


def issue_token(account_id: ObjectId, organization_id: ObjectId) -> tuple[str, int]:
    """Return a signed token for the account acting in the organization, and its lifetime."""
    lifetime = current_app.config["JWT_EXPIRES_SECONDS"]
    now = datetime.now(UTC)
    claims = {
        "sub": str(account_id),
        "org": str(organization_id),
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(seconds=lifetime),
    }
    token = jwt.encode(claims, current_app.config["SECRET_KEY"], algorithm=ALGORITHM)
    return token, lifetime


def decode_token(token: str) -> tuple[ObjectId, ObjectId]:
    """Verify a token and return (account id, organization id); raise TokenError otherwise."""
    try:
        claims = jwt.decode(
            token,
            current_app.config["SECRET_KEY"],
            algorithms=[ALGORITHM],
            options={"require": REQUIRED_CLAIMS},
            leeway=5,
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("The token has expired; request a new one.") from None
    except jwt.ImmatureSignatureError:
        raise TokenError("The token is not valid yet.") from None
    except jwt.MissingRequiredClaimError as error:
        raise TokenError(f"The token lacks the required claim {error.claim!r}.") from None
    except jwt.InvalidTokenError:
        raise TokenError("The token is malformed or its signature is invalid.") from None
    try:
        return ObjectId(claims["sub"]), ObjectId(claims["org"])
    except (InvalidId, TypeError):  # a claim that is not an ObjectId string
        raise TokenError("The token's sub and org claims must be ObjectIds.") from None
