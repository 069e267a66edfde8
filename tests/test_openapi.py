"""The OpenAPI document, and schemathesis over the whole of it, in process.

Every generated request (valid and invalid) must get no 500, and every response must match
the documented schema for its status. The examples per operation are bounded so CI stays
fast; SCHEMATHESIS_EXAMPLES raises the count for a deeper local run.
"""

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from audit_app import create_app
from audit_app.openapi import build_spec

from .factories import Api, make_org

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "12"))


def document_app():
    """An app to read the routes from (its store is never touched)."""
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "document-app-secret-0123456789-0123456789",
            "MONGO_URI": "mongomock://document/db",
            "AUDIT_ENSURE_INDEXES_ON_START": False,
            "AUDIT_SEAL_IN_BACKGROUND": False,
            "AUDIT_REPLAY_INTERVAL": 0,
            "AUDIT_PURGE_INTERVAL": 0,
        }
    )


def test_a_view_of_the_api_without_its_operation_cannot_be_published():
    """The document is derived from the views: an undeclared route fails the build."""
    app = document_app()
    app.add_url_rule("/api/v1/undocumented", "undocumented", lambda: "")
    with pytest.raises(LookupError, match="GET /api/v1/undocumented: no @operation"):
        build_spec(app)


def test_document_lists_every_endpoint_with_auth_and_errors(client):
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    expected = {
        "/auth/token",
        "/auth/password",
        "/organization",
        "/workspaces",
        "/workspaces/{workspaceId}",
        "/pathways",
        "/pathways/{pathwayId}",
        "/members",
        "/members/{accountId}",
        "/invitations",
        "/invitations/{invitationId}",
        "/invitations/accept",
        "/roles",
        "/roles/{roleId}",
        "/api-keys",
        "/api-keys/{apiKeyId}",
        "/audit-logs",
        "/audit-logs/export",
        "/audit-logs/{auditLogId}",
        "/audit-logs/integrity",
        "/audit-logs/histogram",
        "/audit-logs/checkpoint",
        "/audit-logs/consistency",
        "/audit-logs/{auditLogId}/proof",
        "/audit-streams",
        "/audit-streams/{streamId}",
        "/audit-streams/{streamId}/test",
        "/staff/token",
        "/staff/lookup",
        "/staff/grants",
        "/staff/organizations/{organizationId}/audit-logs",
        "/staff/organizations/{organizationId}/audit-logs/{auditLogId}",
        "/staff/organizations/{organizationId}/audit-logs/export",
        "/staff/organizations/{organizationId}/audit-logs/histogram",
        "/staff-requests",
        "/staff-requests/{grantId}/approve",
        "/staff-requests/{grantId}/deny",
        "/staff-requests/{grantId}/revoke",
    }
    assert set(document["paths"]) == expected
    schemes = document["components"]["securitySchemes"]
    assert (
        schemes["bearerAuth"]["scheme"] == "bearer" and schemes["apiKeyAuth"]["name"] == "X-API-Key"
    )
    assert "Error" in document["components"]["schemas"]
    listing = document["paths"]["/audit-logs"]["get"]
    names = {p["name"] for p in listing["parameters"]}
    assert {
        "q",
        "path",
        "accountId",
        "workspaceId",
        "apiKeyId",
        "method",
        "statusCode",
        "authType",
        "resource",
        "from",
        "to",
        "limit",
        "cursor",
    } <= names
    assert "viewAuditLog" in listing["description"]


def test_every_route_of_the_api_is_documented(app, client):
    documented = client.get("/api/v1/openapi.json").get_json()["paths"]
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.rule == "/api/v1/openapi.json":
            continue
        path = rule.rule.removeprefix("/api/v1").replace("<", "{").replace(">", "}")
        methods = {m.lower() for m in rule.methods - {"HEAD", "OPTIONS"}}
        assert path in documented, path
        assert methods <= set(documented[path]), (path, methods)


@pytest.fixture
def fuzz_target(app):
    org = make_org(app, "Fuzz")
    api = Api(app.test_client())
    for index in range(3):
        api.post(
            "/api/v1/pathways",
            as_=org.owner,
            workspace=org.workspace["_id"],
            json={"name": f"p{index}"},
        )
    return app, api.token(org.owner), org


# The document is built from the code, not from an app, so it is loaded eagerly; each example
# is sent to the test's own app. (schemathesis' lazy fixture loader reads a pytest-internal
# attribute that pytest 9 removed.)
schema = schemathesis.openapi.from_dict(build_spec(document_app()))


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_500_and_responses_match_the_document(case, fuzz_target):
    app, token, org = fuzz_target
    case.operation.schema.app = app
    headers = {"Authorization": f"Bearer {token}"}
    if case.path.startswith("/pathways") and not (case.headers or {}).get("X-Workspace-Id"):
        headers["X-Workspace-Id"] = str(org.workspace["_id"])
    case.call_and_validate(
        app=app,
        headers=headers,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
