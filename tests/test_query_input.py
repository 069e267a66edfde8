"""Search input a client can send that once became a 500 or a 503 (issue: MongoDB path)."""

import pytest


@pytest.mark.parametrize(
    "query,field",
    [
        ("q=a%00b", "q"),
        ("path=%00", "path"),
        ("q=line%0Abreak", "q"),
        ("to=0001-01-01T00:00:00%2B14:00", "to"),
        ("from=9999-12-31T23:59:59-14:00", "from"),
        ("from=1969-12-31", "from"),
        ("statusCode=4xx%0A", "statusCode"),  # "$" also matches before a final newline
        ("resource=pathways%0A", "resource"),
    ],
)
def test_unsearchable_input_is_a_400_naming_the_parameter(api, org, query, field):
    for path in ("/api/v1/audit-logs", "/api/v1/audit-logs/export?format=csv&"):
        url = (
            path
            + ("&" if "?" in path and not path.endswith("&") else "?" if "?" not in path else "")
            + query
        )
        answer = api.get(url, as_=org.admin)
        assert answer.status_code == 400, (url, answer.get_data(as_text=True))
        assert answer.get_json()["error"]["field"] == field


LONE = "x\\ud800y"  # JSON's escape for half a surrogate pair: valid JSON, not text


@pytest.mark.parametrize(
    "method,path,body,field,collection",
    [
        ("post", "/api/v1/workspaces", f'{{"name": "{LONE}"}}', "name", "workspaces"),
        ("post", "/api/v1/roles", f'{{"name": "{LONE}", "permissions": []}}', "name", "roles"),
        ("post", "/api/v1/api-keys", f'{{"name": "{LONE}"}}', "name", "api_keys"),
        ("patch", "/api/v1/organization", f'{{"name": "{LONE}"}}', "name", None),
    ],
)
def test_a_lone_surrogate_in_stored_text_is_a_400_and_the_request_is_recorded(
    api, org, db, method, path, body, field, collection
):
    before = db[collection].count_documents({}) if collection else None
    answer = getattr(api, method)(path, data=body, content_type="application/json", as_=org.admin)
    assert answer.status_code == 400, answer.get_data(as_text=True)
    error = answer.get_json()["error"]
    assert error["field"] == field and "surrogate" in error["message"]
    if collection:
        assert db[collection].count_documents({}) == before
    assert db.organizations.find_one({"_id": org.id})["name"] != "x\ud800y"
    [record] = list(db.audit_logs.find({"path": path, "statusCode": 400}))
    assert "\\ud800" in str(record["request"]["body"])  # kept as visible text, stored fine


def test_concurrent_lists_on_the_embedded_store_never_fail(make_app, tmp_path):
    """Lists in parallel threads once shared one projection dict that the engine changed
    under the others ("cannot currently mix including and excluding fields")."""
    import sys
    import threading

    from audit_app.db import get_audit_db

    from .factories import audit_record, make_org

    app = make_app(
        MONGO_CLIENT=None,
        MONGO_URI=None,
        EMBEDDED_STORE_DIR=str(tmp_path / "s"),
        # this is about the race, not the time budget: a busy CI machine with the switch
        # interval at 1 µs can take a list past the default 5 s (a 503 query_timeout)
        AUDIT_QUERY_TIMEOUT_MS=120_000,
    )
    org = make_org(app, "Racy")
    with app.app_context():
        get_audit_db().audit_logs.insert_many([audit_record(org.id) for _ in range(120)])
    statuses: list[int] = []

    def lister():
        client = app.test_client()
        for _ in range(6):
            answer = client.get("/api/v1/audit-logs?limit=100", headers={"X-API-Key": org.api_key})
            statuses.append(answer.status_code)

    threads = [threading.Thread(target=lister) for _ in range(6)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        sys.setswitchinterval(interval)
    assert len(statuses) == 36 and set(statuses) == {200}
