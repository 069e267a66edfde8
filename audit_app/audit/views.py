"""The web pages: Organization -> Audit Logs, View Details, and the export button."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bson import ObjectId
from flask import (
    Blueprint,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.datastructures import MultiDict

from ..auth.principal import current_principal, require_permission
from ..db import get_audit_db
from ..errors import ApiError, not_found
from ..ids import iso, parse_object_id
from ..organizations.permissions import VIEW_AUDIT_LOG
from ..streams.service import failing_streams
from ..web.times import viewer_zone
from . import export, proofs, service
from .capture.context import note_error
from .capture.hooks import audit_action, audited
from .capture.redaction import unescape
from .integrity.sealing import integrity_state
from .schemas import jsonable
from .store.query import AUTH_TYPES, METHODS, WebListQuerySchema, parse_moment

bp = Blueprint("auditLogs", __name__, url_prefix="/organization/audit-logs")

PAGE_SIZES = (25, 50, 100)
FILTER_NAMES = (
    "q",
    "method",
    "statusCode",
    "authType",
    "resource",
    "from",
    "to",
    "accountId",
    "workspaceId",
    "apiKeyId",
    "path",
)


# the search bar's hint: one example of each qualifier (audit.query.QUALIFIERS)
QUALIFIER_EXAMPLES = (
    "actor:ana@example.com",
    "ip:203.0.113.7",
    "requestId:<id>",
    "action:member.*",
    "credential:<credentialId>",
    "method:DELETE",
    "status:4xx",
    "created:>=2026-11-01",
    "created:<=2026-11-30",
    "path:/api/v1",
    "-action:auditLog.view",  # a - before any of them excludes
)


def _filters_from(args) -> dict:
    """The filters of the current URL, as the form and the links need them."""
    return {name: args.get(name, "") for name in FILTER_NAMES if args.get(name, "").strip()}


# "Hide my views of this log": on unless the URL says ``myViews=shown``. The form sends a
# hidden ``myViews=shown`` and, when the box is ticked, ``myViews=hidden`` after it, so
# the box works without JavaScript and a plain link keeps the default
MY_VIEWS = "myViews"


def _hides_my_views(args) -> bool:
    values = args.getlist(MY_VIEWS)
    return "shown" not in values or "hidden" in values


def _view_state(hide: bool) -> dict:
    """What every link of the page carries besides the filters: the toggle, when off."""
    return {} if hide else {MY_VIEWS: "shown"}


def _hidden_for(hide: bool):
    """Whose page views of the log the page leaves out (None: none): the viewer's, in this
    session (its credential), so reads from another session of the account stay listed."""
    if not hide:
        return None
    principal = current_principal()
    if principal.credential_id:
        return (principal.account_id, principal.credential_id)
    return principal.account_id


# how the chips name each filter, and each qualifier of the search bar
_CHIP_NAMES = {
    "q": "Search",
    "method": "Method",
    "statusCode": "Status",
    "authType": "Auth type",
    "resource": "Resource",
    "from": "From",
    "to": "To",
    "accountId": "Account",
    "workspaceId": "Workspace",
    "apiKeyId": "API key",
    "path": "Path contains",
}
_QUALIFIER_NAMES = {
    "target": "Acted on",
    "actor": "Actor",
    "ip": "IP",
    "requestId": "Request",
    "action": "Action",
    "credential": "Credential",
    "method": "Method",
    "status": "Status",
    "created": "Created",
    "path": "Path",
}


def _chips(filters: dict, state: dict, items: list[dict]) -> list[dict]:
    """A chip for each filter in force, hidden ones included (and each word of the search
    bar): its name, a readable value (a workspace's or an API key's name, an account's
    email as its records give it, a time), and the link that drops just that filter."""
    ids = {
        name: ObjectId(filters[name])
        if len(filters.get(name, "")) == 24 and ObjectId.is_valid(filters[name])
        else None
        for name in ("workspaceId", "apiKeyId", "accountId")
    }
    workspaces, keys = _names_for(
        [{"workspaceId": ids["workspaceId"], "apiKeyId": ids["apiKeyId"]}]
    )
    emails = {i.get("accountId"): i.get("accountEmail") for i in items if i.get("accountEmail")}
    readable = {
        "workspaceId": (workspaces.get(ids["workspaceId"]) or {}).get("name"),
        "apiKeyId": (keys.get(ids["apiKeyId"]) or {}).get("name"),
        "accountId": emails.get(ids["accountId"]),
    }
    chips = []
    for name in FILTER_NAMES:
        value = filters.get(name)
        if not value:
            continue
        words = value.split() if name == "q" else [value]
        for index, word in enumerate(words):
            rest = " ".join(words[:index] + words[index + 1 :]) if name == "q" else ""
            kept = {k: v for k, v in filters.items() if k != name}
            if rest:
                kept[name] = rest
            label, shown = _CHIP_NAMES[name], readable.get(name) or word
            stamp = None  # a time, shown as every time is (the ``when`` filter)
            if name in ("from", "to"):
                moment = parse_moment(word, end_of_day=name == "to")
                stamp = iso(moment) if moment else None
                shown = stamp[:19].replace("T", " ") + " UTC" if stamp else word
            elif name == "q":
                label, shown = _word_label(word)
            chips.append(
                {
                    "name": name,
                    "label": label,
                    "value": shown,
                    "raw": word,
                    "moment": stamp,
                    "remove": url_for(".list_page", **kept, **state),
                }
            )
    return chips


def _kept_size(state: dict, limit: str) -> dict:
    """The page's state with its page size, when not the default (a chip's link keeps it)."""
    return {**state, "limit": limit} if limit != "50" else state


def _word_label(word: str) -> tuple[str, str]:
    """How a chip names a word of the search bar: its qualifier (``Not action`` for a
    ``-`` one) and its value; plain text is a search."""
    negated = word.startswith("-")
    name, colon, value = word[1 if negated else 0 :].partition(":")
    if colon and name in _QUALIFIER_NAMES and value:
        label = _QUALIFIER_NAMES[name]
        return (f"Not {label.lower()}" if negated else label), value
    return "Search", word


CHART_RECORDS = 5000  # what the page's chart counts at most (the API's own cap is a setting)
AXIS_LABELS = 8  # at most, on a wide screen; every other one on a phone


def _chart(
    filters: dict,
    zone: str,
    hide: bool = False,
    state: dict | None = None,
    *,
    strict: bool = False,
) -> dict | None:
    """The activity chart above the table: the page's filters, per day (or per hour for
    three days or less) of the viewer's zone, each bar a link that narrows the range to
    its bucket, with a date axis. ``strict``: a parameter it cannot use is a 400 (the
    list page shows its own error, and no chart)."""
    shown = {k: v for k, v in filters.items() if k not in ("cursor", "before")}
    span = _span_days(shown)
    interval = "hour" if span is not None and span <= 3 else "day"
    try:
        found = service.histogram(
            current_principal(),
            MultiDict({**shown, "interval": interval, "tz": zone}),
            max_records=CHART_RECORDS,
            hide_views_of=_hidden_for(hide),
        )
    except ApiError:
        if strict:
            raise
        return None
    tallest = max((b["count"] for b in found["buckets"]), default=0) or 1
    ticks = _ticks(found, ZoneInfo(found["timeZone"]))
    bars = []
    for bucket, tick in zip(found["buckets"], ticks, strict=True):
        start = datetime.fromisoformat(bucket["start"].replace("Z", "+00:00"))
        if bucket["end"] is None:  # the bucket of 9999-12-31 ends with the calendar
            end = datetime.max.replace(tzinfo=UTC)
        else:
            end = datetime.fromisoformat(bucket["end"].replace("Z", "+00:00"))
            end -= timedelta(milliseconds=1)
        narrowed = {**shown, "from": iso(start), "to": iso(end)}
        stacked, base = [], 0.0
        for family in ("2xx", "3xx", "4xx", "5xx", "1xx"):
            height = 100 * bucket["statusClasses"][family] / tallest
            if height:
                stacked.append({"family": family, "y": 100 - base - height, "height": height})
                base += height
        said = [f"{bucket['count']} request{'s' if bucket['count'] != 1 else ''}"]
        said += [f"{n} {family}" for family, n in bucket["statusClasses"].items() if n]
        bars.append(
            {
                **bucket,
                "href": url_for(".list_page", **narrowed, **(state or {})),
                "stacked": stacked,
                "tick": tick,
                "said": ": " + ", ".join(said),
            }
        )
    empty = not any(bucket["count"] for bucket in found["buckets"])
    return {
        **found,
        "bars": bars,
        "tallest": tallest,
        "empty": empty,
        "refresh": url_for(".activity_page", **shown, **(state or {})),
    }


def _ticks(found: dict, zone: ZoneInfo) -> list[tuple[str, bool] | None]:
    """Which bars the date axis labels, and how: ``(precision, minor)`` (a minor label is
    left out on a phone), or None. Days: every k-th; hours: those whose hour of the zone
    is a multiple of k (3, 6, 12 or 24), a day's first with its date."""
    starts = [
        datetime.fromisoformat(b["start"].replace("Z", "+00:00")).astimezone(zone)
        for b in found["buckets"]
    ]
    ticks: list[tuple[str, bool] | None] = []
    shown = 0
    if found["interval"] == "day":
        every = max(1, -(-len(starts) // AXIS_LABELS))
        for index, _ in enumerate(starts):
            if index % every == 0:
                ticks.append(("day", shown % 2 == 1))
                shown += 1
            else:
                ticks.append(None)
        return ticks
    every = next((k for k in (1, 2, 3, 6, 12) if len(starts) / k <= AXIS_LABELS), 24)
    days = any(moment.hour == 0 and moment.minute == 0 for moment in starts)
    for moment in starts:
        if moment.minute == 0 and moment.hour % every == 0:
            # on a phone, the days' labels (or every other hour's, in a range with no midnight)
            minor = (moment.hour != 0) if days else shown % 2 == 1
            ticks.append(("day" if moment.hour == 0 else "hour", minor))
            shown += 1
        else:
            ticks.append(None)
    return ticks


def _span_days(filters: dict) -> float | None:
    start = parse_moment(filters.get("from", ""))
    end = parse_moment(filters.get("to", ""), end_of_day=True)
    if start is None or end is None:
        return None
    return (end - start).total_seconds() / 86400


def _clean_args(args):
    """Empty form fields mean 'no filter'; drop them before validation (and the toggle of
    the viewer's own views, which is the page's, not a filter of the log)."""
    return MultiDict([(k, v) for k, v in args.items(multi=True) if v.strip() and k != MY_VIEWS])


def _names_for(items: list[dict]) -> tuple[dict, dict]:
    return service.names_for(current_principal(), items)


@bp.get("")
@audit_action("auditLog.list")
@require_permission(VIEW_AUDIT_LOG)
@audited
def list_page():
    args = _clean_args(request.args)
    filters = _filters_from(args)
    hide = _hides_my_views(request.args)
    state = _view_state(hide)
    limit = args.get("limit", "50")
    context = {
        "filters": filters,
        "page_sizes": PAGE_SIZES,
        "methods": METHODS[:-1],
        "auth_types": AUTH_TYPES,
        "limit": limit,
        "error": None,
        "items": [],
        "workspaces": {},
        "api_keys": {},
        "older": None,
        "newer": None,
        "first": None,
        "integrity": None,
        "failing_streams": [],
        "chart": None,
        "suggestion": None,
        "qualifier_examples": QUALIFIER_EXAMPLES,
        "suspicious": {},
        "hide_my_views": hide,
        "chips": [],
    }
    try:
        page = service.list_page(
            current_principal(),
            args,
            schema=WebListQuerySchema(),
            hide_views_of=_hidden_for(hide),
        )
    except ApiError as error:
        if error.status != 400:
            raise
        context["error"] = error
        context["error_label"] = _CHIP_NAMES.get(error.field or "")
        context["chips"] = _chips(filters, _kept_size(state, limit), [])
        note_error(error.code, error.message)
        return render_template("audit_logs/list.html", **context), 400
    context["integrity"] = integrity_state(current_principal().organization_id)
    context["chart"] = _chart(filters, viewer_zone(), hide, state)
    context["failing_streams"] = failing_streams(current_principal())
    if args.get("before") and page.newer_cursor is None:
        # the newest records are reached: show the first page, full
        return redirect(url_for(".list_page", **filters, limit=limit, **state))
    workspaces, keys = _names_for(page.items)
    context["suspicious"] = _suspicious_times(page.items)
    base = {**filters, "limit": limit, **state}
    context.update(
        items=page.items,
        chips=_chips(filters, _kept_size(state, limit), page.items),
        suggestion=page.suggestion,
        named_workspace=page.workspace,
        workspaces=workspaces,
        api_keys=keys,
        older=url_for(".list_page", **base, cursor=page.next_cursor) if page.next_cursor else None,
        newer=url_for(".list_page", **base, before=page.newer_cursor)
        if page.newer_cursor
        else None,
        first=url_for(".list_page", **base) if (args.get("cursor") or args.get("before")) else None,
        export_csv=url_for(".export_file", **filters, format="csv", **state),
        export_ndjson=url_for(".export_file", **filters, format="ndjson", **state),
    )
    return render_template("audit_logs/list.html", **context)


@bp.get("/activity")
@audit_action("auditLog.histogram")
@require_permission(VIEW_AUDIT_LOG)
@audited
def activity_page():
    """The activity chart alone, in the zone ``tz`` names (or the viewer's): the list page's
    script asks for it when the viewer's zone is not the one its chart was counted in."""
    args = _clean_args(request.args)
    filters = _filters_from(args)
    hide = _hides_my_views(args)  # as the list it is the chart of
    state = _view_state(hide)
    zone = args.get("tz", viewer_zone())
    chart = _chart(filters, zone, hide, state, strict=True)
    return render_template(
        "audit_logs/activity.html",
        chart=chart,
        filters=filters,
        list_url=url_for(".list_page", **filters, **state),
    )


@bp.get("/integrity")
@audit_action("auditLog.viewIntegrity")
@require_permission(VIEW_AUDIT_LOG)
@audited
def integrity_page():
    """What the last verification found: the chain's problems, and each failed window with
    what changed in it and the records concerned (a link to each that still exists)."""
    principal = current_principal()
    state = integrity_state(principal.organization_id)
    concerned = {
        problem["recordId"]
        for window in state.get("failedWindows") or []
        for problem in window.get("problems") or []
        if problem.get("recordId")
    }
    existing = service.existing_records(principal, sorted(concerned))
    seal = {  # when records are sealed: what "no window checked yet" waits for
        "interval": current_app.config["AUDIT_SEAL_INTERVAL"],
        "delay": current_app.config["AUDIT_SEAL_DELAY"],
    }
    return render_template(
        "audit_logs/integrity.html", integrity=state, existing=existing, seal=seal
    )


@bp.get("/export")
@audit_action("auditLog.export")
@require_permission(VIEW_AUDIT_LOG)
@audited
def export_file():
    args = _clean_args(request.args)
    hidden = _hidden_for(_hides_my_views(request.args))
    fmt, query, records, organization = service.open_export(
        current_principal(), args, hide_views_of=hidden
    )
    return export.streamed_response(fmt, query, records, organization)


@bp.get("/<auditLogId>/proof")
@audit_action("auditLog.viewProof")
@require_permission(VIEW_AUDIT_LOG)
@audited
def proof_file(auditLogId):
    """ "Download proof": the record and its inclusion proof in one file, for
    ``python -m audit_app.verifier FILE --key KEY`` (a record not in the log yet: a page
    saying when it will be)."""
    record_id = parse_object_id(auditLogId, "auditLogId", status=404, what="Audit log record")
    organization_id = current_principal().organization_id
    answer = proofs.record_proof(get_audit_db(), organization_id, record_id, None)
    response = current_app.response_class(
        json.dumps(answer, indent=2, ensure_ascii=False) + "\n", mimetype="application/json"
    )
    response.headers["Content-Disposition"] = (
        f'attachment; filename="audit-record-{auditLogId}.proof.json"'
    )
    return response


@bp.get("/<auditLogId>")
@audit_action("auditLog.view")
@require_permission(VIEW_AUDIT_LOG)
@audited
def detail_page(auditLogId):
    record_id = parse_object_id(auditLogId, "auditLogId", status=404, what="Audit log record")
    record = service.get_record(current_principal(), record_id)
    if record is None:
        raise not_found("Audit log record", "auditLogId")
    workspaces, keys = _names_for([record])
    details = jsonable(unescape(record.get("request") or {}))
    sections = [
        (
            "Body",
            details.get("body") if details.get("bodyType") != "binary" else details.get("binary"),
        ),
        ("Query parameters", details.get("query") or {}),
        ("Path parameters", details.get("params") or {}),
        ("Headers", details.get("headers") or {}),
    ]
    if details.get("files"):
        sections.append(("Uploaded files", details["files"]))
    pretty = [(title, _pretty(value)) for title, value in sections]
    return render_template(
        "audit_logs/detail.html",
        record=record,
        details=details,
        changes=jsonable(unescape(record.get("changes") or [])),
        sections=pretty,
        workspaces=workspaces,
        api_keys=keys,
        suspicious_time=_suspicious_times([record]).get(str(record["_id"])),
        # when it was stored, and spooled (a replay): what its times are checked against
        stored_at=_moment(record.get("storedAt")),
        spooled_at=_moment(record.get("spooledAt")),
        public_key=proofs.public_key(),
    )


def _moment(value) -> datetime | None:
    return value if isinstance(value, datetime) else None


def _suspicious_times(records: list[dict]) -> dict[str, str]:
    """The records whose times no request explains (a back- or future-dated forgery), and
    why: marked in the list and in View Details (docs/integrity.md)."""
    return service.suspicious_times(current_principal(), records)


def _pretty(value) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
