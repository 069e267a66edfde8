"""``flask --app wsgi <command>``: the operator's commands.

Each prints what it made (ids, a key's secret once) as text, or as JSON with ``--json``.
Bad arguments end with a message and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import sqlite3
import sys
import time

import click
from bson import ObjectId
from flask import current_app, has_app_context
from flask.cli import with_appcontext
from marshmallow import Schema, ValidationError
from pymongo.errors import PyMongoError
from werkzeug.datastructures import MultiDict

from .api_keys import service as api_key_service
from .api_keys.api import ApiKeyCreateSchema
from .audit import export
from .audit.actions import declare
from .audit.capture.context import begin as begin_notes
from .audit.capture.hooks import WRITER_KEY, record_operator_command, store_journaled
from .audit.integrity.digests import iter_digests
from .audit.integrity.retention import legacy_from_ttl, purge_all
from .audit.integrity.sealing import (
    RECENT_WINDOWS,
    NothingToAcknowledge,
    SealerBusy,
    acknowledge,
    seal_now,
    sealing_alone,
    store_state,
    verify,
)
from .audit.integrity.sealing import policy as sealing_policy
from .audit.schemas import jsonable
from .audit.service import build_query, export_records
from .audit.store.query import FilterSchema, IsoDateTime, parse_query
from .credentials import service as credentials
from .db import get_audit_db, get_db, stores
from .demo import DEMO_LOGINS, find_demo, seed_demo
from .errors import ApiError
from .ids import iso
from .indexes import ensure_indexes
from .migration import migrate, store_for, verify_target
from .organizations import repository as orgs
from .organizations import service as access
from .organizations.repository import find_account_by_email, has_any_organization
from .organizations.service import operator
from .pagination import PageRequest
from .schemas import _lone_surrogate
from .witness import WitnessError, witness


class CommandError(click.ClickException):
    """An error of a command run with ``--json``: one JSON object on stderr, as the API's
    ``{"error": {"code", "message", "field"}}``, and the same exit code as in text."""

    def __init__(self, error: click.ClickException):
        super().__init__(error.format_message())
        self.exit_code = error.exit_code  # type: ignore[misc]  # click reads it per instance
        self.code = "usage_error" if isinstance(error, click.UsageError) else "error"
        hint = getattr(error, "param_hint", None)
        self.field = hint if isinstance(hint, str) else None

    def show(self, file=None) -> None:
        payload = {"code": self.code, "message": self.message}
        if self.field:
            payload["field"] = self.field
        click.echo(json.dumps({"error": payload}), err=True)


# the actions of the records commands write (docs/audit-schema.md)
CREATE_ORG, ADD_MEMBER, CREATE_KEY, EXPORT, EXPORT_ENDED, VERIFY, EXPORT_DIGESTS = declare(
    "organization.create",
    "member.add",
    "apiKey.create",
    "auditLog.export",
    "auditLog.exportEnded",
    "auditLog.verify",
    "auditLog.exportDigests",
)
(ACKNOWLEDGE_INTEGRITY,) = declare("auditLog.acknowledgeIntegrity")


class AppCommand(click.Command):
    """Every command: no traceback for what an operator can cause, JSON errors with --json.

    A file that cannot be written, a store that cannot be reached or a closed pipe end in
    one line naming what was wrong; with ``--json`` every error, usage errors included,
    is a JSON object on stderr.
    """

    def make_context(self, info_name, args, parent=None, **extra):
        wants_json = "--json" in args
        try:
            ctx = super().make_context(info_name, list(args), parent=parent, **extra)
            refuse_text_that_is_not_utf8(ctx)  # before the command runs: nothing is made
            return ctx
        except click.ClickException as error:
            raise (CommandError(error) if wants_json else error) from None

    def invoke(self, ctx):
        if has_app_context():
            begin_notes()  # what this command's services note goes in its own record
        try:
            return super().invoke(ctx)
        except click.ClickException as error:
            raise (CommandError(error) if ctx.params.get("as_json") else error) from None
        except OSError as error:  # a path the operator gave: missing, not writable, full
            failure = click.ClickException(
                f"{error.filename or 'output'}: {error.strerror or error}"
            )
            raise (CommandError(failure) if ctx.params.get("as_json") else failure) from None
        except (PyMongoError, sqlite3.Error) as error:
            failure = click.ClickException(f"The store is unavailable: {_first_reason(error)}")
            raise (CommandError(failure) if ctx.params.get("as_json") else failure) from None


def _first_reason(error: Exception) -> str:
    """What went wrong, without the driver's topology dump and timeout settings (``host:
    [Errno 111] Connection refused``)."""
    text = str(error).split(", Timeout:", 1)[0]
    return re.sub(r" \(configured timeouts:[^)]*\)", "", text).strip() or type(error).__name__


def command(name: str):
    return click.command(name, cls=AppCommand)


def option_name(param: click.Parameter) -> str:
    """How an error names a parameter: its first option (``--name``), or an argument's
    metavar (``NAME``)."""
    if isinstance(param, click.Option) and param.opts:
        return param.opts[0]
    return param.human_readable_name


def refuse_text_that_is_not_utf8(ctx: click.Context) -> None:
    """An argument whose bytes are not UTF-8 reaches Python as lone surrogates (PEP 383):
    no store can hold it, nor can a record of the command. Every command refuses it, naming
    the option, before it runs (the API's rule: ``schemas.load_body``)."""
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        for text in value if isinstance(value, tuple | list) else (value,):
            if isinstance(text, str) and _lone_surrogate(text) is not None:
                raw = text.encode("utf-8", "surrogateescape")
                raise click.BadParameter(
                    f"is not valid UTF-8 text ({ascii(raw)[1:]}); give it as UTF-8.",
                    param_hint=option_name(param),
                )


def _emit(as_json: bool, payload: dict, lines: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(payload, indent=2, default=str))
    else:
        for line in lines:
            click.echo(line)


class ObjectIdParam(click.ParamType):
    """An option that takes an ObjectId: parsed (and refused) in one place."""

    name = "objectid"

    def convert(self, value, param, ctx):
        if isinstance(value, ObjectId):
            return value
        if isinstance(value, str) and len(value) == 24 and ObjectId.is_valid(value):
            return ObjectId(value)
        self.fail("must be a 24-character hexadecimal ObjectId", param, ctx)


OBJECT_ID = ObjectIdParam()


def _password(given: str | None, from_stdin: bool, email: str, option: str) -> str | None:
    """The password from the option, from standard input, or from a hidden prompt when a
    new account needs one and a person is at the terminal; None leaves it to the service
    (an existing account keeps its own; a new one without a password is refused)."""

    if from_stdin:
        if given is not None:
            raise click.BadParameter("give the password once", param_hint=option)
        try:
            line = sys.stdin.readline().rstrip("\r\n")
        except UnicodeDecodeError:
            raise click.BadParameter(
                "standard input is not valid UTF-8 text; give the password as UTF-8.",
                param_hint=option,
            ) from None
        if _lone_surrogate(line) is not None:  # a POSIX locale reads bytes as surrogates
            raise click.BadParameter(
                "standard input is not valid UTF-8 text; give the password as UTF-8.",
                param_hint=option,
            )
        if not line:
            raise click.BadParameter("standard input held no password", param_hint=option)
        return line
    if given is None and sys.stdin.isatty() and find_account_by_email(get_db(), email) is None:
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return given


def _organization(db, organization_id: ObjectId) -> dict:

    organization = orgs.find_organization(db, organization_id)
    if organization is None:
        raise click.BadParameter(
            f"no organization with id {organization_id}", param_hint="--organization"
        )
    return organization


def _role(db, organization_id: ObjectId, value: str) -> dict:

    role = None
    if ObjectId.is_valid(value) and len(value) == 24:
        role = orgs.find_role(db, organization_id, ObjectId(value))
    role = role or orgs.find_role_by_name(db, organization_id, value)
    if role is None:
        first, more = orgs.list_roles(db, organization_id, PageRequest(50))
        names = ", ".join(r["name"] for r in first) + (", ..." if more else "")
        raise click.BadParameter(
            f"no role {value!r} in this organization; roles: {names}", param_hint="--role"
        )
    return role


def _fail_on_api_error(error: ApiError, options: dict[str, str] | None = None):
    """A service refused: bad input (400) is a usage error naming the option (exit 2), any
    other refusal a failure (exit 1). ``options``: this command's option of a field."""
    option = {**_OPTION_OF_FIELD, **(options or {})}.get(error.field or "", error.field)
    if error.status == 400:
        raise click.BadParameter(error.message, param_hint=option)
    raise click.ClickException(error.message + (f" ({option})" if option else ""))


def _by_schema(schema: Schema, field: str, value: str, option: str):
    """A value checked (and cleaned) by the API's own schema field: one rule for both."""
    try:
        return schema.load({field: value}, partial=True)[field]
    except ValidationError as error:
        messages = error.normalized_messages().get(field) or ["is not valid."]
        raise click.BadParameter(str(messages[0]), param_hint=option) from None


_OPTION_OF_FIELD = {
    "ownerEmail": "--owner-email",
    "ownerPassword": "--owner-password",
    "email": "--email",
    "password": "--password",
    "name": "NAME",
    "roleId": "--role",
    "workspaceId": "--workspace",
}


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _password_note(made: dict) -> str:
    if made["accountCreated"]:
        return "a new account, with the password given"
    return "an existing account: its password was left unchanged"


@command("create-org")
@click.argument("name")
@click.option("--owner-email", required=True)
@click.option(
    "--owner-password", default=None, help="Password of the owner, if the account is new."
)
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
@json_option
@with_appcontext
def create_org_command(name, owner_email, owner_password, password_stdin, as_json):
    """Create an organization with its owner (an existing account keeps its password).

    A new owner's password comes from --owner-password, --password-stdin, or (at a
    terminal) a hidden prompt, so it need not appear on the command line.
    """

    owner_password = _password(owner_password, password_stdin, owner_email, "--owner-password")
    try:
        made = access.create_organization(name, owner_email, owner_password)
    except ApiError as error:
        _fail_on_api_error(error)
    organization, owner = made["organization"], made["owner"]
    record_operator_command(
        organization["_id"],
        "create-org",
        {"name": organization["name"], "ownerEmail": owner["email"]},
        action=CREATE_ORG,
        result={"id": organization["_id"], "accountCreated": made["accountCreated"]},
    )
    _emit(
        as_json,
        {
            "organizationId": str(organization["_id"]),
            "name": organization["name"],
            "ownerAccountId": str(owner["_id"]),
            "ownerEmail": owner["email"],
            "accountCreated": made["accountCreated"],
            "passwordChanged": False,
            "roles": {k: str(r["_id"]) for k, r in made["roles"].items()},
        },
        [
            f"Created organization {organization['name']!r} ({organization['_id']})",
            f"Owner: {owner['email']} ({owner['_id']}), {_password_note(made)}",
        ],
    )


@command("create-user")
@click.option("--organization", "organization_id", type=OBJECT_ID, required=True)
@click.option("--email", required=True)
@click.option("--password", default=None, help="Password of the account, if it is new.")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
@click.option("--role", default="Member", show_default=True)
@json_option
@with_appcontext
def create_user_command(organization_id, email, password, password_stdin, role, as_json):
    """Make an account a member with a role; a new account gets the password given
    (--password, --password-stdin, or a hidden prompt at a terminal)."""

    password = _password(password, password_stdin, email, "--password")
    db = get_db()
    organization = _organization(db, organization_id)
    role_doc = _role(db, organization["_id"], role)
    try:
        made = access.add_member_as_operator(organization["_id"], email, password, role_doc)
    except ApiError as error:
        _fail_on_api_error(error)
    account = made["account"]
    record_operator_command(
        organization["_id"],
        "create-user",
        {"email": account["email"], "role": role_doc["name"]},
        action=ADD_MEMBER,
        result={"id": account["_id"], "accountCreated": made["accountCreated"]},
    )
    _emit(
        as_json,
        {
            "accountId": str(account["_id"]),
            "email": account["email"],
            "organizationId": str(organization["_id"]),
            "role": role_doc["name"],
            "accountCreated": made["accountCreated"],
            "passwordChanged": False,
        },
        [
            f"Added {account['email']} ({account['_id']}) as {role_doc['name']} "
            f"in {organization['name']!r}: {_password_note(made)}"
        ],
    )


@command("create-api-key")
@click.option("--organization", "organization_id", type=OBJECT_ID, required=True)
@click.option("--name", required=True)
@click.option("--workspace", "workspace_id", type=OBJECT_ID, default=None)
@click.option("--role", default="Member", show_default=True)
@json_option
@with_appcontext
def create_api_key_command(organization_id, name, workspace_id, role, as_json):
    """Create an API key; its secret is printed this once and never again."""

    db = get_db()
    organization = _organization(db, organization_id)
    role_doc = _role(db, organization["_id"], role)
    name = _by_schema(ApiKeyCreateSchema(), "name", name, "--name")  # the API's rule
    try:
        key, secret = api_key_service.create_key(
            operator(organization["_id"]),
            name=name,
            role_id=role_doc["_id"],
            workspace_id=workspace_id,
        )
    except ApiError as error:
        _fail_on_api_error(error, {"name": "--name"})
    record_operator_command(
        organization["_id"],
        "create-api-key",
        {"name": key["name"], "role": role_doc["name"], "workspace": workspace_id},
        action=CREATE_KEY,
        result={"id": key["_id"], "prefix": key["prefix"]},
    )
    _emit(
        as_json,
        {
            "apiKeyId": str(key["_id"]),
            "name": key["name"],
            "prefix": key["prefix"],
            "role": role_doc["name"],
            "workspaceId": workspace_id,
            "key": secret,
        },
        [
            f"Created API key {key['name']!r} ({key['_id']}) with role {role_doc['name']}",
            f"Key (shown once, keep it safe): {secret}",
        ],
    )


@command("ensure-indexes")
@json_option
@with_appcontext
def ensure_indexes_command(as_json):
    """Create the collections' indexes (and drop the audit log's TTL index of earlier
    versions: retention is a purge per organization).

    On MongoDB this is a deploy step: run it before the app serves (docker compose runs it
    as a one-shot service). An index that exists with another key or options is reported
    and the command fails; the others are still built.
    """

    report = ensure_indexes(get_db(), get_audit_db(), legacy_from_ttl(current_app))
    if report.conflicts:
        raise click.ClickException(
            "Some indexes exist with another key or other options; drop them (or rename "
            "them) and run ensure-indexes again: " + "; ".join(report.conflicts)
        )
    _emit(
        as_json,
        report.created,
        [f"{collection}: {', '.join(names)}" for collection, names in report.created.items()],
    )


def reads_the_log(callback):
    """A command that reads the audit log: what the journal holds is stored first (the
    journal write mode), so it reads every request answered before it ran."""

    @functools.wraps(callback)
    def folded_first(*args, **kwargs):
        store_journaled()
        return callback(*args, **kwargs)

    return folded_first


@command("fold-journal")
@json_option
@with_appcontext
def fold_journal_command(as_json):
    """Store what waits in the audit journal now (the journal write mode); safe any time."""

    writer = current_app.extensions.get(WRITER_KEY)
    if writer is None:
        raise click.ClickException("Auditing is disabled (AUDIT_ENABLED=false).")
    if writer.journal is None:
        _emit(as_json, {"mode": "sync"}, ["AUDIT_WRITE_MODE is sync: there is no journal."])
        return
    result = writer.fold(wait=True)
    _emit(
        as_json,
        {"mode": "journal", **result.as_dict()},
        [
            f"Stored {result.stored} record(s), {result.duplicates} already stored, "
            f"{result.spooled} spooled, {result.rejected} unreadable stretch(es) set aside, "
            f"{result.files} file(s) done"
        ]
        + [f"Error: {e}" for e in result.errors],
    )
    if result.errors:
        raise SystemExit(1)


@command("replay-spool")
@json_option
@with_appcontext
def replay_spool_command(as_json):
    """Store the audit records spooled during an outage; safe to run any time."""

    writer = current_app.extensions.get(WRITER_KEY)
    if writer is None:
        raise click.ClickException("Auditing is disabled (AUDIT_ENABLED=false).")
    result = writer.replay()
    _emit(
        as_json,
        result.as_dict(),
        [
            f"Stored {result.stored} record(s), {result.duplicates} already stored, "
            f"{result.rejected} unreadable line(s) set aside, {result.files} file(s) done"
        ]
        + [f"Error: {e}" for e in result.errors],
    )
    if result.errors:
        raise SystemExit(1)


@command("seed-demo")
@click.option(
    "--requests", "request_count", default=300, show_default=True, type=click.IntRange(0, 100_000)
)
@click.option("--if-empty", is_flag=True, help="Only when the store has no organization yet.")
@json_option
@with_appcontext
def seed_demo_command(request_count, if_empty, as_json):
    """Create the demo organization and real traffic through the app; prints the logins."""

    if if_empty and has_any_organization(get_db()):
        summary = {"created": False, "message": "The store already has organizations; not seeding."}
    else:
        summary = seed_demo(current_app._get_current_object(), request_count)
    logins = DEMO_LOGINS if find_demo(get_db()) is not None else []
    if not logins:  # other organizations, no demo: its logins would not work
        summary["message"] += " There is no demo organization: log in with your own accounts."
    lines = [summary["message"]] + (["Demo logins:"] if logins else [])
    lines += [
        f"  {login['role']:<6} {login['email']}  password: {login['password']}" for login in logins
    ]
    _emit(as_json, {**summary, "logins": logins}, lines)


@command("export")
@click.option("--organization", "organization_id", type=OBJECT_ID, required=True)
@click.option("--format", "fmt", type=click.Choice(["csv", "ndjson", "ocsf"]), required=True)
@click.option("--q", help="search: an ObjectId (account, workspace, API key) or part of a path")
@click.option("--path", help="part of the path")
@click.option("--account-id")
@click.option("--workspace-id")
@click.option("--api-key-id")
@click.option("--method")
@click.option("--status-code", help="a code such as 404 or a class such as 4xx")
@click.option("--auth-type")
@click.option("--resource")
@click.option("--from", "start", help="ISO 8601 date or date-time")
@click.option("--to", "end", help="ISO 8601 date or date-time")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    default="-",
    show_default=True,
    help="file to write; - for standard output",
)
@click.option(
    "--details/--no-details",
    default=True,
    show_default=True,
    help="with each record's request details (query, headers, body)",
)
@json_option
@with_appcontext
@reads_the_log
def export_command(organization_id, fmt, output, details, as_json, **filters):
    """Export an organization's audit log (filtered) as CSV or NDJSON, streamed."""

    organization = _organization(get_db(), organization_id)
    names = {
        "q": "q",
        "path": "path",
        "account_id": "accountId",
        "workspace_id": "workspaceId",
        "api_key_id": "apiKeyId",
        "method": "method",
        "status_code": "statusCode",
        "auth_type": "authType",
        "resource": "resource",
        "start": "from",
        "end": "to",
    }
    args = MultiDict({names[k]: v for k, v in filters.items() if v is not None})
    try:
        query = build_query(organization["_id"], parse_query(args, FilterSchema()))
    except ApiError as error:
        options = {"from": "--from", "to": "--to", "q": "--q", "path": "--path"}
        python_name = {v: k for k, v in names.items()}.get(error.field, "")
        option = options.get(error.field) or "--" + python_name.replace("_", "-")
        raise click.BadParameter(error.message.split(": ", 1)[-1], param_hint=option) from None
    options = {"format": fmt, "output": output, "details": details, **args.to_dict()}
    started = record_operator_command(
        organization["_id"],
        "export",
        options,
        action=EXPORT,
        export={"format": fmt, "outcome": "started"},
    )
    written, outcome = 0, "interrupted"
    begun = time.monotonic()
    progress = output != "-" or not sys.stdout.isatty()
    try:
        records = export_records(organization["_id"], query)
        with click.open_file(output, "w", encoding="utf-8") as handle:
            for chunk in export.chunks(fmt, records, details):
                handle.write(chunk)
                written += 1
                if progress and written % 1000 == 0:
                    rate = written / max(time.monotonic() - begun, 1e-6)
                    click.echo(
                        f"\rExported {written:,} records ({rate:,.0f}/s)", err=True, nl=False
                    )
        outcome = "completed"
    except export.ExportTimedOut as stopped:  # the file ends with a line saying so
        outcome, written = "timedOut", stopped.rows + (1 if fmt == "csv" else 0)
    except BrokenPipeError:
        # the reader stopped early (`| head`): keep Python from failing on the closed stdout
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except ApiError as error:  # the server's time budget ran out before the first batch
        _fail_on_api_error(error)
    finally:
        count = max(written - 1, 0) if fmt == "csv" else written
        record_operator_command(
            organization["_id"],
            "export",
            options,
            action=EXPORT_ENDED,
            outcome="success" if outcome == "completed" else "failure",
            export={
                "format": fmt,
                "rowsWritten": count,
                "outcome": outcome,
                "startRecordId": started,
            },
        )
    if outcome == "timedOut":
        raise click.ClickException(
            f"The export stopped after {count:,} records: the search took too long "
            "(AUDIT_EXPORT_TIMEOUT_MS). The output ends with a line saying it is incomplete; "
            "narrow the search with --from/--to or more filters and export again."
        )
    summary = {"organizationId": str(organization["_id"]), "format": fmt, "output": output}
    summary.update(rowsWritten=count, outcome=outcome)
    if as_json:  # stdout may be the export itself: the summary goes to stderr
        click.echo(json.dumps(summary), err=True)
        if outcome != "completed":
            raise SystemExit(1)
        return
    if outcome != "completed":
        click.echo(
            f"\rExport interrupted after {count:,} records: the output was closed "
            "(the export is recorded as interrupted).",
            err=True,
        )
        raise SystemExit(1)
    click.echo(
        f"\rExported {count:,} records of {organization['name']!r} as {fmt}"
        + ("" if output == "-" else f" to {output}"),
        err=True,
    )


