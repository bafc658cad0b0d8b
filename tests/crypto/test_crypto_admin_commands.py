"""Safety of `postveil keys` and `postveil certs`: private keys never stored, every file
that import writes listed and removable, readable errors, and an audit record for each
change. Keys and certificates come from real gpg and openssl runs."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
from pathlib import Path

import pytest
from crypto_fixtures import GpgWorld, Pki, gpg
from cryptography.x509 import load_pem_x509_certificate

from postveil.audit import generate_key_file, verify_chain
from postveil.audit.chain import AuditKey
from postveil.cli.main import main
from postveil.crypto.pgp import PgpKeyring
from postveil.crypto.smime import CertificateStore, fingerprint


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, check=True, timeout=60)


@pytest.fixture
def setup(tmp_path: Path, pki: Pki) -> dict[str, Path]:
    paths = {
        "home": tmp_path / "gnupg",
        "certs": tmp_path / "certs",
        "audit": tmp_path / "audit",
        "key": tmp_path / "audit.key",
        "config": tmp_path / "postveil.yaml",
        "work": tmp_path / "work",
    }
    paths["home"].mkdir(mode=0o700)
    paths["certs"].mkdir(mode=0o750)
    paths["work"].mkdir()
    generate_key_file(paths["key"])
    paths["config"].write_text(
        f"pgp: {{gnupg_home: {paths['home']}}}\n"
        f"smime: {{certificate_dir: {paths['certs']}, trust_store: {pki.trust_store}}}\n"
        f"audit: {{directory: {paths['audit']}, key_file: {paths['key']}}}\n"
    )
    yield paths
    subprocess.run(["gpgconf", "--homedir", str(paths["home"]), "--kill", "all"], check=False)


def certs(setup: dict[str, Path], *args: str) -> int:
    return main(["certs", "--config", str(setup["config"]), *args])


def keys(setup: dict[str, Path], *args: str) -> int:
    return main(["keys", "--config", str(setup["config"]), *args])


def audit_records(setup: dict[str, Path]) -> list[dict[str, object]]:
    active = setup["audit"] / "audit.jsonl"
    if not active.exists():
        return []
    return [json.loads(line) for line in active.read_text().splitlines()]


# Private keys ----------------------------------------------------------------------


def _private_keys(work: Path) -> dict[str, Path]:
    """One key file of each PEM private key form openssl writes."""
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "pkcs8.key", cwd=work)
    openssl("pkey", "-in", "pkcs8.key", "-traditional", "-out", "rsa.key", cwd=work)
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-out", "ec.key", cwd=work)
    openssl("pkcs8", "-topk8", "-in", "pkcs8.key", "-v2", "aes256", "-passout", "pass:secret",
            "-out", "encrypted.key", cwd=work)
    return {name: work / f"{name}.key" for name in ("pkcs8", "rsa", "ec", "encrypted")}


def test_certs_import_rejects_private_keys(setup: dict[str, Path], pki: Pki, capsys) -> None:
    work = setup["work"]
    expected_headers = {
        "pkcs8": b"-----BEGIN PRIVATE KEY-----",
        "rsa": b"-----BEGIN RSA PRIVATE KEY-----",
        "ec": b"-----BEGIN EC PRIVATE KEY-----",
        "encrypted": b"-----BEGIN ENCRYPTED PRIVATE KEY-----",
    }
    for name, key_path in _private_keys(work).items():
        assert expected_headers[name] in key_path.read_bytes()
        for order in ("key-first", "cert-first"):
            parts = [key_path.read_bytes(), pki.alice.cert_path.read_bytes()]
            if order == "cert-first":
                parts.reverse()
            bundle = work / f"{name}-{order}.pem"
            bundle.write_bytes(b"".join(parts))

            assert certs(setup, "import", str(bundle)) == 1, bundle.name
            error = capsys.readouterr().err
            assert "contains a private key" in error, bundle.name
            assert "nothing was imported" in error, bundle.name
            assert certs(setup, "import", "--force", str(bundle)) == 1, bundle.name
            capsys.readouterr()
    assert list(setup["certs"].iterdir()) == []
    assert audit_records(setup) == []


def test_certs_import_rejects_pkcs12(setup: dict[str, Path], pki: Pki, capsys) -> None:
    bundle = setup["work"] / "alice.p12"
    openssl("pkcs12", "-export", "-in", str(pki.alice.cert_path), "-inkey", str(pki.alice.key_path),
            "-passout", "pass:secret", "-out", str(bundle), cwd=setup["work"])

    assert certs(setup, "import", "--force", str(bundle)) == 1
    error = capsys.readouterr().err
    assert "no PEM certificate" in error
    assert "openssl pkcs12" in error
    assert "nothing was imported" in error
    assert list(setup["certs"].iterdir()) == []


def test_store_skips_file_with_private_key(setup: dict[str, Path], pki: Pki, capsys, caplog) -> None:
    key_bytes = pki.alice.key_path.read_bytes()
    (setup["certs"] / "alice-bundle.pem").write_bytes(key_bytes + pki.alice.cert_path.read_bytes())
    (setup["certs"] / "carol.pem").write_bytes(pki.carol.cert_path.read_bytes())
    store = CertificateStore(str(setup["certs"]), str(pki.trust_store))

    with caplog.at_level(logging.WARNING, logger="postveil.crypto.smime"):
        addresses = [address for stored in store.all_certificates() for address in stored.addresses]
    assert "alice@example.org" not in addresses
    assert "carol@example.org" in addresses
    assert store.lookup("alice@example.org").certificate is None
    assert len(store.problems) == 1
    assert "alice-bundle.pem" in store.problems[0]
    assert "private key" in store.problems[0]
    assert "alice-bundle.pem" in caplog.text
    key_body = key_bytes.splitlines()[1].decode()
    assert key_body not in caplog.text

    assert certs(setup, "list") == 0
    output = capsys.readouterr()
    assert "skipped:" in output.err
    assert "alice-bundle.pem: contains a private key" in output.err
    assert key_body not in output.err + output.out


def test_certs_import_file_mode_and_content(setup: dict[str, Path], pki: Pki, capsys) -> None:
    if os.geteuid() == 0:
        # A group other than root's own shows the file takes the directory's group.
        os.chown(setup["certs"], -1, 65534)
    source = setup["work"] / "alice-commented.pem"
    source.write_bytes(b"Bag Attributes: a note before the block\n" + pki.alice.cert_path.read_bytes())

    assert certs(setup, "import", str(source)) == 0
    capsys.readouterr()
    [stored] = list(setup["certs"].iterdir())
    mode = stat.S_IMODE(stored.stat().st_mode)
    assert mode == 0o640
    assert stored.stat().st_gid == setup["certs"].stat().st_gid
    content = stored.read_bytes()
    assert content.startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"Bag Attributes" not in content


# CA certificates and errors ---------------------------------------------------------


def test_certs_import_ca_listed_and_removable(setup: dict[str, Path], capsys) -> None:
    work = setup["work"]
    # openssl req -x509 adds basicConstraints CA:TRUE from openssl.cnf's v3_ca section.
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "frank.key", "-out", "frank-ec.pem", "-days", "30", "-subj", "/CN=Frank",
            "-addext", "subjectAltName=email:frank@example.org", cwd=work)
    certificate = work / "frank-ec.pem"

    assert certs(setup, "import", str(certificate)) == 1
    assert "CA certificate" in capsys.readouterr().err

    assert certs(setup, "import", "--force", str(certificate)) == 0
    imported = capsys.readouterr().out
    frank = imported.split()[1]
    assert "CA certificate" in imported

    assert certs(setup, "list") == 0
    listing = capsys.readouterr().out
    assert frank in listing
    assert "CA certificate (intermediate only)" in listing
    assert "frank@example.org" in listing

    assert certs(setup, "remove", frank[:16]) == 0
    assert f"removed {frank}" in capsys.readouterr().out
    assert list(setup["certs"].iterdir()) == []


def test_certs_import_bad_signature_reason(setup: dict[str, Path], pki: Pki, capsys) -> None:
    # Names the test CA as issuer, but is signed by another key.
    assert certs(setup, "import", str(pki.untrusted.cert_path)) == 1
    error = capsys.readouterr().err
    assert "does not chain to the trust store" in error
    assert "the chain to a trusted CA is invalid" in error
    assert "candidates exhausted" not in error
    assert "add the issuing CA to smime.trust_store" in error


def test_certs_import_unknown_issuer_reason(setup: dict[str, Path], capsys) -> None:
    work = setup["work"]
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other-ca.key",
            "-out", "other-ca.pem", "-days", "30", "-subj", "/CN=Other CA", cwd=work)
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "hank.key", "-out", "hank.csr",
            "-subj", "/CN=Hank", cwd=work)
    (work / "hank.ext").write_text("subjectAltName=email:hank@example.org\nextendedKeyUsage=emailProtection\n")
    openssl("x509", "-req", "-in", "hank.csr", "-CA", "other-ca.pem", "-CAkey", "other-ca.key",
            "-CAcreateserial", "-days", "30", "-extfile", "hank.ext", "-out", "hank.pem", cwd=work)

    assert certs(setup, "import", str(work / "hank.pem")) == 1
    error = capsys.readouterr().err
    assert "its issuer is neither in smime.trust_store nor an intermediate" in error
    assert "issuer: CN=Other CA" in error
    assert "candidates exhausted" not in error


def _leaf_with_own_root(work: Path) -> Path:
    """Write dave-chain.pem: Dave's certificate, then the self-signed CA that issued it."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "dave-ca.key",
            "-out", "dave-ca.pem", "-days", "30", "-subj", "/CN=Dave Root CA", cwd=work)
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "dave.key", "-out", "dave.csr",
            "-subj", "/CN=Dave", cwd=work)
    (work / "dave.ext").write_text("subjectAltName=email:dave@example.org\nextendedKeyUsage=emailProtection\n")
    openssl("x509", "-req", "-in", "dave.csr", "-CA", "dave-ca.pem", "-CAkey", "dave-ca.key",
            "-CAcreateserial", "-days", "30", "-extfile", "dave.ext", "-out", "dave.pem", cwd=work)
    chain = work / "dave-chain.pem"
    chain.write_bytes((work / "dave.pem").read_bytes() + (work / "dave-ca.pem").read_bytes())
    return chain


