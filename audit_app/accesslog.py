"""gunicorn's access log, with the same redaction as the audit log (``logger_class``).

The default access log writes the raw request line and the Referer: a password, an API key
or a token in a query string would land on disk in clear. This logger redacts every atom
it writes: query values of secret-looking keys, secrets recognised by their value (API
keys, invitation tokens, JWTs, Bearer/Basic credentials, ``user:password@`` in URLs) in
the path, the query and every header, and never writes credential headers or the
environment.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from gunicorn.glogging import Logger

from .audit.capture.record import NEVER_STORED_HEADERS
from .audit.capture.redaction import REDACTED, Redactor
from .config import DEFAULT_REDACT_KEYS, DEFAULT_REDACT_WORDS, _env_list


@lru_cache(maxsize=1)
def _redactor() -> Redactor:
    return Redactor(
        _env_list("AUDIT_REDACT_KEYS", DEFAULT_REDACT_KEYS),
        _env_list("AUDIT_REDACT_WORDS", DEFAULT_REDACT_WORDS),
    )


def redact_query(query: str) -> str:
    """A query string with the values of secret keys, and secret values, redacted."""
    if not query:
        return query
    clean = _redactor()
    pairs = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        safe_key = clean.text(key)
        safe_value = REDACTED if clean.is_secret(key) else clean.text(value)
        pairs.append(f"{quote(safe_key, safe='[]')}={quote(safe_value, safe='[]')}")
    return "&".join(pairs)


def redact_url(url: str) -> str:
    """A path or a full URL (a Referer) with its query and its secrets redacted."""
    if not url or url == "-":
        return url
    clean = _redactor()
    try:
        parts = urlsplit(url)
    except ValueError:
        return clean.text(url)
    rebuilt = urlunsplit(
        (parts.scheme, parts.netloc, parts.path, redact_query(parts.query), parts.fragment)
    )
    return clean.text(rebuilt)


def redact_request_line(line: str) -> str:
    method, _, rest = line.partition(" ")
    target, _, protocol = rest.rpartition(" ")
    if not target:
        return redact_url(line)
    return f"{method} {redact_url(target)} {protocol}"


class RedactingLogger(Logger):
    """gunicorn's logger, whose access-log atoms go through the audit log's redaction."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        clean = _redactor()
        atoms["r"] = redact_request_line(atoms.get("r") or "")
        atoms["U"] = redact_url(atoms.get("U") or "")
        atoms["q"] = redact_query(atoms.get("q") or "")
        atoms["f"] = redact_url(atoms.get("f") or "-")
        atoms["a"] = clean.text(atoms.get("a") or "-")
        atoms["u"] = "-"  # the user of a Basic credential
        for key in list(atoms):
            if key.endswith("}e"):
                atoms[key] = "-"
            elif key.endswith("}i") or key.endswith("}o"):
                name = key[1:-2]
                if name in NEVER_STORED_HEADERS or clean.is_secret(name):
                    atoms[key] = REDACTED
                elif name == "referer":
                    atoms[key] = redact_url(atoms[key])
                else:
                    atoms[key] = clean.text(str(atoms[key]))
        return atoms