@command("seal")
@click.option(
    "--organization", "organization_id", type=OBJECT_ID, default=None, help="one organization only"
)
@click.option(
    "--now", "up_to_now", is_flag=True, help="also seal the open window, up to a few seconds ago"
)
@json_option
@with_appcontext
@reads_the_log
def seal_command(organization_id, up_to_now, as_json):
    """Seal every closed window: signed, chained digests of the audit records."""

    only = _organization(get_db(), organization_id)["_id"] if organization_id else None
    app = current_app._get_current_object()
    with _sealing_alone(app):
        written = seal_now(app, only=only, up_to_now=up_to_now)
        for key, count in written.items():
            if isinstance(count, int) and count:  # what the pages show: the newest windows
                store_state(ObjectId(key), verify(ObjectId(key), last=RECENT_WINDOWS), "recent")
    failed = {k: v["error"] for k, v in written.items() if isinstance(v, dict)}
    total = sum(v for v in written.values() if isinstance(v, int))
    _emit(
        as_json,
        {"digests": written, "total": total, "failed": failed},
        [f"Sealed {total} window(s) across {len(written)} organization(s)"]
        + [f"Not sealed, organization {k}: {message}" for k, message in failed.items()],
    )
    if failed:
        raise SystemExit(1)


@contextlib.contextmanager
def _sealing_alone(app):
    """The sealer's lease around a command's seal or stored verification, as an error
    naming why when another process holds it too long."""
    try:
        with sealing_alone(app):
            yield
    except SealerBusy as error:
        raise click.ClickException(str(error)) from None


