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
