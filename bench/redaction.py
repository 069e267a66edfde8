"""Benchmark: what a hostile body costs the request that records it.

Prints, for each shape the third review found (and a few denser ones), the time to build
the audit record of an anonymous ``POST`` whose body is 4 KB and 4 MB of that shape, side by
side in one run, and their difference: since only the kept part (``AUDIT_MAX_BODY_BYTES``)
plus a margin is ever scrubbed, a 4 MB body costs what a body of about 72 KB costs.
Also prints the scrubber alone on 20 KB of each shape with RE2 (in use) and with Python's
``re`` engine on the review's JWT pattern, for the record of why the engine changed.

Usage: python -m bench.redaction [--repeat N]
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time

from audit_app import create_app
from audit_app.audit.capture.record import capture_body
from audit_app.audit.capture.redaction import Redactor
from audit_app.config import DEFAULT_REDACT_KEYS, DEFAULT_REDACT_WORDS

SHAPES = {
    "A": "A",
    "pass": "pass",
    "a.": "a.",
    "a1-": "a1-",
    "eyJ+a": "a",
    "password=x ": "password=x ",
    "<password>x</password>": "<password>x</password>",
    "Bearer ": "Bearer ",
}
SECRET = "bench-secret-key-0123456789-0123456789-0123456789"


def body(shape: str, size: int) -> str:
    unit = SHAPES[shape]
    text = unit * (size // len(unit))
    return "eyJ" + text[3:] if shape == "eyJ+a" else text


def record_ms(app, data: str, content_type: str, repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        with app.test_request_context(
            "/api/v1/anything", method="POST", data=data, content_type=content_type
        ):
            from flask import request

            started = time.perf_counter()
            capture_body(request)
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            {
                "SECRET_KEY": SECRET,
                "MONGO_URI": "mongomock://localhost",
                "INSTANCE_PATH": tmp,
                "AUDIT_SPOOL_DIR": tmp + "/spool",
                "AUDIT_REPLAY_INTERVAL": 0,
                "AUDIT_STREAM_INTERVAL": 0,
                "AUDIT_PURGE_INTERVAL": 0,
                "MAX_CONTENT_LENGTH": 5 * 1024 * 1024,
            }
        )
        print("Capturing the body of an anonymous POST (median of", args.repeat, "runs)")
        print(f"{'shape':<24}{'type':<18}{'4 KB ms':>9}{'4 MB ms':>9}{'4 MB - 4 KB':>13}")
        for shape in SHAPES:
            for content_type in ("text/plain", "application/json"):
                small = record_ms(app, body(shape, 4 * 1024), content_type, args.repeat)
                large = record_ms(app, body(shape, 4 * 1024 * 1024), content_type, args.repeat)
                print(
                    f"{shape:<24}{content_type:<18}{small:>9.2f}{large:>9.2f}{large - small:>13.2f}"
                )
    clean = Redactor(DEFAULT_REDACT_KEYS, DEFAULT_REDACT_WORDS)
    old_jwt = re.compile(r"([A-Za-z0-9_-]{3,})\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*")
    print()
    print("The scrubber alone on 20 KB; Python's re on the old JWT pattern alone")
    print(f"{'shape':<24}{'RE2 text() ms':>15}{'re JWT ms':>11}")
    for shape in SHAPES:
        text = body(shape, 20 * 1024)
        started = time.perf_counter()
        clean.text(text)
        ours = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        old_jwt.sub("", text)
        old = (time.perf_counter() - started) * 1000
        print(f"{shape:<24}{ours:>15.2f}{old:>11.2f}")


if __name__ == "__main__":
    main()