def test_certs_import_untrusted_root_reason(setup: dict[str, Path], capsys) -> None:
    chain = _leaf_with_own_root(setup["work"])

    assert certs(setup, "import", str(chain)) == 1
    error = capsys.readouterr().err
    assert "its chain ends at a root CA that is not in smime.trust_store" in error
    assert "(root CA: CN=Dave Root CA)" in error
    assert "add that root CA to smime.trust_store" in error

    assert certs(setup, "import", "--force", str(chain)) == 0
    capsys.readouterr()
    assert certs(setup, "list") == 0
    listing = capsys.readouterr().out
    dave_line = next(line for line in listing.splitlines() if "dave@example.org" in line)
    assert "its chain ends at a root CA that is not in smime.trust_store" in dave_line
    assert "(root CA: CN=Dave Root CA)" in dave_line
    assert "is invalid" not in listing


def test_certs_import_chain_from_file(setup: dict[str, Path], pki: Pki, capsys) -> None:
    # Leaf, then an intermediate that the trusted test CA issued; the directory is empty.
    work = setup["work"]
    pki.ca.private_key_pem.write_to_path(str(work / "root.key"))
    pki.ca.cert_pem.write_to_path(str(work / "root.pem"))
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "sub.key", "-out", "sub.csr",
            "-subj", "/CN=Clinic Intermediate", cwd=work)
    (work / "sub.ext").write_text("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n")
    openssl("x509", "-req", "-in", "sub.csr", "-CA", "root.pem", "-CAkey", "root.key",
            "-CAcreateserial", "-days", "30", "-extfile", "sub.ext", "-out", "sub.pem", cwd=work)
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "ivy.key", "-out", "ivy.csr",
            "-subj", "/CN=Ivy", cwd=work)
    (work / "ivy.ext").write_text(
        "subjectAltName=email:ivy@example.org\nextendedKeyUsage=emailProtection\n"
        "keyUsage=keyEncipherment\n")
    openssl("x509", "-req", "-in", "ivy.csr", "-CA", "sub.pem", "-CAkey", "sub.key",
            "-CAcreateserial", "-days", "30", "-extfile", "ivy.ext", "-out", "ivy.pem", cwd=work)
    chain = work / "ivy-chain.pem"
    chain.write_bytes((work / "ivy.pem").read_bytes() + (work / "sub.pem").read_bytes())

    assert certs(setup, "import", str(chain)) == 0, capsys.readouterr().err
    assert "usable" in capsys.readouterr().out


