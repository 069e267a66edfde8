"""Organization -> Audit Streams: create, pause, resume, test and delete log streams, and
see each one's health (docs/streams.md)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from ..audit.capture.context import mask_bodies_of, note_error
from ..audit.capture.hooks import audit_action
from ..auth.principal import current_principal, require_permission
from ..errors import ApiError
from ..ids import parse_object_id
from ..pagination import WebPageQuerySchema
from ..web.confirm import ask_first, confirmed
from ..web.forms import ActionForm, refused, require_valid_form
from . import formats, service
from .destinations import DESTINATION_TYPES

bp = Blueprint("auditStreams", __name__, url_prefix="/organization/audit-streams")
MANAGE = "manageAuditStreams"
mask_bodies_of("web.auditStreams.", service.masked_body)  # destination URLs: credentials


# the New stream form's fields shown again as typed after a refusal; never the HEC token
TYPED_FIELDS = ("name", "type", "url", "host", "port", "tls", "format", "q")


def _page(
    created: dict[str, Any] | None = None,
    secret: str | None = None,
    status: int = 200,
    typed: dict[str, Any] | None = None,
    error: ApiError | None = None,
):
    principal = current_principal()
    page = service.list_streams(principal, request.args, WebPageQuerySchema())
    shown = [
        (
            stream,
            service.health_for(principal, stream),
            service.shown_destination(stream["destination"]),
        )
        for stream in page.items
    ]
    response = render_template(
        "organization/audit_streams.html",
        streams=shown,
        page=page,
        formats=formats.FORMATS,
        kinds=DESTINATION_TYPES,
        form=ActionForm(),
        created=created,
        secret=secret,
        typed=typed or {},
        error=error,
        invalid=_invalid_input(error, typed) if error is not None else None,
    )
    return response, status, {"Cache-Control": "no-store"}


def _typed(form) -> dict[str, Any]:
    """What the New stream form sent, to show it again: a refusal loses nothing typed but
    the HEC token, a secret that is never sent back (``tokenGiven`` says to enter it again;
    the request's record masks it, as any token)."""
    typed: dict[str, Any] = {name: form.get(name, "") for name in TYPED_FIELDS}
    typed["tokenGiven"] = bool(form.get("token"))
    return typed


def _invalid_input(error: ApiError, typed: dict[str, Any] | None) -> str | None:
    """The form input the refusal names (``error.field`` is the API's field)."""
    field = error.field or ""
    if field == "destination":
        syslog = (typed or {}).get("type") == "syslog"
        if syslog and "port" in error.message:
            return "port"
        return "host" if syslog else "url"
    if field == "filters":
        return "q"
    return field if field in (*TYPED_FIELDS, "token") else None


@bp.get("")
@audit_action("auditStream.list")
@require_permission(MANAGE)
def streams_page():
    return _page()


def _destination(form) -> dict[str, Any]:
    kind = form.get("type", "")
    if kind == "syslog":
        try:
            port = int(form.get("port", ""))
        except ValueError:
            raise ApiError(
                400, "bad_request", "A syslog destination needs a port.", "port"
            ) from None
        return {
            "type": kind,
            "host": form.get("host", "").strip(),
            "port": port,
            "tls": form.get("tls") == "on",
        }
    return {"type": kind, "url": form.get("url", "").strip()}


@bp.post("")
@audit_action("auditStream.create")
@require_permission(MANAGE)
def create_stream():
    require_valid_form()
    form = request.form
    try:
        name = form.get("name", "").strip()
        if not name or len(name) > 200:
            raise ApiError(
                400, "bad_request", "A stream needs a name of 1 to 200 characters.", "name"
            )
        filters = {"q": form["q"].strip()} if form.get("q", "").strip() else {}
        stream, secret = service.create_stream(
            current_principal(),
            {
                "name": name,
                "destination": _destination(form),
                "format": form.get("format", "json"),
                "filters": filters,
                "token": form.get("token") or None,
            },
        )
    except ApiError as error:
        # the page again, as typed, saying what to change beside the form (and in the record)
        note_error(error.code, error.message)
        return _page(typed=_typed(form), error=error, status=error.status)
    return _page(created=stream, secret=secret, status=201)


def _stream_id(raw: str):
    return parse_object_id(raw, "streamId", status=404, what="Audit stream")


@bp.post("/<streamId>/pause")
@audit_action("auditStream.update")
@require_permission(MANAGE)
def pause_stream(streamId):
    require_valid_form()
    paused = request.form.get("paused") != "false"
    stream_id = _stream_id(streamId)
    try:
        stream, _ = service.update_stream(current_principal(), stream_id, {"paused": paused})
    except ApiError as error:
        if error.status == 404:
            raise
        refused(error)
        return redirect(url_for(".streams_page"))
    flash(f"Stream {stream['name']!r} {'paused' if paused else 'resumed'}.")
    return redirect(url_for(".streams_page"))


@bp.post("/<streamId>/test")
@audit_action("auditStream.test")
@require_permission(MANAGE)
def test_stream(streamId):
    require_valid_form()
    stream_id = _stream_id(streamId)
    try:
        result = service.send_test_event(current_principal(), stream_id)
    except ApiError as error:
        if error.status == 404:
            raise
        refused(error)
        return redirect(url_for(".streams_page"))
    if result["delivered"]:
        flash("The test event was delivered.")
    else:
        flash(f"The test event was not delivered: {result['error']}", "error")
    return redirect(url_for(".streams_page"))


@bp.post("/<streamId>/delete")
@audit_action("auditStream.delete")
@require_permission(MANAGE)
def delete_stream(streamId):
    require_valid_form()
    stream_id = _stream_id(streamId)
    if not confirmed():
        stream = service.find_stream(current_principal(), stream_id)
        return ask_first(
            "auditStream.delete",
            stream["name"],
            cancel_url=url_for(".streams_page"),
            target=("auditStream", stream["_id"], stream["name"]),
        )
    service.delete_stream(current_principal(), stream_id)
    flash("Stream deleted.")
    return redirect(url_for(".streams_page"))
