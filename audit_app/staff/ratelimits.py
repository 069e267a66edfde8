"""The staff's rate limits: lookups and grant requests, counted per staff member."""

from __future__ import annotations

from flask import current_app, g
from flask_limiter.util import get_remote_address


def staff_limit() -> str:
    return current_app.config["RATELIMIT_STAFF"]


def staff_key() -> str:
    """The staff member (every worker counts together); their address before sign-in."""
    caller = g.get("staff")
    return f"staff:{caller.staff_id}" if caller is not None else f"staff-ip:{get_remote_address()}"
