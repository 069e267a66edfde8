"""Make anything a client sent safe to store: secrets redacted, and valid BSON.

Four guarantees, whatever the input:

1. A value under a secret-looking key never survives, at any depth, inside arrays too.
   Keys are compared lower-cased with ``-`` and ``_`` removed; a key matches when it
   contains one of the configured words (``newPassword``, ``X-Api-Key``). Words of under
   five letters (``pwd``, ``cvv``) match only at the start or end of the key or as one of
   its camelCase/snake_case words (``cardCvv``, ``ssn_last4``), so ``className`` is not
   taken for an ``ssn``. Whole words (``pass``, ``pin``, ``auth``) match only as one of
   the key's words, so ``author`` and ``pinned`` stay readable.
1b. A secret is recognised by its value too, wherever a string holds it (a value, a key,
   free text, a header): this product's API keys and invitation tokens, JWTs (three
   base64url segments whose header decodes to a JSON object), ``Bearer``/``Basic``
   credentials, and the user and password of ``scheme://user:password@host``. Free text
   also loses ``key=value``, ``"key": value`` and ``<key>value</key>`` for secret keys.
2. The result is storable: keys that start with ``$`` or hold ``.``, ``%`` or NUL are
   escaped reversibly (``%24``, ``%2E``, ``%25``, ``%00``); integers beyond 64 bits become
   strings; lone surrogates become ``\\ud800``-style text; subtrees deeper than ``MAX_DEPTH``
   become their JSON text.
3. Nothing here recurses deeper than ``MAX_DEPTH``, so a hostile nesting cannot exhaust
   the stack.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import math
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

import re2

_Pattern = Any  # re2's compiled pattern (the package ships no type information)

REDACTED = "[REDACTED]"
MAX_DEPTH = 32
_INT64 = (-(2**63), 2**63 - 1)
_SHORT_WORD = 5


def normalize_key(key: str) -> str:
    return key.lower().replace("-", "").replace("_", "")


class Redactor:
    """Decides which keys are secret, and cleans values and text accordingly."""

    def __init__(self, words: Iterable[str], whole_words: Iterable[str] = ()):
        normalized = {normalize_key(w) for w in words if w.strip()}
        self.exact = {w for w in normalized if len(w) < _SHORT_WORD}
        self.contained = tuple(sorted(w for w in normalized if len(w) >= _SHORT_WORD))
        self.whole = {normalize_key(w) for w in whole_words if w.strip()}
        self._text_pattern = _text_pattern(self.exact | set(self.contained), self.whole)
        self._xml_pattern = _xml_pattern(self.exact | set(self.contained), self.whole)
        self._key_verdicts: dict[bytes, bool] = {}
        self._verdicts: dict[str, bool] = {}

    def is_secret(self, key) -> bool:
        if not isinstance(key, str):
            return False
        known = self._verdicts.get(key)
        if known is None:
            known = self._judge(key)
            if len(self._verdicts) < 4096:  # keys repeat (headers, a body's fields)
                self._verdicts[key] = known
        return known

    def _judge(self, key: str) -> bool:
        normalized = normalize_key(key)
        if any(w in normalized for w in self.contained):
            return True
        if self.exact and any(
            normalized.startswith(w) or normalized.endswith(w) for w in self.exact
        ):
            return True
        words = self.exact | self.whole
        return normalized in words or any(t.lower() in words for t in _key_tokens(key))

    # Structures --------------------------------------------------------------------

    def clean(self, value, depth: int = 0):
        """Return a redacted, BSON-safe copy of a JSON-like value."""
        if isinstance(value, dict):
            if depth >= MAX_DEPTH:
                return self.json_text(value)
            return {
                escape_key(self.text(key) if isinstance(key, str) else key): REDACTED
                if self.is_secret(key)
                else self.clean(item, depth + 1)
                for key, item in value.items()
            }
        if isinstance(value, (list, tuple)):
            if depth >= MAX_DEPTH:
                return self.json_text(value)
            return [self.clean(item, depth + 1) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return clean_scalar(value)

    def clean_mapping(self, mapping: dict[str, list[str]]) -> dict:
        """Clean a multi-valued mapping (query string, form): one value or a list of them."""
        cleaned: dict = {}
        for key, values in mapping.items():
            if self.is_secret(key):
                cleaned[escape_key(self.text(key))] = REDACTED
            else:
                kept = [self.text(v) if isinstance(v, str) else clean_scalar(v) for v in values]
                cleaned[escape_key(self.text(key))] = kept[0] if len(kept) == 1 else kept
        return cleaned

    def json_text(self, value) -> str:
        """Serialize any JSON value to text, redacting secret keys, without recursion."""
        out: list[str] = []
        stack: list = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, _Raw):
                out.append(item.text)
            elif isinstance(item, dict):
                parts: list = [_Raw("{")]
                for index, (key, child) in enumerate(item.items()):
                    if index:
                        parts.append(_Raw(", "))
                    parts.append(_Raw(json.dumps(self.text(str(key))) + ": "))
                    parts.append(_Raw(json.dumps(REDACTED)) if self.is_secret(key) else child)
                parts.append(_Raw("}"))
                stack.extend(reversed(parts))
            elif isinstance(item, (list, tuple)):
                parts = [_Raw("[")]
                for index, child in enumerate(item):
                    if index:
                        parts.append(_Raw(", "))
                    parts.append(child)
                parts.append(_Raw("]"))
                stack.extend(reversed(parts))
            elif isinstance(item, str):
                out.append(_scalar_json(self.text(item)))
            else:
                out.append(_scalar_json(item))
        return "".join(out)

    # Text --------------------------------------------------------------------------

    def text(self, text: str) -> str:
        """Any string made safe: secret keys' values and secret-looking values redacted.

        Percent-encoding cannot hide a secret (``?next=%20oal_...`` in a Referer): when the
        decoded text holds one, the decoded text is kept, redacted.
        """
        text = safe_str(text)
        if _inert(text):  # most strings: one scan, nothing any rule below could change
            return text
        text = self._text_once(text)
        for decode in (_percent_decoded, _json_unescaped):
            decoded = decode(text)
            if decoded != text:
                cleaned = self._text_once(decoded)
                if cleaned != decoded:
                    return cleaned
        return text

    def _text_once(self, text: str) -> str:
        # values first: "Authorization: Bearer <token>" would otherwise lose only the word
        # Bearer to the key rule, and the scheme rule would no longer see the credential
        text = scrub_values(text)
        text = self.redact_text(text)
        text = self.redact_xml(text)
        return scrub_values(text)

    def redact_text(self, text: str) -> str:
        """Redact ``key=value``, ``key: value`` and ``"key": <any JSON value>`` in free text.

        A key is secret when it holds one of the configured words (anywhere, words written
        with - or _ between letters too), or when ``is_secret`` says so of it (camelCase and
        acronym words such as ``userPass``, ``HTTPAuth``; keys such as ``user[password]``
        or ``password.old``): the rule for structured bodies, so that a JSON body scrubbed as
        text (one over the kept size) loses what its parsed form would.

        The value runs to its closing quote, to its matching bracket (an array or object,
        brackets inside strings ignored; unclosed means to the end), or to a delimiter.

        Linear in the text: one RE2 search per key, on the UTF-8 bytes (the delimiters are
        ASCII, so a byte scan finds the same value ends as a character scan).
        """
        text = safe_str(text)
        data = self._redact_pairs(text.encode("utf-8"), self._text_pattern, None)
        data = self._redact_pairs(data, _ANY_KEY, self._is_secret_key)
        return data.decode("utf-8")

    def _is_secret_key(self, key: bytes) -> bool:
        """``is_secret`` of a key found in text, remembered (keys repeat in a body)."""
        known = self._key_verdicts.get(key)
        if known is None:
            known = self.is_secret(key.decode("utf-8", "replace"))
            if len(self._key_verdicts) < 4096:
                self._key_verdicts[key] = known
        return known

    @staticmethod
    def _redact_pairs(
        data: bytes, pattern: _Pattern, secret: Callable[[bytes], bool] | None
    ) -> bytes:
        """Replace the value after each key the pattern finds (group 1, when ``secret``
        decides) with the redaction marker."""
        out, position = [], 0
        while True:
            match = pattern.search(data, _char_start(data, position - 1))
            if match is None:
                out.append(data[position:])
                return b"".join(out)
            start = match.end()
            out.append(data[position:start])
            if secret is not None and not secret(match.group(1)):
                position = start
                continue
            out.append(_REDACTED_BYTES)
            position = _value_end(data, start)
            if position == start:  # nothing to redact here; move on by one character
                following = _char_start(data, start + 1, forward=True)
                out.append(data[start:following])
                position = following

    def redact_xml(self, text: str) -> str:
        """``<password>x</password>``: the element's whole content, to its own closing tag
        (matched by name, case-insensitively) or to the end of the text.

        Linear: the closing tags are listed in one pass, then looked up by name."""
        out: list[str] = []
        position = 0
        closings: dict[str, list[tuple[int, int]]] | None = None
        starts: dict[str, list[int]] = {}
        for opening in self._xml_pattern.finditer(text):
            if opening.start() < position:
                continue  # inside content already redacted
            if closings is None:  # the closing tags, listed once, only if there is a secret
                closings = {}
                for m in _XML_CLOSING.finditer(text):
                    closings.setdefault(m.group(1).lower(), []).append((m.start(), m.end()))
                starts = {name: [c[0] for c in found] for name, found in closings.items()}
            content = opening.end()
            name = opening.group(2).lower()
            found = closings.get(name, [])
            index = bisect.bisect_left(starts.get(name, []), content)
            out.append(text[position:content])
            out.append(REDACTED)
            if index == len(found):
                return "".join(out)
            out.append(text[found[index][0] : found[index][1]])
            position = found[index][1]
        out.append(text[position:])
        return "".join(out)


class _Raw:
    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


def _scalar_json(value) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return json.dumps(str(value))


def clean_scalar(value):
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return value if _INT64[0] <= value <= _INT64[1] else str(value)
    if isinstance(value, str):
        return safe_str(value)
    return safe_str(str(value))


def safe_str(text: str) -> str:
    """Return text that encodes as UTF-8: a lone surrogate is written as ``\\ud800`` text."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


