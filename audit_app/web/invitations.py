"""``/invitations/<token>``: the page where an invited person accepts.

A new account chooses its password here and is logged in; an existing account must be
logged in as the invited email, and accepts with one click. The token is part of the path,
so the audit record shows it redacted (``audit.record``) and the page is never cached.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..audit.actions import declare
from ..audit.capture.context import note_action, note_actor, note_error, note_target
from ..audit.capture.hooks import audit_action, audited
from ..errors import ApiError
from ..organizations import service as access
from .forms import AcceptInvitationForm
from .session import open_session

bp = Blueprint("invitations", __name__, url_prefix="/invitations")
(OPEN,) = declare("invitation.open")  # the page was shown: nothing accepted yet


def _render(view, form, status=200, error=None):
    account = current_user.account if current_user.is_authenticated else None
    return (
        render_template(
            "session/invitation.html",
            view=view,
            form=form,
            account=account,
            error=error,
        ),
        status,
    )


@bp.route("/<token>", methods=["GET", "POST"])
@audit_action("invitation.accept")
@audited
def accept_page(token):
    if request.method == "GET":
        note_action(OPEN)
    view = access.find_invitation(token)
    # opening the page names the invitation; an acceptance names it only once it is accepted
    # (the service does): a refused request names ids only
    shown = view.invitation["email"] if request.method == "GET" else None
    note_target("invitation", view.invitation["_id"], shown)
    # who is logged in acts (their attempt is theirs); nobody logged in: the invited email
    who = current_user.account if current_user.is_authenticated else None
    note_actor(
        who or {"_id": None, "email": view.invitation["email"]},
        view.organization["_id"],
        overrides=True,
    )
    form = AcceptInvitationForm()
    if not form.is_submitted():
        return _render(view, form)
    if not form.validate():
        return _render(view, form, 400)
    account = current_user.account if current_user.is_authenticated else None
    try:
        accepted = access.accept_invitation(
            token,
            account=account,
            password=None if view.account_exists else (form.password.data or None),
        )
    except ApiError as error:
        note_error(error.code, error.message)
        return _render(view, form, error.status if error.status != 401 else 403, error.message)
    note_actor(accepted["account"], accepted["organizationId"], overrides=True)
    open_session(accepted["account"], accepted["organizationId"])
    flash(f"Welcome to {view.organization['name']}.")
    return redirect(url_for("web.home"))
