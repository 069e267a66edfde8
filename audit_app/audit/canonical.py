"""The canonical form of an audit record, and its hash (docs/integrity.md).

Deterministic across BSON round trips and drivers: keys sorted; ObjectIds as
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
