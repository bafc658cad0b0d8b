"""Certificate lookup: address matching, chain, expiry, key usage, non-RSA keys, failures."""

from __future__ import annotations

import datetime
import shutil
import subprocess
from pathlib import Path

import pytest
from crypto_fixtures import DAY, NOW, Pki, openssl_decrypt

from postveil.crypto import CertificateStore, SmimeFailure, SmimeSigner
from postveil.crypto.smime import encrypt_entity, fingerprint, smime_headers, wrap_base64


def _store(pki: Pki) -> CertificateStore:
    return CertificateStore(str(pki.cert_dir), str(pki.trust_store))


@pytest.mark.parametrize(
    ("address", "usable", "reason_part"),
    [
        ("alice@example.org", True, "valid"),
        ("ALICE@example.org", True, "valid"),
        ("carol@example.org", True, "valid"),
        ("carol.alt@example.org", True, "valid"),
        ("old@example.org", False, "certificate expired"),
        ("ec@example.org", False, "key is EC"),
        ("client@example.org", False, "emailProtection"),
        ("rogue@example.org", False, "does not chain"),
        ("nobody@example.org", False, "no certificate"),
        ("alice@example.org.evil", False, "no certificate"),
    ],
)
def test_lookup_table(pki: Pki, address: str, usable: bool, reason_part: str) -> None:
    lookup = _store(pki).lookup(address)

    assert lookup.status.usable is usable
    assert reason_part in lookup.status.reason
    assert (lookup.certificate is not None) is usable


def test_lookup_fingerprint_is_sha256(pki: Pki) -> None:
    lookup = _store(pki).lookup("alice@example.org")

    assert lookup.status.fingerprint == fingerprint(pki.alice.certificate)
    assert len(lookup.status.fingerprint or "") == 64


def test_lookup_after_expiry_by_clock(pki: Pki) -> None:
    later = NOW + 31 * DAY
    store = CertificateStore(str(pki.cert_dir), str(pki.trust_store), clock=lambda: later)

    assert store.lookup("alice@example.org").status.reason == "certificate expired"


def test_newer_certificate_wins(pki: Pki, tmp_path: Path) -> None:
    directory = tmp_path / "certs"
    directory.mkdir()
    old = pki.issue("renew-old", ["renew@example.org"], not_after=NOW + 5 * DAY, install=False)
    new = pki.issue("renew-new", ["renew@example.org"], not_after=NOW + 300 * DAY, install=False)
    shutil.copy(old.cert_path, directory / "a.pem")
    shutil.copy(new.cert_path, directory / "b.pem")

    lookup = CertificateStore(str(directory), str(pki.trust_store)).lookup("renew@example.org")

    assert lookup.status.fingerprint == fingerprint(new.certificate)


def test_new_file_seen_without_restart(pki: Pki, tmp_path: Path) -> None:
    directory = tmp_path / "certs"
    directory.mkdir()
    store = CertificateStore(str(directory), str(pki.trust_store))
    assert not store.lookup("alice@example.org").status.usable

    shutil.copy(pki.alice.cert_path, directory / "alice.pem")

    assert store.lookup("alice@example.org").status.usable


