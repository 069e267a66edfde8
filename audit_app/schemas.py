"""Marshmallow pieces shared by every API: id and date fields, and body loading.

Input and output schemas are separate classes. Loading a body answers the contract's
errors: 415 for a body that is not JSON, 400 for malformed JSON, a non-object, an unknown
field or an invalid value, each naming the field.
"""

from __future__ import annotations

import json

from bson import ObjectId
from flask import request
from marshmallow import Schema, ValidationError, fields

from .emails import InvalidEmail, clean_email
from .errors import ApiError, bad_request
from .ids import iso


class ObjectIdField(fields.Field):
    """An ObjectId shown and accepted as a 24-hex string."""

    default_error_messages = {"invalid": "Must be a 24-character hexadecimal ObjectId."}

    def _serialize(self, value, attr, obj, **kwargs):
        return str(value) if value is not None else None

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and len(value) == 24 and ObjectId.is_valid(value):
            return ObjectId(value)
        raise self.make_error("invalid")


class EmailAddress(fields.String):
    """An email address under the product's one rule (``emails.clean_email``)."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return clean_email(value)
        except InvalidEmail as error:
            raise ValidationError(str(error)) from None


class UtcDateTime(fields.Field):
    """A date shown as ISO 8601 UTC with milliseconds, e.g. 2026-11-25T17:00:00.000Z."""

    def _serialize(self, value, attr, obj, **kwargs):
        return iso(value)


class Text(fields.String):
    """A string that is trimmed and must not be empty after trimming."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not text:
            raise ValidationError("Must not be empty.")
        return text


def first_error(messages, prefix: str = "") -> tuple[str, str]:
    """Flatten marshmallow's nested messages to (dotted field path, first message)."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if key == "_schema":
                path = prefix or "body"
            return first_error(value, path)
    if isinstance(messages, list) and messages:
        return first_error(messages[0], prefix)
    return prefix or "body", str(messages)


def load_body(schema: Schema, *, partial: bool = False) -> dict:
    """Parse the JSON body of this request with ``schema`` or raise the fitting ApiError."""
    if not request.is_json:
        raise ApiError(
            415,
            "unsupported_media_type",
            "The body must be JSON: send 'Content-Type: application/json'.",
        )
    try:
        data = json.loads(request.get_data(cache=True))
    except RecursionError:
        raise bad_request("The JSON body is nested too deeply.", "body") from None
    except ValueError:
        raise bad_request("The body is not valid JSON.", "body") from None
    if not isinstance(data, dict):
        raise bad_request("The body must be a JSON object.", "body")
    try:
        loaded = schema.load(data, partial=partial)
    except ValidationError as error:
        field, message = first_error(error.messages)
        if message == "Unknown field.":
            message = f"Unknown field {field!r}; accepted fields: {', '.join(_accepted(schema))}."
        raise bad_request(message if field in message else f"{field}: {message}", field) from None
    unstorable = _lone_surrogate(loaded)
    if unstorable is not None:
        raise bad_request(
            f"{unstorable}: contains a lone surrogate (such as \\ud800), which is not text "
            "and cannot be stored; send valid Unicode.",
            unstorable,
        )
    return loaded


def _lone_surrogate(value, path: str = "") -> str | None:
    """The dotted path of the first string that UTF-8 (and so BSON) cannot hold, if any.

    JSON can escape half a surrogate pair (``"\\ud800"``); Python keeps it, and storing it
    fails deep in the driver. Passwords and tokens are exempt: they are compared as bytes,
    never stored as text.
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "body"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            name = str(key)
            child = f"{path}.{name}" if path else name
            if _lone_surrogate(name, child) is not None:
                return child
            if "password" in name.lower() or name == "token":
                continue
            found = _lone_surrogate(item, child)
            if found is not None:
                return found
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            found = _lone_surrogate(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None


def _accepted(schema: Schema) -> list[str]:
    return sorted(f.data_key or name for name, f in schema.load_fields.items())
