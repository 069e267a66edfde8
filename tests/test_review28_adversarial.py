"""Review of #28 (the verifiable log), as an adversary who is NOT only the database holder:
a hostile proof file given to the offline verifier, a hostile server answering ``flask
witness``, odd API parameters and callers, two sealers at once, and retention's 410.

Each test asserts the safe behaviour: it fails if the hole exists.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit_app import verifier
from audit_app import witness as witness_module
from audit_app.api_keys import repository as api_keys
from audit_app.audit.capture.hooks import store_journaled
from audit_app.audit.integrity import merkle, sealing
from audit_app.db import get_audit_db, get_db

from .factories import Api, make_org

SEALING = {
    "AUDIT_SEAL_INTERVAL": 1,
    "AUDIT_SEAL_DELAY": 0,
    "AUDIT_LOG_ORIGIN": "audit.test",
    "AUDIT_SEAL_IN_BACKGROUND": False,
}


@pytest.fixture(autouse=True)
def seal_up_to_now(monkeypatch):
    monkeypatch.setattr(sealing, "UP_TO_NOW_MARGIN", timedelta(0))


def seal(app, org):
    time.sleep(0.002)
    with app.app_context():
        store_journaled()
    return sealing.seal_now(app, only=org.id, up_to_now=True)


def some_records(api, token, count):
    for _ in range(count):
        assert api.get("/api/v1/workspaces", token=token).status_code == 200


# An offline log of our own: a key, a one-leaf tree, a signed checkpoint -------------------

ORG = "65a000000000000000000001"
OTHER_ORG = "65a000000000000000000002"


class Signer:
    def __init__(self, name="audit.test"):
        self.name = name
        self.private = Ed25519PrivateKey.generate()
        public = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key = verifier.VerifierKey(name, verifier.note_key_id(name, public), public)

    def signature_line(self, text: str, name: str | None = None, bad=False) -> str:
        signature = self.private.sign(text.encode())
        if bad:
            signature = bytes([signature[0] ^ 1]) + signature[1:]
        encoded = base64.b64encode(self.key.key_id + signature).decode()
        return f"{verifier.NOTE_DASH}{name or self.name} {encoded}\n"

    def note(self, text: str, extra_lines: str = "") -> str:
        return text + "\n" + self.signature_line(text) + extra_lines

    def checkpoint(self, origin: str, size, root: bytes, extension: str = "") -> str:
        text = f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n{extension}"
        return self.note(text)


def a_record(org=ORG, **extra) -> dict:
    record = {
        "_id": {"$oid": "65a0000000000000000000aa"},
        "organizationId": {"$oid": org},
        "action": "workspace.list",
        "statusCode": {"$numberInt": "200"},
        "createdAt": {"$date": {"$numberLong": "1700000000000"}},
    }
    record.update(extra)
    return record


def proof_file(signer: Signer, record: dict, *, index="0", size=1, origin=None, note=None):
    origin = origin or f"audit.test/{record['organizationId']['$oid']}"
    root = verifier.record_leaf_hash(record)
    note = note or signer.checkpoint(origin, size, root)
    return {
        "format": verifier.PROOF_FORMAT,
        "origin": origin,
        "record": record,
        "proof": f"{verifier.TLOG_PROOF_HEADER}\nindex {index}\n\n{note}",
    }


def run_main(tmp_path, content, key: str) -> tuple[int, str]:
    """The verifier's main, in process: an exception escaping it is a traceback."""
    path = tmp_path / "proof.json"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_text(json.dumps(content), encoding="utf-8")
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = verifier.main([str(path), "--key", key])
    return code, out.getvalue()


def test_control_a_well_formed_one_leaf_proof_verifies(tmp_path):
    signer = Signer()
    code, said = run_main(tmp_path, proof_file(signer, a_record()), str(signer.key))
    assert code == 0 and said.startswith("VERIFIED"), said


def test_verifier_a_json_file_that_is_not_an_object_is_refused_without_a_traceback(tmp_path):
    signer = Signer()
    for content in ("[]", '"text"', "42", "null"):
        code, said = run_main(tmp_path, content, str(signer.key))
        assert code in (1, 2) and "VERIFIED:" not in said.replace("NOT VERIFIED", ""), said


