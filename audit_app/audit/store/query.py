"""The audit log query: parameters, their validation, filters and the keyset cursor.

One builder serves the API list, the export and the web list. The organization is never a
parameter: the repository adds it from the principal. Search text is always literal
(``re.escape``), case-insensitive and capped in length.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, cast

from bson import ObjectId
from itsdangerous import BadSignature, URLSafeSerializer
from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema
from werkzeug.datastructures import MultiDict

from ... import zones
from ...db import Document
from ...errors import ApiError, bad_request
from ...ids import canonical_ip
from ...schemas import ObjectIdField
from ..actions import LOG_VIEWS

MAX_SEARCH_LENGTH = 200
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CLI")
AUTH_TYPES = ("jwt", "apiKey", "session", "cli", "staff", "none")  # every value a record holds
_STATUS = re.compile(r"^(?:[1-5][0-9]{2}|[1-5]xx)$", re.IGNORECASE)
_RESOURCE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,39}$")


class IsoDateTime(fields.Field[datetime]):
    """An ISO 8601 date or date-time; without an offset it is taken as UTC."""

    default_error_messages = {
        "invalid": "Must be an ISO 8601 date or date-time, e.g. 2026-11-25 or 2026-11-25T17:00:00Z."
    }

    def __init__(self, *, end_of_day: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.end_of_day = end_of_day  # a date alone means the end of that day (``to``)

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> datetime:
        if not isinstance(value, str) or not 10 <= len(value) <= 40:
            raise self.make_error("invalid")
        parsed = parse_moment(value, end_of_day=self.end_of_day)
        if parsed is None:
            raise self.make_error("invalid")
        if not 1970 <= parsed.year <= 9999:
            raise ValidationError("Must be a date between the years 1970 and 9999.")
        return parsed


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_moment(value: str, *, end_of_day: bool = False) -> datetime | None:
    """An ISO 8601 date or date-time in UTC (UTC when it names no offset); None if it is
    none. ``end_of_day``: a date alone is its last millisecond, not its first."""
    text = value.strip().replace("z", "Z")
    date_only = bool(_DATE_ONLY.match(text))
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # 0001-01-01T00:00+14:00 is before year 1
        return None
    if date_only and end_of_day:  # a date alone is midnight UTC: its day's last millisecond
        parsed = parsed.replace(hour=23, minute=59, second=59, microsecond=999000)
    return parsed


_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")


def _no_controls(value: str) -> None:
    """A NUL or another control character cannot be searched for (MongoDB refuses it)."""
    if _CONTROLS.search(value):
        raise ValidationError("Must not contain control characters (such as NUL or a newline).")


def _searchable(value: str) -> None:
    """Search text is refused past its limit, never cut: a cut search finds other records."""
    if not value:
        raise ValidationError("Must not be empty.")
    if len(value) > MAX_SEARCH_LENGTH:
        raise ValidationError(
            f"Must be at most {MAX_SEARCH_LENGTH} characters; this one has {len(value)}. "
            "Search for a shorter part."
        )


class FilterSchema(Schema):
    """The filters shared by the list, the export and the web page."""

    q = fields.String(validate=[_searchable, _no_controls])
    path = fields.String(validate=[_searchable, _no_controls])
    accountId = ObjectIdField()
    workspaceId = ObjectIdField()
    apiKeyId = ObjectIdField()
    method = fields.String(validate=validate.OneOf(METHODS, error="Must be one of {choices}."))
    statusCode = fields.String()
    authType = fields.String(validate=validate.OneOf(AUTH_TYPES, error="Must be one of {choices}."))
    resource = fields.String()
    from_ = IsoDateTime(data_key="from")
    to = IsoDateTime(end_of_day=True)

    @validates("statusCode")
    def _status(self, value: str, **kwargs: Any) -> None:
        if not _STATUS.fullmatch(value):
            raise ValidationError("Must be a status code such as 404 or a class such as 4xx.")

    @validates("resource")
    def _resource(self, value: str, **kwargs: Any) -> None:
        if not _RESOURCE.fullmatch(value):
            raise ValidationError("Must be a controller name such as pathways or apiKeys.")

    @validates_schema
    def _range(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        if data.get("from_") and data.get("to") and data["from_"] > data["to"]:
            raise ValidationError("Must not be after 'to'.", "from")


class ListQuerySchema(FilterSchema):
    limit = fields.Integer(
        load_default=DEFAULT_LIMIT,
        validate=validate.Range(min=1, max=MAX_LIMIT, error="Must be between 1 and 200."),
        strict=False,
    )
    cursor = fields.String(validate=validate.Length(max=500))


class WebListQuerySchema(ListQuerySchema):
    """The web list also pages towards newer records."""

    before = fields.String(validate=validate.Length(max=500))


class TimeZoneField(fields.Field[tzinfo]):
    """An IANA time zone name (``America/New_York``), as the browser's
    ``Intl.DateTimeFormat().resolvedOptions().timeZone`` gives it."""

    default_error_messages = {"invalid": f"Must be {zones.ACCEPTED}."}

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else zones.zone_name(value)

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> tzinfo:
        zone = zones.find_zone(value)
        if zone is None:
            raise self.make_error("invalid")
        return zone


class HistogramQuerySchema(FilterSchema):
    interval = fields.String(
        load_default="day",
        validate=validate.OneOf(("hour", "day"), error="Must be hour or day."),
    )
    tz = TimeZoneField(
        load_default=UTC,
        metadata={
            "description": "the zone whose days or hours the buckets are (default UTC), "
            "e.g. America/New_York",
        },
    )


class ExportQuerySchema(FilterSchema):
    format = fields.String(
        required=True,
        validate=validate.OneOf(("csv", "ndjson", "ocsf"), error="Must be csv, ndjson or ocsf."),
    )
    details = fields.Boolean(
        load_default=True,
        truthy={"true", "1"},
        falsy={"false", "0"},
        error_messages={"invalid": "Must be true or false."},
        metadata={"description": "false: leave each record's request details out"},
    )


ID_FIELDS = ("accountId", "apiKeyId", "workspaceId")  # also the order of index preference
TARGET_FIELD = "targets.id"  # what a request acted on (multikey): a search by id walks it too
# how a record involves a searched id, by the field that holds it (``matchedAs``)
MATCHED_AS = {"accountId": "actor", "apiKeyId": "apiKey", "workspaceId": "workspace"}
EQUALITY_FIELDS = (
    *ID_FIELDS,
    "requestId",
    "credentialId",
    "ip",
    "method",
    "authType",
    "resource",
    "accountEmail",  # a staff member's records (``ACTOR_EMAIL``), tested on the walk
)
# ``actor:<email>``: besides the account of that email, the records of platform staff of that
# email (``authType: "staff"``, the email in ``accountEmail``; they have no account here): a
# branch of its own that walks ``org_authtype_newest`` (the organization's staff records)
# and tests the email on each record it reaches, stopping after ``limit + 1`` matches
ACTOR_EMAIL = "actorEmail"
ACTOR_NO_ACCOUNT = "actorNoAccount"  # no account has the email: only the staff branch
STAFF_AUTH_TYPE = "staff"
NOTHING = "nothing"  # a filter that can match no record (an actor with no account)
# ``path:/...``: the paths that start with the text, exactly (``prefix_regex``); ``path:``
# with any other text, plain text and the ``path`` parameter match a part, in any case
PATH_START = "pathStart"
# ``-qualifier:value``: what to leave out, by the name of the filter the qualifier sets
# (``accountId`` for an actor, once the service resolved the email; ``createdFrom`` and
# ``createdTo`` for ``-created:>=`` and ``-created:<=``), each a list of values
EXCLUDE = "exclude"
# the web list's "Hide my views of this log": the account whose reads of the log to leave out
HIDE_VIEWS_OF = "hideViewsOf"


@dataclass
class AuditQuery:
    """Validated filters and the keyset position of a page.

    ``branches()`` is the MongoDB filter (without the organization, which the repository
    adds) as one or more branches, each answerable by walking one index newest first:

    - the equality filters (ids, method, auth type, resource, status code or class) stay
      at the top level, where the repository picks the index to walk (ESR: equality,
      then the sort on ``createdAt, _id``, then the range);
    - ``createdAt`` is one top-level range holding the date filters *and* the keyset
      position, so a page N walks from its cursor, not from the newest record; the
      tie-break on ``_id`` for records of the same millisecond sits beside it;
    - a 24-hex search is an id: one branch per id field (account, workspace, API key),
      each an equality on its own index; the repository merges the branches, each
      stopped after ``limit + 1`` entries. It is never OR-ed with a path regex, which
      would make the server scan every key of the organization;
    - the actions of a resource (``action:member.*``, resolved by the service to the list
      of its actions) are one branch per action, each an equality walk, merged the same
      way: on both stores an ``$in`` over the action index would sort every match;
    - an exclusion (``-action:``, ``-actor:``, ``-status:``, ... and the web list's
      hiding of the viewer's own reads) is a ``$ne`` / ``$nin`` / ``$nor`` inside ``$and``,
      never at the top level, so it never chooses the index: the branch walks the index
      its other filters pick (``org_newest`` when none), newest first, and the clause is
      tested on each record on the way, the walk stopping after ``limit + 1`` matches
      within the request's time budget, as a path search does. ``-created:`` narrows the
      ``createdAt`` range instead.
    """

    filters: dict[str, Any] = field(default_factory=dict)
    limit: int = DEFAULT_LIMIT
    after: tuple[datetime, ObjectId] | None = None
    before: tuple[datetime, ObjectId] | None = None

    def branches(self) -> list[Document]:
        """The filter branches; an empty list when the filters cannot match anything."""
        f = self.filters
        if f.get(ACTOR_EMAIL) is not None:
            rest = {k: v for k, v in f.items() if k not in (ACTOR_EMAIL, ACTOR_NO_ACCOUNT)}
            staff = {k: v for k, v in rest.items() if k != "accountId"}
            staff.update(authType=STAFF_AUTH_TYPE, accountEmail=f[ACTOR_EMAIL])
            position = (self.limit, self.after, self.before)
            found = [] if f.get(ACTOR_NO_ACCOUNT) else AuditQuery(rest, *position).branches()
            return found + AuditQuery(staff, *position).branches()
        if f.get(NOTHING):
            return []
        base: Document = {name: f[name] for name in EQUALITY_FIELDS if name in f}
        actions = f.get("action")
        if isinstance(actions, str):
            base["action"] = actions
        elif isinstance(actions, list):
            if not actions:
                return []
            if len(actions) == 1:
                base["action"] = actions[0]
            else:
                return [
                    {**branch, "action": action}
                    for branch in AuditQuery(
                        {**f, "action": None}, self.limit, self.after, self.before
                    ).branches()
                    for action in actions
                ]
        if "statusCode" in f:
            base["statusCode"] = status_clause(f["statusCode"])
        if "target" in f:
            base = {TARGET_FIELD: f["target"], **base}  # leads: its index is walked
        created = self._created_range()
        if created:
            base["createdAt"] = created
        others: list[Document] = []
        tie_break = self._tie_break()
        if tie_break:
            others.append(tie_break)
        if "path" in f:
            others.append({"path": literal_regex(f["path"])})
        if PATH_START in f:
            others.append({"path": prefix_regex(f[PATH_START])})
        search = f.get("q", "").strip()
        searched_id = _as_id(search)
        if search and searched_id is None:
            others.append({"path": literal_regex(search)})
        others.extend(exclusions(f.get(EXCLUDE) or {}))
        hidden = f.get(HIDE_VIEWS_OF)
        if hidden is not None:  # the viewer's own page views of the log (a web session's)
            others.append({"$nor": [hidden_views(hidden)]})
        if others:
            base["$and"] = others
        if searched_id is None:
            return [base]
        if any(base.get(name) == searched_id for name in (*ID_FIELDS, TARGET_FIELD)):
            return [base]  # a filter pins the searched id already: the rest are subsets
        # one branch per id field the filters leave free, the targets included, led by the
        # searched field (the repository walks the index of a branch's leading id)
        branches = [{name: searched_id, **base} for name in ID_FIELDS if name not in base]
        if TARGET_FIELD not in base:
            branches.append({TARGET_FIELD: searched_id, **base})
        else:  # target:<one> and the pasted id as another target of the same record: walk
            # the qualifier's target, and test the pasted one on each record it reaches
            also = {TARGET_FIELD: searched_id}
            branches.append({**base, "$and": [*base.get("$and", []), also]})
        return branches

    def searched_id(self) -> ObjectId | None:
        """The id a search is about (``q`` that is an id, or ``target:``), if any."""
        return _as_id(self.filters.get("q", "").strip()) or self.filters.get("target")

    def _created_range(self) -> dict[str, datetime]:
        f = self.filters
        lower, upper = f.get("from_"), f.get("to")
        if self.after is not None:
            upper = self.after[0] if upper is None else min(upper, self.after[0])
        if self.before is not None:
            lower = self.before[0] if lower is None else max(lower, self.before[0])
        excluded = f.get(EXCLUDE) or {}
        for moment in excluded.get("createdFrom", ()):  # -created:>=D: before D only
            last = _whole_ms(moment, up=True) - timedelta(milliseconds=1)
            upper = last if upper is None else min(upper, last)
        for moment in excluded.get("createdTo", ()):  # -created:<=D: after D only
            first = _whole_ms(moment, up=False) + timedelta(milliseconds=1)
            lower = first if lower is None else max(lower, first)
        created: dict[str, datetime] = {}
        if lower is not None:
            created["$gte"] = lower
        if upper is not None:
            created["$lte"] = upper
        return created

    def _tie_break(self) -> Document | None:
        """Within the position's millisecond, only records past its ``_id``."""
        if self.after is not None:
            at, record_id = self.after
            return {"$or": [{"createdAt": {"$lt": at}}, {"_id": {"$lt": record_id}}]}
        if self.before is not None:
            at, record_id = self.before
            return {"$or": [{"createdAt": {"$gt": at}}, {"_id": {"$gt": record_id}}]}
        return None

    def fingerprint(self) -> str:
        """A short hash of the filters, so a cursor cannot be reused with other filters."""
        # not the viewer's hidden views: a page's link opens the same for a colleague (who
        # then sees it without their own views, as every page of theirs)
        shared = {k: v for k, v in self.filters.items() if k != HIDE_VIEWS_OF}
        canonical = json.dumps(shared, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def hidden_views(viewer: ObjectId | tuple[ObjectId, str]) -> Document:
    """The records "Hide my views of this log" leaves out: the viewer's page views of the
    log in the web UI, in this very session when its credential is given (``(account,
    credential)``: the reads of another session of the same account, another device or a
    stolen cookie, stay listed, as a script's reads with the person's JWT or a key do). One
    record per page a person loads, so the walk that skips them reads at most that many
    more entries than the page shows."""
    account_id, credential = viewer if isinstance(viewer, tuple) else (viewer, None)
    hidden: Document = {
        "accountId": account_id,
        "authType": "session",
        "action": {"$in": list(LOG_VIEWS)},
    }
    if credential is not None:
        hidden["credentialId"] = credential
    return hidden


def _whole_ms(moment: datetime, *, up: bool) -> datetime:
    """A moment on the millisecond (records are stored to the millisecond), rounded up or
    down, so a bound one millisecond past it is exact."""
    extra = moment.microsecond % 1000
    moment = moment - timedelta(microseconds=extra)
    return moment + timedelta(milliseconds=1) if up and extra else moment


# the order exclusions are written in (a fingerprint and the wire tests see one order)
_EXCLUDED_FIELDS = (
    "accountId",
    "action",
    "ip",
    "requestId",
    "credentialId",
    "method",
    "accountEmail",  # -actor: of a platform staff member's email (their records' only name)
)


def exclusions(excluded: Mapping[str, list[Any]]) -> list[Document]:
    """The ``$and`` clauses that leave out what ``-qualifier:`` names: each one true for a
    record that lacks the field, as "not this one" means (``$ne`` matches a missing field)."""
    clauses: list[Document] = []
    for name in _EXCLUDED_FIELDS:
        values = excluded.get(name)
        if values:
            clauses.append({name: {"$ne": values[0]} if len(values) == 1 else {"$nin": values}})
    for value in excluded.get("statusCode", ()):  # a class: its codes, as status_clause
        clause = status_clause(value)
        clauses.append(
            {"statusCode": {"$nin": clause["$in"]} if isinstance(clause, dict) else {"$ne": clause}}
        )
    if excluded.get("target"):
        clauses.append({TARGET_FIELD: {"$nin": list(excluded["target"])}})
    for value in excluded.get("path", ()):
        clauses.append({"$nor": [{"path": literal_regex(value)}]})
    for value in excluded.get(PATH_START, ()):
        clauses.append({"$nor": [{"path": prefix_regex(value)}]})
    return clauses


def _as_id(text: str) -> ObjectId | None:
    return ObjectId(text) if len(text) == 24 and ObjectId.is_valid(text) else None


def literal_regex(text: str) -> dict[str, str]:
    return {"$regex": re.escape(text), "$options": "i"}


def prefix_regex(text: str) -> dict[str, str]:
    """The paths that start with ``text``, exactly (case included): an anchored literal
    regex, which MongoDB turns into a range of ``org_path_newest`` (a case-insensitive or
    unanchored one reads every key of the organization instead)."""
    return {"$regex": "^" + re.escape(text)}


def status_clause(value: str) -> int | dict[str, list[int]]:
    """An exact code, or a class as the list of its codes.

    A class is ``$in`` of its 100 codes, not a range: with the status index that is 100
    point intervals before the sort key, which MongoDB merges in order ("explode for
    sort", up to 200 points) instead of sorting every matching record in memory.
    """
    if value[1:].lower() == "xx":
        base = int(value[0]) * 100
        return {"$in": list(range(base, base + 100))}
    return int(value)


# The qualifiers of the search bar ----------------------------------------------------------

QUALIFIERS = (
    "target",
    "actor",
    "ip",
    "requestId",
    "action",
    "credential",
    "method",
    "status",
    "created",
    "path",
)
QUALIFIER_HELP = (
    "target:<id>, actor:<email>, ip:<address>, requestId:<id>, "
    "action:<name> or action:<resource>.*, credential:<credentialId>, method:<M>, "
    "status:<code or class>, created:>=<date>, created:<=<date>, path:<text> "
    "(path:/<start> for the paths that start so)"
)
_QUALIFIER = re.compile(r"^([A-Za-z]+):(.*)$", re.DOTALL)
# any case: the service maps a name to its declared spelling (``member.ADD`` is member.add)
_ACTION = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,39}\.(?:[A-Za-z][A-Za-z0-9]{0,39}|\*)$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# an organization's JWTs, sessions and keys, and platform staff's sessions and tokens
_CREDENTIAL = re.compile(r"^(?:jwt|ses|key|stfs|stft)_[A-Za-z0-9_-]{1,64}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def _bad_q(message: str) -> ApiError:
    return bad_request(f"q: {message}", "q")


def split_search(q: str) -> tuple[str, dict[str, Any]]:
    """The search bar's plain text, and the filters its qualifiers ask for.

    Words are separated by spaces; ``name:value`` with a known name is a qualifier, the
    other words are the plain text (an id or part of a path). The filters come back under
    the names the parameters use (``statusCode``, ``from_``, ``to``, ...) plus ``actor``
    (an email, which the service resolves to the account's id) and ``action`` (a name, or
    ``<resource>.*``). A qualifier preceded by ``-`` excludes: its values go, as lists by
    the same names, under ``EXCLUDE`` (``-created:>=`` as ``createdFrom``, ``-created:<=``
    as ``createdTo``); each may be given several times. Anything else with a colon is a
    400 naming ``q``.
    """
    words: list[str] = []
    found: dict[str, Any] = {}
    excluded: dict[str, list[Any]] = {}

    def put(name: str, value: Any, word: str) -> None:
        if name in found:
            raise _bad_q(f"{word} repeats a qualifier; give each one once.")
        found[name] = value

    for word in q.split():
        negated = _QUALIFIER.match(word[1:]) if word.startswith("-") else None
        if negated is not None and negated.group(1) in QUALIFIERS:
            name, value = negated.group(1), negated.group(2)
            if not value:
                raise _bad_q(f"-{name}: needs a value, e.g. -{_example(name)}.")
            if name == "created":
                bound, moment = _created(value)
                filter_name, clean = ("createdFrom" if bound == ">=" else "createdTo"), moment
            else:
                filter_name, clean = _qualifier_value(name, value)
            values = excluded.setdefault(filter_name, [])
            if clean not in values:
                values.append(clean)
            continue
        match = _QUALIFIER.match(word)
        if match is None:
            words.append(word)
            continue
        name, value = match.group(1), match.group(2)
        if name not in QUALIFIERS:
            raise _bad_q(
                f"unknown qualifier {name}:; accepted: {QUALIFIER_HELP}; a - before one "
                "excludes, e.g. -action:auditLog.view."
            )
        if not value:
            raise _bad_q(f"{name}: needs a value, e.g. {_example(name)}.")
        if name == "created":
            bound, moment = _created(value)
            put("from_" if bound == ">=" else "to", moment, word)
        else:
            filter_name, clean = _qualifier_value(name, value)
            put(filter_name, clean, word)
    if "from_" in found and "to" in found and found["from_"] > found["to"]:
        raise _bad_q("created:>= must not be after created:<=.")
    if excluded:
        found[EXCLUDE] = excluded
    return " ".join(words), found


def _example(name: str) -> str:
    return next(part for part in QUALIFIER_HELP.split(", ") if part.startswith(name + ":"))


def _qualifier_value(name: str, value: str) -> tuple[str, Any]:
    """The filter a qualifier sets and its checked value; a 400 naming q otherwise."""
    if name == "actor":
        if not _EMAIL.match(value) or len(value) > 320:
            raise _bad_q("actor: needs an email address, such as ana@example.com.")
        return "actor", value.lower()
    if name == "target":
        if _as_id(value) is None:
            raise _bad_q("target: needs the 24-character hexadecimal id of an object.")
        return "target", ObjectId(value)
    if name == "ip":
        try:
            ipaddress.ip_address(value.split("%", 1)[0])
        except ValueError:
            raise _bad_q("ip: needs an IPv4 or IPv6 address, such as 203.0.113.7.") from None
        return "ip", canonical_ip(value)
    if name == "requestId":
        if not _REQUEST_ID.match(value):
            raise _bad_q("requestId: is 1 to 128 characters of A-Z, a-z, 0-9 and . _ : -.")
        return "requestId", value
    if name == "action":
        if not _ACTION.match(value):
            raise _bad_q(
                "action: needs an action such as member.roleChange, or a resource's "
                "actions such as member.*."
            )
        return "action", value
    if name == "credential":
        if not _CREDENTIAL.match(value):
            raise _bad_q("credential: needs a credentialId such as jwt_..., ses_... or key_....")
        return "credentialId", value
    if name == "method":
        if value.upper() not in METHODS:
            raise _bad_q(f"method: must be one of {', '.join(METHODS)}.")
        return "method", value.upper()
    if name == "status":
        if not _STATUS.fullmatch(value):
            raise _bad_q("status: must be a status code such as 404 or a class such as 4xx.")
        return "statusCode", value.lower()
    if _CONTROLS.search(value):  # path
        raise _bad_q("path: must not contain control characters.")
    return (PATH_START if value.startswith("/") else "path"), value


def _created(value: str) -> tuple[str, datetime]:
    bound, text = value[:2], value[2:]
    if bound not in (">=", "<="):
        raise _bad_q("created: takes >= or <= and a date, e.g. created:>=2026-11-01.")
    moment = parse_moment(text, end_of_day=bound == "<=") if 10 <= len(text) <= 40 else None
    if moment is None or not 1970 <= moment.year <= 9999:
        raise _bad_q(
            f"created:{bound} needs an ISO 8601 date or date-time between the years 1970 and "
            "9999, e.g. 2026-11-01 or 2026-11-01T09:30:00Z."
        )
    return bound, moment


def merge_search(filters: dict[str, Any]) -> dict[str, Any]:
    """The loaded parameters with the qualifiers of ``q`` folded in; ``q`` keeps its plain
    text only. A qualifier that contradicts a parameter is a 400 naming ``q``."""
    q = filters.get("q")
    if not q:
        return filters
    text, found = split_search(q)
    merged = {k: v for k, v in filters.items() if k != "q"}
    if text:
        merged["q"] = text
    for name, value in found.items():
        given = merged.get(name)
        if name == "statusCode" and given is not None:
            given = given.lower()
        if given is not None and given != value:
            shown = {"from_": "from", "statusCode": "statusCode"}.get(name, name)
            raise _bad_q(f"a qualifier contradicts the {shown} parameter; give one of them.")
        merged[name] = value
    if merged.get("from_") and merged.get("to") and merged["from_"] > merged["to"]:
        raise _bad_q("the time range is empty: its start is after its end.")
    return merged


def parse_query(args: MultiDict[str, str], schema: Schema) -> dict[str, Any]:
    """Validate query parameters (a MultiDict) or raise a 400 that names the parameter."""
    repeated = [key for key in args if len(args.getlist(key)) > 1]
    if repeated:
        raise bad_request(f"{repeated[0]}: give this parameter once.", repeated[0])
    try:
        return cast("dict[str, Any]", schema.load(args.to_dict()))
    except ValidationError as error:
        errors = error.messages if isinstance(error.messages, dict) else {"_schema": error.messages}
        name, messages = next(iter(errors.items()))
        message = messages[0] if isinstance(messages, list) else str(messages)
        if message == "Unknown field.":
            accepted = sorted(f.data_key or n for n, f in schema.load_fields.items())
            message = f"Unknown parameter; accepted: {', '.join(accepted)}."
        raise bad_request(f"{name}: {message}", name) from None


class CursorCodec:
    """Opaque, signed page cursors bound to one organization and one set of filters."""

    def __init__(self, secret_key: str) -> None:
        self._serializer = URLSafeSerializer(secret_key, salt="audit-log-cursor")

    def encode(
        self, organization_id: ObjectId, query: AuditQuery, record: Mapping[str, Any]
    ) -> str:
        at = record["createdAt"]
        millis = round(at.timestamp() * 1000)  # int() truncated 9 ms to 8.999 -> 8
        payload = [str(organization_id), query.fingerprint(), millis, str(record["_id"])]
        return self._serializer.dumps(payload)

    def decode(
        self, token: str, organization_id: ObjectId, query: AuditQuery, field_name: str = "cursor"
    ) -> tuple[datetime, ObjectId]:
        try:
            org, fingerprint, millis, record_id = self._serializer.loads(token)
            at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(millis))
            after = (at, ObjectId(record_id))
        except (BadSignature, ValueError, TypeError, OverflowError):
            raise bad_request(
                f"{field_name}: not a cursor this server issued; use nextCursor as returned.",
                field_name,
            ) from None
        if org != str(organization_id) or fingerprint != query.fingerprint():
            raise bad_request(
                f"{field_name}: it belongs to another query; keep the filters of the first page.",
                field_name,
            )
        return after
