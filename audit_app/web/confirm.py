"""Destructive actions ask first, in the web views (the API does not: a client confirms by
calling, and the service layer's rules are the same for both).

A destructive form's first POST (without ``confirm=yes``) changes nothing: it answers a
confirmation page that names the object and what will happen, with a form that re-posts
the same fields plus ``confirm=yes`` and a CSRF token, and a Cancel link back. Both POSTs
pass the app's CSRF protection. With JavaScript, ``static/app.js`` asks the same question
in a dialog (the forms carry it in ``data-confirm``) and posts the same ``confirm=yes``.

The first POST is recorded as ``<action>Asked`` (``member.removeAsked``): it showed the
question, it removed nobody.
"""

from __future__ import annotations

from flask import current_app, render_template, request

from ..audit.actions import declare
from ..audit.capture.context import note_action, note_target

CONFIRM_FIELD = "confirm"

# (question, consequence) per kind of destructive action; ``{name}`` is the object's name
QUESTIONS: dict[str, tuple[str, str, str]] = {
    # kind: (question, consequence, button)
    "member.remove": (
        "Remove {name} from the organization?",
        "Their sessions here end at once, and the API keys and pending invitations they "
        "created are revoked.",
        "Remove {name}",
    ),
    "member.leave": (
        "Leave this organization?",
        "You lose access at once: only an administrator can invite you back. The API keys and "
        "pending invitations you created here are revoked.",
        "Leave the organization",
    ),
    "apiKey.revoke": (
        "Revoke key {name}?",
        "Requests with it will fail at once; the keys it created, and the invitations they "
        "sent, are revoked with it. This cannot be undone.",
        "Revoke {name}",
    ),
    "auditStream.delete": (
        "Delete stream {name}?",
        "It stops delivering at once: records not yet delivered never reach its destination. "
        "This cannot be undone.",
        "Delete {name}",
    ),
    "role.delete": (
        "Delete role {name}?",
        "It can no longer be given to members, invitations or API keys. This cannot be undone.",
        "Delete {name}",
    ),
    "invitation.revoke": (
        "Revoke the invitation of {name}?",
        "Its link stops working at once; {name} needs a new invitation to join.",
        "Revoke the invitation",
    ),
    "workspace.delete": (
        "Delete workspace {name}?",
        "Its pathways are deleted with it and the API keys bound to it are revoked at once; "
        "its audit log stays. This cannot be undone.",
        "Delete {name}",
    ),
    "staffGrant.revoke": (
        "End the access of {name}?",
        "Their next read of this organization's log is refused; they need a new grant to "
        "read it again.",
        "Revoke the access of {name}",
    ),
    "organization.shortenRetention": (
        "Shorten the audit log retention to {name} days?",
        "{consequence}",
        "Shorten to {name} days",
    ),
}

# what each confirmation page records as its action
ASKED = declare(
    "member.removeAsked",
    "apiKey.revokeAsked",
    "auditStream.deleteAsked",
    "role.deleteAsked",
    "invitation.revokeAsked",
    "organization.updateAsked",
    "workspace.deleteAsked",
    "staff.grantRevokedAsked",
)


def confirmed() -> bool:
    """The form was confirmed (its second POST, or the dialog's)."""
    return request.form.get(CONFIRM_FIELD) == "yes"


def question(kind: str, name: object, consequence: str = "") -> dict[str, str]:
    """The question, its consequence and the confirm button's label, as the page says them."""
    asked, then, button = QUESTIONS[kind]
    fill = {"name": str(name), "consequence": consequence}
    return {
        "question": asked.format(**fill),
        "consequence": then.format(**fill),
        "button": button.format(**fill),
    }


def confirm_text(kind: str, name: object) -> str:
    """The dialog's text (``data-confirm``): the same words as the confirmation page."""
    said = question(kind, name)
    return f"{said['question']} {said['consequence']}"


def ask_first(
    kind: str,
    name: object,
    *,
    cancel_url: str,
    target: tuple[str, object, str | None] | None = None,
    consequence: str = "",
):
    """The confirmation page of this destructive POST; nothing has changed."""
    view = current_app.view_functions[request.endpoint or ""]
    note_action(f"{getattr(view, 'audit_action')}Asked")  # noqa: B009 - set by audit_action
    if target is not None:
        note_target(target[0], target[1], target[2])  # type: ignore[arg-type]
    fields = [
        (key, value)
        for key, value in request.form.items(multi=True)
        if key not in ("csrf_token", CONFIRM_FIELD)
    ]
    page = render_template(
        "confirm.html",
        **question(kind, name, consequence),
        fields=fields,
        action=request.path,
        cancel_url=cancel_url,
    )
    return page, 200, {"Cache-Control": "no-store"}
