"""`postveil keys` and `postveil certs` against a real GnuPG home and PEM directory."""

from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path

import pytest
from crypto_fixtures import GpgWorld, Pki, gpg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from postveil.audit import generate_key_file
from postveil.cli.main import main


@pytest.fixture
def config_file(tmp_path: Path, pki: Pki) -> Path:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    certs = tmp_path / "certs"
    certs.mkdir()
    generate_key_file(tmp_path / "audit.key")
    path = tmp_path / "postveil.yaml"
    path.write_text(
        f"pgp: {{gnupg_home: {home}}}\n"
        f"smime: {{certificate_dir: {certs}, trust_store: {pki.trust_store}}}\n"
        f"audit: {{directory: {tmp_path / 'audit'}, key_file: {tmp_path / 'audit.key'}}}\n"
    )
    yield path
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


def test_keys_import_list_remove(config_file: Path, gpg_world: GpgWorld, tmp_path: Path, capsys) -> None:
    key_file = tmp_path / "alice.asc"
    key_file.write_bytes(gpg(gpg_world.recipient_home, "--armor", "--export", gpg_world.fingerprints["alice"]).stdout)
    fingerprint = gpg_world.fingerprints["alice"]

    assert main(["keys", "--config", str(config_file), "import", str(key_file)]) == 0
    assert f"imported (new key): {fingerprint}" in capsys.readouterr().out
    assert main(["keys", "--config", str(config_file), "import", str(key_file)]) == 0
    assert f"unchanged, already in the keyring: {fingerprint}" in capsys.readouterr().out

    assert main(["keys", "--config", str(config_file), "list"]) == 0
    listing = capsys.readouterr().out
    assert fingerprint in listing
    assert "usable" in listing
    assert "alice@example.org" in listing

    assert main(["keys", "--config", str(config_file), "remove", fingerprint[-16:]]) == 0
    assert f"removed {fingerprint}" in capsys.readouterr().out
    assert main(["keys", "--config", str(config_file), "list"]) == 0
    assert fingerprint not in capsys.readouterr().out


def test_keys_import_revocation(config_file: Path, gpg_world: GpgWorld, tmp_path: Path, capsys) -> None:
    fingerprint = gpg_world.fingerprints["dave"]
    key_file = tmp_path / "dave.asc"
    key_file.write_bytes(gpg(gpg_world.recipient_home, "--armor", "--export", fingerprint).stdout)
    assert main(["keys", "--config", str(config_file), "import", str(key_file)]) == 0
    capsys.readouterr()
    # gpg writes revocation certificates with a leading colon so they are not imported by accident.
    revocation = (gpg_world.recipient_home / "openpgp-revocs.d" / f"{fingerprint}.rev").read_bytes()
    revocation_file = tmp_path / "dave.rev"
    revocation_file.write_bytes(revocation.replace(b":-----BEGIN", b"-----BEGIN"))

    assert main(["keys", "--config", str(config_file), "import", str(revocation_file)]) == 0
    output = capsys.readouterr().out
    assert "applied 1 revocation certificate(s)" in output
    assert fingerprint in output
    assert "revoked" in output


def test_keys_remove_unknown_id(config_file: Path, capsys) -> None:
    assert main(["keys", "--config", str(config_file), "remove", "ABCD"]) == 1
    error = capsys.readouterr().err
    assert "no key matches 'ABCD'" in error
    assert "in full or its last 16 hex digits" in error