def test_garbage_file_is_skipped_and_listed(pki: Pki, tmp_path: Path) -> None:
    directory = tmp_path / "certs"
    directory.mkdir()
    (directory / "broken.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    shutil.copy(pki.alice.cert_path, directory / "alice.pem")
    store = CertificateStore(str(directory), str(pki.trust_store))

    assert store.lookup("alice@example.org").status.usable
    assert len(store.problems) == 1
    assert "broken.pem" in store.problems[0]


def test_missing_directory_is_temporary_failure(pki: Pki, tmp_path: Path) -> None:
    store = CertificateStore(str(tmp_path / "absent"), str(pki.trust_store))

    with pytest.raises(SmimeFailure, match="cannot read certificate directory"):
        store.lookup("alice@example.org")


def test_directory_that_is_a_file_fails(pki: Pki, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    store = CertificateStore(str(not_a_dir), str(pki.trust_store))

    with pytest.raises(SmimeFailure, match="cannot read certificate directory"):
        store.lookup("alice@example.org")


def test_directory_removed_after_load_fails(pki: Pki, tmp_path: Path) -> None:
    directory = tmp_path / "certs"
    shutil.copytree(pki.cert_dir, directory)
    store = CertificateStore(str(directory), str(pki.trust_store))
    assert store.lookup("alice@example.org").status.usable

    shutil.rmtree(directory)

    with pytest.raises(SmimeFailure):
        store.lookup("alice@example.org")


def test_missing_trust_store_fails(pki: Pki, tmp_path: Path) -> None:
    store = CertificateStore(str(pki.cert_dir), str(tmp_path / "absent.pem"))

    with pytest.raises(SmimeFailure, match="cannot read trust store"):
        store.lookup("alice@example.org")


def test_empty_trust_store_fails(pki: Pki, tmp_path: Path) -> None:
    empty = tmp_path / "trust.pem"
    empty.write_text("")
    store = CertificateStore(str(pki.cert_dir), str(empty))

    with pytest.raises(SmimeFailure, match="invalid trust store"):
        store.lookup("alice@example.org")


def test_trust_store_directory(pki: Pki, tmp_path: Path) -> None:
    trust_dir = tmp_path / "trust"
    trust_dir.mkdir()
    shutil.copy(pki.trust_store, trust_dir / "ca.pem")

    assert CertificateStore(str(pki.cert_dir), str(trust_dir)).lookup("alice@example.org").status.usable


def test_by_fingerprint_gone_fails(pki: Pki) -> None:
    with pytest.raises(SmimeFailure, match="no longer"):
        _store(pki).by_fingerprint("00" * 32)


def test_ec_certificate_rejected_by_library(pki: Pki) -> None:
    # The store reports EC certificates unusable because the library raises for them.
    with pytest.raises(SmimeFailure, match="encryption failed"):
        encrypt_entity(b"Content-Type: text/plain\r\n\r\nx\r\n", [pki.ec.certificate])


def test_two_recipients_each_decrypt(pki: Pki, tmp_path: Path) -> None:
    entity = b"Content-Type: text/plain\r\n\r\nfor both\r\n"
    body = wrap_base64(encrypt_entity(entity, [pki.alice.certificate, pki.carol.certificate]))
    head = "".join(f"{name}: {value}\r\n" for name, value in smime_headers()).encode()
    message = head + b"\r\n" + body

    assert openssl_decrypt(message, pki.alice, tmp_path) == entity
    assert openssl_decrypt(message, pki.carol, tmp_path) == entity


def test_signed_then_encrypted_verifies(pki: Pki, tmp_path: Path) -> None:
    signer = SmimeSigner.load(str(pki.signer.cert_path), str(pki.signer.key_path))
    entity = "Content-Type: text/plain; charset=utf-8\r\n\r\nGrüße\r\n".encode()
    signed = signer.sign(entity)
    body = wrap_base64(encrypt_entity(signed, [pki.alice.certificate]))
    head = "".join(f"{name}: {value}\r\n" for name, value in smime_headers()).encode()

    decrypted = openssl_decrypt(head + b"\r\n" + body, pki.alice, tmp_path)
    assert decrypted == signed
    signed_path = tmp_path / "signed.eml"
    signed_path.write_bytes(b"MIME-Version: 1.0\r\n" + decrypted)
    # Without -binary: OpenSSL 3.0's multipart splitter in binary mode keeps the CR of the
    # CRLF that belongs to the boundary, and the content digest then differs.
    verified = subprocess.run(
        ["openssl", "cms", "-verify", "-in", str(signed_path), "-CAfile", str(pki.trust_store),
         "-purpose", "any"],
        check=False,
        capture_output=True,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stderr.decode()
    assert verified.stdout == entity


def test_signer_missing_file_fails(tmp_path: Path) -> None:
    with pytest.raises(SmimeFailure, match="signing certificate or key"):
        SmimeSigner.load(str(tmp_path / "no.pem"), str(tmp_path / "no.key"))


def test_not_yet_valid_certificate(pki: Pki, tmp_path: Path) -> None:
    future = pki.issue(
        "future", ["future@example.org"], not_before=NOW + DAY, not_after=NOW + 10 * DAY, install=False
    )
    directory = tmp_path / "certs"
    directory.mkdir()
    shutil.copy(future.cert_path, directory / "future.pem")

    status = CertificateStore(str(directory), str(pki.trust_store)).lookup("future@example.org").status

    assert status.reason == "certificate not yet valid"


def test_clock_is_timezone_aware(pki: Pki) -> None:
    store = CertificateStore(str(pki.cert_dir), str(pki.trust_store))

    assert store.clock().tzinfo is datetime.UTC


def test_content_encryption_is_aes256(pki: Pki, tmp_path: Path) -> None:
    body = wrap_base64(encrypt_entity(b"Content-Type: text/plain\r\n\r\nx\r\n", [pki.alice.certificate]))
    head = "".join(f"{name}: {value}\r\n" for name, value in smime_headers()).encode()
    source = tmp_path / "m.eml"
    source.write_bytes(head + b"\r\n" + body)

    printed = subprocess.run(
        ["openssl", "cms", "-cmsout", "-print", "-in", str(source)],
        capture_output=True, check=True, timeout=60,
    ).stdout.decode()

    assert "aes-256-cbc" in printed
    assert "pkcs7-envelopedData" in printed
