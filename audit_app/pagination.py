"""Cursor pages of the platform lists: the audit log's list contract, one index walk a page.

Every list of the API (workspaces, pathways, members, invitations, roles, API keys, audit
streams) takes ``limit`` (default 50, at most 200) and ``cursor`` (opaque, the previous
page's ``nextCursor``) and answers ``{"items": [...], "nextCursor": "..." | null}``; a
client that reads ``items`` and never pages gets the first page. The web pages also send
``before`` (a page's ``previousCursor``) to page back.

Each list is a ``Listing``: the declared index that serves it, whose keys are
``organizationId``, the fields the list fixes by equality, its sort key and ``_id``; a page
is one find with that filter, sort and ``hint``, ``limit + 1`` documents, from the keyset
position of the cursor (the sort key and ``_id`` of the last item shown). MongoDB walks the
index; the embedded store walks the same index kept as a SQLite table (``sorted_store``).
A cursor is signed and bound to the organization, the list and its filters: a cursor of
another organization, list or search, or one that was edited, is a 400 naming it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId, json_util
from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from marshmallow import Schema, fields, validate
from werkzeug.datastructures import MultiDict

from .db import Document, TenantCollection
from .errors import bad_request

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_CURSOR_LENGTH = 500
_JSON = json_util.JSONOptions(tz_aware=True, tzinfo=UTC)  # as the stores' clients read dates


@dataclass(frozen=True)
class Listing:
    """A paged list: its collection, the index (by name) that serves it and its order."""

    name: str
    collection: str
    index: str
    key: str  # the sort key before _id; it never holds null
    direction: int  # 1: ascending (names, emails), -1: descending (newest first)

    def sort(self, backward: bool = False) -> list[tuple[str, int]]:
        direction = -self.direction if backward else self.direction
        return [(self.key, direction), ("_id", direction)]


@dataclass(frozen=True)
class Position:
    """Where a page starts: the sort key and ``_id`` of the item before it."""

    value: Any
    id: ObjectId


@dataclass
class PageRequest:
    limit: int
    after: Position | None = None
    before: Position | None = None


@dataclass
class Page:
    items: list[Any]
    next_cursor: str | None = None
    previous_cursor: str | None = None
    filters: dict[str, Any] = field(default_factory=dict)


class PageQuerySchema(Schema):
    limit = fields.Integer(
        load_default=DEFAULT_LIMIT,
        validate=validate.Range(min=1, max=MAX_LIMIT, error="Must be between 1 and 200."),
        strict=False,
    )
    cursor = fields.String(validate=validate.Length(max=MAX_CURSOR_LENGTH))


class WebPageQuerySchema(PageQuerySchema):
    """The web pages also page back."""

    before = fields.String(validate=validate.Length(max=MAX_CURSOR_LENGTH))


# Cursors --------------------------------------------------------------------------------


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="platform-list-cursor")


def fingerprint(filters: Mapping[str, Any]) -> str:
    """A short hash of a list's filters, so a cursor cannot be reused with other filters."""
    text = json.dumps(filters, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_cursor(
    listing: Listing, organization_id: ObjectId, filters: Mapping[str, Any], item: Document
) -> str:
    value = json_util.dumps({"v": item.get(listing.key)})
    payload = [str(organization_id), listing.name, fingerprint(filters), value, str(item["_id"])]
    return str(_serializer().dumps(payload))


def decode_cursor(
    token: str,
    listing: Listing,
    organization_id: ObjectId,
    filters: Mapping[str, Any],
    name: str = "cursor",
) -> Position:
    try:
        org, list_name, printed, value, item_id = _serializer().loads(token)
        loaded = json_util.loads(value, json_options=_JSON)["v"]
        position = Position(loaded, ObjectId(item_id))
        if not isinstance(loaded, str | datetime):
            raise TypeError("not a sort key")
    except (BadSignature, ValueError, TypeError, KeyError, OverflowError):
        raise bad_request(
            f"{name}: not a cursor this server issued; use nextCursor as returned.", name
        ) from None
    if org != str(organization_id) or list_name != listing.name:
        raise bad_request(f"{name}: it belongs to another list; use nextCursor as returned.", name)
    if printed != fingerprint(filters):
        raise bad_request(
            f"{name}: it belongs to another search; keep the filters of the first page.", name
        )
    return position


def read_request(
    loaded: Mapping[str, Any],
    listing: Listing,
    organization_id: ObjectId,
    filters: Mapping[str, Any] | None = None,
) -> PageRequest:
    """A page request from loaded parameters (``limit``, ``cursor``, ``before``)."""
    filters = filters or {}
    cursor, before = loaded.get("cursor"), loaded.get("before")
    if cursor and before:
        raise bad_request("cursor: give cursor or before, not both.", "cursor")
    request = PageRequest(limit=loaded["limit"])
    if cursor:
        request.after = decode_cursor(cursor, listing, organization_id, filters)
    if before:
        request.before = decode_cursor(before, listing, organization_id, filters, "before")
    return request


def load_page_query(args: MultiDict[str, str], schema: Schema) -> dict[str, Any]:
    """Validate a list's query parameters or raise a 400 naming the parameter."""
    from .audit.store.query import parse_query

    return parse_query(args, schema)


def make_page(
    documents: list[Document],
    more: bool,
    request: PageRequest,
    listing: Listing,
    organization_id: ObjectId,
    filters: Mapping[str, Any] | None = None,
) -> Page:
    """The page of these documents (in order), with the cursors of the pages around it."""
    filters = dict(filters or {})
    backward = request.before is not None
    later = True if backward else more
    earlier = more if backward else request.after is not None
    page = Page(documents, filters=filters)
    if documents and later:
        page.next_cursor = encode_cursor(listing, organization_id, filters, documents[-1])
    if documents and earlier:
        page.previous_cursor = encode_cursor(listing, organization_id, filters, documents[0])
    return page


# The walk (data layer) -------------------------------------------------------------------


def find_page(
    collection: TenantCollection,
    listing: Listing,
    filter_: Mapping[str, Any],
    request: PageRequest,
    projection: Mapping[str, Any] | None = None,
) -> tuple[list[Document], bool]:
    """One page of a list, in its order: a walk of ``listing.index`` from the request's
    position that stops after ``limit + 1`` documents. Returns the page and whether more
    documents lie beyond it (in the direction walked)."""
    backward = request.before is not None
    position = request.before or request.after
    direction = -listing.direction if backward else listing.direction
    selector = dict(filter_)
    if position is not None:
        past, bound = ("$gt", "$gte") if direction == 1 else ("$lt", "$lte")
        # the key bounded on the walk's side gives the index bounds; the pair after the
        # position is tested on the index's keys, as the audit log's cursor is
        selector["$and"] = [
            *selector.get("$and", []),
            {listing.key: {bound: position.value}},
            {"$or": [{listing.key: {past: position.value}}, {"_id": {past: position.id}}]},
        ]
    cursor = (
        collection.find(selector, projection)
        .sort(listing.sort(backward))
        .hint(listing.index)
        .limit(request.limit + 1)
    )
    documents = list(cursor)
    more = len(documents) > request.limit
    documents = documents[: request.limit]
    if backward:
        documents.reverse()
    return documents, more


def prefix_range(prefix: str) -> dict[str, str]:
    """The strings that start with ``prefix``, as a range an index walks (MongoDB and
    SQLite both compare strings by their UTF-8 bytes, that is by code points)."""
    if prefix[-1] in "\u03c2\u03c3":
        # a sigma last: the stored, lower-cased address has the final or the medial form
        # there depending on what follows it (a letter or not), so both (they are adjacent)
        return {"$gte": prefix[:-1] + "\u03c2", "$lt": prefix[:-1] + "\u03c4"}
    head = prefix.rstrip("\U0010ffff")  # the last code point has no successor: the one before
    if not head:  # nothing sorts after the last code point but strings that start with it
        return {"$gte": prefix}
    last = ord(head[-1])
    following = last + 1 if last + 1 != 0xD800 else 0xE000
    return {"$gte": prefix, "$lt": head[:-1] + chr(following)}


def paged(
    args: MultiDict[str, str],
    listing: Listing,
    organization_id: ObjectId,
    walk: Callable[[PageRequest], tuple[list[Document], bool]],
    schema: Schema | None = None,
) -> Page:
    """Validate a list's parameters, walk its page and return it with its cursors (the
    lists without filters of their own)."""
    loaded = load_page_query(args, schema or PageQuerySchema())
    request = read_request(loaded, listing, organization_id)
    documents, more = walk(request)
    return make_page(documents, more, request, listing, organization_id)
