"""Logging in and out of the web UI, and switching organization."""

from __future__ import annotations

from urllib.parse import urlsplit

from bson import ObjectId
from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_login import UserMixin, current_user, login_user, logout_user

from ..audit.context import note_actor
from ..auth.passwords import verify_password
from ..auth.principal import require_permission
from ..db import get_db
from ..extensions import login_manager
from ..organizations import repository as orgs
from ..ratelimit import limiter, login_email_key, login_limit
from .forms import LoginForm, SwitchOrganizationForm

bp = Blueprint("session", __name__)


class SessionAccount(UserMixin):
    """The flask-login user: an account, loaded from the store on every request."""

    def __init__(self, account: dict):
        self.account = account
        self.id = str(account["_id"])


@login_manager.user_loader
def load_account(user_id: str):
    if not ObjectId.is_valid(user_id):
        return None
    account = orgs.find_account(get_db(), ObjectId(user_id))
    return SessionAccount(account) if account else None


def safe_next(target: str | None) -> str:
    """Accept a redirect target only within this site: a path, never another host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("web.home")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return url_for("web.home")
    return target


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(login_limit, methods=["POST"])
@limiter.limit(login_limit, methods=["POST"], key_func=login_email_key)
def login():
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    if form.validate_on_submit():
        db = get_db()
        account = orgs.find_account_by_email(db, form.email.data)
        organizations = orgs.list_organizations_of_account(db, account["_id"]) if account else []
        if organizations:
            note_actor(account, organizations[0]["_id"])
        if verify_password(account["passwordHash"] if account else None, form.password.data):
            if organizations:
                target = safe_next(form.next.data)
                session.clear()  # no session fixation: nothing survives from before login
                login_user(SessionAccount(account))
                session["organizationId"] = str(organizations[0]["_id"])
                return redirect(target)
            form.email.errors.append("This account belongs to no organization.")
        else:
            form.password.errors.append("The email or password is incorrect.")
        return render_template("session/login.html", form=form), 401
    status = 400 if request.method == "POST" else 200
    return render_template("session/login.html", form=form), status


@bp.post("/logout")
def logout():
    logout_user()
    session.clear()
    return redirect(url_for("web.session.login"))


@bp.post("/organization/switch")
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
