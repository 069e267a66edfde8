"""Who is calling a staff path: a staff member by their session cookie (pages) or their
staff token (API), resolved for ``/staff`` and ``/api/v1/staff/...`` only.

``auth.principal.load_principal`` leaves these paths anonymous, so no organization's
credential reaches them; and no other path reads the staff cookie or accepts the staff
token (another key, another audience), so a staff credential reaches nothing else.
"""

from __future__ import annotations

from flask import g, redirect, request, url_for

from ..auth.principal import is_staff_path
from ..errors import ApiError, unauthorized
from . import service
from .service import StaffCaller, StaffTokenError

STAFF_COOKIE = "staff_session"
STAFF_COOKIE_PATH = "/staff"


def load_staff() -> None:
    """A before_request hook, after ``load_principal``: ``g.staff`` on staff paths."""
    g.staff = None
    g.staff_error = None
    if not is_staff_path(request.path):
        return
    caller: StaffCaller | None = None
    if request.path.startswith("/api/"):
        authorization = request.headers.get("Authorization")
        if request.headers.get("X-API-Key"):
            g.staff_error = "An organization's API key is not accepted here: send a staff token."
            return
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                g.staff_error = "The Authorization header must be 'Bearer <staff token>'."
                return
            try:
                caller = service.caller_of_token(token.strip())
            except StaffTokenError as error:
                g.staff_error = str(error)
                return
    else:
        caller = service.caller_of_session(request.cookies.get(STAFF_COOKIE))
    if caller is not None:
        g.staff = caller
        g.principal = caller.principal(None)  # recorded as staff, in no organization yet


def current_staff() -> StaffCaller | None:
    return g.get("staff")


class StaffLoginRedirect(ApiError):
    def __init__(self):
        super().__init__(401, "unauthorized", "Sign in as platform staff to continue.")


def staff_login_redirect(_error):
    return redirect(url_for("staffPages.login", next=request.full_path.rstrip("?")))


def require_staff() -> StaffCaller:
    """The signed-in staff member, or a 401 (API) / the staff login page (web)."""
    caller = current_staff()
    if caller is None:
        if request.path.startswith("/api/"):
            raise unauthorized(
                g.get("staff_error")
                or "Staff authentication required: send 'Authorization: Bearer <staff token>' "
                "(POST /api/v1/staff/token)."
            )
        raise StaffLoginRedirect()
    return caller