_KEY_ESCAPES = {"%": "%25", ".": "%2E", "\x00": "%00"}


def escape_key(key) -> str:
    """Make a key storable in MongoDB, reversibly: see ``unescape_key``."""
    key = safe_str(key if isinstance(key, str) else str(key))
    escaped = "".join(_KEY_ESCAPES.get(ch, ch) for ch in key)
    if escaped.startswith("$"):
        escaped = "%24" + escaped[1:]
    return escaped


_UNESCAPE = re2.compile(r"%(25|2E|00|24)")
_UNESCAPE_MAP = {"25": "%", "2E": ".", "00": "\x00", "24": "$"}


def unescape_key(key: str) -> str:
    return _UNESCAPE.sub(lambda m: _UNESCAPE_MAP[m.group(1)], key)


def unescape(value):
    """Undo ``escape_key`` throughout a stored structure, for display and export."""
    if isinstance(value, dict):
        return {unescape_key(k): unescape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unescape(v) for v in value]
    return value


_DELIMITERS = frozenset(b" \t\r\n,&;}]")
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")
_QUOTE, _APOSTROPHE, _BACKSLASH = ord('"'), ord("'"), ord("\\")
_REDACTED_BYTES = REDACTED.encode()


def _char_start(data: bytes, index: int, forward: bool = False) -> int:
    """The start of the UTF-8 character at ``index`` (or, ``forward``, of the next one)."""
    if index <= 0:
        return 0
    if index >= len(data):
        return len(data)
    step = 1 if forward else -1
    while 0 < index < len(data) and data[index] & 0xC0 == 0x80:
        index += step
    return index


