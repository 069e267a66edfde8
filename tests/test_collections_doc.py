"""docs/collections.md cannot drift from the schema.

- Every collection the app declares indexes for (``audit_app/indexes.py``), and every
  collection the app writes in a realistic run, has a section; each section's index table
  names exactly the declared indexes with their keys and options; every top-level field the
  app wrote into a collection is in its section's field table (``audit_logs``: in
  docs/audit-schema.md's).
- Every mongosh example (a ```js block marked ``// shape: <name>``) is read by a small,
  strict parser: one statement ``db.<collection>.find|aggregate|countDocuments(...)`` with
  an optional ``.sort(...)``, ``.limit(n)``, ``.hint("...")``; its arguments are JSON once
  keys are quoted, with ``ObjectId("…")``, ``ISODate("…")``, ``new Date()`` and
  ``new Date(Date.now() - <ms>)`` mapped to BSON values. The very same documents run through
  pymongo's API on mongomock, against documents the app itself wrote (its services, the
  JSON API, the web login, the CLI's seal and verify, the deliverer). Each must return
  something, each hint must name a declared index of its collection, and every field a
  filter, projection, sort or the first reshaping stage names must exist in at least one
  real document of its collection, so a renamed field fails here.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId

from audit_app.audit.capture.hooks import WRITER_KEY
from audit_app.audit.integrity import sealing
from audit_app.db import get_db
from audit_app.indexes import AUDIT_INDEXES, PLATFORM_INDEXES
from audit_app.streams import delivery

from .factories import Api, make_org, settled
from .test_web_session import login

DOCS = Path(__file__).resolve().parent.parent / "docs"
COLLECTIONS_DOC = DOCS / "collections.md"
SCHEMA_DOC = DOCS / "audit-schema.md"
DECLARED = {**PLATFORM_INDEXES, **AUDIT_INDEXES}

# the placeholders of the examples, and what the seeded run gives for them
ORG_PLACEHOLDER = ObjectId("6b0719273e4fe369efa9402e")
ACCOUNT_PLACEHOLDER = ObjectId("6b0719273e4fe369efa9402f")
RANGE_START, RANGE_END = "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"


# The parser ---------------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_KEY = re.compile(r"([{,]\s*)([A-Za-z_$][\w$]*)(\s*:)")
_CALLS = (
    (re.compile(r'ObjectId\(\s*("[0-9a-f]{24}")\s*\)'), r'{"$oid": \1}'),
    (re.compile(r'ISODate\(\s*("[^"]+")\s*\)'), r'{"$date": \1}'),
    (re.compile(r"new Date\(\s*Date\.now\(\)\s*-\s*(\d+)\s*\)"), r'{"$ago": \1}'),
    (re.compile(r"new Date\(\s*\)"), r'{"$now": 0}'),
)


class Now:
    """``new Date()`` and ``new Date(Date.now() - ms)`` of an example, resolved when run."""

    def __init__(self, ago_ms: int) -> None:
        self.ago_ms = ago_ms


def _bson(document: dict[str, Any]) -> Any:
    if set(document) == {"$oid"}:
        return ObjectId(document["$oid"])
    if set(document) == {"$date"}:
        return ("ISODate", document["$date"])
    if set(document) == {"$ago"}:
        return Now(int(document["$ago"]))
    if set(document) == {"$now"}:
        return Now(0)
    return document


def js_literals(text: str) -> list[Any]:
    """The comma-separated JS literals of ``text`` (a call's arguments), as Python values."""
    for pattern, replacement in _CALLS:
        text = pattern.sub(replacement, text)
    parts, last = [], 0
    for string in _STRING.finditer(text):
        parts.append(_KEY.sub(r'\1"\2"\3', text[last : string.start()]))
        parts.append(string.group(0))
        last = string.end()
    parts.append(_KEY.sub(r'\1"\2"\3', text[last:]))
    return json.loads("[" + "".join(parts) + "]", object_hook=_bson)


def _closing(text: str, start: int) -> int:
    """The index of the parenthesis closing the one at ``start`` (strings skipped)."""
    depth, index = 0, start
    while index < len(text):
        char = text[index]
        if char == '"':
            index = _STRING.match(text, index).end()
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    raise AssertionError(f"unbalanced parentheses in {text!r}")


def parse_example(code: str) -> dict[str, Any]:
    """One example: its shape, collection, method, arguments and chained calls."""
    lines = code.strip().splitlines()
    shape = re.fullmatch(r"// shape: ([a-z0-9-]+)", lines[0].strip())
    assert shape, f"an example must start with '// shape: <name>': {lines[0]!r}"
    statement = " ".join(line.strip() for line in lines[1:] if not line.strip().startswith("//"))
    assert "//" not in statement.replace('"//', ""), f"comments go on their own line: {statement}"
    head = re.match(r"db\.([a-z_]+)\.(find|aggregate|countDocuments)\(", statement)
    assert head, f"not db.<collection>.find|aggregate|countDocuments(...): {statement}"
    end = _closing(statement, head.end() - 1)
    example = {
        "shape": shape.group(1),
        "collection": head.group(1),
        "method": head.group(2),
        "args": js_literals(statement[head.end() : end]),
        "chain": [],
    }
    rest = statement[end + 1 :].strip()
    while rest:
        call = re.match(r"\.(sort|limit|hint)\(", rest)
        assert call, f"only .sort, .limit and .hint may follow: {rest!r}"
        close = _closing(rest, call.end() - 1)
        [value] = js_literals(rest[call.end() : close])
        example["chain"].append((call.group(1), value))
        rest = rest[close + 1 :].strip()
    return example


def examples() -> list[dict[str, Any]]:
    text = COLLECTIONS_DOC.read_text()
    ops = text.split("## mongosh for ops", 1)[1]
    return [parse_example(code) for code in re.findall(r"```js\n(.*?)```", ops, re.S)]


# The sections ---------------------------------------------------------------------------


def sections() -> dict[str, str]:
    """Each collection's section of collections.md, by every name its heading gives."""
    found: dict[str, str] = {}
    parts = re.split(r"^## ", COLLECTIONS_DOC.read_text(), flags=re.M)
    for part in parts[1:]:
        heading, _, body = part.partition("\n")
        if heading.startswith("`"):
            for name in re.findall(r"`([a-z_]+)`", heading.split("(")[0]):
                found[name] = body
    return found


_INDEX_ROW = re.compile(r"^\| `(\w+)` \| `(\{.*?\})` \|([^|]*)\|", re.M)
_FIELD_ROW = re.compile(r"^\| `([\w.$]+)` \| (?!`\{)", re.M)


def documented_indexes(section: str) -> dict[str, tuple[list[tuple[str, int]], str]]:
    rows = {}
    for name, keys, options in _INDEX_ROW.findall(section):
        [parsed] = js_literals(keys)
        rows[name] = ([(k, int(v)) for k, v in parsed.items()], options)
    return rows


def documented_fields(section: str) -> set[str]:
    return {name.split(".")[0] for name in _FIELD_ROW.findall(section)}


def audit_record_fields() -> set[str]:
    fields = SCHEMA_DOC.read_text().split("## Fields", 1)[1].split("### `request`", 1)[0]
    return documented_fields(fields)


# A realistic installation -------------------------------------------------------------


@pytest.fixture
def seeded(make_app, receiver):
    """Two organizations and what ops look at, all written by the app's own code paths."""
    app = make_app(AUDIT_STREAM_ALLOW_PRIVATE=True, AUDIT_STREAM_SETTLE_SECONDS=0)
    org = make_org(app, "Acme")
    make_org(app, "Globex")
    client = app.test_client()
    api = Api(client)
    owner, admin, member = org.owner, org.admin, org.member
    stream = api.post(
        "/api/v1/audit-streams",
        as_=admin,
        json={"name": "SIEM", "destination": {"type": "webhook", "url": receiver.url}},
    )
    assert stream.status_code == 201, stream.get_json()
    settings = api.patch(
        "/api/v1/organization", as_=owner, json={"auditRetentionDays": 500, "auditLegalHold": False}
    )
    assert settings.status_code == 200, settings.get_json()
    api.get("/api/v1/organization", as_=member)
    api.get("/api/v1/workspaces", key=org.api_key)
    made = api.post(
        "/api/v1/pathways", as_=admin, workspace=org.workspace["_id"], json={"name": "Onboard"}
    )
    assert made.status_code == 201, made.get_json()
    invited = api.post(
        "/api/v1/members",
        as_=admin,
        json={"email": "friend@acme.example", "roleId": str(org.roles["member"]["_id"])},
    )
    assert invited.status_code == 201, invited.get_json()
    changed = api.patch(
        f"/api/v1/members/{member.account_id}",
        as_=owner,
        json={"roleId": str(org.roles["admin"]["_id"])},
    )
    assert changed.status_code == 200, changed.get_json()
    for _ in range(2):
        refused = client.post("/api/v1/auth/token", json={"email": owner.email, "password": "no"})
        assert refused.status_code == 401
    assert login(app.test_client(), owner).status_code == 302  # a web session
    settled(app)
    app.extensions[WRITER_KEY].flush_counts()
    with app.app_context():  # the stream is due now: one tick of the deliverer
        get_db().audit_streams.update_many({}, {"$set": {"nextAttemptAt": datetime.now(UTC)}})
    delivery.deliver_due(app, "ops-doc-test")
    runner = app.test_cli_runner()
    assert runner.invoke(args=["seal", "--now"]).exit_code == 0
    verified = runner.invoke(args=["verify", "--organization", str(org.id)])
    assert verified.exit_code == 0, verified.output
    sealing.seal_and_verify(app, "ops-doc-test")  # the background pass: full-verification
    settled(app)
    now = datetime.now(UTC)
    placeholders = {
        ORG_PLACEHOLDER: org.id,
        ACCOUNT_PLACEHOLDER: member.account_id,
        RANGE_START: now - timedelta(days=1),
        RANGE_END: now + timedelta(days=1),
    }
    with app.app_context():
        yield get_db(), placeholders


def _resolve(value: Any, placeholders: dict[Any, Any], now: datetime) -> Any:
    if isinstance(value, dict):
        return {k: _resolve(v, placeholders, now) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, placeholders, now) for v in value]
    if isinstance(value, Now):
        return now - timedelta(milliseconds=value.ago_ms)
    if isinstance(value, tuple):  # an ISODate
        assert value[1] in placeholders, f"ISODate({value[1]!r}) is no placeholder of the test"
        return placeholders[value[1]]
    if isinstance(value, ObjectId):
        assert value in placeholders, f"ObjectId({value}) is no placeholder of the test"
        return placeholders[value]
    return value