def test_verifier_an_index_of_unicode_digits_is_refused_without_a_traceback(tmp_path):
    signer = Signer()
    # "²".isdigit() is True but int("²") raises
    code, said = run_main(tmp_path, proof_file(signer, a_record(), index="\u00b2"), str(signer.key))
    assert code == 1, said


def test_verifier_a_huge_index_is_refused_without_a_traceback(tmp_path):
    signer = Signer()
    # more digits than int() converts (Python's 4300-digit limit)
    code, said = run_main(
        tmp_path, proof_file(signer, a_record(), index="9" * 5000), str(signer.key)
    )
    assert code == 1, said


def test_verifier_a_signed_checkpoint_with_a_unicode_digit_or_huge_size_is_refused(tmp_path):
    signer = Signer()
    record = a_record()
    root = verifier.record_leaf_hash(record)
    for size in ("\u00b9", "1" + "0" * 5000):
        note = signer.checkpoint(f"audit.test/{ORG}", size, root)
        code, said = run_main(tmp_path, proof_file(signer, record, note=note), str(signer.key))
        assert code == 1, said


def test_verifier_a_deeply_nested_file_or_record_is_refused_without_a_traceback(tmp_path):
    signer = Signer()
    code, said = run_main(tmp_path, "[" * 200_000 + "]" * 200_000, str(signer.key))
    assert code in (1, 2), said
    record = a_record()
    deep: object = "x"
    for _ in range(5000):
        deep = [deep]
    record["details"] = deep
    document = proof_file(signer, a_record())
    document["record"] = record
    text = json.dumps(document) if False else None  # json.dumps itself would recurse
    body = json.dumps({k: v for k, v in document.items() if k != "record"})
    record_text = json.dumps({k: v for k, v in record.items() if k != "details"})
    text = (
        body[:-1]
        + ', "record": '
        + record_text[:-1]
        + ', "details": '
        + "[" * 5000
        + '"x"'
        + "]" * 5000
        + "}}"
    )
    code, said = run_main(tmp_path, text, str(signer.key))
    assert code in (1, 2), said


def test_verifier_a_record_with_duplicate_keys_never_verifies(tmp_path):
    """A reader of the file sees the first "action"; json.load keeps the last, and that is
    the one the log holds: VERIFIED must not be printed over a file two readers read
    differently (RFC 8785 / I-JSON: no duplicate names)."""
    signer = Signer()
    document = proof_file(signer, a_record())
    text = json.dumps(document)
    assert '"action": "workspace.list"' in text
    forged = text.replace(
        '"action": "workspace.list"',
        '"action": "organization.delete", "action": "workspace.list"',
        1,
    )
    code, said = run_main(tmp_path, forged, str(signer.key))
    assert code != 0 and not said.startswith("VERIFIED"), said


def test_verifier_two_signatures_by_the_key_name_one_bad_is_refused(tmp_path):
    signer = Signer()
    record = a_record()
    text = f"audit.test/{ORG}\n1\n{base64.b64encode(verifier.record_leaf_hash(record)).decode()}\n"
    for lines in (
        signer.signature_line(text) + signer.signature_line(text, bad=True),
        signer.signature_line(text, bad=True) + signer.signature_line(text),
    ):
        note = text + "\n" + lines
        code, said = run_main(tmp_path, proof_file(signer, record, note=note), str(signer.key))
        assert code == 1 and "bad" in said, said


def test_verifier_odd_signatures_and_lines_never_verify_nor_trace(tmp_path):
    signer = Signer()
    record = a_record()
    root = verifier.record_leaf_hash(record)
    text = f"audit.test/{ORG}\n1\n{base64.b64encode(root).decode()}\n"
    short = base64.b64encode(signer.key.key_id + b"\x00" * 10).decode()
    notes = [
        text + "\n" + f"{verifier.NOTE_DASH}audit.test {short}\n",  # truncated signature
        text + "\n" + f"{verifier.NOTE_DASH}audit.test ***\n",  # not base64
        text.replace("\n", "\r\n") + "\r\n" + signer.signature_line(text),  # CRLF
        text + "\n" + signer.signature_line(text, name="audit.test+x"),  # name with '+'
        text + "\n" + signer.signature_line(text) + "not a signature line\n",
        text + "\n",  # no signature
    ]
    for note in notes:
        code, said = run_main(tmp_path, proof_file(signer, record, note=note), str(signer.key))
        assert code == 1, (note, said)