def _value_end(data: bytes, start: int) -> int:
    """Where the value that begins at ``start`` ends (exclusive), in UTF-8 bytes."""
    if start >= len(data):
        return start
    first = data[start]
    if first in (_QUOTE, _APOSTROPHE):
        index = start + 1
        while index < len(data):
            if data[index] == _BACKSLASH and first == _QUOTE:
                index += 2
                continue
            if data[index] == first:
                return index + 1
            index += 1
        return len(data)
    if first in _OPEN:
        depth, index, quoted = 0, start, False
        while index < len(data):
            char = data[index]
            if quoted:
                if char == _BACKSLASH:
                    index += 1
                elif char == _QUOTE:
                    quoted = False
            elif char == _QUOTE:
                quoted = True
            elif char in _OPEN:
                depth += 1
            elif char in _CLOSE:
                depth -= 1
                if depth == 0:
                    return index + 1
            index += 1
        return len(data)
    index = start
    while index < len(data) and data[index] not in _DELIMITERS:
        index += 1
    return index


# Every pattern here runs on RE2, whose matching is linear in the text: no input can make a
# search backtrack (a body of 'A' * 40000 took 23 s with Python's engine). RE2 has no
# look-around or back-references, so a look-behind becomes a consumed character before the
# match (searches start one character early), a look-ahead a check in Python, and the XML
# closing tag a look-up by name. Python's \w and \s are Unicode: so are these classes.
_W = r"\pL\pN_"  # Python's \w
_WORD = rf"[{_W}-]"
_SPACE = r"[\t\n\x0b\f\r\x1c-\x1f\x{85}\pZ]"  # Python's \s
_OPTIONS = re2.Options()
_OPTIONS.max_mem = 64 << 20  # the DFA's cache: patterns with many keywords need more than 8 MB