def test_certs_remove_ca_keeps_recipient(setup: dict[str, Path], capsys) -> None:
    work = setup["work"]
    chain = _leaf_with_own_root(work)
    assert certs(setup, "import", "--force", str(chain)) == 0
    capsys.readouterr()
    ca_fingerprint = fingerprint(load_pem_x509_certificate((work / "dave-ca.pem").read_bytes()))
    stored = sorted(setup["certs"].iterdir())

    assert certs(setup, "remove", ca_fingerprint[:16]) == 1
    error = capsys.readouterr().err
    assert "also contains the recipient certificate(s)" in error
    assert "dave@example.org" in error
    assert "nothing was removed" in error
    assert sorted(setup["certs"].iterdir()) == stored
    assert [record["action"] for record in audit_records(setup)] == ["cert-import"]

    assert certs(setup, "remove", "--force", ca_fingerprint[:16]) == 0
    output = capsys.readouterr().out
    assert f"removed {ca_fingerprint}" in output
    assert "also removed" in output
    assert list(setup["certs"].iterdir()) == []


def test_certs_import_ca_alone(setup: dict[str, Path], capsys) -> None:
    work = setup["work"]
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "myca.key",
            "-out", "myca.pem", "-days", "30", "-subj", "/CN=My Intermediate", cwd=work)

    assert certs(setup, "import", str(work / "myca.pem")) == 1
    error = capsys.readouterr().err
    assert "CA certificate" in error
    assert "use --force to store it as one" in error
    assert "no email address" not in error

    assert certs(setup, "import", "--force", str(work / "myca.pem")) == 0
    ca = capsys.readouterr().out.split()[1]
    assert certs(setup, "list") == 0
    listing = capsys.readouterr().out
    assert ca in listing
    assert "CA certificate (intermediate only)" in listing
    assert "(no email address)" in listing
    assert audit_records(setup)[0]["target"] == "(no email address)"

    assert certs(setup, "remove", ca[:16]) == 0
    assert list(setup["certs"].iterdir()) == []


