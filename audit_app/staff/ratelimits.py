"""The staff's rate limits: lookups and grant requests, counted per staff member, each one
budget for the API and the web pages together (a shared scope: the page's search box is the
same lookup, its form the same grant request)."""

from __future__ import annotations

from flask import current_app, g, request
from flask_limiter.util import get_remote_address


def staff_limit() -> str:
    return current_app.config["RATELIMIT_STAFF"]


def staff_key() -> str:
    """The staff member (every worker counts together); their address before sign-in."""
    caller = g.get("staff")
    return f"staff:{caller.staff_id}" if caller is not None else f"staff-ip:{get_remote_address()}"


LOOKUP_SCOPE = "staff-lookup"
GRANT_SCOPE = "staff-grant"


def no_lookup() -> bool:
    """The search page without an id looks nothing up: it spends none of the budget."""
    return not request.args.get("id", "").strip()
