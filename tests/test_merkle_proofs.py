"""The verifiable log's hashing and proofs, against a reference written here from RFC 9162.

The reference (``ref_*``) is a direct transcription of RFC 9162 section 2.1 over a list of
leaves in memory: it shares no code with ``audit_app.audit.integrity.merkle`` (tiles) or
``audit_app.verifier``. Published vectors pin both: the roots of the RFC 6962 test leaves
(certificate-transparency's and Trillian's test data) and the Ed25519 note signature of
``golang.org/x/mod/sumdb/note``'s tests.
"""

from __future__ import annotations

import base64
import hashlib
import random

import mongomock
import pytest
from bson import ObjectId

from audit_app import verifier
from audit_app.audit.integrity import merkle


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def ref_leaf(data: bytes) -> bytes:
    return sha(b"\x00" + data)


def ref_k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return sha(b"")
    if n == 1:
        return ref_leaf(leaves[0])
    k = ref_k(n)
    return sha(b"\x01" + ref_mth(leaves[:k]) + ref_mth(leaves[k:]))


def ref_path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = ref_k(n)
    if m < k:
        return [*ref_path(m, leaves[:k]), ref_mth(leaves[k:])]
    return [*ref_path(m - k, leaves[k:]), ref_mth(leaves[:k])]


def ref_subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [ref_mth(leaves)]
    k = ref_k(n)
    if m <= k:
        return [*ref_subproof(m, leaves[:k], whole), ref_mth(leaves[k:])]
    return [*ref_subproof(m - k, leaves[k:], False), ref_mth(leaves[:k])]


def ref_consistency(m: int, leaves: list[bytes]) -> list[bytes]:
    return ref_subproof(m, leaves, True) if 0 < m < len(leaves) else []


# RFC 6962 test leaves and the roots of their first 1..8 (certificate-transparency-go,
# Trillian's merkle/testonly)
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def tiles_with(leaves: list[bytes], batches=(1, 2, 97, 256, 1000)) -> merkle.Tiles:
    """Tiles grown in uneven batches, as seals of windows of different sizes grow them."""
    tiles = merkle.Tiles(mongomock.MongoClient().db, ObjectId())
    size, position, turn = 0, 0, 0
    while position < len(leaves):
        step = batches[turn % len(batches)]
        chunk = leaves[position : position + step]
        size = merkle.append(tiles, size, [verifier.leaf_hash(leaf) for leaf in chunk])
        position += len(chunk)
        turn += 1
    assert size == len(leaves)
    return tiles


def test_the_reference_and_the_tiles_give_the_published_ct_roots():
    tiles = tiles_with(CT_LEAVES, batches=(1, 3, 2))
    for n, expected in enumerate(CT_ROOTS, start=1):
        assert ref_mth(CT_LEAVES[:n]).hex() == expected
        assert merkle.root(tiles, n).hex() == expected


LEAVES = [f"record {i}".encode() for i in range(300)]


@pytest.fixture(scope="module")
def tiles300():
    return tiles_with(LEAVES)