def _date_option(value, option):
    if value is None:
        return None

    try:
        return IsoDateTime().deserialize(value)
    except ValidationError:
        raise click.BadParameter(
            "must be an ISO 8601 date or date-time", param_hint=option
        ) from None


@command("purge")
@click.option(
    "--organization", "organization_id", type=OBJECT_ID, default=None, help="one organization only"
)
@json_option
@with_appcontext
@reads_the_log
def purge_command(organization_id, as_json):
    """Delete the records past each organization's retention, now (a background task does it
    every AUDIT_PURGE_INTERVAL seconds). An organization on legal hold keeps everything."""

    only = _organization(get_db(), organization_id)["_id"] if organization_id else None
    results = purge_all(current_app._get_current_object(), only=only, by="command")
    if results is None:
        raise click.ClickException("Another process is purging right now; try again later.")
    deleted = sum(result.deleted for result in results)
    lines = [
        f"Organization {result.organization_id}: "
        + (
            f"NOT PURGED ({result.error}; see the log)"
            if result.error
            else "on legal hold, nothing deleted"
            if result.held
            else f"{result.deleted} record(s) stored before {iso(result.cutoff)} deleted"
            + (" (more next time)" if result.more else "")
        )
        for result in results
        if result.held or result.deleted or result.error
    ]
    _emit(
        as_json,
        {"deleted": deleted, "organizations": [result.as_dict() for result in results]},
        [*lines, f"Deleted {deleted} record(s) across {len(results)} organization(s)"],
    )
    if any(result.error for result in results):
        raise SystemExit(1)


