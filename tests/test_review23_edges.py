"""Review #23, the edges: deeply nested JSON, command-line text that is not text, and CSV
cells a spreadsheet would run.

Written as the attacker, through the public surface (the HTTP test client, the Click runner,
a real ``flask`` process), and judged by the effect: the status and the audit record of the
request, what the store holds after a refused command, the cells of the exported file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from bson import ObjectId

from audit_app.db import get_audit_db, get_db

from .factories import audit_record
from .test_web_session import csrf_from, login

ROOT = Path(__file__).resolve().parent.parent


# (11) Deeply nested JSON is a 400, never a 500, and is recorded ---------------------------


def nested(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    if kind == "object":
        return '{"a":' * depth + "1" + "}" * depth
    return '{"email": ' + "[" * depth + "]" * depth + ', "password": "pw"}'  # in a field


# Where the parser gives up depends on the stack already in use: sweep across the limit.
DEPTHS = (1, 50, 500, *range(700, 1010, 15), 995, 999, 1000, 1001, 1200, 5_000, 100_000)
KINDS = ("array", "object", "email")


@pytest.fixture
def app(make_app):
    # limits on, so that their key functions run, but high enough for the sweep
    return make_app(RATELIMIT_LOGIN="100000 per minute", WTF_CSRF_ENABLED=True)


def _record_of(answer) -> dict | None:
    """The audit record of a request just answered (inside the app's context)."""
    return get_audit_db().audit_logs.find_one({"requestId": answer.headers["X-Request-Id"]})


def test_deeply_nested_json_to_the_token_endpoint_is_a_400_naming_the_body(app, client, org):
    with app.app_context():
        for kind in KINDS:
            for depth in DEPTHS:
                answer = client.post(
                    "/api/v1/auth/token",
                    data=nested(depth, kind),
                    content_type="application/json",
                )
                assert answer.status_code == 400, (kind, depth, answer.get_data()[:200])
                error = answer.get_json()["error"]
                if depth >= 1000:  # past any parser's limit here: the body itself is refused
                    assert error["field"] == "body", (kind, depth, error)
                    assert "nested too deeply" in error["message"], error
                record = _record_of(answer)
                assert record is not None and record["statusCode"] == 400, (kind, depth)
                assert record["path"] == "/api/v1/auth/token"


def test_deeply_nested_json_to_the_login_page_is_a_400_not_a_500(app, client, org):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    with app.app_context():
        for headers in ({}, {"X-CSRFToken": token}):  # refused by CSRF, or read by the form
            for kind in KINDS:
                for depth in DEPTHS:
                    answer = client.post(
                        "/login",
                        data=nested(depth, kind),
                        content_type="application/json",
                        headers=headers,
                    )
                    assert answer.status_code == 400, (headers, kind, depth)
                    record = _record_of(answer)
                    assert record is not None and record["statusCode"] == 400


def _filled(rule) -> str:
    return re.sub(r"<[^>]+>", str(ObjectId()), rule.rule)


def test_no_endpoint_that_takes_a_body_answers_deep_json_with_a_500(app, client, api, org):
    """Every API endpoint that takes a body, as the Owner, and every web form, logged in
    with a valid CSRF token in the header (so the form reads the JSON): never a 500, and
    each request has its record with the status it got."""
    depths = (1, 800, 900, 950, 990, 1000, 100_000)
    token = api.token(org.owner)
    api_rules = [
        r
        for r in app.url_map.iter_rules()
        if r.rule.startswith("/api/") and {"POST", "PATCH", "PUT"} & set(r.methods or ())
    ]
    assert len(api_rules) >= 10
    web = app.test_client()
    login(web, org.owner)
    csrf = csrf_from(web.get("/organization/settings").get_data(as_text=True))
    web_rules = [
        r
        for r in app.url_map.iter_rules()
        if not r.rule.startswith(("/api/", "/staff")) and "POST" in (r.methods or ())
        if r.rule not in ("/logout", "/organization/switch")  # they would end the session
    ]
    assert len(web_rules) >= 5
    with app.app_context():
        for rule in api_rules:
            for method in {"POST", "PATCH", "PUT"} & set(rule.methods or ()):
                for depth in depths:
                    answer = client.open(
                        _filled(rule),
                        method=method,
                        data=nested(depth, "array"),
                        content_type="application/json",
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    assert answer.status_code < 500, (rule.rule, method, depth)
                    assert _record_of(answer)["statusCode"] == answer.status_code
        for rule in web_rules:
            for depth in depths:
                answer = web.post(
                    _filled(rule),
                    data=nested(depth, "object"),
                    content_type="application/json",
                    headers={"X-CSRFToken": csrf},
                )
                assert answer.status_code < 500, (rule.rule, depth)
                assert _record_of(answer)["statusCode"] == answer.status_code


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', '{"email": [[[1]]], "password": "pw"}'])
def test_json_that_is_no_form_sent_to_a_web_form_is_not_a_500(app, client, org, body):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    answer = client.post(
        "/login", data=body, content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert answer.status_code == 400


# (12) Command-line text: not UTF-8, or past the API's limits, is refused before anything --


BAD = "Evil\udc80"  # what Python makes of the argument b"Evil\x80" (PEP 383)
PASSWORD = "long enough password"


def snapshot(app) -> dict[str, int]:
    """How many documents each collection of both stores holds."""
    with app.app_context():
        counts = {}
        for name, database in (("main", get_db()), ("audit", get_audit_db())):
            for collection in database.list_collection_names():
                counts[f"{name}.{collection}"] = database[collection].count_documents({})
        return counts


def _cli_cases(org) -> list[tuple[list[str], str]]:
    """Every text option of create-org, create-user, create-api-key and export, each with
    an argument that is not UTF-8, and the option the error must name."""
    org_id = str(org.id)
    create_org = ["create-org", "Evil", "--owner-email", "new@b.test", "--owner-password", PASSWORD]
    create_user = ["create-user", "--organization", org_id, "--email", "u@b.test"]
    create_user += ["--password", PASSWORD]
    create_key = ["create-api-key", "--organization", org_id, "--name", "k"]
    export = ["export", "--organization", org_id, "--format", "csv"]
    cases = [
        (["create-org", BAD, *create_org[2:]], "NAME"),
        ([*create_org[:3], "new\udc80@b.test", *create_org[4:]], "--owner-email"),
        ([*create_org[:5], "pass\udc80word-long"], "--owner-password"),
        ([*create_user[:4], "u\udc80@b.test", *create_user[5:]], "--email"),
        ([*create_user[:6], "pass\udc80word-long"], "--password"),
        ([*create_user, "--role", "Adm\udc80in"], "--role"),
        ([*create_key[:4], "k\udc80"], "--name"),
        ([*create_key, "--role", "Adm\udc80in"], "--role"),
    ]
    for option in ("--q", "--path", "--method", "--resource", "--auth-type", "--status-code"):
        cases.append(([*export, option, "a\udc80"], option))
    for option in ("--account-id", "--workspace-id", "--api-key-id", "--from", "--to"):
        cases.append(([*export, option, "2026\udc80"], option))
    cases.append(([*export, "--output", "out\udc80.csv"], "--output"))
    return cases


def test_arguments_that_are_not_utf8_are_refused_naming_the_option_and_change_nothing(
    app, runner, org, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # --output out\udc80.csv, were it written
    before = snapshot(app)
    for args, option in _cli_cases(org):
        text = runner.invoke(args=args)
        assert text.exit_code == 2, (args, text.output)
        assert ("Traceback" not in text.output and text.exception is None) or isinstance(
            text.exception, SystemExit
        ), (args, text.output)
        assert option in text.output and "UTF-8" in text.output, (args, text.output)
        as_json = runner.invoke(args=[*args, "--json"])
        assert as_json.exit_code == 2 and as_json.stdout == "", (args, as_json.output)
        error = json.loads(as_json.stderr.strip().splitlines()[-1])["error"]
        assert error["code"] == "usage_error" and error["field"] == option, (args, error)
        assert snapshot(app) == before, args
    assert not [name for name in os.listdir(tmp_path) if name.startswith("out")], os.listdir(
        tmp_path
    )


def test_create_org_with_a_non_utf8_name_in_a_real_process_leaves_no_orphan_account(tmp_path):
    """The finding as reported: `flask --app wsgi create-org $'Evil\\x80' ...` printed a
    UnicodeEncodeError traceback and left a@b.test without an organization."""
    env = {
        **os.environ,
        "EMBEDDED_STORE_DIR": str(tmp_path / "store"),
        "SECRET_KEY": "k" * 40,
        "AUDIT_SPOOL_DIR": str(tmp_path / "spool"),
        "AUDIT_ANCHOR_DIR": str(tmp_path / "anchor"),
        "PASSWORD_HASH_PROFILE": "fast",
        "AUDIT_SEAL_IN_BACKGROUND": "false",
    }
    env.pop("MONGO_URI", None)
    args = [sys.executable.encode(), b"-m", b"flask", b"--app", b"wsgi", b"create-org"]
    args += [b"Evil\x80", b"--owner-email", b"a@b.test", b"--owner-password", b"x" * 12]
    done = subprocess.run(
        [*args, b"--json"], cwd=ROOT, env=env, capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 2, done.stderr.decode(errors="replace")
    assert b"Traceback" not in done.stderr and done.stdout == b""
    error = json.loads(done.stderr.decode().strip().splitlines()[-1])["error"]
    assert error["field"] == "NAME" and "UTF-8" in error["message"]
    text = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, timeout=120, check=False)
    assert text.returncode == 2 and b"Traceback" not in text.stderr
    assert b"NAME" in text.stderr and b"UTF-8" in text.stderr
    from audit_app.db import Store

    store = Store(None, db_name="audit_app", embedded_dir=str(tmp_path / "store"))
    try:
        assert store.db.accounts.count_documents({}) == 0
        assert store.db.organizations.count_documents({}) == 0
    finally:
        store.close()


def test_a_password_on_standard_input_that_is_not_utf8_is_refused(app, runner, org):
    before = snapshot(app)
    args = ["create-user", "--organization", str(org.id), "--email", "in@b.test"]
    result = runner.invoke(args=[*args, "--password-stdin"], input=b"pass\x80word-long\n")
    assert result.exit_code == 2 and "--password" in result.output, result.output
    assert "UTF-8" in result.output and not isinstance(result.exception, UnicodeError)
    assert snapshot(app) == before


def _api_accepts(api, org, kind: str, value: str) -> bool:
    if kind == "organization":
        answer = api.patch("/api/v1/organization", as_=org.owner, json={"name": value})
    elif kind == "apiKey":
        answer = api.post("/api/v1/api-keys", as_=org.owner, json={"name": value})
    else:
        role = str(org.roles["member"]["_id"])
        answer = api.post("/api/v1/members", as_=org.owner, json={"email": value, "roleId": role})
    assert answer.status_code in (200, 201, 400), answer.get_json()
    return answer.status_code < 400


def _cli_accepts(runner, org, kind: str, value: str) -> bool:
    if kind == "organization":
        args = ["create-org", value, "--owner-email", "o@b.test", "--owner-password", PASSWORD]
    elif kind == "apiKey":
        args = ["create-api-key", "--organization", str(org.id), "--name", value]
    else:
        args = ["create-user", "--organization", str(org.id), "--email", value]
        args += ["--password", PASSWORD]
    result = runner.invoke(args=[*args, "--json"])
    assert result.exit_code in (0, 2), (args[:2], result.output[-300:])
    assert "Traceback" not in result.output
    return result.exit_code == 0


@pytest.mark.parametrize(
    "kind,values",
    [
        ("organization", ["N" * 200, "N" * 201, "N" * 10_000, "  ", " padded "]),
        ("apiKey", ["k" * 200, "k" * 201, "k" * 10_000, "  ", " padded "]),
        ("member", ["a" * 64 + "@b.test", "a" * 65 + "@b.test", "x" * 10_000, "no-at-sign"]),
    ],
)
def test_the_cli_takes_text_within_the_apis_limits_exactly(app, api, runner, org, kind, values):
    """The same value is accepted by the command line exactly when the API accepts it; a
    refused one names its option, exits 2 and creates nothing."""
    for value in values:
        api_accepts = _api_accepts(api, org, kind, value)  # first: an invitation is no member
        before = snapshot(app)
        cli = _cli_accepts(runner, org, kind, value)
        if not cli:
            assert snapshot(app) == before, (kind, value[:20])
        assert cli == api_accepts, (kind, value[:20], len(value))


def test_a_long_organization_name_names_its_argument_and_creates_no_account(app, runner):
    before = snapshot(app)
    args = ["create-org", "N" * 10_000, "--owner-email", "a@b.test", "--owner-password", PASSWORD]
    result = runner.invoke(args=[*args, "--json"])
    assert result.exit_code == 2
    error = json.loads(result.stderr.strip().splitlines()[-1])["error"]
    assert error["field"] == "NAME" and "200" in error["message"]
    assert snapshot(app) == before


# (Extra a) CSV cells a spreadsheet would run: at a cell's start, and after a ';' --------

TRIGGER = re.compile(r"""[ "]*[=+\-@\t\r\n\x00]""")  # what starts a formula, after blanks


def _cells(text: str, delimiter: str) -> list[str]:
    """The cells a spreadsheet whose list separator is ``delimiter`` reads, header apart."""
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=delimiter))
    return [cell for row in rows[1:] for cell in row]


def _planted(app, api, org) -> list[str]:
    """Formulas planted where an attacker has a say: a key's name, a user agent, a
    workspace's name (in ``changes``), a body (in ``request``); and through the record
    builder, an error message with characters no header can carry."""
    formulas = [
        "=1+1",
        "+1+1",
        "-1+1",
        "@SUM(1)",
        '=HYPERLINK("http://evil.example";"x")',
        " =1+1",
        '"=1+1',
        ";=1+1",
        "Mozilla/5.0; =cmd|' /C calc'!A0",
        "x;@SUM(1)",
        'x;"-2+3',
        "x; +1",
    ]
    for formula in formulas:
        key = api.post("/api/v1/api-keys", as_=org.owner, json={"name": "k" + formula})
        assert key.status_code == 201, key.get_json()
        api.get("/api/v1/workspaces", headers={"User-Agent": formula}, as_=org.owner)
        api.post("/api/v1/workspaces", as_=org.owner, json={"name": "w" + formula})
    named = api.post("/api/v1/api-keys", as_=org.owner, json={"name": "=2+3"}).get_json()
    api.get("/api/v1/workspaces", key=named["key"])  # apiKeyName starts with '='
    with app.app_context():
        get_audit_db().audit_logs.insert_many(
            [
                audit_record(org.id, statusCode=400, response={"errorMessage": start + "1+1"})
                for start in ("\t=", "\r=", "\n=", "\x00=", "\t", "\r", "\n", "\x00", "ok\n=")
            ]
        )
    return formulas


def _check(text: str) -> None:
    cells = _cells(text, ",")
    assert len(cells) > 100
    dangerous = [cell for cell in cells if TRIGGER.match(cell)]
    assert not dangerous, dangerous[:5]
    # a spreadsheet whose list separator is ';' cuts every line at each ';', and, out of
    # the quotes it does not see, starts a row at each line break
    pieces = [piece for line in text.splitlines()[1:] for piece in line.split(";")]
    assert pieces, "nothing planted after a ';'"
    dangerous = [piece for piece in pieces if TRIGGER.match(piece)]
    assert not dangerous, dangerous[:5]


def test_csv_exports_neutralise_formulas_at_a_cells_start_and_after_a_semicolon(
    app, api, org, runner
):
    formulas = _planted(app, api, org)
    answer = api.get("/api/v1/audit-logs/export?format=csv", as_=org.owner)
    assert answer.status_code == 200
    text = answer.get_data(as_text=True)
    _check(text)
    cells = set(_cells(text, ","))
    assert "'=2+3" in cells and "'=1+1" in cells and "' =1+1" in cells  # shown, as text
    assert "Mozilla/5.0;' =cmd|' /C calc'!A0" in cells and "x;'@SUM(1)" in cells
    assert "'\t=1+1" in cells and "'\x00=1+1" in cells
    exported = runner.invoke(
        args=["export", "--organization", str(org.id), "--format", "csv", "--output", "-"]
    )
    assert exported.exit_code == 0, exported.output
    _check(exported.stdout)
    ndjson = api.get("/api/v1/audit-logs/export?format=ndjson", as_=org.owner).get_data(
        as_text=True
    )
    agents = {json.loads(line).get("userAgent") for line in ndjson.splitlines()}
    assert set(formulas) <= agents  # NDJSON keeps every value exactly as it was sent


def test_a_cell_that_starts_no_formula_is_exported_as_it_is(app, api, org):
    for agent in ("|pipe", "a;b", "x; y", "(compatible; bot/2.1)", "100%", "'quoted"):
        api.get("/api/v1/workspaces", headers={"User-Agent": agent}, as_=org.owner)
    text = api.get("/api/v1/audit-logs/export?format=csv", as_=org.owner).get_data(as_text=True)
    cells = set(_cells(text, ","))
    assert {"|pipe", "a;b", "x; y", "(compatible; bot/2.1)", "100%", "'quoted"} <= cells
