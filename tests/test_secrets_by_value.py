"""Secrets recognised by their value, wherever they are put: never in the store, an export,
the access log.

Each property generates a secret of one kind (this product's API key or invitation token,
a JWT, a Bearer or Basic credential, a password in a URL) and hides it in a structure or a
string the way a careless or hostile client would; the stored record, the export and the
access log must not hold the secret part.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_app.accesslog import redact_query, redact_request_line, redact_url

ROOT = Path(__file__).resolve().parent.parent
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


tokens = st.text(alphabet=B64URL, min_size=24, max_size=48)
# as the product makes them: secrets.token_urlsafe(30) and (32)
api_keys = st.text(alphabet=B64URL, min_size=40, max_size=40).map(lambda t: ("oal_" + t,) * 2)
invitations = st.text(alphabet=B64URL, min_size=43, max_size=43).map(lambda t: ("inv_" + t,) * 2)
jwts = st.tuples(
    st.dictionaries(st.sampled_from(["alg", "typ", "kid"]), st.text(max_size=8), min_size=1),
    st.dictionaries(st.text(min_size=1, max_size=6), st.integers(), max_size=3),
    tokens,
).map(
    lambda parts: (
        (
            _b64(json.dumps(parts[0]).encode())
            + "."
            + _b64(json.dumps(parts[1]).encode())
            + "."
            + parts[2],
        )
        * 2
    )
)
bearers = st.tuples(st.sampled_from(["Bearer", "bearer", "Basic", "BASIC"]), tokens).map(
    lambda p: (f"{p[0]} {p[1]}", p[1])
)
url_passwords = st.tuples(
    st.sampled_from(["https", "postgres", "mongodb+srv", "redis"]),
    st.text(alphabet="abcdefghij", min_size=1, max_size=8),
    st.text(alphabet="ABCDEFGHIJKLMN0123456789!$*-_", min_size=6, max_size=20),
).map(lambda p: (f"{p[0]}://{p[1]}:{p[2]}@db.example/x", p[2]))
SECRETS = {
    "api key": api_keys,
    "invitation": invitations,
    "jwt": jwts,
    "bearer or basic": bearers,
    "url password": url_passwords,
}
separators = st.sampled_from([" ", "\n", '"', "'", "(", "=", ", ", "<", ">", ": ", "\t", "|"])
prose = st.text(alphabet="abc xyz:;,.", max_size=12)


@st.composite
def in_a_string(draw, secret):
    return draw(prose) + draw(separators) + secret + draw(separators) + draw(prose)


@st.composite
def in_a_structure(draw, text):
    """The text at any depth of nested objects and arrays, under an innocent key."""
    value = text
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            value = {draw(st.sampled_from(["note", "data", "items", "x", "comment"])): value}
        else:
            value = [draw(st.integers()), value]
    return value


def _stored(db, request_id):
    return json.dumps(db.audit_logs.find_one({"requestId": request_id}), default=str)


def _check(db, api, org, request_id, hidden):
    stored = _stored(db, request_id)
    assert stored != "null"
    assert hidden not in stored
    exported = api.get(
        "/api/v1/audit-logs/export?format=ndjson&q="
        + urllib.parse.quote(f"requestId:{request_id}"),
        as_=org.owner,
    ).get_data(as_text=True)
    assert hidden not in exported


FAST = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.parametrize("kind", SECRETS)
def test_a_secret_in_a_json_body_never_reaches_the_store(api, db, org, kind):
    @FAST
    @given(data=st.data())
    def run(data):
        secret, hidden = data.draw(SECRETS[kind])
        body = data.draw(in_a_structure(data.draw(in_a_string(secret))))
        request_id = os.urandom(8).hex()
        api.post(
            "/api/v1/workspaces",
            as_=org.admin,
            json={"name": "w", "meta": body},
            headers={"X-Request-Id": request_id},
        )
        assert hidden not in _stored(db, request_id)

    run()


@pytest.mark.parametrize("kind", SECRETS)
def test_a_secret_anywhere_in_a_request_never_reaches_the_store_or_export(api, db, org, kind):
    @FAST
    @given(data=st.data())
    def run(data):
        secret, hidden = data.draw(SECRETS[kind])
        text = data.draw(in_a_string(secret))
        place = data.draw(
            st.sampled_from(
                ["query", "query key", "form", "form key", "text", "bad json", "xml", "referer"]
            )
        )
        request_id = os.urandom(8).hex()
        headers = {"X-Request-Id": request_id}
        kwargs: dict = {}
        path = "/api/v1/workspaces"
        if place == "query":
            path += "?note=" + urllib.parse.quote(text)
        elif place == "query key":
            path += "?" + urllib.parse.quote(text) + "=1"
        elif place == "form":
            kwargs["data"] = {"comment": text}
        elif place == "form key":
            kwargs["data"] = {text: "1"}
        elif place == "text":
            kwargs.update(data=text, content_type="text/plain")
        elif place == "bad json":
            kwargs.update(
                data='{"note": ' + json.dumps(text) + ", oops", content_type="application/json"
            )
        elif place == "xml":
            kwargs.update(data=f"<a><b>{text}</b></a>", content_type="application/xml")
        else:
            headers["Referer"] = "https://app.example/page?next=" + urllib.parse.quote(text)
        api.post(path, as_=org.admin, headers=headers, **kwargs)
        _check(db, api, org, request_id, hidden)

    run()


@pytest.mark.parametrize(
    "body,hidden",
    [
        ({"Passwort": "geheim-123"}, "geheim-123"),
        ({"passphrase": "correct horse"}, "correct horse"),
        ({"pass": "s3cr3t-pass"}, "s3cr3t-pass"),
        ({"pw": "s3cr3t-pw"}, "s3cr3t-pw"),
        ({"pin": "493817"}, "493817"),
        ({"otp": "112233"}, "112233"),
        ({"jwt": "opaque-jwt-value"}, "opaque-jwt-value"),
        ({"bearer": "opaque-bearer-value"}, "opaque-bearer-value"),
        ({"credentials": {"user": "u", "value": "cred-val"}}, "cred-val"),
        ({"auth": "auth-val-1"}, "auth-val-1"),
        ({"sid": "sid-val-1"}, "sid-val-1"),
        ({"signature": "sig-val-1"}, "sig-val-1"),
        ({"dsn": "dsn-val-1"}, "dsn-val-1"),
        ([{"name": "Authorization", "value": "Bearer abcdefghij123"}], "abcdefghij123"),
    ],
)
def test_wider_key_words_are_redacted(api, db, org, body, hidden):
    api.post(
        "/api/v1/workspaces", as_=org.admin, json={"meta": body}, headers={"X-Request-Id": "w1"}
    )
    assert hidden not in _stored(db, "w1")


def test_readable_words_that_contain_a_short_secret_word_stay(api, db, org):
    body = {
        "author": "Ada",
        "pinned": True,
        "passenger": "Bob",
        "inside": "yes",
        "goal_completion_rate_x": 3,
    }
    api.post("/api/v1/workspaces", as_=org.admin, json=body, headers={"X-Request-Id": "w2"})
    stored = json.loads(_stored(db, "w2"))
    assert stored["request"]["body"] == body


def test_a_json_document_posted_as_form_data_loses_its_password(api, db, org):
    api.post(
        "/api/v1/workspaces",
        as_=org.admin,
        data={'{"email": "a@b.example", "password": "form-json-pw"}': ""},
        headers={"X-Request-Id": "f1", "Origin": "https://user:origin-pw@evil.example"},
    )
    stored = _stored(db, "f1")
    assert "form-json-pw" not in stored and "origin-pw" not in stored


# The access log ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(data=st.data(), kind=st.sampled_from(sorted(SECRETS)))
def test_the_access_log_atoms_never_hold_a_secret(data, kind):
    secret, hidden = data.draw(SECRETS[kind])
    text = data.draw(in_a_string(secret))
    query = urllib.parse.urlencode({"q": text, "password": "pw-" + hidden, "x": "1"})
    assert hidden not in redact_query(query)
    assert hidden not in redact_request_line(f"GET /api/v1/x?{query} HTTP/1.1")
    assert hidden not in redact_url(f"https://app.example/p?{query}")
    assert hidden not in redact_url("/api/v1/x/" + urllib.parse.quote(text, safe=""))


@pytest.mark.slow
def test_gunicorn_writes_no_secret_to_its_access_log(tmp_path):
    from bench.load import _wait_ready, free_port, gunicorn

    port = free_port()
    log = tmp_path / "access.log"
    env = {
        **{k: v for k, v in os.environ.items() if k != "MONGO_URI"},
        "EMBEDDED_STORE_DIR": str(tmp_path / "store"),
        "INSTANCE_PATH": str(tmp_path),
        "SECRET_KEY": "s" * 40,
        "AUDIT_SPOOL_DIR": str(tmp_path / "spool"),
        "AUDIT_SEAL_IN_BACKGROUND": "false",
    }
    server = gunicorn(env, port, access_log=str(log))
    secrets = ["hunter2-pw", "oal_" + "K" * 40, "tok-" + "z" * 20, "refpw-77"]
    try:
        _wait_ready(port)
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request(
            "GET",
            f"/api/v1/workspaces?password={secrets[0]}&api_key={secrets[1]}&access_token={secrets[2]}",
            headers={"Referer": f"https://u:{secrets[3]}@app.example/?token={secrets[2]}"},
        )
        connection.getresponse().read()
        connection.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    written = log.read_text()
    assert "/api/v1/workspaces?password=[REDACTED]" in written
    assert not [s for s in secrets if s in written], written


# Found by an adversarial review --------------------------------------------------------

KEY40 = "oal_" + "Zx9" * 13 + "Q"


@pytest.mark.parametrize(
    "how,hidden",
    [
        ({"headers": {"X-Request-Id": KEY40}}, KEY40),
        ({"headers": {"User-Agent": "bot password=hunter2-ua"}}, "hunter2-ua"),
        ({"headers": {"User-Agent": "bot " + KEY40.replace("_", "%5F")}}, KEY40[4:]),
        ({"path": "/api/v1/workspaces/password=hunter2-path"}, "hunter2-path"),
        ({"path": "/api/v1/workspaces/" + KEY40.replace("_", "%255F")}, KEY40[4:]),
        ({"text": '{"pass\\u0077ord":"esc-pw-1",}'}, "esc-pw-1"),
        ({"text": '{"k": "\\u006f' + KEY40[1:] + '",'}, KEY40[4:]),
        ({"xml": "<password><![CDATA[cdata-pw]]></password>"}, "cdata-pw"),
        ({"xml": "<password><value>nested-pw</value></password>"}, "nested-pw"),
        ({"text": '"password" => "arrow-pw"'}, "arrow-pw"),
        ({"text": "redis://:abc#hash-pw@cache:6379/0"}, "hash-pw"),
        ({"file": ("report-" + KEY40 + ".txt", "upload")}, KEY40),
        ({"file": ("a.txt", "password")}, None),
    ],
)
def test_secrets_the_review_slipped_through_are_caught(api, db, org, how, hidden):
    import io

    headers = {"X-Request-Id": "slip-1", **how.get("headers", {})}
    kwargs: dict = {}
    if "text" in how:
        kwargs.update(data=how["text"], content_type="application/json")
    if "xml" in how:
        kwargs.update(data=how["xml"], content_type="application/xml")
    if "file" in how:
        name, field = how["file"]
        kwargs.update(data={field: (io.BytesIO(b"x"), name)}, content_type="multipart/form-data")
    api.post(how.get("path", "/api/v1/workspaces"), as_=org.admin, headers=headers, **kwargs)
    record = db.audit_logs.find_one(sort=[("_id", -1)])
    stored = json.dumps(record, default=str)
    if hidden is None:  # a secret-looking file field name keeps its upload, named redacted
        assert record["request"]["files"][0]["field"] == "password"
    else:
        assert hidden not in stored


def test_an_api_keys_name_and_readable_prose_are_kept_apart(api, db, org):
    key = api.post("/api/v1/api-keys", as_=org.owner, json={"name": "ci " + KEY40}).get_json()
    api.get("/api/v1/workspaces", key=key["key"], headers={"X-Request-Id": "named-1"})
    assert KEY40 not in _stored(db, "named-1")
    prose = {"title": "Basic workflow for onboarding", "goal_completion_rate_for_quarterly": 1}
    api.post("/api/v1/workspaces", as_=org.admin, json=prose, headers={"X-Request-Id": "prose-1"})
    assert json.loads(_stored(db, "prose-1"))["request"]["body"] == prose