def test_certs_import_self_signed_reason(setup: dict[str, Path], capsys) -> None:
    work = setup["work"]
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "gina.key", "-out", "gina.pem",
            "-days", "30", "-subj", "/CN=Gina", "-addext", "basicConstraints=critical,CA:FALSE",
            "-addext", "subjectAltName=email:gina@example.org", cwd=work)

    assert certs(setup, "import", str(work / "gina.pem")) == 1
    error = capsys.readouterr().err
    assert "self-signed" in error
    assert "candidates exhausted" not in error


# Audit records ------------------------------------------------------------------------


def test_certs_changes_audited(setup: dict[str, Path], pki: Pki, capsys) -> None:
    assert certs(setup, "import", str(pki.carol.cert_path)) == 0
    carol = fingerprint(pki.carol.certificate)
    assert certs(setup, "remove", carol[:16]) == 0

    records = audit_records(setup)
    assert [record["action"] for record in records] == ["cert-import", "cert-remove"]
    for record in records:
        assert record["kind"] == "admin_override"
        assert record["fingerprint"] == carol
        assert record["target"] == "carol@example.org, carol.alt@example.org"
        assert record["actor"]
        assert record["program"] == "postveil certs"
        assert "BEGIN" not in json.dumps(record)
    assert records[0]["command"] == f"postveil certs import {pki.carol.cert_path}"
    assert records[1]["command"] == f"postveil certs remove {carol[:16]}"
    key = AuditKey.load(str(setup["key"]))
    assert verify_chain([setup["audit"] / "audit.jsonl"], {key.key_id: key}).ok