@command("verify")
@click.option("--organization", "organization_id", type=OBJECT_ID, required=True)
@click.option("--from", "start", default=None, help="ISO 8601")
@click.option("--to", "end", default=None, help="ISO 8601")
@json_option
@with_appcontext
@reads_the_log
def verify_command(organization_id, start, end, as_json):
    """Recompute the digests and the chain; exit non-zero if anything differs."""

    since, until = _date_option(start, "--from"), _date_option(end, "--to")
    if since is not None and until is not None and since > until:
        raise click.BadParameter(f"{start} is after --to {end}.", param_hint="--from")
    organization = _organization(get_db(), organization_id)
    with _sealing_alone(current_app._get_current_object()):  # never half-way through a seal
        report = verify(organization["_id"], start=since, end=until)
        payload = report.as_dict()
        sealed_nothing = not report.windows and not report.chain_problems
        payload["nothingSealed"] = sealed_nothing
        state = None
        if start is None and end is None and not sealed_nothing:  # every window: the state
            state = store_state(organization["_id"], report, "full")
            payload["integrityState"] = state["state"]
    record_operator_command(
        organization["_id"],
        "verify",
        {"from": start, "to": end},
        action=VERIFY,
        verification={"ok": report.ok, "windows": len(report.windows)},
    )
    lines = [
        f"{len(report.windows)} window(s) checked; verified up to "
        f"{payload['verifiedUpTo'] or 'nothing yet'}; {report.unsealed_records} record(s) "
        "not sealed yet"
    ]
    for window in report.windows:
        if window.status == "failed":
            lines.append(f"FAILED window #{window.sequence} {payload_window(window)}:")
            lines += [f"  {p['type']}: {p['message']}" for p in window.problems]
    lines += [f"FAILED chain: {p['type']}: {p['message']}" for p in report.chain_problems]
    if sealed_nothing:
        # nothing was checked: not an OK (the background sealer seals every
        # AUDIT_SEAL_INTERVAL seconds, records older than AUDIT_SEAL_DELAY)
        lines.append(
            "NOTHING VERIFIED: no window of this organization is sealed"
            + (" in that range" if start or end else " yet")
            + "; run 'flask --app wsgi seal' (or wait for the background sealer), then verify"
        )
    else:
        lines.append("OK: every window verified" if report.ok else "TAMPERING DETECTED")
    if state is not None and state["state"] != ("verified" if report.ok else "failed"):
        lines.append(f"Integrity state: {state['state']} (see acknowledge-integrity)")
    _emit(as_json, payload, lines)
    if not report.ok or sealed_nothing:
        raise SystemExit(1)


