"""Check one audit record against the organization's signed log, offline.

    python -m audit_app.verifier record.proof.json --key 'audit.example+1a2b3c4d+AR...'

This file needs nothing but Python 3.11's standard library and ``cryptography`` (for
Ed25519): an auditor may copy it alone and run ``python verifier.py FILE --key KEY``. It
never reads the database; everything it trusts is the public key given on the command line.

What it checks (docs/integrity.md, "The verifiable log", explains each step, so it can also
be followed by hand):

1. the checkpoint is a C2SP signed note whose signature by ``--key`` verifies, and whose
   origin is ``<installation origin>/<organizationId>`` for the record's organization;
2. the record's leaf: ``leaf = JCS(record)``, the RFC 8785 canonical JSON of the record in
   MongoDB's canonical Extended JSON (every number is a typed string there, so JCS here is
   sorted keys, no spaces, and JSON string escaping), and its hash
   ``SHA-256(0x00 || leaf)`` (RFC 9162, section 2.1.1);
3. the inclusion proof (RFC 9162, section 2.1.3.2) from that leaf at ``index`` to the
   checkpoint's root hash for its tree size.

A consistency proof between two checkpoints (``verify_consistency``) is RFC 9162, section
2.1.4.2; ``flask witness`` uses it.

With ``--tsa-root ROOTS.pem`` it also checks the checkpoint's RFC 3161 timestamp (an
installation with ``AUDIT_TSA_URL`` has one in each proof): granted, of the SHA-256 of the
checkpoint's exact note text, and signed by a time-stamping certificate that chains to one
of those roots, so the checkpoint existed by its ``genTime`` on the authority's word. That
check needs ``rfc3161-client`` (``pip install rfc3161-client``) besides ``cryptography``.

Exit codes: 0 verified, 1 not verified (and why), 2 usage error.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import re
import sys
from dataclasses import dataclass

NOTE_DASH = "\u2014 "
# a tree size or a leaf index: ASCII digits, no leading zero, below 2**63
_NUMBER = re.compile(r"(?:0|[1-9][0-9]{0,18})")
ED25519 = 1
TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
PROOF_FORMAT = "organization-audit-log/record-proof@v1"


class VerificationError(Exception):
    """The record, its proof or the checkpoint does not check out: the message says why."""


# RFC 9162 hashing -----------------------------------------------------------------------


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()


# The leaf: RFC 8785 (JCS) of the record's canonical Extended JSON ------------------------


def _utf16_key(text: str) -> bytes:
    return text.encode("utf-16-be", "surrogatepass")


def jcs(value) -> str:
    """RFC 8785 canonical JSON of a value made of objects, arrays, strings, booleans, null
    and integers (canonical Extended JSON writes every other number as a typed string)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(jcs(item) for item in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=_utf16_key)
        return "{" + ",".join(f"{jcs(key)}:{jcs(value[key])}" for key in keys) + "}"
    raise VerificationError(
        f"the record holds a {type(value).__name__}, which canonical Extended JSON never does"
    )


# characters whose order differs between UTF-16 code units (JCS) and code points (Python's
# sort): a supplementary character against one of U+E000..U+FFFF
_SUPPLEMENTARY = re.compile("[\U00010000-\U0010ffff]")
_HIGH_BMP = re.compile("[\ue000-\uffff]")