def test_keys_changes_audited(setup: dict[str, Path], gpg_world: GpgWorld, capsys) -> None:
    bob = gpg_world.fingerprints["bob"]
    key_file = setup["work"] / "bob.asc"
    key_file.write_bytes(gpg(gpg_world.recipient_home, "--armor", "--export", bob).stdout)
    revocation_file = gpg_world.recipient_home / "openpgp-revocs.d" / f"{bob}.rev"

    assert keys(setup, "import", str(key_file)) == 0
    assert keys(setup, "import", str(revocation_file)) == 0
    assert keys(setup, "remove", bob) == 0
    capsys.readouterr()

    records = audit_records(setup)
    assert [record["action"] for record in records] == ["key-import", "key-revoke", "key-remove"]
    for record in records:
        assert record["kind"] == "admin_override"
        assert record["fingerprint"] == bob
        assert record["target"] == "bob@example.org"
        assert record["program"] == "postveil keys"
        assert "BEGIN PGP" not in json.dumps(record)
    assert records[1]["command"] == f"postveil keys import {revocation_file}"


def test_reason_stored_in_record(setup: dict[str, Path], pki: Pki, gpg_world: GpgWorld, capsys) -> None:
    bob = gpg_world.fingerprints["bob"]
    key_file = setup["work"] / "bob.asc"
    key_file.write_bytes(gpg(gpg_world.recipient_home, "--armor", "--export", bob).stdout)
    carol = fingerprint(pki.carol.certificate)

    assert keys(setup, "import", str(key_file), "--reason", "key sent by Bob in person") == 0
    assert keys(setup, "remove", bob[-16:], "--reason", "Bob left the practice") == 0
    assert certs(setup, "import", str(pki.carol.cert_path), "--reason", "new certificate") == 0
    assert certs(setup, "remove", carol[:16], "--reason", "Carol asked for portal mail") == 0
    capsys.readouterr()

    records = audit_records(setup)
    assert [record["reason"] for record in records] == [
        "key sent by Bob in person", "Bob left the practice",
        "new certificate", "Carol asked for portal mail",
    ]
    assert records[1]["command"] == f"postveil keys remove {bob[-16:]}"
    assert records[3]["command"] == f"postveil certs remove {carol[:16]}"


def test_invalid_reason_imports_nothing(setup: dict[str, Path], pki: Pki, capsys) -> None:
    assert certs(setup, "import", str(pki.carol.cert_path), "--reason", "two\nlines") == 1
    assert "contains a control character" in capsys.readouterr().err
    assert list(setup["certs"].iterdir()) == []
    assert audit_records(setup) == []


@pytest.mark.parametrize("command", ["keys", "certs"])
@pytest.mark.parametrize("option", ["--config", "-c"])
def test_config_option_after_action(setup: dict[str, Path], command: str, option: str, capsys) -> None:
    assert main([command, "list", option, str(setup["config"])]) == 0
    assert capsys.readouterr().err == ""