REASON_LENGTH = (10, 500)


def _reason(ctx, param, value):
    text = (value or "").strip()
    low, high = REASON_LENGTH
    if not low <= len(text) <= high:
        raise click.BadParameter(f"must be {low} to {high} characters (it has {len(text)}).")
    return text


def _operator() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        return f"uid {os.getuid()}"


@command("acknowledge-integrity")
@click.option("--organization", "organization_id", type=OBJECT_ID, required=True)
@click.option(
    "--reason",
    required=True,
    callback=_reason,
    help="why the failure is known and accepted (10-500 characters), kept with it",
)
@json_option
@with_appcontext
def acknowledge_integrity_command(organization_id, reason, as_json):
    """Acknowledge the integrity failures shown now, with a reason: the state reads
    'acknowledged' until a verification finds anything else. Recorded in the
    organization's log and anchored outside the database."""

    organization = _organization(get_db(), organization_id)
    by = _operator()
    try:
        state, count = acknowledge(organization["_id"], reason, by)
    except NothingToAcknowledge as error:
        raise click.ClickException(str(error)) from None
    record_operator_command(
        organization["_id"],
        "acknowledge-integrity",
        {"reason": reason},
        action=ACKNOWLEDGE_INTEGRITY,
        acknowledged=count,
    )
    _emit(
        as_json,
        {
            "organizationId": str(organization["_id"]),
            "state": state["state"],
            "acknowledged": count,
            "reason": reason,
            "by": by,
        },
        [
            f"Acknowledged {count} problem(s) of organization {organization['_id']} "
            f"as {by}: the integrity state is now {state['state']}."
        ],
    )


