"""What each API view declares about itself for the OpenAPI document (``openapi.py``).

A view says, beside its code, what it is for, what body it loads, what it answers and
which errors it may give: ``@operation(...)`` under its route. The path and the method
come from the URL map, the permission from ``require_permission``; so the document is
derived from the views, and a test proves every route is in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, fields

EXPORT = "export"  # a response that is a file (CSV or NDJSON), not JSON

ERRORS = {
    400: "Bad input; `field` names it",
    401: "Missing or invalid credentials",
    403: "Authenticated but lacking the permission, or refused by the access rules",
    404: "Unknown, or another organization's",
    409: "Conflict with the current state",
    413: "Body too large",
    415: "The body must be JSON",
    422: "Refers to something that does not exist in the organization",
    429: "Too many attempts; retry after the Retry-After seconds",
    503: "The database is unavailable or the query took too long",
}


@dataclass(frozen=True)
class Operation:
    summary: str
    body: Any = None  # the schema the view loads its JSON body with
    response: tuple[int, Any] = (200, None)  # status and schema (None: no body; EXPORT)
    errors: tuple[int, ...] = ()
    query: Any = None  # the schema of its query parameters
    workspace: bool = False  # acts in the workspace of X-Workspace-Id
    security: list | None = None  # None: the API's (bearer or key); [] public


def operation(summary: str, **details) -> Any:
    """Declare a view's operation; put it under the route decorator."""

    def mark(view):
        view.openapi = Operation(summary, **details)
        return view

    return mark


class ErrorDetailSchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    field = fields.String()
    requestId = fields.String(
        metadata={"description": "the id the request is recorded under: give it to support"}
    )


class ErrorSchema(Schema):
    error = fields.Nested(ErrorDetailSchema, required=True)


def list_of(name: str, item: type[Schema]) -> type[Schema]:
    """The ``{"items": [...], "nextCursor": ...}`` answer of a list view (``pagination``)."""
    return type(
        name,
        (Schema,),
        {
            "items": fields.List(fields.Nested(item), required=True),
            "nextCursor": fields.String(
                required=True,
                allow_none=True,
                metadata={"description": "the next page's cursor; null on the last page"},
            ),
        },
    )
