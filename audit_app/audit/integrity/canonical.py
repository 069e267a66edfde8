"""The canonical forms of an audit record, and their hashes (docs/integrity.md).

Version 2 (every digest sealed since it exists): every value tagged with its BSON type and
documents kept in their stored key order, so an ObjectId and ``{"$oid": ...}``, a date and
``{"$date": ...}``, int32, int64 and double, or two keys swapped, all hash differently.

Version 1 (older digests, still verified): keys sorted; ObjectIds as
``{"$oid": hex}``; dates as ``{"$date": milliseconds since the epoch}`` (what BSON keeps);
integers as JSON integers; doubles as ``{"$double": repr}`` (so 1 and 1.0 differ, as they do
in BSON); Decimal128 as ``{"$decimal": text}``; binary as ``{"$binary": hex}``. Serialized as
compact UTF-8 JSON and hashed with SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime

from bson import Binary, Decimal128, Int64, ObjectId
from bson.code import Code


def canonical(value):
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, ObjectId):
        return {"$oid": str(value)}
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return {"$date": math.floor(value.timestamp() * 1000 + 1e-6)}
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, Int64)):
        return int(value)
    if isinstance(value, float):
        return {"$double": repr(value)}
    if isinstance(value, Decimal128):
        return {"$decimal": str(value)}
    if isinstance(value, (bytes, Binary)):
        return {"$binary": bytes(value).hex()}
    return {"$other": repr(value)}


def canonical_bytes(value) -> bytes:
    return json.dumps(
        canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def record_hash(record: dict) -> str:
    return hashlib.sha256(canonical_bytes(record)).hexdigest()


def tagged(value):
    """Version 2: ``[type, payload]`` for every value, documents in their key order."""
    if isinstance(value, dict):
        return ["doc", [[str(k), tagged(v)] for k, v in value.items()]]
    if isinstance(value, (list, tuple)):
        return ["arr", [tagged(v) for v in value]]
    if isinstance(value, ObjectId):
        return ["oid", str(value)]
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return ["date", math.floor(value.timestamp() * 1000 + 1e-6)]
    if isinstance(value, bool):
        return ["bool", value]
    if value is None:
        return ["null"]
    if isinstance(value, Code):  # a str subclass: a string whose type byte became 0x0D
        return ["code", str(value), tagged(value.scope)]
    if isinstance(value, str):
        return ["str", value]
    if isinstance(value, Int64):
        return ["i64", int(value)]
    if isinstance(value, int):
        return ["i32" if -(2**31) <= value < 2**31 else "i64", value]
    if isinstance(value, float):
        return ["dbl", repr(value)]
    if isinstance(value, Decimal128):
        return ["dec", str(value)]
    if isinstance(value, Binary):
        return ["bin", value.subtype, bytes(value).hex()]
    if isinstance(value, bytes):
        return ["bin", 0, value.hex()]
    return [type(value).__name__, repr(value)]


def record_hash_v2(record: dict) -> str:
    text = json.dumps(tagged(record), separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


HASHES = {1: record_hash, 2: record_hash_v2}