def _compile(pattern: str) -> _Pattern:
    return re2.compile(pattern, _OPTIONS)


def _alternatives(words: frozenset[str] | set[str]) -> str:
    # Each word may be written with - or _ between its letters (api_key, api-key, apiKey).
    return "|".join(
        "[-_]?".join(re2.escape(ch) for ch in word) for word in sorted(words, key=len, reverse=True)
    )


def _key_pattern(words: set[str], whole: frozenset[str] | set[str]) -> str:
    """A key, as written in text, that holds one of the words (whole ones as a word)."""
    keys = [rf"{_WORD}*(?:" + _alternatives(words) + rf"){_WORD}*"] if words else []
    if whole:
        keys.append(rf"(?:{_WORD}*[-_])?(?:" + _alternatives(whole) + rf")(?:[-_]{_WORD}*)?")
    return "(?:" + "|".join(keys) + ")" if keys else r"[^\x00-\x{10FFFF}]"


def _text_pattern(words: set[str], whole: frozenset[str] | set[str] = frozenset()) -> _Pattern:
    key = _key_pattern(words, whole)
    # (?:^|[^\w-]) stands for the look-behind (?<![\w-]): the key starts a word
    return _compile(rf"(?i)(?:^|[^{_W}-])[\"']?" + key + rf"[\"']?{_SPACE}*(?:=>|[:=]){_SPACE}*")


def _xml_pattern(words: set[str], whole: frozenset[str] | set[str] = frozenset()) -> _Pattern:
    """The opening tag of ``<password>x</password>`` and ``<ns:apiKey a="b">x</ns:apiKey>``."""
    key = _key_pattern(words, whole)
    return _compile(rf"(?i)(<((?:{_WORD}+:)?" + key + rf")(?:{_SPACE}[^<>]*)?>)")


# any key written in text (quoted or not, with the brackets and dots of form and config
# keys), for the ``is_secret`` rule
_ANY_KEY = _compile(rf"(?:^|[^{_W}-])[\"']?([{_W}\-.\[\]()]+)[\"']?{_SPACE}*(?:=>|[:=]){_SPACE}*")
_XML_CLOSING = _compile(rf"</((?:{_WORD}+:)?{_WORD}+){_SPACE}*>")
_TOKENS = _compile(r"\p{Lu}*\p{Ll}+|\p{Lu}+|\p{Nd}+")


def _key_tokens(key: str) -> list[str]:
    """camelCase, snake_case and ACRONYMWords of a key: ``HTTPServer`` -> HTTP, Server."""
    tokens: list[str] = []
    for token in _TOKENS.findall(key):
        upper = 0
        while upper < len(token) and token[upper].isupper():
            upper += 1
        if 2 <= upper < len(token):  # ACRONYMWord: the last capital starts the next word
            tokens.extend((token[: upper - 1], token[upper - 1 :]))
        else:
            tokens.append(token)
    return tokens


# Secrets recognised by their value ----------------------------------------------------

