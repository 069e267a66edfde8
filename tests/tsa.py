"""A real RFC 3161 timestamp authority for the tests: OpenSSL's ``openssl ts -reply`` behind
an HTTP server on 127.0.0.1, with its own root and a time-stamping certificate.

OpenSSL is an implementation independent of ``rfc3161-client``, so a token the app keeps and
the verifier checks was made as a real TSA makes it. ``mode`` makes it misbehave: ``down``
(HTTP 500), ``garbage`` (not DER), ``other`` (a granted timestamp of other data), ``replay``
(the previous answer again), ``huge`` (70 KiB), ``drip`` (a byte at a time), ``redirect``.
"""

from __future__ import annotations

import datetime
import shutil
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CONFIG = """
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
serial = {serial}
crypto_device = builtin
default_policy = 1.2.3.4.1
digests = sha256, sha512
signer_digest = sha256
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_root(folder: Path, label: str):
    """A self-signed CA: (certificate, key), its PEM at ``folder/<label>.pem``."""
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{label} root"))
        .issuer_name(_name(f"{label} root"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    (folder / f"{label}.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return certificate, key


class Authority:
    def __init__(self) -> None:
        if shutil.which("openssl") is None:
            raise RuntimeError("the test TSA needs the openssl command (.ci/run installs it)")
        self.folder = Path(tempfile.mkdtemp(prefix="tsa-"))
        root, root_key = make_root(self.folder, "tsa")
        make_root(self.folder, "other")  # a root that signed nothing here
        self.root_pem = str(self.folder / "tsa.pem")
        self.other_root_pem = str(self.folder / "other.pem")
        now = datetime.datetime.now(datetime.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name("Test timestamp authority"))
            .issuer_name(root.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
            )
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                critical=True,
            )
            .sign(root_key, hashes.SHA256())
        )
        (self.folder / "signer.pem").write_bytes(
            certificate.public_bytes(serialization.Encoding.PEM)
        )
        (self.folder / "signer.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        (self.folder / "serial").write_text("01\n")
        (self.folder / "tsa.cnf").write_text(CONFIG.format(serial=self.folder / "serial"))
        self.mode = "ok"
        self.requests = 0
        self.last_answer: bytes | None = None
        self.last_authorization: str | None = None
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tsr"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def reply(self, query: bytes) -> bytes:
        """OpenSSL's answer to a DER TimeStampReq."""
        with self._lock, tempfile.TemporaryDirectory(dir=self.folder) as work:
            (Path(work) / "q.tsq").write_bytes(query)
            subprocess.run(
                [
                    "openssl",
                    "ts",
                    "-reply",
                    "-config",
                    str(self.folder / "tsa.cnf"),
                    "-queryfile",
                    str(Path(work) / "q.tsq"),
                    "-signer",
                    str(self.folder / "signer.pem"),
                    "-inkey",
                    str(self.folder / "signer.key"),
                    "-out",
                    str(Path(work) / "r.tsr"),
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
            return (Path(work) / "r.tsr").read_bytes()

    def _handler(self):
        authority = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = min(int(self.headers.get("Content-Length") or 0), 64 * 1024)
                query = self.rfile.read(length)
                authority.requests += 1
                authority.last_authorization = self.headers.get("Authorization")
                mode = authority.mode
                if mode == "redirect":
                    self.send_response(307)
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                    self.end_headers()
                    return
                if mode == "down":
                    self.send_response(500)
                    self.end_headers()
                    return
                if mode == "garbage":
                    body = b"this is not DER"
                elif mode == "huge":
                    body = b"\x30" * (70 * 1024)
                elif mode == "other":
                    from rfc3161_client import HashAlgorithm, TimestampRequestBuilder

                    other = (
                        TimestampRequestBuilder()
                        .data(b"another checkpoint")
                        .hash_algorithm(HashAlgorithm.SHA256)
                        .build()
                    )
                    body = authority.reply(other.as_bytes())
                elif mode == "replay" and authority.last_answer is not None:
                    body = authority.last_answer
                else:
                    body = authority.reply(query)
                    authority.last_answer = body
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    if mode != "drip":
                        self.wfile.write(body)
                        return
                    for byte in body:  # until the client gives up
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(0.05)
                except OSError:
                    pass

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.folder, ignore_errors=True)