def jcs_text(value) -> str:
    """``jcs(value)``, by the json module's C encoder when that gives the same text: it
    escapes strings as RFC 8785 does, and sorts keys by code point, which is UTF-16 order
    unless a text holds both a supplementary character and one of U+E000..U+FFFF."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError):
        return jcs(value)
    if (_SUPPLEMENTARY.search(text) and _HIGH_BMP.search(text)) or _has_float(text, value):
        return jcs(value)
    return text


def _has_float(text: str, value) -> bool:
    """A bare JSON number other than an integer (never in canonical Extended JSON)."""
    if not any(c in text for c in ".eE"):
        return False
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def leaf_bytes(record: dict) -> bytes:
    """The bytes the log hashes for a record given in canonical Extended JSON."""
    return jcs_text(record).encode("utf-8", "surrogatepass")


def record_leaf_hash(record: dict) -> bytes:
    return leaf_hash(leaf_bytes(record))


# RFC 9162 proofs ------------------------------------------------------------------------


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2: the root the proof leads to from ``leaf`` (a leaf hash)."""
    if not 0 <= index < size:
        raise VerificationError(f"index {index} is not in a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise VerificationError("the inclusion proof is longer than the tree allows")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("the inclusion proof is shorter than the tree needs")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes):
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise VerificationError(
            f"the inclusion proof for leaf {index} does not lead to the root of the tree of "
            f"size {size}: the record or the proof differs from what the log holds"
        )


def verify_consistency(
    size1: int, size2: int, proof: list[bytes], root1: bytes, root2: bytes
) -> None:
    """RFC 9162 section 2.1.4.2: the tree of ``size2`` extends the tree of ``size1``."""
    if size1 > size2:
        raise VerificationError(f"tree size {size2} is smaller than {size1}: a rollback")
    if size1 == size2:
        if proof or root1 != root2:
            raise VerificationError(
                f"two different roots for tree size {size1}: a fork"
                if root1 != root2
                else "a consistency proof between equal sizes must be empty"
            )
        return
    if size1 == 0:
        if proof:
            raise VerificationError("a consistency proof from the empty tree must be empty")
        return
    if not proof:
        raise VerificationError("the consistency proof is empty")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("the consistency proof is longer than the trees allow")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("the consistency proof is shorter than the trees need")
    if fr != root1:
        raise VerificationError(
            f"the tree of size {size2} does not contain the tree of size {size1} that was "
            "seen before: history was rewritten"
        )
    if sr != root2:
        raise VerificationError(
            f"the consistency proof does not lead to the root of the tree of size {size2}"
        )


# C2SP signed notes and checkpoints --------------------------------------------------------


@dataclass(frozen=True)
class VerifierKey:
    name: str
    key_id: bytes
    public_key: bytes

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """``<name>+<8 hex key id>+<base64(0x01 || 32-byte Ed25519 public key)>``."""
        parts = text.strip().split("+", 2)  # base64 may hold "+" too
        if len(parts) != 3 or not parts[0]:
            raise VerificationError("a key is <name>+<key id>+<base64 key>")
        name, hex_id, encoded = parts
        try:
            raw = base64.b64decode(encoded, validate=True)
            key_id = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError) as error:
            raise VerificationError(f"the key is not well formed: {error}") from None
        if len(key_id) != 4 or len(raw) != 33 or raw[0] != ED25519:
            raise VerificationError("the key is not an Ed25519 note key")
        if key_id != note_key_id(name, raw[1:]):
            raise VerificationError("the key's id does not match its name and public key")
        return cls(name, key_id, raw[1:])

    def __str__(self) -> str:
        encoded = base64.b64encode(bytes([ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"


def note_key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def open_note(note: str, key: VerifierKey) -> str:
    """The note's text, once a signature by ``key`` verifies (C2SP signed-note)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text, sep, signatures = note.partition("\n\n")
    if not sep or not text:
        raise VerificationError("the checkpoint is not a signed note")
    text += "\n"
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise VerificationError("the checkpoint holds control characters")
    verified = False
    for line in signatures.splitlines():
        if not line.startswith(NOTE_DASH):
            raise VerificationError("a signature line of the checkpoint is malformed")
        name, _, encoded = line[len(NOTE_DASH) :].rpartition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise VerificationError("a signature of the checkpoint is not base64") from None
        if name != key.name or raw[:4] != key.key_id:
            continue  # another key's signature (a witness's): not ours to check
        try:
            Ed25519PublicKey.from_public_bytes(key.public_key).verify(raw[4:], text.encode())
        except InvalidSignature:
            raise VerificationError(f"the checkpoint's signature by {key.name} is bad") from None
        verified = True
    if not verified:
        raise VerificationError(f"the checkpoint is not signed by the key {key.name}")
    return text


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise VerificationError("a checkpoint is origin, tree size and root hash, a line each")
        origin, size, root = lines[0], lines[1], lines[2]
        if not _NUMBER.fullmatch(size):
            raise VerificationError(f"the checkpoint's tree size {size[:30]!r} is not a number")
        try:
            decoded = base64.b64decode(root, validate=True)
        except binascii.Error:
            raise VerificationError("the checkpoint's root hash is not base64") from None
        if len(decoded) != 32:
            raise VerificationError("the checkpoint's root hash is not 32 bytes")
        return cls(origin, int(size), decoded)


def verified_checkpoint(note: str, key: VerifierKey, origin: str | None = None) -> Checkpoint:
    checkpoint = Checkpoint.parse(open_note(note, key))
    if origin is not None and checkpoint.origin != origin:
        raise VerificationError(
            f"the checkpoint is for the log {checkpoint.origin!r}, not {origin!r}"
        )
    return checkpoint


def b64hashes(values: list[str]) -> list[bytes]:
    try:
        decoded = [base64.b64decode(value, validate=True) for value in values]
    except (binascii.Error, TypeError):
        raise VerificationError("a proof hash is not base64") from None
    if any(len(h) != 32 for h in decoded):
        raise VerificationError("a proof hash is not 32 bytes")
    return decoded


# C2SP tlog-proof ----------------------------------------------------------------------------


def parse_tlog_proof(text: str) -> tuple[int, list[bytes], str]:
    """(index, inclusion proof, checkpoint note) of a c2sp.org/tlog-proof@v1 text."""
    head, sep, note = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or not lines or lines[0] != TLOG_PROOF_HEADER:
        raise VerificationError(f"a tlog proof starts with {TLOG_PROOF_HEADER}")
    rest = lines[1:]
    if rest and rest[0].startswith("extra "):
        rest = rest[1:]
    if not rest or not rest[0].startswith("index ") or not _NUMBER.fullmatch(rest[0][6:]):
        raise VerificationError("a tlog proof names its index, a number, on its second line")
    return int(rest[0][6:]), b64hashes(rest[1:]), note


def format_tlog_proof(index: int, proof: list[bytes], note: str) -> str:
    lines = [TLOG_PROOF_HEADER, f"index {index}"]
    lines += [base64.b64encode(h).decode() for h in proof]
    return "\n".join(lines) + "\n\n" + note


# A record with its proof, as "Download proof" and GET .../proof give it -------------------


@dataclass(frozen=True)
class Verified:
    organization_id: str
    record_id: str
    index: int
    checkpoint: Checkpoint


def verify_record_proof(document: dict, key: VerifierKey) -> Verified:
    """Check a downloaded record and its proof; return what was proved."""
    if not isinstance(document, dict) or document.get("format") != PROOF_FORMAT:
        raise VerificationError(f"the file is not a record proof ({PROOF_FORMAT})")
    record = document.get("record")
    if not isinstance(record, dict):
        raise VerificationError("the file holds no record")
    organization = _oid(record.get("organizationId"))
    record_id = _oid(record.get("_id"))
    tlog = document.get("proof")
    if not isinstance(tlog, str):
        raise VerificationError("the file holds no proof")
    index, hashes, note = parse_tlog_proof(tlog)
    origin = document.get("origin")
    try:
        leaf = record_leaf_hash(record)
    except RecursionError:
        raise VerificationError("the record is nested too deeply to be an audit record") from None
    if not isinstance(origin, str) or not origin.endswith("/" + organization):
        raise VerificationError("the proof names no log of the record's organization")
    checkpoint = verified_checkpoint(note, key, origin)
    verify_inclusion(index, checkpoint.size, leaf, hashes, checkpoint.root)
    return Verified(organization, record_id, index, checkpoint)


# RFC 3161 timestamps of a checkpoint ----------------------------------------------------

SHA256_OID = "2.16.840.1.101.3.4.2.1"


def verify_timestamp(response, note: str, roots=(), nonce: int | None = None):
    """Check an RFC 3161 answer (``rfc3161_client.TimeStampResponse``) for a checkpoint note:
    granted, of the SHA-256 of the note's bytes (and of ``nonce``), and, given roots, signed
    by a certificate for time stamping that chains to one of them. Returns its genTime."""
    try:
        return _verify_timestamp(response, note, roots, nonce)
    except ValueError as error:  # the library's parse of a part (a token-less answer, say)
        raise VerificationError(f"the timestamp is not an RFC 3161 answer ({error})") from None


def _verify_timestamp(response, note: str, roots, nonce: int | None):
    from rfc3161_client import PKIStatus, VerifierBuilder
    from rfc3161_client import VerificationError as Refused

    if response.status != PKIStatus.GRANTED:
        raise VerificationError(f"the authority did not grant it (status {response.status})")
    imprint = response.tst_info.message_imprint
    if imprint.hash_algorithm.dotted_string != SHA256_OID:
        raise VerificationError("the timestamp is not of a SHA-256 hash")
    if imprint.message != hashlib.sha256(note.encode("utf-8")).digest():
        raise VerificationError("the timestamp is of another checkpoint")
    if nonce is not None and response.tst_info.nonce != nonce:
        raise VerificationError("the timestamp answers another request (nonce)")
    if roots:
        try:
            VerifierBuilder(roots=list(roots), nonce=nonce).build().verify_message(
                response, note.encode("utf-8")
            )
        except (Refused, ValueError) as error:
            raise VerificationError(
                f"the authority's signature does not verify ({error})"
            ) from None
    return response.tst_info.gen_time


def decode_timestamp(token):
    """A timestamp as files and the API carry it: base64 of the DER ``TimeStampResp``."""
    from rfc3161_client import decode_timestamp_response

    if not isinstance(token, str):
        raise VerificationError("the timestamp holds no token")
    try:
        return decode_timestamp_response(base64.b64decode(token, validate=True))
    except (ValueError, TypeError) as error:
        raise VerificationError(f"the timestamp is not an RFC 3161 answer ({error})") from None


def load_roots(path: str) -> list:
    """The PEM certificates of a file."""
    from cryptography import x509

    with open(path, "rb") as handle:
        data = handle.read(1024 * 1024)
    try:
        roots = x509.load_pem_x509_certificates(data)
    except ValueError as error:
        raise VerificationError(f"{path} holds no PEM certificate ({error})") from None
    return roots


def _oid(value) -> str:
    if isinstance(value, dict) and isinstance(value.get("$oid"), str):
        return value["$oid"]
    raise VerificationError("the record's ids are not in canonical Extended JSON")


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object naming a key twice reads differently to different tools (RFC 8785 and
    I-JSON refuse it): the file is refused, so what is verified is what anyone reads."""
    found: dict = {}
    for key, value in pairs:
        if key in found:
            raise VerificationError(f"the file names {key[:40]!r} twice in one object")
        found[key] = value
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m audit_app.verifier",
        description="Check an audit record and its proof against the log's public key.",
    )
    parser.add_argument("file", help="the record's proof file (Download proof)")
    parser.add_argument("--key", required=True, help="the log's public key (<name>+<id>+<key>)")
    parser.add_argument(
        "--tsa-root",
        help="PEM root certificate(s) of the timestamp authority: check the checkpoint's "
        "RFC 3161 timestamp too (needs rfc3161-client)",
    )
    args = parser.parse_args(argv)
    roots = None
    if args.tsa_root is not None:  # a usage error before anything is verified
        try:
            roots = _timestamp_roots(args.tsa_root)
        except (ImportError, OSError, VerificationError) as error:
            print(str(error), file=sys.stderr)
            return 2
    try:
        with open(args.file, encoding="utf-8") as handle:
            document = json.load(handle, object_pairs_hook=_no_duplicates)
    except VerificationError as error:
        print(f"NOT VERIFIED: {error}")
        return 1
    except (OSError, ValueError, RecursionError) as error:
        print(
            f"Cannot read {args.file}: {str(error)[:200] or type(error).__name__}", file=sys.stderr
        )
        return 2
    try:
        key = VerifierKey.parse(args.key)
        result = verify_record_proof(document, key)
    except VerificationError as error:
        print(f"NOT VERIFIED: {error}")
        return 1
    print(
        f"VERIFIED: record {result.record_id} of organization {result.organization_id} is "
        f"leaf {result.index} of the log {result.checkpoint.origin}, tree size "
        f"{result.checkpoint.size}, signed by {key.name}"
    )
    return _timestamp(document, roots)


def _timestamp_roots(path: str) -> list:
    """--tsa-root's certificates, with the library the check needs."""
    try:
        import rfc3161_client  # noqa: F401
    except ImportError:
        raise ImportError("Checking a timestamp needs rfc3161-client (pip install it).") from None
    try:
        return load_roots(path)
    except OSError as error:
        raise OSError(f"Cannot read {path}: {error.strerror or error}") from None


def _timestamp(document: dict, roots: list | None) -> int:
    """The checkpoint's RFC 3161 timestamp: checked with --tsa-root, else mentioned."""
    stamp = document.get("timestamp")
    token = stamp.get("token") if isinstance(stamp, dict) else None
    if roots is None:
        if token is not None:
            print(
                "The checkpoint carries an RFC 3161 timestamp (not checked): give --tsa-root "
                "with the timestamp authority's root certificate to check it."
            )
        return 0
    _, _, note = parse_tlog_proof(document["proof"])  # the note just verified
    try:
        if token is None:
            raise VerificationError("the checkpoint carries no RFC 3161 timestamp")
        gen_time = verify_timestamp(decode_timestamp(token), note, roots)
    except VerificationError as error:
        print(f"TIMESTAMP NOT VERIFIED: {error}")
        return 1
    print(f"TIMESTAMPED: the checkpoint existed by {gen_time.isoformat()} (RFC 3161)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