def payload_window(window) -> str:

    return f"{iso(window.window_start)} .. {iso(window.window_end)}"


@command("export-digests")
@click.option("--organization", "organization_id", type=OBJECT_ID, required=True)
@click.option("--output", type=click.Path(dir_okay=False, writable=True), default="-")
@json_option
@with_appcontext
@reads_the_log
def export_digests_command(organization_id, output, as_json):
    """Write an organization's digests as NDJSON, to keep in write-once storage."""

    organization = _organization(get_db(), organization_id)
    count = 0
    with click.open_file(output, "w", encoding="utf-8") as handle:
        for digest in iter_digests(get_audit_db(), organization["_id"]):
            handle.write(json.dumps(jsonable(digest), sort_keys=True) + "\n")
            count += 1
    record_operator_command(
        organization["_id"],
        "export-digests",
        {"output": output},
        action=EXPORT_DIGESTS,
        digests=count,
    )
    if as_json:  # stdout may be the digests themselves: the summary goes to stderr
        click.echo(json.dumps({"digests": count, "output": output}), err=True)
    else:
        click.echo(f"Exported {count} digest(s)", err=True)


@command("migrate-store")
@click.option(
    "--to",
    "target",
    required=True,
    help="where to copy: mongodb://... (a replica set or cluster) or embedded:PATH",
)
@click.option(
    "--from",
    "source",
    default=None,
    help="where to copy from (default: this installation's stores)",
)
@click.option("--verify/--no-verify", default=True, show_default=True, help="verify on the target")
@json_option
@with_appcontext
@reads_the_log
def migrate_store_command(target, source, verify, as_json):
    """Copy this installation (platform data, audit records, digests) to another store.

    Ids, dates and types are kept, so the digests verify there; safe to run again: what
    the target already holds is skipped, so an interrupted copy continues where it
    stopped. Then point MONGO_URI at the target.
    """

    config = current_app.config
    if source is None:
        source_main, source_audit = stores()["main"], stores()["audit"]
    else:
        source_main = source_audit = _store_option(source, "--from", config)
        if source_main.kind == "embedded" and not os.path.isdir(source_main.embedded_dir):
            # opening it would make an empty store there, and copying nothing "succeed"
            raise click.BadParameter(
                f"{source_main.embedded_dir} is not an embedded store's folder (it does not "
                "exist); give the folder that holds the store (instance/store by default).",
                param_hint="--from",
            )
    target_store = _store_option(target, "--to", config, config.get("MIGRATE_TARGET_CLIENT"))
    if _same_store(target_store, source_main) or _same_store(target_store, source_audit):
        raise click.BadParameter("the target is the store being copied", param_hint="--to")
    shown = {"name": None}

    def progress(name: str, done: int, total: int) -> None:
        if as_json:
            return
        end = "\n" if done >= total else ""
        if shown["name"] != name or end or done % 10_000 == 0:
            click.echo(f"\r{name}: {done:,} of {total:,}", err=True, nl=False)
            click.echo(end, err=True, nl=False)
        shown["name"] = name

    try:
        report = migrate(
            source_main.db,
            source_audit.db,
            target_store.db,
            target_store.db,
            progress=progress,
        )
        if verify:
            report.verified = verify_target(target_store.db, target_store.db, sealing_policy())
    finally:
        if target_store.kind != "injected":
            target_store.close()
    failed = [organization for organization, ok in report.verified.items() if not ok]
    lines = [
        f"{copy.name}: {copy.copied:,} copied, {copy.updated:,} updated, {copy.deleted:,} "
        f"deleted, {copy.present:,} already there (of {copy.source:,})"
        + (f"; CONFLICTS (differ on the target): {len(copy.conflicts)}" if copy.conflicts else "")
        for copy in report.collections
    ]
    if verify:
        lines.append(
            f"verify on the target: {len(report.verified) - len(failed)} of "
            f"{len(report.verified)} organization(s) OK"
            + (f"; FAILED: {', '.join(failed)}" if failed else "")
        )
    _emit(as_json, report.as_dict(), lines)
    if failed or report.conflicts:
        raise SystemExit(1)


