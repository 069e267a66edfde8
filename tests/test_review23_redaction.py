"""Issue #23, finding 1: redaction is linear in its input and bounded by what is kept.

Written as the attacker: one anonymous request whose body is built to make the scrubber
backtrack (``'A' * 40000`` took 23 s and pinned a worker). The guarantees are checked by
structure, never by a clock: every pattern runs on RE2 (a linear-time engine), the work the
scrubber does is counted in bytes scanned, and what reaches the scrubber is bounded by the
kept size plus a margin, whatever the body's size.
"""

from __future__ import annotations

import json
import re

import bson
import pytest
import re2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_app.audit.capture import redaction
from audit_app.audit.capture.record import SCRUB_MARGIN
from audit_app.audit.capture.redaction import REDACTED, Redactor
from audit_app.config import DEFAULT_REDACT_KEYS, DEFAULT_REDACT_WORDS

# The shapes the review found (each 2-5 s at 20 KB with Python's engine), and shapes made
# to hit every pattern and every Python loop of the scrubber.
ADVERSARIAL_UNITS = [
    "A",
    "pass",
    "a.",
    "a1-",
    "eyJa",
    "password=x ",
    '"token": "a\\"',
    "<password>",
    "<apiKey></x>",
    "<password>x</password>",
    "Bearer ",
    "basic%20",
    "http://a:b",
    "oal_",
    "\\noal_",
    "[{",
    '"secret": [',
    "%25",
    "\\u00",
    "é-",
    "pin_",
]


def _redactor() -> Redactor:
    return Redactor(DEFAULT_REDACT_KEYS, DEFAULT_REDACT_WORDS)


# Structure: a linear-time engine everywhere ------------------------------------------------


def test_every_pattern_of_the_scrubber_runs_on_a_linear_time_engine():
    """No Python ``re`` pattern is left in the module or in a Redactor: RE2 guarantees
    matching in time linear in the text, for any pattern and any input."""
    module_patterns = {
        name: value
        for name, value in vars(redaction).items()
        if hasattr(value, "finditer") and not isinstance(value, type(re))
    }
    instance_patterns = {
        name: value for name, value in vars(_redactor()).items() if hasattr(value, "finditer")
    }
    assert len(module_patterns) >= 6 and len(instance_patterns) == 2
    for name, pattern in {**module_patterns, **instance_patterns}.items():
        assert not isinstance(pattern, re.Pattern), name
        assert isinstance(pattern, re2._Regexp), name
    assert "re" not in vars(redaction), "the module must not fall back on Python's re"


class _Counting:
    """A pattern that counts the bytes each call may scan: from where it starts to where the
    match it returns ends (RE2 stops there), or to the end of the text."""

    def __init__(self, pattern, tally):
        self.pattern, self.tally = pattern, tally

    def search(self, text, pos=0):
        match = self.pattern.search(text, pos)
        self.tally.append((match.end() if match else len(text)) - pos)
        return match

    def finditer(self, text):
        self.tally.append(len(text))
        return self.pattern.finditer(text)

    def sub(self, repl, text):
        self.tally.append(len(text))
        return self.pattern.sub(repl, text)

    def findall(self, text):
        self.tally.append(len(text))
        return self.pattern.findall(text)


@pytest.fixture
def counted(monkeypatch):
    """A Redactor whose every pattern, and the value scanner, count the work they do."""
    tally: list[int] = []
    clean = _redactor()
    clean._text_pattern = _Counting(clean._text_pattern, tally)
    clean._xml_pattern = _Counting(clean._xml_pattern, tally)
    for name, value in list(vars(redaction).items()):
        if isinstance(value, re2._Regexp):
            monkeypatch.setattr(redaction, name, _Counting(value, tally))
    value_end = redaction._value_end

    def counting_value_end(data, start):
        end = value_end(data, start)
        tally.append(end - start)
        return end

    monkeypatch.setattr(redaction, "_value_end", counting_value_end)
    return clean, tally


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    units=st.lists(st.sampled_from(ADVERSARIAL_UNITS), min_size=1, max_size=3),
    repeat=st.integers(min_value=1, max_value=3000),
)
def test_scrubbing_work_is_linear_in_the_input(counted, units, repeat):
    """Whatever the shape, the bytes the scrubber's searches and loops may scan add up to a
    constant times the input: no search starts over from every position."""
    clean, tally = counted
    text = "".join(units) * repeat
    tally.clear()
    clean.text(text)
    size = len(text.encode("utf-8")) + 1
    # text() runs at most three passes (as sent, percent-decoded, \\u-decoded), each of
    # about ten scans; decoding can grow a text by at most 1.5x
    assert sum(tally) <= 60 * size, (units, repeat, sum(tally), size)


# Behaviour kept: what the old engine redacted, this one redacts --------------------------


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ('{"password": "S3cret-1"}', "S3cret-1"),
        ("x→password=S3cret-1 y", "S3cret-1"),
        ('{"passwörd_token"\u00a0: "S3cret-1"}', "S3cret-1"),
        ("<ns:ApiKey a='1'>S3cret-1</ns:APIKEY> ok", "S3cret-1"),
        ("<password>S3cret-1", "S3cret-1"),
        ("Authorization: Bearer\u00a0abc.def-S3cret", "abc.def-S3cret"),
        ("see https://user:S3cret-1@example.com/x", "S3cret-1"),
        ("\\noal_" + "k" * 40, "k" * 40),
    ],
)
def test_the_linear_scrubber_still_redacts(text, secret):
    cleaned = _redactor().text(text)
    assert secret not in cleaned and REDACTED in cleaned