def test_verifier_hostile_shapes_are_refused_without_a_traceback(tmp_path):
    signer = Signer()
    good = proof_file(signer, a_record())
    variants = []
    for field in ("format", "origin", "record", "proof"):
        for value in (None, 1, 1.5, True, [], {}, "x" * 10, -1, 10**30):
            variants.append({**good, field: value})
    for field in ("_id", "organizationId"):
        for value in (None, 1, "x", {"$oid": 1}, {"$oid": None}, []):
            variants.append({**good, "record": {**good["record"], field: value}})
    for value in (-1.0, -0.0, float("nan"), 1.5, 10**40):
        variants.append({**good, "record": {**good["record"], "statusCode": value}})
    for index in ("-1", "1", "2", "", " 0", "0x0", "0 "):
        variants.append(proof_file(signer, a_record(), index=index))
    bad_hash = proof_file(signer, a_record())
    bad_hash["proof"] = bad_hash["proof"].replace("index 0\n", "index 0\n!!!\n")
    variants.append(bad_hash)
    for document in variants:
        path = tmp_path / "v.json"
        path.write_text(json.dumps(document, allow_nan=True))
        code, said = run_main(tmp_path, path.read_text(), str(signer.key))
        if document is not good and code == 0:
            # only a byte-identical record and proof may verify
            assert verifier.leaf_bytes(document["record"]) == verifier.leaf_bytes(good["record"]), (
                said
            )
        assert code in (0, 1, 2), said


def test_verifier_an_origin_for_another_org_or_a_record_of_another_org_is_refused(tmp_path):
    signer = Signer()
    record = a_record()
    # the checkpoint is for the other organization's log, the record names ORG
    document = proof_file(signer, record, origin=f"audit.test/{OTHER_ORG}")
    code, said = run_main(tmp_path, document, str(signer.key))
    assert code == 1, said
    # the record names OTHER_ORG but is "proved" against ORG's log
    other = a_record(OTHER_ORG)
    root = verifier.record_leaf_hash(other)
    note = signer.checkpoint(f"audit.test/{ORG}", 1, root)
    document = proof_file(signer, other, origin=f"audit.test/{ORG}", note=note)
    code, said = run_main(tmp_path, document, str(signer.key))
    assert code == 1, said


def test_verifier_a_canonical_number_and_a_bare_number_are_different_leaves(tmp_path):
    signer = Signer()
    document = proof_file(signer, a_record())
    for value in (200, 200.0, "200", {"$numberLong": "200"}, {"$numberInt": "0200"}):
        changed = json.loads(json.dumps(document))
        changed["record"]["statusCode"] = value
        code, said = run_main(tmp_path, changed, str(signer.key))
        assert code == 1, (value, said)
    # key order and unicode normalisation: order is free, normalisation is not
    reordered = json.loads(json.dumps(document))
    reordered["record"] = dict(reversed(list(reordered["record"].items())))
    assert run_main(tmp_path, reordered, str(signer.key))[0] == 0
    nfc = proof_file(signer, a_record(action="caf\u00e9"))
    nfd = json.loads(json.dumps(nfc))
    nfd["record"]["action"] = "cafe\u0301"
    assert run_main(tmp_path, nfd, str(signer.key))[0] == 1


# The witness against a hostile server -----------------------------------------------------


class Hostile:
    """A tiny HTTP server answering each path with what the test says."""

    def __init__(self):
        self.answers: dict[str, object] = {}
        self.seen: list[tuple[str, dict]] = []
        hostile = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                hostile.seen.append((self.path, dict(self.headers)))
                path = self.path.split("?", 1)[0]
                answer = hostile.answers.get(path)
                if callable(answer):
                    answer(self)
                    return
                body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile():
    server = Hostile()
    yield server
    server.close()


WITNESSED_ORG = "65b000000000000000000001"


def run_witness(app, url, state, *extra, token="k" * 20):
    runner = app.test_cli_runner()
    return runner.invoke(
        args=[
            "witness",
            "--url",
            url,
            "--organization",
            WITNESSED_ORG,
            "--state",
            str(state),
            *extra,
        ],
        env={"AUDIT_WITNESS_TOKEN": token},
    )


def no_traceback(done):
    assert done.exception is None or isinstance(done.exception, SystemExit), (
        f"{type(done.exception).__name__}: {done.exception}\n{done.output}"
    )


