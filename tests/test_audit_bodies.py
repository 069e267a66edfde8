"""Anything a client sends is stored without error, faithfully, with secrets redacted."""

import hashlib
import io
import json
import string

import bson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_app.audit.capture.redaction import (
    MAX_DEPTH,
    REDACTED,
    Redactor,
    escape_key,
    unescape,
    unescape_key,
)
from audit_app.config import DEFAULT_REDACT_KEYS


def stored_body(db, path="/api/v1/workspaces"):
    record = db.audit_logs.find_one({"path": path})
    assert record is not None
    return record["request"]


def post_raw(api, org, data, content_type, path="/api/v1/workspaces"):
    return api.post(path, as_=org.admin, data=data, content_type=content_type)


def test_dollar_and_dotted_keys_are_stored_and_shown_faithfully(api, org, db):
    body = {
        "$where": "sleep(1000)",
        "a.b": {"$gt": 1, "c.d.e": [{"$in": [1]}]},
        "100%": "x",
        "name": "n",
    }
    answer = api.post("/api/v1/workspaces", as_=org.admin, json=body)
    assert answer.status_code == 400  # unknown fields: the API refuses it, the log keeps it
    details = stored_body(db)
    assert "$where" not in details["body"] and "%24where" in details["body"]
    assert unescape(details["body"]) == body


def test_nesting_deeper_than_mongodb_allows(api, org, db):
    deep = current = {}
    for _ in range(150):
        current["n"] = {}
        current = current["n"]
    current["password"] = "deep-secret"
    answer = api.post("/api/v1/workspaces", as_=org.admin, json=deep)
    assert answer.status_code == 400
    details = stored_body(db)
    assert details["bodyType"] == "json"
    text = json.dumps(details["body"])
    assert "deep-secret" not in text and REDACTED in text
    # the part below the depth limit is kept as its JSON text
    node = details["body"]
    for _ in range(MAX_DEPTH):
        node = node["n"]
    assert isinstance(node, str) and json.loads(node.replace(REDACTED, "x"))["n"]["n"]


def test_json_nested_beyond_the_parser_is_stored_as_text(api, org, db):
    raw = "[" * 5000 + "]" * 5000
    assert post_raw(api, org, raw, "application/json").status_code == 400
    details = stored_body(db)
    assert details["bodyType"] == "text" and details["body"].startswith("[[[[")