def _present(document: Any, path: list[str]) -> bool:
    if not path:
        return True
    if isinstance(document, list):
        return any(_present(item, path) for item in document)
    return (
        isinstance(document, dict) and path[0] in document and _present(document[path[0]], path[1:])
    )


def filter_fields(query: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(query, dict):
        for key, value in query.items():
            if key in ("$and", "$or", "$nor"):
                for branch in value:
                    names |= filter_fields(branch)
            elif not key.startswith("$"):
                names.add(key)
    return names


def references(expression: Any) -> set[str]:
    """The fields an aggregation expression reads (``"$field"``)."""
    if isinstance(expression, str):
        return {expression[1:]} if expression.startswith("$") and expression[1:2] != "$" else set()
    if isinstance(expression, dict):
        return set().union(*(references(v) for v in expression.values()))
    if isinstance(expression, list):
        return set().union(*(references(v) for v in expression))
    return set()


def named_fields(example: dict[str, Any]) -> list[tuple[str, str]]:
    """(collection, field path) of each field the example names on stored documents."""
    collection, args = example["collection"], example["args"]
    named: list[tuple[str, str]] = []
    if example["method"] in ("find", "countDocuments"):
        named += [(collection, f) for f in filter_fields(args[0])]
        if example["method"] == "find" and len(args) > 1:
            named += [(collection, f) for f in args[1] if f != "_id"]
        for call, value in example["chain"]:
            if call == "sort":
                named += [(collection, f) for f in value]
        return named
    lookups: dict[str, str] = {}
    reshaped = False
    for stage in args[0]:
        [(kind, body)] = stage.items()
        if kind == "$lookup":
            named.append((body["from"], body["foreignField"]))
            if not reshaped:
                named.append((collection, body["localField"]))
            lookups[body["as"]] = body["from"]
        elif reshaped:
            continue
        elif kind == "$match":
            named += [(collection, f) for f in filter_fields(body)]
        elif kind == "$sort":
            named += [(collection, f) for f in body]
        elif kind in ("$group", "$project"):
            fields = references(body)
            if kind == "$project":
                fields |= {k for k, v in body.items() if v in (0, 1) and k != "_id"}
            for field in fields:
                head, _, rest = field.partition(".")
                if head in lookups:
                    named.append((lookups[head], rest))
                else:
                    named.append((collection, field))
            reshaped = True
    return named


def run(db, example: dict[str, Any], placeholders: dict[Any, Any]) -> list[Any]:
    now = datetime.now(UTC)
    args = _resolve(example["args"], placeholders, now)
    collection = db[example["collection"]]
    if example["method"] == "countDocuments":
        return [collection.count_documents(args[0])]  # its hint is checked by name
    if example["method"] == "aggregate":
        return list(collection.aggregate(args[0]))
    cursor = collection.find(*args)
    for call, value in example["chain"]:
        if call == "sort":
            cursor = cursor.sort(list(value.items()))
        elif call == "limit":
            cursor = cursor.limit(value)
    return list(cursor)


def hints(example: dict[str, Any]) -> list[str]:
    found = [value for call, value in example["chain"] if call == "hint"]
    if example["method"] in ("aggregate", "countDocuments") and len(example["args"]) > 1:
        found += [example["args"][1]["hint"]]
    return found


# The tests ----------------------------------------------------------------------------


def test_the_parser_reads_mongosh_literals_strictly():
    [query, projection] = js_literals(
        '{ organizationId: ObjectId("6b0719273e4fe369efa9402e"), "targets.id": 1,'
        ' at: { $gte: ISODate("2026-11-01T00:00:00Z"), $lt: new Date(Date.now() - 5) },'
        ' ip: "a, b: c" }, { request: 0 }'
    )
    assert query["organizationId"] == ORG_PLACEHOLDER and query["ip"] == "a, b: c"
    assert query["at"]["$gte"] == ("ISODate", RANGE_START)
    assert query["at"]["$lt"].ago_ms == 5 and projection == {"request": 0}
    with pytest.raises(AssertionError):
        parse_example("// shape: x\ndb.audit_logs.find({}).skip(5)")
    with pytest.raises(ValueError):  # JavaScript JSON cannot hold: a regex, a trailing comma
        js_literals("{ path: /pathways/i }")


def test_every_collection_has_a_section_with_its_declared_indexes():
    documented = sections()
    for collection, specs in DECLARED.items():
        assert collection in documented, f"docs/collections.md has no section for {collection}"
        rows = documented_indexes(documented[collection])
        declared = {options["name"]: (keys, options) for keys, options in specs}
        assert set(rows) - {"_id_"} == set(declared), collection
        for name, (keys, options) in declared.items():
            doc_keys, doc_options = rows[name]
            assert doc_keys == [(k, int(v)) for k, v in keys], f"{collection}.{name} keys"
            assert ("unique" in doc_options) == bool(options.get("unique")), name
            if "expireAfterSeconds" in options:
                assert f"expireAfterSeconds: {options['expireAfterSeconds']}" in doc_options
    for collection, section in documented.items():
        names = set(documented_indexes(section)) - {"_id_"}
        declared_names = {options["name"] for _, options in DECLARED.get(collection, [])}
        assert names <= declared_names, f"{collection}: {names - declared_names} not declared"


def test_every_collection_and_field_the_app_writes_is_documented(seeded):
    db, _ = seeded
    documented = sections()
    for collection in db.list_collection_names():
        assert collection in documented, f"docs/collections.md has no section for {collection}"
        wanted = audit_record_fields() if collection == "audit_logs" else None
        wanted = wanted or documented_fields(documented[collection])
        written = set().union(*(set(d) for d in db[collection].find()))
        assert written <= wanted, f"{collection}: undocumented {sorted(written - wanted)}"


def test_every_mongosh_example_runs_on_what_the_app_wrote(seeded):
    db, placeholders = seeded
    found = examples()
    shapes = [example["shape"] for example in found]
    assert len(shapes) == len(set(shapes)), "two examples of one shape"
    assert {
        "organization-by-name",
        "account-by-email",
        "memberships-of-account",
        "records-by-account",
        "records-to-account",
        "failed-logins-by-ip",
        "activity-per-day",
        "largest-organizations",
        "streams-state",
        "last-seal",
        "last-verification",
    } <= set(shapes)
    for example in found:
        collection = example["collection"]
        for hint in hints(example):
            declared = {options["name"] for _, options in DECLARED.get(collection, [])}
            assert hint in declared, f"{example['shape']}: {collection} has no index {hint}"
        for where, field in named_fields(example):
            stored = list(db[where].find())
            assert any(_present(d, field.split(".")) for d in stored), (
                f"{example['shape']}: no document of {where} has {field}"
            )
        answer = run(db, example, placeholders)
        assert answer and answer != [0], f"{example['shape']} found nothing"


def test_the_examples_answer_what_they_say(seeded):
    db, placeholders = seeded
    by_shape = {example["shape"]: example for example in examples()}
    failed = run(db, by_shape["failed-logins-by-ip"], placeholders)
    assert sum(row["failures"] for row in failed) == 2
    assert failed[0]["emails"] == ["owner@acme.example"]
    to_account = run(db, by_shape["records-to-account"], placeholders)
    assert "member.roleChange" in {r["action"] for r in to_account}
    by_account = run(db, by_shape["records-by-account"], placeholders)
    assert all(r["accountId"] == placeholders[ACCOUNT_PLACEHOLDER] for r in by_account)
    days = run(db, by_shape["activity-per-day"], placeholders)
    stored = db.audit_logs.count_documents({"organizationId": placeholders[ORG_PLACEHOLDER]})
    assert 0 < sum(day["count"] for day in days) <= stored
    memberships = run(db, by_shape["memberships-of-account"], placeholders)
    assert memberships[0]["organization"] == ["Acme"] and memberships[0]["role"] == ["Admin"]
    seal = run(db, by_shape["last-seal"], placeholders)
    assert seal[0]["sequence"] >= 1
    state = run(db, by_shape["last-verification"], placeholders)
    assert state[0]["state"] == "verified"
    leases = {lease["_id"] for lease in run(db, by_shape["leases"], placeholders)}
    assert "full-verification" in leases
    largest = run(db, by_shape["largest-organizations"], placeholders)
    assert largest[0]["name"] == ["Acme"] and largest[0]["records"] == sum(d["count"] for d in days)