# Each of these keeps group 1, the character before the secret (the look-behind's stand-in:
# no letter or digit, or a JSON escape such as \n right before), and replaces the rest.
_BEFORE = r"(^|[^A-Za-z0-9]|\\[ntrbf])"
# This product's API keys (oal_ + 40) and invitation tokens (inv_ + 43), 30 characters at
# least, so that an identifier such as goal_completion_rate stays.
_OWN_SECRETS = _compile(_BEFORE + r"(?:oal|inv)_[A-Za-z0-9_-]{30,}")
# Bearer and Basic credentials, the scheme kept: also URL-encoded (Bearer%20...).
_SCHEME_CREDENTIALS = _compile(
    _BEFORE + rf"(?i)(bearer|basic)({_SPACE}+|%20|\+)([A-Za-z0-9._~+/=%-]{{6,}})"
)
# The user and password of scheme://user:password@host (also URL-encoded ones).
_URL_USERINFO = _compile(r"(?i)\b([a-z][a-z0-9+.-]*:(?://|%2F%2F))[^\s/?]*?(?::|%3A)[^\s/?]*@")
# Three base64url segments: a JWT when the first decodes to a JSON object. The header of a
# JWT starts with "ey" ('{"'); a letter glued before it (a JSON escape: \neyJ...) is skipped.
_JWT_CANDIDATE = _compile(r"([A-Za-z0-9_-]{3,})\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*")


def _is_jwt_header(segment: str) -> bool:
    try:
        decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        return isinstance(json.loads(decoded), dict)
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        return False


def _redact_jwt(match: Any) -> str:
    header = match.group(1)
    for start in [0] + [i for i in range(1, min(len(header), 4)) if header.startswith("ey", i)]:
        if _is_jwt_header(header[start:]):
            return match.group(0)[:start] + REDACTED
    return match.group(0)


def _looks_like_a_credential(token: str) -> bool:
    """A credential's shape: a digit or a symbol, or mixed case over 12 characters.

    So "Basic workflow" and "bearer instructions" stay readable."""
    if any(c.isdigit() or c in "._~+/=%-" for c in token):
        return True
    return len(token) >= 12 and not token.islower() and not token.isupper()


def _redact_credential(match: Any) -> str:
    if not _looks_like_a_credential(match.group(4)):
        return match.group(0)
    return match.group(1) + match.group(2) + match.group(3) + REDACTED


# What every rule of this module needs to find before it changes anything: a key's ``=``,
# ``:`` or ``<tag>``, a URL's user info (``@``), an escape (``%``, ``\u``), this product's
# key prefixes, a Bearer or Basic scheme, or the first two dots of three base64url segments
# (a JWT). A string without any of them is left as it is by ``text`` and ``scrub_values``,
# so one RE2 scan (about 1.5 µs) replaces a dozen (tests/test_redaction_fast_path.py checks
# the equivalence on generated text).
_TRIGGER = _compile(r"[=:<%@\\]|oal_|inv_|(?i:bearer|basic)|[A-Za-z0-9_-]{3}\.[A-Za-z0-9_-]{2,}\.")


def _inert(text: str) -> bool:
    return _TRIGGER.search(text) is None


def _percent_decoded(text: str) -> str:
    if "%" not in text:
        return text
    once = safe_str(unquote(text))
    return safe_str(unquote(once)) if "%" in once else once  # double encoding too


_JSON_ESCAPE = _compile(r"\\u([0-9a-fA-F]{4})")


def _json_unescaped(text: str) -> str:
    """``\u006fal_`` in text that is JSON but not valid JSON: read as its characters."""
    if "\\u" not in text:
        return text
    return safe_str(_JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text))


def scrub_decoded(text: str) -> str:
    """``scrub_values`` that percent-encoding or backslash-u escapes cannot get around (a
    message of ours quoting client input with ``repr``): when a decoded form holds a
    secret, the decoded form is kept, scrubbed."""
    text = scrub_values(safe_str(text))
    for decode in (_percent_decoded, _json_unescaped):
        decoded = decode(text)
        if decoded != text:
            cleaned = scrub_values(decoded)
            if cleaned != decoded:
                return cleaned
    return text


def scrub_values(text: str) -> str:
    """Redact every secret recognised by its value in a string."""
    if not text or len(text) < 8:
        return text
    text = safe_str(text)
    if _inert(text):
        return text
    text = _OWN_SECRETS.sub(lambda m: m.group(1) + REDACTED, text)
    text = _SCHEME_CREDENTIALS.sub(_redact_credential, text)
    text = _URL_USERINFO.sub(lambda m: m.group(1) + REDACTED + "@", text)
    return _JWT_CANDIDATE.sub(_redact_jwt, text)