@pytest.mark.parametrize("n", range(1, 301))
def test_inclusion_and_consistency_equal_the_reference_at_every_size_to_300(tiles300, n):
    leaves = LEAVES[:n]
    root = ref_mth(leaves)
    assert merkle.root(tiles300, n) == root
    rng = random.Random(n)
    for m in {0, n - 1, n // 2, *(rng.randrange(n) for _ in range(3))}:
        proof, served_root = merkle.inclusion(tiles300, m, n)
        assert served_root == root
        assert proof == ref_path(m, leaves)
        verifier.verify_inclusion(m, n, ref_leaf(leaves[m]), proof, root)
    for old in {1, n // 2 or 1, n - 1 or 1, *(rng.randrange(1, n + 1) for _ in range(3))}:
        proof = merkle.consistency(tiles300, old, n)
        assert proof == ref_consistency(old, leaves)
        verifier.verify_consistency(old, n, proof, ref_mth(leaves[:old]), root)


def test_every_leaf_and_every_old_size_of_a_few_trees(tiles300):
    for n in (1, 2, 3, 5, 8, 13, 64, 255, 256, 257):
        leaves = LEAVES[:n]
        for m in range(n):
            proof, _ = merkle.inclusion(tiles300, m, n)
            assert proof == ref_path(m, leaves)
        for old in range(0, n + 1):
            assert merkle.consistency(tiles300, old, n) == ref_consistency(old, leaves)


@pytest.mark.parametrize("n", [1023, 4097, 65_537 + 300])
def test_larger_trees_across_tile_levels(n):
    rng = random.Random(n)
    leaves = [rng.randbytes(8) for _ in range(n)]
    tiles = tiles_with(leaves, batches=(5000, 1, 255, 7))
    root = ref_mth(leaves)
    assert merkle.root(tiles, n) == root
    for m in (0, n - 1, rng.randrange(n), rng.randrange(n)):
        proof, _ = merkle.inclusion(tiles, m, n)
        assert proof == ref_path(m, leaves)
    for old in (1, 256, 65_536 if n > 65_536 else n - 1, rng.randrange(1, n)):
        assert merkle.consistency(tiles, old, n) == ref_consistency(old, leaves)


def test_the_verifier_refuses_a_proof_that_does_not_lead_to_the_root(tiles300):
    n, m = 300, 123
    proof, root = merkle.inclusion(tiles300, m, n)
    leaf = ref_leaf(LEAVES[m])
    verifier.verify_inclusion(m, n, leaf, proof, root)
    bad = [
        (m + 1, n, leaf, proof),  # another index
        (m, n, ref_leaf(LEAVES[m + 1]), proof),  # another record
        (m, n, leaf, proof[:-1]),  # a hash dropped
        (m, n, leaf, [*proof, proof[0]]),  # a hash added
        (m, n, leaf, [proof[1], proof[0], *proof[2:]]),  # reordered
        (m, 2 * n, leaf, proof),  # a tree size whose path has another shape
    ]
    # (a size whose path has the same shape leads to the same root: a proof says nothing of
    # the size by itself, which is why the size comes from the signed checkpoint)
    for args in bad:
        with pytest.raises(verifier.VerificationError):
            verifier.verify_inclusion(*args, root)
    consistency = merkle.consistency(tiles300, 100, n)
    with pytest.raises(verifier.VerificationError):
        verifier.verify_consistency(100, n, consistency, ref_mth(LEAVES[:99]), root)
    with pytest.raises(verifier.VerificationError, match="rollback"):
        verifier.verify_consistency(n, 100, consistency, root, ref_mth(LEAVES[:100]))
    with pytest.raises(verifier.VerificationError, match="fork"):
        verifier.verify_consistency(100, 100, [], ref_mth(LEAVES[:100]), root)


def test_a_proof_reads_its_tiles_with_one_query_at_a_million_leaves():
    n = 1_000_003
    tiles = merkle.Tiles(mongomock.MongoClient().db, ObjectId())
    seed = hashlib.sha256(b"seed").digest()
    merkle.append(tiles, 0, (sha(seed + i.to_bytes(4, "big")) for i in range(n)))
    for m in (0, 654_321, n - 1):
        tiles.reads = 0
        proof, root = merkle.inclusion(tiles, m, n)
        assert tiles.reads == 1  # one find: {_id: {$in: [the tiles on the path]}}
        leaf = sha(seed + m.to_bytes(4, "big"))
        verifier.verify_inclusion(m, n, leaf, proof, root)
        assert len(proof) <= 20  # ceil(log2(1,000,003)): 640 bytes at most
    planner = merkle.Hashes()
    merkle._path(planner, 654_321, 0, n)
    merkle.subtree_root(planner, 0, n)
    assert len(planner.wanted) <= 8  # tiles, 8 KiB at most each


# Signed notes -----------------------------------------------------------------------------

GO_NOTE_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_NOTE_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_NOTE_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE_SIGNATURE = (
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
)


def test_note_keys_and_signatures_match_golang_sumdb_note_vectors():
    notary = merkle.Notary.from_settings("PeterNeumann", "unused", GO_NOTE_KEY)
    assert str(notary.verifier_key) == GO_NOTE_VKEY
    signature = notary._key.sign(GO_NOTE_TEXT.encode())
    assert base64.b64encode(notary.verifier_key.key_id + signature).decode() == GO_NOTE_SIGNATURE
    note = f"{GO_NOTE_TEXT}\n\u2014 PeterNeumann {GO_NOTE_SIGNATURE}\n"
    assert verifier.open_note(note, verifier.VerifierKey.parse(GO_NOTE_VKEY)) == GO_NOTE_TEXT
    forged = note.replace("problem is.", "problem is!")
    with pytest.raises(verifier.VerificationError, match="bad"):
        verifier.open_note(forged, verifier.VerifierKey.parse(GO_NOTE_VKEY))


def test_a_checkpoint_is_a_c2sp_signed_note_under_its_origin():
    notary = merkle.Notary.from_settings("audit.example", "a signing key", None)
    organization = ObjectId()
    root = sha(b"root")
    note = notary.sign(organization, 42, root)
    text, _, signatures = note.partition("\n\n")
    assert text == f"audit.example/{organization}\n42\n{base64.b64encode(root).decode()}"
    assert signatures.startswith("\u2014 audit.example ")
    checkpoint = verifier.verified_checkpoint(
        note, notary.verifier_key, f"audit.example/{organization}"
    )
    assert (checkpoint.size, checkpoint.root) == (42, root)
    other = merkle.Notary.from_settings("audit.example", "another signing key", None)
    with pytest.raises(verifier.VerificationError):
        verifier.verified_checkpoint(note, other.verifier_key)
    with pytest.raises(verifier.VerificationError, match="not"):
        verifier.verified_checkpoint(note, notary.verifier_key, f"audit.example/{ObjectId()}")
    # the same key from the same settings: a restart signs with the key it published
    again = merkle.Notary.from_settings("audit.example", "a signing key", None)
    assert str(again.verifier_key) == str(notary.verifier_key)


def test_the_leaf_is_rfc8785_canonical_json_of_canonical_extended_json():
    from datetime import UTC, datetime

    import rfc8785  # Trail of Bits' RFC 8785 implementation, a test dependency
    from bson import Int64

    record = {
        "_id": ObjectId("65f0c0ffee0000000000abcd"),
        "b": 'é\u2028\U0001f600\x07"\\',
        "a": [1, Int64(2), 1.5, None, True, {"z": 1, "\U0001f600": 2, "\ue000": 3}],
        "storedAt": datetime(2026, 12, 2, 6, 0, 0, 123000, tzinfo=UTC),
    }
    extended = merkle.canonical_extended_json(record)
    assert extended["a"][0] == {"$numberInt": "1"}
    assert extended["a"][1] == {"$numberLong": "2"}
    assert merkle.record_leaf(record) == rfc8785.dumps(extended)


def test_the_documented_leaf_test_vector_is_what_the_code_computes():
    import json
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "integrity.md").read_text()
    section = text.split("- Test vector", 1)[1]
    record_json, leaf_text = re.findall(r"```(?:json|text)\n(.*?)\n\s*```", section, re.S)[:2]
    leaf_hash = re.search(r"leaf hash: `([0-9a-f]{64})`", section).group(1)
    record = json.loads(record_json.strip())
    assert verifier.leaf_bytes(record).decode() == leaf_text.strip()
    assert verifier.record_leaf_hash(record).hex() == leaf_hash
    from bson import json_util

    stored = json_util.loads(record_json.strip())
    assert merkle.record_leaf(stored).decode() == leaf_text.strip()


def _values():
    from datetime import UTC, datetime

    from bson import Decimal128, Int64
    from hypothesis import strategies as st

    text = st.text(max_size=8)
    scalars = st.one_of(
        text,
        st.booleans(),
        st.none(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.integers(min_value=-(2**63), max_value=2**63 - 1).map(Int64),
        st.floats(allow_nan=True, allow_infinity=True),
        st.builds(ObjectId),
        st.datetimes(
            min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
        ).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)),
        st.integers(min_value=-(10**12), max_value=10**12).map(lambda n: Decimal128(f"{n}.125")),
        st.binary(max_size=6),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(text, children, max_size=4)
        ),
        max_leaves=12,
    )


def test_the_fast_leaf_encoding_is_json_util_and_rfc8785_for_any_record():
    import json

    import rfc8785
    from bson import json_util
    from bson.json_util import CANONICAL_JSON_OPTIONS
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=400, deadline=None)
    @given(st.dictionaries(st.text(max_size=8), _values(), max_size=6))
    def check(record):
        expected = json.loads(json_util.dumps(record, json_options=CANONICAL_JSON_OPTIONS))
        extended = merkle.canonical_extended_json(record)
        assert extended == expected
        assert verifier.leaf_bytes(extended) == rfc8785.dumps(expected)
        assert verifier.jcs(extended).encode("utf-8") == rfc8785.dumps(expected)

    check()