def served_checkpoint(signer: Signer, size: int, root: bytes) -> dict:
    origin = f"audit.test/{WITNESSED_ORG}"
    return {
        "origin": origin,
        "publicKey": str(signer.key),
        "treeSize": size,
        "rootHash": base64.b64encode(root).decode(),
        "checkpoint": signer.checkpoint(origin, size, root),
    }


def tree_of(n: int) -> tuple[merkle.Tiles, list[bytes]]:
    leaves = [verifier.leaf_hash(str(i).encode()) for i in range(n)]
    return leaves


def mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return verifier.node_hash(mth(leaves[:k]), mth(leaves[k:]))


def test_witness_a_hostile_server_of_wrong_types_gets_no_traceback(make_app, hostile, tmp_path):
    app = make_app(**SEALING)
    signer = Signer()
    good = served_checkpoint(signer, 4, mth(tree_of(4)))
    answers = [
        [],
        "text",
        None,
        {**good, "checkpoint": 5},
        {**good, "checkpoint": ["x"]},
        {**good, "checkpoint": {"a": 1}},
        {**good, "origin": 7},
        b"\xff\xfe not utf-8",
        b"[" * 100_000,
    ]
    tracebacks = []
    for answer in answers:
        hostile.answers["/api/v1/audit-logs/checkpoint"] = answer
        state = tmp_path / "w.json"
        done = run_witness(app, hostile.url, state)
        if done.exception is not None and not isinstance(done.exception, SystemExit):
            tracebacks.append((str(answer)[:40], repr(done.exception)[:80]))
            continue
        assert done.exit_code == 1, (answer, done.output)
        assert not state.exists()
    assert not tracebacks, tracebacks


def test_witness_a_hostile_consistency_answer_gets_no_traceback_nor_acceptance(
    make_app, hostile, tmp_path
):
    app = make_app(**SEALING)
    signer = Signer()
    leaves = tree_of(8)
    state = tmp_path / "w.json"
    hostile.answers["/api/v1/audit-logs/checkpoint"] = served_checkpoint(signer, 4, mth(leaves[:4]))
    done = run_witness(app, hostile.url, state)
    assert done.exit_code == 0, done.output
    kept = state.read_text()
    forked = [*leaves[:3], verifier.leaf_hash(b"rewritten"), *leaves[4:]]
    tracebacks = []
    hostile.answers["/api/v1/audit-logs/checkpoint"] = served_checkpoint(signer, 8, mth(forked))
    for answer in (
        [],
        "AAAA",
        {"proof": "abc"},
        {"proof": [1, 2]},
        {"proof": {"a": 1}},
        {"proof": [base64.b64encode(mth(forked[4:])).decode()]},
        {"proof": [base64.b64encode(mth(leaves[4:])).decode()]},
        None,
    ):
        hostile.answers["/api/v1/audit-logs/consistency"] = answer
        done = run_witness(app, hostile.url, state)
        assert state.read_text() == kept, answer  # never accepted
        if done.exception is not None and not isinstance(done.exception, SystemExit):
            tracebacks.append((str(answer)[:40], repr(done.exception)[:80]))
            continue
        assert done.exit_code == 1, (answer, done.output)
    assert not tracebacks, tracebacks


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: [],
        lambda s: {**s, "treeSize": "many"},
        lambda s: {**s, "treeSize": None},
        lambda s: {**s, "rootHash": "!!not base64!!"},
        lambda s: {**s, "rootHash": 5},
        lambda s: {k: v for k, v in s.items() if k != "origin"},
        lambda s: {k: v for k, v in s.items() if k != "treeSize"},
        lambda s: {**s, "publicKey": 5},
    ],
    ids=[
        "list",
        "size-text",
        "size-null",
        "root-text",
        "root-int",
        "no-origin",
        "no-size",
        "key-int",
    ],
)
def test_witness_an_edited_state_file_is_a_message_not_a_traceback(
    make_app, hostile, tmp_path, edit
):
    app = make_app(**SEALING)
    signer = Signer()
    state = tmp_path / "w.json"
    hostile.answers["/api/v1/audit-logs/checkpoint"] = served_checkpoint(signer, 4, mth(tree_of(4)))
    assert run_witness(app, hostile.url, state).exit_code == 0
    edited = edit(json.loads(state.read_text()))
    state.write_text(json.dumps(edited))
    hostile.answers["/api/v1/audit-logs/checkpoint"] = served_checkpoint(signer, 8, mth(tree_of(8)))
    done = run_witness(app, hostile.url, state)
    no_traceback(done)
    assert done.exit_code == 1, done.output
    assert json.loads(state.read_text()) == edited  # left as it was, for a person to look


