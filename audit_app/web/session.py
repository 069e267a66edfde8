"""Logging in and out of the web UI, changing one's password, and switching organization.

A login opens a session on the server (``auth.sessions``); the cookie only carries its
token. The session ends on logout, on a password change and when the person loses a
membership, in every process at once.
"""

from __future__ import annotations

import time
from datetime import timedelta
from urllib.parse import urlsplit

from bson import ObjectId
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_limiter.errors import RateLimitExceeded
from flask_login import UserMixin, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from ..audit.capture.context import note_actor, note_credential, note_error
from ..audit.capture.hooks import audit_action
from ..auth import sessions
from ..auth.passwords import verify_password
from ..auth.principal import (
    current_principal,
    is_staff_path,
    login_account,
    require_authentication,
    require_permission,
    session_credential,
)
from ..db import get_db
from ..errors import ApiError, handle_http_exception, wants_json
from ..extensions import login_manager
from ..organizations import repository as orgs
from ..organizations import service as access
from ..ratelimit import limiter, login_email_key, login_limit
from .forms import ChangePasswordForm, LoginForm, SwitchOrganizationForm

SESSION_TOKEN = "sid"
SESSION_ENDED = "Your session ended; sign in to continue."

bp = Blueprint("session", __name__)


class SessionAccount(UserMixin):
    """The flask-login user: an account, loaded from the store on every request."""

    def __init__(self, account: dict, session_id: ObjectId):
        self.account = account
        self.id = str(account["_id"])
        self.session_id = session_id  # the server-side session: the audit log's credential


@login_manager.user_loader
def load_account(user_id: str):
    """The logged-in account, if its server-side session is still open."""
    if not ObjectId.is_valid(user_id):
        return None
    db = get_db()
    session_id = sessions.live_session(db, session.get(SESSION_TOKEN), ObjectId(user_id))
    if session_id is None:
        session.clear()  # ended elsewhere (logout, password change, removal): forget it here
        flash_once(SESSION_ENDED)
        return None
    account = orgs.find_account(db, ObjectId(user_id))
    return SessionAccount(account, session_id) if account else None


def open_session(account: dict, organization_id: ObjectId | None, *, login: bool = True) -> None:
    """Log the browser in as the account: a fresh cookie session and a server-side session.

    ``login``: the request opened it (a login, an accepted invitation), so its record
    carries the new session's credential; a password change keeps the caller's own."""
    sessions.end_session(get_db(), session.get(SESSION_TOKEN))  # one browser, one session
    session.clear()  # no session fixation: nothing survives from before login
    lifetime = timedelta(hours=current_app.config["SESSION_LIFETIME_HOURS"])
    session[SESSION_TOKEN], session_id = sessions.start_session(get_db(), account["_id"], lifetime)
    login_user(SessionAccount(account, session_id))
    if login:
        note_credential(session_credential(session_id), "session")
    if organization_id is not None:
        session["organizationId"] = str(organization_id)


def close_session() -> None:
    sessions.end_session(get_db(), session.get(SESSION_TOKEN))
    logout_user()
    session.clear()


def is_safe_next(target: str | None) -> bool:
    """A redirect target within this site: a path of it, never another host (``//evil``,
    ``https://evil``, ``/\\evil``), no backslash and no control character anywhere."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return False
    if "\\" in target or any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in target):
        return False
    parts = urlsplit(target)
    return not (parts.scheme or parts.netloc)


def safe_next(target: str | None) -> str:
    """Accept a redirect target only within this site: a path, never another host."""
    return target if is_safe_next(target) else url_for("web.home")  # type: ignore[return-value]


def flash_once(message: str, category: str = "message") -> None:
    """Flash a message unless it already waits to be shown."""
    if (category, message) not in session.get("_flashes", []):
        flash(message, category)


def page_before() -> str | None:
    """The page the person was on when they sent a form: the Referer when it is this site
    (the app sends ``Referrer-Policy: same-origin``), else the nearest page above the
    form's path (``/organization/members/<id>/remove`` -> ``/organization/members``)."""
    referrer = urlsplit(request.referrer or "")
    here = urlsplit(request.host_url)
    if (referrer.scheme, referrer.netloc) == (here.scheme, here.netloc):
        target = referrer.path + (f"?{referrer.query}" if referrer.query else "")
        if is_safe_next(target) and not target.startswith(("/login", "/logout")):
            return target
    adapter = current_app.url_map.bind_to_environ(request.environ)
    path = request.path
    while path not in ("", "/"):
        try:
            endpoint, _ = adapter.match(path, method="GET")
        except HTTPException:  # no page there (a 404, a 405 or a redirect): go up
            pass
        else:
            if str(endpoint).startswith("web.") and endpoint != "web.session.login":
                return path
        path = path.rsplit("/", 1)[0]
    return None