def test_changes_refused_without_audit(setup: dict[str, Path], pki: Pki, gpg_world: GpgWorld, capsys) -> None:
    key_fingerprint = gpg_world.fingerprints["alice"]
    key_file = setup["work"] / "alice.asc"
    key_file.write_bytes(gpg(gpg_world.recipient_home, "--armor", "--export", key_fingerprint).stdout)
    assert keys(setup, "import", str(key_file)) == 0
    assert certs(setup, "import", str(pki.alice.cert_path)) == 0
    capsys.readouterr()
    stored_certificates = sorted(setup["certs"].iterdir())
    setup["key"].unlink()

    assert keys(setup, "remove", key_fingerprint) == 1
    error = capsys.readouterr().err
    assert "cannot write the audit record" in error
    assert "nothing was removed" in error
    assert key_fingerprint in [key.fingerprint for key in PgpKeyring(str(setup["home"])).keys()]

    revocation_file = gpg_world.recipient_home / "openpgp-revocs.d" / f"{key_fingerprint}.rev"
    assert keys(setup, "import", str(revocation_file)) == 1
    assert "nothing was imported" in capsys.readouterr().err
    [alice] = [key for key in PgpKeyring(str(setup["home"])).keys() if key.fingerprint == key_fingerprint]
    assert alice.validity != "r"

    assert certs(setup, "import", str(pki.carol.cert_path)) == 1
    error = capsys.readouterr().err
    assert "cannot write the audit record" in error
    assert "nothing was imported" in error

    assert certs(setup, "remove", fingerprint(pki.alice.certificate)[:16]) == 1
    assert "nothing was removed" in capsys.readouterr().err
    assert sorted(setup["certs"].iterdir()) == stored_certificates


# PGP import input ----------------------------------------------------------------------


def test_keys_import_revocation_as_gpg_wrote_it(setup: dict[str, Path], gpg_world: GpgWorld, capsys) -> None:
    erin = gpg_world.fingerprints["erin"]
    key_file = setup["work"] / "erin.asc"
    key_file.write_bytes(gpg(gpg_world.recipient_home, "--armor", "--export", erin).stdout)
    revocation_file = gpg_world.recipient_home / "openpgp-revocs.d" / f"{erin}.rev"
    assert b"\n:-----BEGIN PGP PUBLIC KEY BLOCK-----" in revocation_file.read_bytes()
    assert keys(setup, "import", str(key_file)) == 0
    capsys.readouterr()

    assert keys(setup, "import", str(revocation_file)) == 0
    output = capsys.readouterr().out
    assert "applied 1 revocation certificate(s)" in output
    assert erin in output
    assert "revoked" in output


def test_keys_import_rejects_binary_secret_key(setup: dict[str, Path], gpg_world: GpgWorld, capsys) -> None:
    alice = gpg_world.fingerprints["alice"]
    secret_file = setup["work"] / "alice-secret.gpg"
    secret_file.write_bytes(gpg(gpg_world.recipient_home, "--export-secret-keys", alice).stdout)

    assert keys(setup, "import", str(secret_file)) == 1
    error = capsys.readouterr().err
    assert "secret key" in error
    assert "nothing was imported" in error
    assert PgpKeyring(str(setup["home"])).keys() == []
    assert audit_records(setup) == []
    secret_keys = setup["home"] / "private-keys-v1.d"
    assert not secret_keys.exists() or os.listdir(secret_keys) == []


def test_keys_import_revocation_unknown_key(setup: dict[str, Path], gpg_world: GpgWorld, capsys) -> None:
    erin = gpg_world.fingerprints["erin"]
    revocation_file = gpg_world.recipient_home / "openpgp-revocs.d" / f"{erin}.rev"

    assert keys(setup, "import", str(revocation_file)) == 1
    error = capsys.readouterr().err
    assert f"revocation certificate for key {erin}, which is not in the keyring" in error
    assert "exit code" not in error
    assert "nothing was imported" in error
    assert audit_records(setup) == []