def test_witness_pins_the_first_key_and_refuses_a_changed_one(make_app, hostile, tmp_path):
    app = make_app(**SEALING)
    first, second = Signer(), Signer()
    leaves = tree_of(8)
    state = tmp_path / "w.json"
    hostile.answers["/api/v1/audit-logs/checkpoint"] = served_checkpoint(first, 4, mth(leaves[:4]))
    assert run_witness(app, hostile.url, state).exit_code == 0
    kept = state.read_text()
    # a new key, and a tree that is not even an extension
    hostile.answers["/api/v1/audit-logs/checkpoint"] = served_checkpoint(second, 2, mth(tree_of(2)))
    done = run_witness(app, hostile.url, state)
    no_traceback(done)
    assert done.exit_code == 1 and state.read_text() == kept, done.output


def test_witness_a_state_path_that_is_a_directory_is_a_message(make_app, hostile, tmp_path):
    app = make_app(**SEALING)
    signer = Signer()
    hostile.answers["/api/v1/audit-logs/checkpoint"] = served_checkpoint(signer, 4, mth(tree_of(4)))
    folder = tmp_path / "dir"
    folder.mkdir()
    done = run_witness(app, hostile.url, folder)
    no_traceback(done)
    assert done.exit_code == 1 and folder.is_dir(), done.output


def test_witness_a_redirect_does_not_carry_the_token_to_another_host(make_app, tmp_path):
    """The witness's token (an API key with viewAuditLog) must not be sent to whatever
    host the installation's answer redirects to."""
    app = make_app(**SEALING)
    first, other = Hostile(), Hostile()
    try:
        target = other.url.replace("127.0.0.1", "localhost")

        def redirect(handler):
            handler.send_response(302)
            handler.send_header("Location", target + handler.path)
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        first.answers["/api/v1/audit-logs/checkpoint"] = redirect
        other.answers["/api/v1/audit-logs/checkpoint"] = {"checkpoint": None}
        run_witness(app, first.url, tmp_path / "w.json", token="secret-api-key-value")
        for _, headers in other.seen:
            carried = " ".join(str(v) for v in headers.values())
            assert "secret-api-key-value" not in carried, headers
    finally:
        first.close()
        other.close()


def _drip(handler, stop, byte: bytes, every: float) -> None:
    """A byte every ``every`` seconds, 60 times at most, until ``stop`` or the client goes."""
    for _ in range(60):
        if stop.is_set():
            return
        time.sleep(every)
        try:
            handler.wfile.write(byte)
            handler.wfile.flush()
        except OSError:
            return