def test_invalid_utf8_is_a_binary_placeholder(api, org, db):
    data = b'{"name": "\xff\xfe broken"}'
    assert post_raw(api, org, data, "application/json").status_code == 400
    details = stored_body(db)
    assert details["bodyType"] == "binary" and details["body"] is None
    assert details["binary"] == {
        "contentType": "application/json",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def test_huge_numbers_nan_and_lone_surrogates(api, org, db):
    raw = (
        '{"big": 123456789012345678901234567890, "neg": -99999999999999999999,'
        ' "nan": NaN, "s": "\\ud800x"}'
    )
    assert post_raw(api, org, raw, "application/json").status_code == 400
    body = stored_body(db)["body"]
    assert body["big"] == "123456789012345678901234567890"
    assert body["neg"] == "-99999999999999999999"
    assert body["nan"] != body["nan"]  # NaN survives as a double
    assert body["s"] == "\\ud800x"


def test_empty_body(api, org, db):
    assert api.post("/api/v1/workspaces", as_=org.admin).status_code == 415
    details = stored_body(db)
    assert details["bodyType"] == "empty" and details["body"] is None and details["bodySize"] == 0


def test_text_body_with_wrong_content_type_is_text_and_redacted(api, org, db):
    raw = 'name=x&password=hunter2 {"apiKey": "abc123", "token":"t0k"} secret: s3'
    assert post_raw(api, org, raw, "text/plain").status_code == 415
    details = stored_body(db)
    assert details["bodyType"] == "text"
    for secret in ("hunter2", "abc123", "t0k", "s3"):
        assert secret not in details["body"], details["body"]
    assert details["body"].startswith("name=x&password=[REDACTED]")


def test_binary_body(api, org, db):
    data = bytes(range(256)) * 4
    assert post_raw(api, org, data, "application/octet-stream").status_code == 415
    details = stored_body(db)
    assert details["bodyType"] == "binary"
    assert (
        details["binary"]["size"] == 1024
        and details["binary"]["contentType"] == "application/octet-stream"
    )


def test_form_and_files(api, org, db):
    answer = api.post(
        "/api/v1/workspaces",
        as_=org.admin,
        data={"name": ["a", "b"], "password": "pw", "upload": (io.BytesIO(b"x" * 300), "cv.pdf")},
        content_type="multipart/form-data",
    )
    assert answer.status_code == 415
    details = stored_body(db)
    assert details["bodyType"] == "form"
    assert details["body"] == {"name": ["a", "b"], "password": REDACTED}
    assert details["files"] == [
        {"field": "upload", "filename": "cv.pdf", "contentType": "application/pdf", "size": 300}
    ]


def test_large_bodies_are_truncated_after_redaction(make_app, org, mongo):
    from .factories import Api

    app = make_app(AUDIT_MAX_BODY_BYTES=1024)
    api = Api(app.test_client())
    body = {"name": "x" * 3000, "nested": {"password": "must-not-leak"}}
    api.post("/api/v1/workspaces", as_=org.admin, json=body)
    details = mongo["audit_app"].audit_logs.find_one({"path": "/api/v1/workspaces"})["request"]
    assert details["bodyTruncated"] is True
    assert details["bodySize"] > 3000
    assert isinstance(details["body"], str) and len(details["body"].encode()) <= 1024
    text_body = "password=must-not-leak&" + "y" * 5000
    api.post("/api/v1/workspaces", as_=org.admin, data=text_body, content_type="text/plain")
    details = mongo["audit_app"].audit_logs.find_one(
        {"path": "/api/v1/workspaces", "request.bodyType": "text"}
    )
    assert (
        details["request"]["bodyTruncated"] is True
        and "must-not-leak" not in details["request"]["body"]
    )


def test_body_over_max_content_length_is_recorded_as_omitted(make_app, org, mongo):
    app = make_app(MAX_CONTENT_LENGTH=2048)
    app.test_client().post("/api/v1/workspaces", data="z" * 4096, content_type="application/json")
    details = mongo["audit_app"].audit_logs.find_one({})["request"]
    assert details["bodyType"] == "omitted" and details["bodySize"] == 4096


# Redaction properties ---------------------------------------------------------------------

SENTINEL = "S3NT1NEL-value"
redactor = Redactor(DEFAULT_REDACT_KEYS)


def secret_key_variants():
    words = st.sampled_from(DEFAULT_REDACT_KEYS)  # every configured word, as shipped
    prefix = st.sampled_from(["", "new", "x-", "user_", "OLD"])

    def style(word, pre, upper, dashes):
        key = pre + word
        if dashes:
            key = key.replace("_", "-")
        return key.upper() if upper else key

    return st.builds(style, words, prefix, st.booleans(), st.booleans())


plain_keys = st.text(alphabet=string.ascii_lowercase + "$.%", min_size=1, max_size=6).filter(
    lambda k: not redactor.is_secret(k)
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=5)
)


def trees_with_secrets():
    secret_leaf = st.one_of(
        st.just(SENTINEL),
        st.lists(st.just(SENTINEL), min_size=1, max_size=2),
        st.fixed_dictionaries({"v": st.just(SENTINEL)}),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(plain_keys, children, max_size=3),
            st.builds(
                lambda d, k, v: {**d, k: v},
                st.dictionaries(plain_keys, children, max_size=2),
                secret_key_variants(),
                secret_leaf,
            ),
        ),
        max_leaves=25,
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees_with_secrets(), depth=st.sampled_from([0, MAX_DEPTH - 2, MAX_DEPTH]))
def test_no_value_under_a_secret_key_survives_at_any_depth(tree, depth):
    wrapped = tree
    for _ in range(depth):
        wrapped = {"n": wrapped}
    cleaned = redactor.clean(wrapped)
    encoded = bson.encode({"body": cleaned})  # always storable
    assert SENTINEL.encode() not in encoded
    assert SENTINEL not in redactor.json_text(wrapped)
    assert SENTINEL not in redactor.redact_text(json.dumps({"k": wrapped}, allow_nan=True))


@settings(max_examples=200, deadline=None)
@given(key=st.text(max_size=12))
def test_key_escaping_is_reversible_and_storable(key):
    escaped = escape_key(key)
    bson.encode({escaped: 1})
    assert not escaped.startswith("$") and "." not in escaped and "\x00" not in escaped
    if key.encode("utf-8", "surrogatepass") == key.encode("utf-8", "surrogatepass"):
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            return
        assert unescape_key(escaped) == key


def test_short_words_match_exactly_long_words_match_inside():
    assert (
        redactor.is_secret("PWD")
        and redactor.is_secret("cardCVV")
        and redactor.is_secret("user_ssn_4")
    )
    assert not redactor.is_secret("className") and not redactor.is_secret("lessons")
    assert redactor.is_secret("X-Api-Key") and redactor.is_secret("db_password_hash")
    assert not redactor.is_secret("name") and not redactor.is_secret("description")
