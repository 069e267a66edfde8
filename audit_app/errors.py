"""Errors: one exception for the API, and the handlers that render every error.

API paths (``/api/...``) answer ``{"error": {"code", "message", "field", "requestId"}}``; the
web pages answer an error page in the layout, which shows the request id too (the id a user
gives support, and that a ``requestId:`` search finds). Nothing a client sends may become a
500: bad input is raised as an ``ApiError`` with the status that fits.
"""

from __future__ import annotations

import logging
import sqlite3

from flask import g, jsonify, render_template, request
from flask.json.provider import DefaultJSONProvider
from pymongo.errors import PyMongoError
from werkzeug.exceptions import HTTPException

from .audit.capture.context import note_error

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered to the client as the contract's JSON error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict | None = None,
        extra: dict | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}
        self.extra = extra or {}  # more of what the client may act on (a time to retry)


def bad_request(message: str, field: str | None = None) -> ApiError:
    return ApiError(400, "bad_request", message, field)


def not_found(what: str, field: str | None = None) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found.", field)


def conflict(message: str, field: str | None = None) -> ApiError:
    return ApiError(409, "conflict", message, field)


def unprocessable(message: str, field: str | None = None) -> ApiError:
    return ApiError(422, "unprocessable", message, field)


def unauthorized(message: str) -> ApiError:
    return ApiError(
        401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="api"'}
    )


def forbidden(permission: str) -> ApiError:
    return ApiError(403, "forbidden", f"This action needs the {permission} permission.")


def wants_json() -> bool:
    return request.path.startswith("/api/")


def _request_id() -> str | None:
    """The id this request is recorded under: what a user gives support to find it."""
    return g.get("request_id")


def error_body(
    status: int, code: str, message: str, field: str | None = None, extra: dict | None = None
):
    note_error(code, message)
    payload = {"code": code, "message": message}
    if field is not None:
        payload["field"] = field
    payload.update(extra or {})
    request_id = _request_id()
    if request_id:
        payload["requestId"] = request_id
    response = jsonify({"error": payload})
    response.status_code = status
    return response


def error_code(name: str) -> str:
    """An HTTP status name as an error code: ``Not Found`` -> ``not_found``."""
    return name.lower().replace(" ", "_").replace("-", "_").replace("'", "")


def _render_page(status: int, title: str, message: str, code: str | None = None):
    note_error(code or error_code(title), message)
    page = render_template(
        "errors/error.html",
        status=status,
        title=title,
        message=message,
        request_id=_request_id(),
    )
    return page, status


def handle_api_error(error: ApiError):
    if not wants_json():
        title = error.code.replace("_", " ").title()
        return _render_page(error.status, title, error.message, error.code)
    response = error_body(error.status, error.code, error.message, error.field, error.extra)
    response.headers.update(error.headers)
    return response


def handle_http_exception(error: HTTPException):
    status = error.code or 500
    if wants_json():
        messages = {
            404: "No such endpoint. The API is described at /api/v1/openapi.json.",
            405: f"Method {request.method} is not allowed here.",
            413: "The request body is too large.",
        }
        message = messages.get(status, error.description or error.name)
        response = error_body(status, error_code(error.name), message)
        allowed = getattr(error, "valid_methods", None)  # MethodNotAllowed's
        if status == 405 and allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response
    return _render_page(status, error.name, error.description or "")


def handle_database_error(error: PyMongoError):
    log.error("Database unavailable: %s", error)
    message = "The database is unavailable. Try again shortly."
    if wants_json():
        return error_body(503, "service_unavailable", message)
    return _render_page(503, "Service Unavailable", message)


def handle_embedded_store_error(error: sqlite3.Error):
    """The embedded store (SQLite files) cannot read or write: a full disk, a file-size
    limit, a disk error, or a lock held too long. The operator must act; the client may
    retry later. The request's audit record goes to the spool like any store failure."""
    log.critical("Embedded store failed: %s: %s", type(error).__name__, error)
    text = str(error).lower()
    if "full" in text or "i/o" in text:
        message = (
            "The database cannot write: its disk is full or failing. Try again later; "
            "the operator has to free space."
        )
    else:
        message = "The database is unavailable. Try again shortly."
    if wants_json():
        return error_body(503, "service_unavailable", message)
    return _render_page(503, "Service Unavailable", message)


def handle_unexpected_error(error: Exception):
    log.exception("Unhandled error on %s %s", request.method, request.path)
    message = "Something went wrong on our side. The request id identifies it."
    if wants_json():
        return error_body(500, "internal_error", message)
    return _render_page(500, "Internal Server Error", message)


NESTED_TOO_DEEPLY = "The JSON body is nested too deeply."


class ClientJSONProvider(DefaultJSONProvider):
    """The app's JSON, with one change: a text nested too deeply for the parser is malformed
    JSON (``ValueError``), not a ``RecursionError``. Every ``request.get_json`` (the login
    rate limit's email key, flask-wtf's forms) then answers it as any bad JSON: ``None``
    when silent, a 400 otherwise."""

    def loads(self, s, **kwargs):
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError(NESTED_TOO_DEEPLY) from None


def register_errorhandlers(app) -> None:
    app.json = ClientJSONProvider(app)  # deep JSON from a client is a 400, not a 500
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(PyMongoError, handle_database_error)
    app.register_error_handler(sqlite3.Error, handle_embedded_store_error)
    app.register_error_handler(Exception, handle_unexpected_error)
