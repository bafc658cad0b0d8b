"""Messages per second for an escalated 10 KB mail to one S/MIME and one PGP recipient.

Library level: runs postveil.crypto.pipeline.process_message (tag detection, routing,
key and certificate lookups, S/MIME and PGP/MIME encryption) in one process, without
Postfix or the milter protocol. Keys, certificates and GnuPG homes are generated in a
temporary directory.

    .venv/bin/python bench/escalated_encrypt.py [--messages N]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from postveil.config.portal import PortalSection
from postveil.config.routing import RoutingSection
from postveil.crypto import CertificateStore, PgpKeyring, RenderContext
from postveil.crypto.pipeline import process_message

SMIME_RECIPIENT = "smime@example.org"
PGP_RECIPIENT = "pgp@example.org"


def make_certificates(root: Path) -> tuple[Path, Path]:
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "S/MIME recipient")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(SMIME_RECIPIENT)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_dir = root / "certs"
    cert_dir.mkdir()
    (cert_dir / "smime.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    trust = root / "trust.pem"
    ca.cert_pem.write_to_path(str(trust))
    return cert_dir, trust


def make_keyring(root: Path) -> Path:
    home = root / "gnupg"
    home.mkdir(mode=0o700)
    subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
         "--quick-gen-key", f"PGP recipient <{PGP_RECIPIENT}>", "future-default", "default", "never"],
        check=True,
        capture_output=True,
    )
    return home


def make_message() -> bytes:
    head = (
        "From: doc@sender.example\r\n"
        f"To: {SMIME_RECIPIENT}, {PGP_RECIPIENT}\r\n"
        "Subject: [secure] Lab results\r\n"
        "Date: Fri, 4 Dec 2026 10:00:00 +0000\r\n"
        "Message-ID: <bench@sender.example>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode()
    line = "Befund unauffällig, Kontrolle in sechs Monaten empfohlen. 0123456789\r\n".encode()
    body = line * (10_000 // len(line) + 1)
    return head + body[: 10_000 - len(head)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300, help="messages to process (default 300)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        cert_dir, trust = make_certificates(root)
        home = make_keyring(root)
        context = RenderContext(
            routing=RoutingSection(),
            portal=PortalSection(),
            certificates=CertificateStore(str(cert_dir), str(trust)),
            keyring=PgpKeyring(str(home)),
        )
        raw = make_message()
        recipients = [SMIME_RECIPIENT, PGP_RECIPIENT]

        def once(index: int) -> None:
            outcome = process_message(
                raw, queue_id=f"B{index}", sender="doc@sender.example", recipients=recipients,
                verdict=None, tls={}, context=context,
            )
            kinds = sorted(v.group.kind.value for v in outcome.versions)
            if kinds != ["pgp", "smime"]:
                raise SystemExit(f"unexpected versions {kinds}")

        once(-1)  # warm-up: loads the certificate directory and starts gpg-agent
        start = time.perf_counter()
        for index in range(args.messages):
            once(index)
        elapsed = time.perf_counter() - start
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)

    print(f"message size: {len(raw)} bytes, recipients: 1 S/MIME + 1 PGP")
    print(f"messages: {args.messages}, elapsed: {elapsed:.2f} s")
    print(f"throughput: {args.messages / elapsed:.1f} messages/s")
    print(f"per message: {1000 * elapsed / args.messages:.1f} ms")
    print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")


if __name__ == "__main__":
    main()