def _witness_against(app, hostile, tmp_path, answer, stop) -> tuple[float, dict]:
    """Run the witness against ``answer`` on a thread; how long it took (at most 12 s, when
    ``stop`` ends the server's answer) and its result."""
    hostile.answers["/api/v1/audit-logs/checkpoint"] = answer
    result: dict = {}

    def go():
        result["done"] = run_witness(app, hostile.url, tmp_path / "w.json")

    thread = threading.Thread(target=go, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(12)
    stop.set()
    took = time.monotonic() - started
    thread.join(5)
    return took, result


def test_witness_a_server_that_drips_its_answer_does_not_hang_it(
    make_app, hostile, tmp_path, monkeypatch
):
    """A byte every half second never trips a per-read timeout: the witness, run on a
    schedule, must still end (here: TIMEOUT of 1 s, the drip lasts 30 s)."""
    app = make_app(**SEALING)
    monkeypatch.setattr(witness_module, "TIMEOUT", 1)
    stop = threading.Event()

    def drip(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        handler.wfile.write(b'{"x": "')
        handler.wfile.flush()
        _drip(handler, stop, b"a", 0.5)

    took, _ = _witness_against(app, hostile, tmp_path, drip, stop)
    assert took < 12, f"the witness was still reading after {took:.0f}s"


# The API ----------------------------------------------------------------------------------


@pytest.fixture(params=["mongo", "embedded"])
def sealed(request, make_app, embedded):
    app = (make_app if request.param == "mongo" else embedded)(**SEALING)
    org = make_org(app, "Proved")
    other = make_org(app, "Stranger")
    api = Api(app.test_client())
    token = api.token(org.owner)
    some_records(api, token, 3)
    some_records(api, api.token(other.owner), 3)
    seal(app, org)
    seal(app, other)
    return app, org, other, api, token


def first_record(api, token):
    answer = api.get("/api/v1/audit-logs", token=token, query_string={"path": "/api/v1/workspaces"})
    return answer.get_json()["items"][-1]["id"]


def test_api_unicode_digits_in_sizes_are_a_400_not_a_500(sealed):
    _app, _org, _other, api, token = sealed
    record_id = first_record(api, token)
    errors = []
    for name, value in (("from", "\u00b2"), ("to", "\u00b2"), ("from", "\u0663"), ("to", "\u2460")):
        query = {"from": "0", name: value} if name == "to" else {name: value}
        answer = api.get("/api/v1/audit-logs/consistency", token=token, query_string=query)
        if answer.status_code >= 500:
            errors.append((name, value, answer.status_code))
    for value in ("\u00b2", "\u2460", "\u0661"):
        answer = api.get(
            f"/api/v1/audit-logs/{record_id}/proof", token=token, query_string={"treeSize": value}
        )
        if answer.status_code >= 500:
            errors.append(("treeSize", value, answer.status_code))
    assert not errors, errors


def test_api_garbage_params_are_never_a_500(sealed):
    _app, _org, _other, api, token = sealed
    record_id = first_record(api, token)
    size = api.get("/api/v1/audit-logs/checkpoint", token=token).get_json()["treeSize"]
    for query in (
        {"from": "-1"},
        {"from": "1e3"},
        {"from": "9" * 15},
        {"from": "9" * 16},
        {"from": "0", "to": str(size + 1)},
        {"from": str(size), "to": str(size)},
        {"from": str(size + 5)},
        {"from": "1", "to": "0"},
        {"from": ["1", "2"]},
    ):
        answer = api.get("/api/v1/audit-logs/consistency", token=token, query_string=query)
        assert answer.status_code in (200, 400), (query, answer.status_code, answer.get_json())
    equal = api.get(
        "/api/v1/audit-logs/consistency", token=token, query_string={"from": size, "to": size}
    )
    assert equal.status_code == 200 and equal.get_json()["proof"] == []
    for query in (
        {"format": "xml"},
        {"format": ""},
        {"treeSize": "0"},
        {"treeSize": "-1"},
        {"treeSize": str(size + 100)},
        {"treeSize": "9" * 15},
        {"treeSize": "1"},
        {"download": "1", "format": "tlog-proof"},
    ):
        answer = api.get(f"/api/v1/audit-logs/{record_id}/proof", token=token, query_string=query)
        assert answer.status_code in (200, 400, 404, 409), (query, answer.status_code)
    for bad_id in ("x", "0" * 24, "f" * 24, "%00", "6" * 25):
        answer = api.get(f"/api/v1/audit-logs/{bad_id}/proof", token=token)
        assert answer.status_code in (404, 410), (bad_id, answer.status_code)


def test_api_another_tenants_record_id_is_a_404_and_no_proof(sealed):
    _app, _org, other, api, token = sealed
    theirs = first_record(api, api.token(other.owner))
    answer = api.get(f"/api/v1/audit-logs/{theirs}/proof", token=token)
    assert answer.status_code == 404, answer.get_json()
    assert theirs not in answer.get_data(as_text=True)
    answer = api.get(
        f"/api/v1/audit-logs/{theirs}/proof", token=token, query_string={"format": "tlog-proof"}
    )
    assert answer.status_code == 404


def test_api_proofs_follow_the_detail_endpoint_for_bound_keys_and_roles(sealed):
    app, org, _other, api, token = sealed
    record_id = first_record(api, token)
    with app.app_context():
        _, bound = api_keys.create_api_key(
            get_db(),
            org.id,
            name="bound",
            role_id=org.roles["admin"]["_id"],
            workspace_id=org.other_workspace["_id"],
            created_by=None,
        )
    paths = (
        f"/api/v1/audit-logs/{record_id}/proof",
        "/api/v1/audit-logs/checkpoint",
        "/api/v1/audit-logs/consistency?from=0",
    )
    detail = api.get(f"/api/v1/audit-logs/{record_id}", key=bound).status_code
    for path in paths:
        answer = api.get(path, key=bound)
        assert answer.status_code == detail or (detail == 200 and answer.status_code < 400), (
            path,
            detail,
            answer.status_code,
        )
        if detail >= 400:
            assert answer.status_code in (401, 403)
    assert detail == 403  # a bound key does not read the organization's log at all
    from bson import ObjectId

    from audit_app.organizations import service as access

    from .factories import PASSWORD

    role = api.post(
        "/api/v1/roles",
        as_=org.owner,
        json={"name": "No log", "permissions": ["viewMembers", "viewWorkspaces"]},
    ).get_json()
    with app.app_context():
        role_doc = access.orgs.find_role(get_db(), org.id, ObjectId(role["id"]))
        access.add_member_as_operator(org.id, "nolog@proved.example", PASSWORD, role_doc)
    no_log = api.client.post(
        "/api/v1/auth/token", json={"email": "nolog@proved.example", "password": PASSWORD}
    ).get_json()["token"]
    for who in (no_log, api.token(org.member)):
        detail = api.get(f"/api/v1/audit-logs/{record_id}", token=who).status_code
        assert who != no_log or detail == 403
        for path in paths:
            answer = api.get(path, token=who)
            if detail >= 400:
                assert answer.status_code == detail, (path, answer.status_code)
                assert record_id not in answer.get_data(as_text=True)


# Two sealers at once ---------------------------------------------------------------------


@pytest.mark.parametrize("store", ["mongo", "embedded"])
def test_two_sealers_racing_never_sign_two_roots_for_one_size(make_app, embedded, store):
    app = (make_app if store == "mongo" else embedded)(**SEALING)
    org = make_org(app, "Raced")
    api = Api(app.test_client())
    token = api.token(org.owner)
    errors = []
    for _ in range(5):
        some_records(api, token, 3)
        time.sleep(0.002)
        with app.app_context():
            store_journaled()
        barrier = threading.Barrier(3)

        def run():
            try:
                barrier.wait()
                sealing.seal_now(app, only=org.id, up_to_now=True)
            except Exception as error:
                errors.append(error)

        threads = [threading.Thread(target=run) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert not errors, errors
    with app.app_context():
        db = get_audit_db()
        roots: dict[int, set[str]] = {}
        for doc in db[merkle.CHECKPOINTS].find({"organizationId": org.id}):
            roots.setdefault(int(doc["treeSize"]), set()).add(doc["rootHash"])
        assert all(len(r) == 1 for r in roots.values()), roots
        state = merkle.tree_state(db, org.id)
        tiles = merkle.Tiles(db, org.id)
        assert merkle.root(tiles, state.size) == state.root
        records = list(
            db.audit_logs.find({"organizationId": org.id}).sort([("storedAt", 1), ("_id", 1)])
        )
    # no record is two leaves: every proof index is distinct and verifies
    key = verifier.VerifierKey.parse(
        api.get("/api/v1/audit-logs/checkpoint", token=token).get_json()["publicKey"]
    )
    indexes = []
    for record in records:
        answer = api.get(f"/api/v1/audit-logs/{record['_id']}/proof", token=token)
        if answer.status_code == 200:
            proof = answer.get_json()
            verifier.verify_record_proof(proof, key)
            indexes.append(proof["leafIndex"])
    assert len(indexes) == len(set(indexes))
    latest = api.get("/api/v1/audit-logs/checkpoint", token=token).get_json()["treeSize"]
    # every leaf of the signed tree is exactly one record: none twice, none missing
    assert sorted(indexes) == list(range(latest)), (sorted(indexes), latest)
    with app.app_context():
        report = sealing.verify(org.id).as_dict()
    assert not report["chainProblems"], report["chainProblems"]


# Retention's 410 ---------------------------------------------------------------------------


def purged_log(make_app):
    from audit_app.audit.integrity.retention import purge_all

    app = make_app(**SEALING, AUDIT_RETENTION_MIN_DAYS=1)
    org = make_org(app, "Purged")
    stranger = make_org(app, "Neighbour")
    api = Api(app.test_client())
    token = api.token(org.owner)
    some_records(api, token, 3)
    some_records(api, api.token(stranger.owner), 1)
    long_ago = datetime.now(UTC) - timedelta(days=500)
    with app.app_context():
        db = get_audit_db()
        old_ids = []
        for index, record in enumerate(list(db.audit_logs.find({"organizationId": org.id}))):
            stamp = long_ago + timedelta(seconds=index)
            new_id = ObjectId.from_datetime(stamp)
            db.audit_logs.delete_one({"_id": record["_id"]})
            record.update(_id=new_id, storedAt=stamp, createdAt=stamp)
            db.audit_logs.insert_one(record)
            old_ids.append(new_id)
    seal(app, org)
    seal(app, stranger)
    with app.app_context():
        assert purge_all(app, datetime.now(UTC), only=org.id, by="test")
    gone = old_ids[0]
    assert api.get(f"/api/v1/audit-logs/{gone}/proof", token=token).status_code == 410
    # the neighbour asking for the purged id learns nothing of the other org's purge
    answer = api.get(f"/api/v1/audit-logs/{gone}/proof", token=api.token(stranger.owner))
    assert answer.status_code == 404, answer.get_json()
    assert "purgedBefore" not in json.dumps(answer.get_json())
    return app, org, api, token, long_ago


def test_retention_a_neighbour_asking_for_a_purged_id_learns_nothing(make_app, mongo):
    purged_log(make_app)


def test_retention_an_id_that_never_was_a_record_is_not_called_purged(make_app, mongo):
    """A 410 "was purged ... its leaf stays in the log" for an id that never was a record
    (or is another tenant's) is an untruth the API tells about the log.

    (Lead: the purge keeps leaf hashes, not ids, so the store cannot tell a purged id from
    one that never was; the answer stays 410, Gone, which is true of any id of that age,
    and its message no longer says the record existed.)"""
    _app, _org, api, token, long_ago = purged_log(make_app)
    never = ObjectId.from_datetime(long_ago - timedelta(days=1))
    answer = api.get(f"/api/v1/audit-logs/{never}/proof", token=token)
    assert answer.status_code == 410, answer.get_json()
    message = answer.get_json()["error"]["message"]
    assert "was purged" not in message and "If this one existed" in message


def test_api_platform_staff_credentials_get_no_proof(sealed):
    from .test_staff import create_staff, staff_token

    app, _org, _other, api, token = sealed
    record_id = first_record(api, token)
    create_staff(app)
    staff = staff_token(app.test_client())
    for path in (
        f"/api/v1/audit-logs/{record_id}/proof",
        "/api/v1/audit-logs/checkpoint",
        "/api/v1/audit-logs/consistency?from=0",
        f"/audit-logs/{record_id}/proof",
    ):
        answer = api.get(path, token=staff)
        assert answer.status_code in (302, 401, 403, 404), (path, answer.status_code)
        assert record_id not in answer.get_data(as_text=True) or answer.status_code == 302


def test_verifier_lone_surrogates_nul_and_a_bom_never_verify_nor_trace(tmp_path):
    signer = Signer()
    good = proof_file(signer, a_record())
    text = json.dumps(good)
    cases = [
        text.replace('"workspace.list"', '"workspace.list\\ud800"'),
        text.replace('"workspace.list"', '"workspace.list\\u0000"'),
        text.replace('"workspace.list"', '"workspace.lis\\u0074"'),  # same string, escaped
        "\ufeff" + text,
    ]
    results = [run_main(tmp_path, case, str(signer.key)) for case in cases]
    assert results[0][0] == 1 and results[1][0] == 1, results
    assert results[2][0] == 0, results  # JSON escapes are the same text: that one verifies
    assert results[3][0] in (1, 2), results


def test_witness_a_server_that_drips_its_headers_does_not_hang_it(
    make_app, hostile, tmp_path, monkeypatch
):
    """The body's deadline alone let a server drip its status line and headers (a byte
    every 0.3 s never trips a per-read timeout): the whole exchange is bounded now."""
    app = make_app(**SEALING)
    monkeypatch.setattr(witness_module, "TIMEOUT", 1)
    stop = threading.Event()

    def drip(handler):
        handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
        _drip(handler, stop, b"X", 0.3)

    took, result = _witness_against(app, hostile, tmp_path, drip, stop)
    assert took < 6, f"the witness was still reading after {took:.0f}s"
    assert result["done"].exit_code == 1 and "no whole answer within 1 s" in result["done"].output