def test_keys_import_missing_file(config_file: Path, tmp_path: Path, capsys) -> None:
    assert main(["keys", "--config", str(config_file), "import", str(tmp_path / "none.asc")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_keys_list_broken_home(tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"pgp: {{gnupg_home: {tmp_path / 'absent'}}}\n")

    assert main(["keys", "--config", str(config), "list"]) == 1
    error = capsys.readouterr().err
    assert "missing or not a directory" in error
    assert "create it as docs/install.md shows, or correct pgp.gnupg_home" in error


def test_certs_import_list_remove(config_file: Path, pki: Pki, capsys) -> None:
    assert main(["certs", "--config", str(config_file), "import", str(pki.alice.cert_path)]) == 0
    imported = capsys.readouterr().out
    assert "imported" in imported
    assert "usable" in imported

    assert main(["certs", "--config", str(config_file), "list"]) == 0
    listing = capsys.readouterr().out
    assert "alice@example.org" in listing
    fingerprint = listing.split()[0]

    assert main(["certs", "--config", str(config_file), "remove", fingerprint[:16]]) == 0
    assert "removed" in capsys.readouterr().out
    assert main(["certs", "--config", str(config_file), "list"]) == 0
    assert "alice@example.org" not in capsys.readouterr().out


def test_certs_import_refuses_unusable(config_file: Path, pki: Pki, capsys) -> None:
    assert main(["certs", "--config", str(config_file), "import", str(pki.expired.cert_path)]) == 1
    error = capsys.readouterr().err
    assert "certificate expired" in error
    assert "ask the recipient for a current certificate" in error
    assert "trust store" not in error

    assert main(["certs", "--config", str(config_file), "import", "--force", str(pki.expired.cert_path)]) == 0
    assert "certificate expired" in capsys.readouterr().out


def test_certs_import_not_pem(config_file: Path, tmp_path: Path, capsys) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("hello")

    assert main(["certs", "--config", str(config_file), "import", str(bogus)]) == 1
    assert "no PEM certificate" in capsys.readouterr().err


def test_certs_list_missing_directory(tmp_path: Path, pki: Pki, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"smime: {{certificate_dir: {tmp_path / 'absent'}, trust_store: {pki.trust_store}}}\n")

    assert main(["certs", "--config", str(config), "list"]) == 1
    error = capsys.readouterr().err
    assert "cannot read certificate directory" in error
    assert "create it as docs/install.md shows, or correct smime.certificate_dir" in error


def test_certs_list_missing_trust_store(tmp_path: Path, pki: Pki, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"smime: {{certificate_dir: {pki.cert_dir}, trust_store: {tmp_path / 'absent.pem'}}}\n")

    assert main(["certs", "--config", str(config), "list"]) == 1
    error = capsys.readouterr().err
    assert "cannot read trust store" in error
    assert "point smime.trust_store at the PEM file or directory" in error


def test_keys_list_expiring_subkey(config_file: Path, tmp_path: Path, capsys) -> None:
    home = tmp_path / "sender-side"
    home.mkdir(mode=0o700)
    # The primary key never expires, but its only encryption subkey does in 10 days.
    gpg(home, "--quick-gen-key", "Soon <soon@example.org>", "ed25519", "sign", "never")
    listing = gpg(home, "--with-colons", "--list-keys", "soon@example.org").stdout.decode()
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    gpg(home, "--quick-add-key", fingerprint, "cv25519", "encr", "10d")
    key_file = tmp_path / "soon.asc"
    key_file.write_bytes(gpg(home, "--armor", "--export", fingerprint).stdout)
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)
    assert main(["keys", "--config", str(config_file), "import", str(key_file)]) == 0
    capsys.readouterr()

    assert main(["keys", "--config", str(config_file), "list", "--expiring", "30"]) == 3
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 1
    assert listed[0].startswith(fingerprint)
    assert "expires never" not in listed[0]
    assert "usable, but in 30 days: its last encryption subkey expired" in listed[0]
    assert "soon@example.org" in listed[0]

    assert main(["keys", "--config", str(config_file), "list", "--expiring", "5"]) == 0
    assert capsys.readouterr().out == ""


def test_keys_list_expiring_primary(config_file: Path, tmp_path: Path, capsys) -> None:
    home = tmp_path / "sender-side"
    home.mkdir(mode=0o700)
    # The primary key expires in 10 days, before its encryption subkey.
    gpg(home, "--quick-gen-key", "Brief <brief@example.org>", "ed25519", "sign", "10d")
    listing = gpg(home, "--with-colons", "--list-keys", "brief@example.org").stdout.decode()
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    gpg(home, "--quick-add-key", fingerprint, "cv25519", "encr", "100d")
    key_file = tmp_path / "brief.asc"
    key_file.write_bytes(gpg(home, "--armor", "--export", fingerprint).stdout)
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)
    assert main(["keys", "--config", str(config_file), "import", str(key_file)]) == 0
    capsys.readouterr()

    assert main(["keys", "--config", str(config_file), "list", "--expiring", "30"]) == 3

    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 1
    assert listed[0].startswith(fingerprint)
    assert "usable, but in 30 days: PGP key expired" in listed[0]


