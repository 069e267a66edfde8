"""The scrubber's fast path: a string with nothing any rule looks for is returned after one
scan. It must never skip a string that a rule would change: on generated text, whatever
``_inert`` lets through untouched, the whole scrubber leaves untouched too."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from audit_app.audit.capture import redaction
from audit_app.audit.capture.redaction import Redactor, scrub_values
from audit_app.config import DEFAULT_REDACT_KEYS, DEFAULT_REDACT_WORDS

REDACTOR = Redactor(DEFAULT_REDACT_KEYS, DEFAULT_REDACT_WORDS)

# pieces that the rules look for, and pieces that look like them but are not
FRAGMENTS = [
    "Bearer ",
    "bAsIc ",
    "Basic%20",
    "bearer+",
    "oal_",
    "inv_",
    "eyJ",
    "eyJhbGciOiJIUzI1NiJ9",
    "IHsiYSI6MX0",  # ' {"a":1}' in base64url: a JWT header that does not start with ey
    ".",
    "..",
    "password",
    "token",
    "apiKey",
    "secret",
    "=",
    ":",
    "=>",
    "@",
    "://",
    "<",
    ">",
    "</password>",
    "%",
    "%3A",
    "%40",
    "\\u",
    "\\u006fal_",
    "\\n",
    " ",
    "/",
    "-",
    "_",
    '"',
    "'",
    "a1B2c3D4e5F6g7H8",
    "0123456789abcdef0123456789abcdef01234567",
    "ü",
    "ß",
    "\u0130",
    "\ud800",
]
TEXT = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(min_size=1, max_size=6)), max_size=14
).map("".join)


def _slow_text(text: str) -> str:
    """The scrubber with its fast path off."""
    real = redaction._inert
    redaction._inert = lambda _text: False
    try:
        return REDACTOR.text(text)
    finally:
        redaction._inert = real


def _slow_scrub(text: str) -> str:
    real = redaction._inert
    redaction._inert = lambda _text: False
    try:
        return scrub_values(text)
    finally:
        redaction._inert = real


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXT)
@example("Authorization Bearer abcdef123456")
@example("IHsiYSI6MX0.e30.sig")
@example("oal_" + "A" * 40)
@example("Basic dXNlcjpwYXNzd29yZA")
def test_what_the_fast_path_lets_through_no_rule_would_change(text):
    assert REDACTOR.text(text) == _slow_text(text)
    assert scrub_values(text) == _slow_scrub(text)


def test_ordinary_request_strings_take_the_fast_path():
    """What a cheap request's record holds: a path, a user agent, a content type."""
    for text in (
        "/api/v1/workspaces/6567abcdef0123456789abcd",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
        "python-requests/2.32.3",
        "application/json",
        "pathways",
    ):
        assert redaction._inert(text), text


def test_a_secret_in_a_short_plain_string_is_still_found():
    assert REDACTOR.text("Bearer abcdef123456") == "Bearer [REDACTED]"
    assert REDACTOR.text("IHsiYSI6MX0.e30.sig") == "[REDACTED]"
    assert "oal_" not in REDACTOR.text("key oal_" + "A" * 40)


def test_a_key_verdict_is_remembered_and_the_memory_is_bounded():
    redactor = Redactor(DEFAULT_REDACT_KEYS, DEFAULT_REDACT_WORDS)
    assert redactor.is_secret("X-Api-Key") and not redactor.is_secret("User-Agent")
    assert redactor._verdicts == {"X-Api-Key": True, "User-Agent": False}
    for number in range(5000):
        redactor.is_secret(f"field{number}")
    assert len(redactor._verdicts) == 4096
    assert redactor.is_secret("newPassword5000")  # past the bound: judged, not remembered