def _same_store(one, other) -> bool:
    """The same store however it is spelled (``dir``, ``dir/``, ``x/../dir``)."""
    if "injected" in (one.kind, other.kind) or one.kind != other.kind:
        return False
    if one.kind == "embedded":
        return os.path.realpath(one.embedded_dir) == os.path.realpath(other.embedded_dir)
    return one.uri == other.uri


def _store_option(value: str, option: str, config, client=None):

    try:
        return store_for(value, db_name=config.get("MONGO_DB_NAME"), client=client)
    except ValueError as error:
        raise click.BadParameter(
            f"{error}; or embedded:PATH for an embedded store", param_hint=option
        ) from None


(REVOKE_CREDENTIALS,) = declare("account.revokeCredentials")


@command("revoke-credentials")
@click.option("--email", required=True, help="The account whose credentials end.")
@click.option(
    "--organization",
    "organization_id",
    type=OBJECT_ID,
    default=None,
    help="Revoke only the keys and invitations made in this organization (sessions and "
    "JWTs are the account's and end in every case).",
)
@json_option
@with_appcontext
def revoke_credentials_command(email, organization_id, as_json):
    """Incident response: end an account's web sessions and JWTs, and revoke the API keys
    and invitations it created; recorded in each organization concerned."""
    db = get_db()
    account = find_account_by_email(db, email.strip())
    if account is None:
        raise click.BadParameter(f"no account with email {email!r}", param_hint="--email")
    memberships = [o["_id"] for o in orgs.list_organizations_of_account(db, account["_id"])]
    if organization_id is not None:
        _organization(db, organization_id)
        if organization_id not in memberships:
            raise click.BadParameter(
                f"{account['email']} is not a member of {organization_id}",
                param_hint="--organization",
            )
    revoked = credentials.revoke_credentials(account, organization_id)
    for org in [organization_id] if organization_id else memberships:
        in_org = revoked["byOrganization"].get(str(org), {"apiKeys": 0, "invitations": 0})
        record_operator_command(
            org,
            "revoke-credentials",
            {"email": account["email"], "organization": organization_id},
            action=REVOKE_CREDENTIALS,
            result={
                "accountId": account["_id"],
                "sessionsEnded": revoked["sessionsEnded"],
                "apiKeysRevoked": in_org["apiKeys"],
                "invitationsRevoked": in_org["invitations"],
            },
        )
    _emit(
        as_json,
        {
            "accountId": str(account["_id"]),
            "email": account["email"],
            "sessionsEnded": revoked["sessionsEnded"],
            "jwtsEnded": True,
            "apiKeysRevoked": revoked["apiKeysRevoked"],
            "invitationsRevoked": revoked["invitationsRevoked"],
            "byOrganization": revoked["byOrganization"],
        },
        [
            f"Revoked the credentials of {account['email']} ({account['_id']}):",
            f"  web sessions ended: {revoked['sessionsEnded']}; every JWT ended",
            f"  API keys revoked: {revoked['apiKeysRevoked']}",
            f"  invitations revoked: {revoked['invitationsRevoked']}",
        ],
    )