def csrf_refused(error: CSRFError):
    """A form refused by CSRF protection. When the session behind it has ended (logged out
    elsewhere, expired, its cookie gone), the form's token died with it: back to the login
    page, then to the page the person was on. A logged-in person's stale or forged form
    stays a 400. Either way the request is recorded, as a refusal."""
    if wants_json():
        return handle_http_exception(error)
    if is_staff_path(request.path):  # the staff's own pages: their own sign-in
        if request.endpoint == "staffPages.login":  # the sign-in form itself expired
            note_error("csrf_error", str(error.description))
            form = LoginForm()
            form.csrf_token.errors = [str(error.description)]
            return render_template("staff/login.html", form=form), 400
        if g.get("staff") is not None:
            return handle_http_exception(error)
        note_error("session_ended", f"{error.description} Nothing was changed.")
        return redirect(url_for("staffPages.login"))
    if request.endpoint == "web.session.login":  # the login form itself expired: again
        note_error("csrf_error", str(error.description))
        form = LoginForm()
        form.csrf_token.errors = [str(error.description)]
        return render_template("session/login.html", form=form), 400
    if current_principal().is_authenticated:
        return handle_http_exception(error)
    note_error("session_ended", f"{error.description} The session had ended; nothing was changed.")
    flash_once(SESSION_ENDED)
    return redirect(url_for("web.session.login", next=page_before()))


def login_limited(error: RateLimitExceeded):
    """Too many login attempts: the login page again, saying how long to wait (429)."""
    if wants_json() or request.endpoint != "web.session.login":
        return handle_http_exception(error)
    limit = limiter.current_limit
    # as the limiter's own Retry-After header counts them
    seconds = max(1, int(limit.reset_at - time.time())) if limit else 60
    message = f"Too many attempts; try again in {seconds} seconds."
    note_error("too_many_requests", message)
    form = LoginForm()
    form.next.data = request.form.get("next", "")
    page = render_template("session/login.html", form=form, limited=message)
    return page, 429, {"Retry-After": str(seconds)}


@bp.route("/login", methods=["GET", "POST"])
@audit_action("session.login", failed="session.loginFailed")
@limiter.limit(login_limit, methods=["POST"])
@limiter.shared_limit(login_limit, scope="login-email", key_func=login_email_key, methods=["POST"])
def login():
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    if form.validate_on_submit():
        account, organizations = login_account(form.email.data)
        if organizations:
            note_actor(account, organizations[0]["_id"])
        if verify_password(account["passwordHash"] if account else None, form.password.data):
            target = safe_next(form.next.data)
            # an account with no organization yet may log in only to accept an invitation
            if organizations or target.startswith("/invitations/"):
                open_session(account, organizations[0]["_id"] if organizations else None)
                return redirect(target)
            form.email.errors.append("This account belongs to no organization.")
        else:
            form.password.errors.append("The email or password is incorrect.")
        note_error("invalid_login", (form.email.errors or form.password.errors)[0])
        return render_template("session/login.html", form=form), 401
    status = 400 if request.method == "POST" else 200
    return render_template("session/login.html", form=form), status


@bp.post("/logout")
@audit_action("session.logout")
def logout():
    close_session()
    flash("You are signed out.")
    return redirect(url_for("web.session.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@audit_action("account.passwordChange")
def change_password():
    """Change one's own password; every other session of the account ends."""
    require_authentication()
    form = ChangePasswordForm()
    status = 200
    if form.validate_on_submit():
        account = current_user.account
        try:
            revoked = access.change_password(
                account,
                form.currentPassword.data,
                form.newPassword.data,
                revoke_created=bool(form.revokeCreated.data),
            )
        except ApiError as error:
            form.currentPassword.errors.append(error.message)
            note_error(error.code, error.message)
            status = 400
        else:
            open_session(account, current_principal().organization_id, login=False)
            flash(
                "Password changed. You were signed out everywhere else"
                f"; {revoked['apiKeysRevoked']} API key(s) and "
                f"{revoked['invitationsRevoked']} invitation(s) revoked."
            )
            return redirect(url_for("web.home"))
    elif request.method == "POST":
        status = 400
    return render_template("session/password.html", form=form), status


@bp.post("/organization/switch")
@audit_action("session.switchOrganization")
@require_permission(None)
def switch_organization():
    form = SwitchOrganizationForm()
    if not form.validate_on_submit() or not ObjectId.is_valid(form.organizationId.data):
        abort(400)
    organization_id = ObjectId(form.organizationId.data)
    if orgs.find_membership(get_db(), organization_id, current_user.account["_id"]) is None:
        abort(404)
    session["organizationId"] = str(organization_id)
    flash("Organization switched.")
    return redirect(url_for("web.home"))