def test_keys_list_expiring_skips_lasting_keys(
    config_file: Path, gpg_world: GpgWorld, tmp_path: Path, capsys
) -> None:
    key_file = tmp_path / "alice.asc"
    key_file.write_bytes(gpg(gpg_world.recipient_home, "--armor", "--export", gpg_world.fingerprints["alice"]).stdout)
    assert main(["keys", "--config", str(config_file), "import", str(key_file)]) == 0
    capsys.readouterr()

    assert main(["keys", "--config", str(config_file), "list", "--expiring", "3650"]) == 0
    assert capsys.readouterr().out == ""


def test_list_expiring_rejects_bad_days(config_file: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["keys", "--config", str(config_file), "list", "--expiring", "-1"])
    assert exit_info.value.code == 2
    assert "number of days must be 0 or more, not -1" in capsys.readouterr().err


def test_certs_list_expiring(config_file: Path, pki: Pki, capsys) -> None:
    # alice's certificate expires in 30 days; the expired one is not usable now.
    assert main(["certs", "--config", str(config_file), "import", str(pki.alice.cert_path)]) == 0
    assert main(["certs", "--config", str(config_file), "import", "--force", str(pki.expired.cert_path)]) == 0
    capsys.readouterr()

    assert main(["certs", "--config", str(config_file), "list", "--expiring", "31"]) == 3
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 1
    assert "alice@example.org" in listed[0]
    assert "usable, but in 31 days: certificate expired" in listed[0]

    assert main(["certs", "--config", str(config_file), "list", "--expiring", "29"]) == 0
    assert capsys.readouterr().out == ""


def issue_with_intermediate(pki: Pki, directory: Path, ca_days: int, leaf_days: int) -> Path:
    """Write a PEM file with a leaf valid ``leaf_days`` days, signed by an intermediate
    CA valid ``ca_days`` days that pki's root signed, followed by that intermediate."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Short Intermediate")])
    intermediate = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(pki.ca_cert.subject)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=ca_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(pki.ca_key.public_key()), critical=False
        )
        .sign(pki.ca_key, hashes.SHA256())
    )
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "erin")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=leaf_days))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("erin@example.org")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    path = directory / "erin-chain.pem"
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, intermediate)))
    return path


def test_certs_list_expiring_names_ca(config_file: Path, pki: Pki, tmp_path: Path, capsys) -> None:
    # The leaf lasts a year, but the intermediate CA of its chain expires in 20 days.
    chain = issue_with_intermediate(pki, tmp_path, ca_days=20, leaf_days=365)
    assert main(["certs", "--config", str(config_file), "import", str(chain)]) == 0
    capsys.readouterr()

    assert main(["certs", "--config", str(config_file), "list", "--expiring", "30"]) == 3

    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 1
    assert "erin@example.org" in listed[0]
    assert "usable, but in 30 days: certificate does not chain to the trust store" in listed[0]
    ca_expiry = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=20)).strftime("%Y-%m-%d")
    assert f"(CA certificate CN=Short Intermediate expires {ca_expiry})" in listed[0]


def test_certs_list_expiring_one_day(config_file: Path, pki: Pki, tmp_path: Path, capsys) -> None:
    soon = pki.issue(
        "hours",
        ["hours@example.org"],
        not_after=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=5),
        install=False,
    )
    assert main(["certs", "--config", str(config_file), "import", str(soon.cert_path)]) == 0
    capsys.readouterr()

    assert main(["certs", "--config", str(config_file), "list", "--expiring", "1"]) == 3

    listed = capsys.readouterr().out
    assert "usable, but in 1 day: certificate expired" in listed
    assert "(CA certificate" not in listed


@pytest.mark.skipif(os.geteuid() != 0, reason="only root is refused")
def test_keys_as_root_refused_for_other_owner(config_file: Path, tmp_path: Path, capsys) -> None:
    home = tmp_path / "gnupg"
    os.chown(home, 65534, 65534)

    assert main(["keys", "--config", str(config_file), "import", "--reason", "handed over", "a.asc"]) == 1
    error = capsys.readouterr().err
    assert f"run this as the owner of {home}, not as root" in error
    assert f"-- postveil keys import a.asc --reason 'handed over' -c {config_file}" in error
    # Nothing was created in the home, so the milter's user keeps its keyring.
    assert list(home.iterdir()) == []
