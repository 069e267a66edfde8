"""Adversarial review of #25's path search (trigram index) and SQL histogram."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .factories import Api, audit_record, make_org, settled

NOW = datetime.now(UTC).replace(microsecond=0)


def _embedded(make_app, tmp_path, **extra):
    return make_app(
        MONGO_CLIENT=None, MONGO_URI=None, EMBEDDED_STORE_DIR=str(tmp_path / "e"), **extra
    )


def _insert(app, records):
    from audit_app.db import get_audit_db

    settled(app)
    with app.app_context():
        get_audit_db().audit_logs.insert_many([dict(r) for r in records])


def _search(api, person, **params):
    answer = api.get("/api/v1/audit-logs", as_=person, query_string=params)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def test_the_sql_histogram_counts_a_float_status_the_walk_does_not(make_app, tmp_path):
    """bucket_counts promises 'what a walk of iter_records would count' (the MongoDB and
    mongomock histogram): the walk classes only int codes (counters.status_class), but
    status_code's NUMERIC affinity turns 404.0 into an integer, so the embedded chart
    counts a 4xx the MongoDB chart of the same records does not."""
    answers = {}
    for name, store in (("embedded", True), ("mongomock", False)):
        app = _embedded(make_app, tmp_path / name) if store else make_app()
        org = make_org(app, f"Org{name}")
        api = Api(app.test_client())
        api.token(org.owner)
        at = NOW - timedelta(hours=2)
        _insert(
            app,
            [
                audit_record(org.id, path="/api/v1/pathways/1", statusCode=404.0, created_at=at),
                audit_record(org.id, path="/api/v1/pathways/2", statusCode=404, created_at=at),
            ],
        )
        answer = api.get(
            "/api/v1/audit-logs/histogram",
            as_=org.owner,
            query_string={"q": "pathways", "interval": "day"},
        )
        assert answer.status_code == 200, answer.get_json()
        answers[name] = sum(b["statusClasses"]["4xx"] for b in answer.get_json()["buckets"])
    assert answers["embedded"] == answers["mongomock"], answers