@pytest.mark.parametrize(
    "text", ["compass=north", "author: Ana", "HTTPServer=nginx", "goal_completion_rate"]
)
def test_the_linear_scrubber_leaves_plain_words(text):
    assert _redactor().text(text) == text


# Bounded: only what is kept (plus a margin) is ever scrubbed ------------------------------


@pytest.fixture
def scrubbed_sizes(monkeypatch):
    """The length of every text handed to the scrubber during a request."""
    sizes: list[int] = []
    text = Redactor.text

    def spy(self, value):
        sizes.append(len(value))
        return text(self, value)

    monkeypatch.setattr(Redactor, "text", spy)
    return sizes


FOUR_MB = 4 * 1024 * 1024 - 4096


@pytest.mark.parametrize("unit", ["A", "pass", "a.", "a1-", "eyJa", "password=x "])
@pytest.mark.parametrize("content_type", ["text/plain", "application/json"])
def test_an_anonymous_four_megabyte_body_is_scrubbed_only_as_far_as_it_is_kept(
    make_app, mongo, scrubbed_sizes, unit, content_type
):
    app = make_app()
    limit = app.config["AUDIT_MAX_BODY_BYTES"]
    body = unit * (FOUR_MB // len(unit))
    answer = app.test_client().post("/api/v1/anything", data=body, content_type=content_type)
    assert answer.status_code == 404
    assert max(scrubbed_sizes) <= limit + 2 * SCRUB_MARGIN
    assert sum(scrubbed_sizes) <= 3 * (limit + 2 * SCRUB_MARGIN)
    stored = mongo["audit_app"].audit_logs.find_one({"path": "/api/v1/anything"})
    details = stored["request"]
    assert details["bodySize"] == len(body) and details["bodyTruncated"] is True
    assert len(details["body"].encode()) <= limit


def test_a_form_body_is_scrubbed_only_as_far_as_it_is_kept(make_app, mongo, scrubbed_sizes):
    app = make_app(MAX_FORM_MEMORY_SIZE=8 * 1024 * 1024)
    limit = app.config["AUDIT_MAX_BODY_BYTES"]
    fields = {f"f{i}": "a." * 20_000 for i in range(50)}
    answer = app.test_client().post(
        "/api/v1/anything", data=fields, content_type="application/x-www-form-urlencoded"
    )
    assert answer.status_code == 404
    assert sum(scrubbed_sizes) <= 4 * (limit + 2 * SCRUB_MARGIN)
    details = mongo["audit_app"].audit_logs.find_one({"path": "/api/v1/anything"})["request"]
    assert details["bodyType"] == "form" and details["bodyTruncated"] is True
    assert len(details["body"].encode()) <= limit


@pytest.mark.parametrize(
    "straddling",
    [
        ' "password": "' + "S" * 200 + '"',
        " Authorization: Bearer " + "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0." + "S" * 200,
        " oal_" + "S" * 200,
    ],
)
@pytest.mark.parametrize("content_type", ["text/plain", "application/json"])
def test_a_secret_cut_at_the_boundary_is_still_recognised(
    make_app, mongo, straddling, content_type
):
    """The cut falls inside the secret: the margin lets the scrubber see it whole, so not
    even its start is kept."""
    app = make_app(AUDIT_MAX_BODY_BYTES=1024)
    body = "x" * (1024 - 60) + straddling + " tail" * 5000
    app.test_client().post("/api/v1/anything", data=body, content_type=content_type)
    details = mongo["audit_app"].audit_logs.find_one({"path": "/api/v1/anything"})["request"]
    assert details["bodyTruncated"] is True
    assert "SSSS" not in details["body"]
    assert details["body"].startswith("x" * 500)  # the start is kept, the secret never


def test_a_body_under_the_limit_is_still_parsed_and_cleaned_as_json(make_app, mongo):
    app = make_app()
    body = {"name": "x", "nested": [{"apiKey": "S3cret-1"}]}
    app.test_client().post("/api/v1/anything", json=body)
    details = mongo["audit_app"].audit_logs.find_one({"path": "/api/v1/anything"})["request"]
    assert details["bodyType"] == "json"
    assert details["body"] == {"name": "x", "nested": [{"apiKey": REDACTED}]}
    assert "bodyTruncated" not in details
    bson.encode(details)


def test_refused_login_attempts_with_huge_bodies_are_recorded_at_bounded_cost(
    make_app, org, mongo, scrubbed_sizes
):
    """The review's second route: attempts naming a member are recorded in its organization,
    429s included, each with a large padding field."""
    app = make_app(RATELIMIT_LOGIN="2 per minute")
    client = app.test_client()
    limit = app.config["AUDIT_MAX_BODY_BYTES"]
    statuses = []
    for _ in range(4):
        body = {"email": org.admin.email, "password": "wrong", "pad": "a." * 1_000_000}
        statuses.append(
            client.post(
                "/api/v1/auth/token", data=json.dumps(body), content_type="application/json"
            ).status_code
        )
    assert 429 in statuses
    assert max(scrubbed_sizes) <= limit + 2 * SCRUB_MARGIN
    records = list(mongo["audit_app"].audit_logs.find({"path": "/api/v1/auth/token"}))
    assert len(records) == 4
    assert all(len(r["request"]["body"].encode()) <= limit for r in records)
