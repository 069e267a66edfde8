"""``flask create-staff``, ``list-staff``, ``remove-staff`` and ``staff-log``: the operator's
commands for the platform's support staff (exit 0 success, 1 failure, 2 usage error)."""

from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext

from ..cli import _emit, _fail_on_api_error, _password, command, json_option
from ..errors import ApiError
from ..ids import iso
from . import service


@command("create-staff")
@click.option("--email", required=True, help="The staff member's email.")
@click.option(
    "--password", default=None, hidden=True, help="Prefer the prompt or --password-stdin."
)
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
@json_option
@with_appcontext
def create_staff_command(email, password, password_stdin, as_json):
    """Make a platform staff account (a member of no organization); the password comes
    from a hidden prompt or --password-stdin."""
    if password is None and not password_stdin and sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = _password(password, password_stdin, email, "--password")
    if password is None:
        raise click.BadParameter(
            "give the password at the prompt or on standard input", param_hint="--password-stdin"
        )
    try:
        staff = service.create_staff(email, password)
    except ApiError as error:
        _fail_on_api_error(error)
    _emit(
        as_json,
        {
            "staffId": str(staff["_id"]),
            "email": staff["email"],
            "createdAt": iso(staff["createdAt"]),
        },
        [f"Created staff account {staff['email']} ({staff['_id']})"],
    )


@command("list-staff")
@json_option
@with_appcontext
def list_staff_command(as_json):
    """List the platform's staff accounts, oldest first."""
    staff, more = service.list_staff()
    items = [
        {"staffId": str(s["_id"]), "email": s["email"], "createdAt": iso(s["createdAt"])}
        for s in staff
    ]
    lines = [f"{i['email']}  {i['staffId']}  created {i['createdAt']}" for i in items]
    _emit(
        as_json,
        {"items": items, "more": more},
        lines or ["No staff accounts."] + (["(more not shown)"] if more else []),
    )


@command("remove-staff")
@click.option("--email", required=True, help="The staff member to remove.")
@json_option
@with_appcontext
def remove_staff_command(email, as_json):
    """Remove a staff account: its sessions and tokens stop at once, its grants end."""
    try:
        removed = service.remove_staff(email)
    except ApiError as error:
        if error.status == 404:
            raise click.ClickException(f"no staff account with email {email!r}") from None
        _fail_on_api_error(error)
    _emit(
        as_json,
        {**removed, "staffId": str(removed["staffId"])},
        [
            f"Removed staff account {removed['email']} ({removed['staffId']}): "
            f"{removed['sessionsEnded']} session(s) ended, {removed['grantsEnded']} grant(s) ended"
        ],
    )


@command("staff-log")
@click.option("--email", default=None, help="Only this staff member's actions.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@json_option
@with_appcontext
def staff_log_command(email, limit, as_json):
    """The installation's log of staff actions, newest first."""
    entries, more = service.staff_log(limit, email)
    items = [
        {
            "id": str(e["_id"]),
            "createdAt": iso(e["createdAt"]),
            "staffEmail": e["staffEmail"],
            "action": e["action"],
            "organizationId": str(e["details"]["organizationId"])
            if e.get("details", {}).get("organizationId")
            else None,
            "requestId": e.get("requestId"),
            "ip": e.get("ip"),
            "details": {k: str(v) for k, v in (e.get("details") or {}).items()},
        }
        for e in entries
    ]
    lines = [
        f"{i['createdAt']}  {i['staffEmail']}  {i['action']}  "
        + "  ".join(f"{k}={v}" for k, v in i["details"].items())
        for i in items
    ]
    _emit(as_json, {"items": items, "more": more}, lines or ["The staff log is empty."])


COMMANDS = (create_staff_command, list_staff_command, remove_staff_command, staff_log_command)