@command("witness")
@click.option("--url", required=True, help="the installation, e.g. https://audit.example.com")
@click.option("--organization", "organization_id", type=OBJECT_ID, required=True)
@click.option("--state", "state_path", required=True, help="this witness's own state file")
@click.option("--key", default=None, help="the log's public key (default: the first one seen)")
@click.option(
    "--token-env",
    default="AUDIT_WITNESS_TOKEN",
    show_default=True,
    help="the environment variable holding a JWT or an API key with viewAuditLog",
)
@json_option
def witness_command(url, organization_id, state_path, key, token_env, as_json):
    """Witness an organization's verifiable log: accept its newest checkpoint only if it
    extends the one seen last; fail on a rollback, a fork or a truncated tail."""
    token = os.environ.get(token_env, "").strip()
    if not token:
        raise click.UsageError(f"set {token_env} to a JWT or an API key with viewAuditLog")
    headers = (
        {"Authorization": f"Bearer {token}"} if token.count(".") == 2 else {"X-API-Key": token}
    )
    try:
        outcome = witness(url, str(organization_id), state_path, headers, key)
    except WitnessError as error:
        if as_json:
            click.echo(json.dumps({"error": {"code": error.kind, "message": str(error)}}), err=True)
        else:
            click.echo(f"NOT WITNESSED: {error}", err=True)
        raise SystemExit(1) from None
    checkpoint = outcome.checkpoint
    said = {
        "first": "first checkpoint seen; kept",
        "extended": f"extends tree size {outcome.old_size} (consistency proof verified)",
        "unchanged": "unchanged since last run",
    }[outcome.kind]
    _emit(
        as_json,
        {
            "outcome": outcome.kind,
            "origin": checkpoint.origin,
            "treeSize": checkpoint.size,
            "previousTreeSize": outcome.old_size,
        },
        [f"WITNESSED {checkpoint.origin} at tree size {checkpoint.size}: {said}"],
    )


def register(app) -> None:
    from .staff.cli import COMMANDS as STAFF_COMMANDS

    for command in (
        *STAFF_COMMANDS,
        create_org_command,
        create_user_command,
        create_api_key_command,
        ensure_indexes_command,
        replay_spool_command,
        fold_journal_command,
        seed_demo_command,
        export_command,
        seal_command,
        verify_command,
        acknowledge_integrity_command,
        purge_command,
        export_digests_command,
        migrate_store_command,
        revoke_credentials_command,
        witness_command,
    ):
        app.cli.add_command(command)
