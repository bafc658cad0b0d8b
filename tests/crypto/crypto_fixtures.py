"""Test PKI (trustme CA with RSA and EC leaves) and GnuPG homes with generated keys.

The fixtures that use these helpers live in conftest.py."""

from __future__ import annotations

import datetime
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from postveil.crypto.pgp import PgpKeyring

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Leaf:
    cert_path: Path
    key_path: Path
    certificate: x509.Certificate


class Pki:
    """A trustme CA plus helpers that issue S/MIME leaf certificates into a directory."""

    # Leaves issued by the session fixture ``pki``.
    alice: Leaf
    carol: Leaf
    expired: Leaf
    ec: Leaf
    clientonly: Leaf
    untrusted: Leaf
    signer: Leaf

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca = trustme.CA(key_type=trustme.KeyType.RSA)
        self.ca_cert = x509.load_pem_x509_certificate(self.ca.cert_pem.bytes())
        self.ca_key = serialization.load_pem_private_key(self.ca.private_key_pem.bytes(), None)
        self.cert_dir = root / "recipients"
        self.cert_dir.mkdir()
        self.keys_dir = root / "keys"
        self.keys_dir.mkdir()
        self.trust_store = root / "trust.pem"
        self.ca.cert_pem.write_to_path(str(self.trust_store))
        self._rsa_keys: list[rsa.RSAPrivateKey] = []

    def issue(
        self,
        name: str,
        emails: list[str],
        *,
        key_type: str = "rsa",
        not_before: datetime.datetime = NOW - DAY,
        not_after: datetime.datetime = NOW + 30 * DAY,
        eku: list[x509.ObjectIdentifier] | None = None,
        issuer_key: object | None = None,
        install: bool = True,
    ) -> Leaf:
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
        if key_type == "rsa":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
        signing_key = issuer_key or self.ca_key
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(
                x509.SubjectAlternativeName([x509.RFC822Name(e) for e in emails]), critical=False
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(eku or [ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                critical=False,
            )
        )
        certificate = builder.sign(signing_key, hashes.SHA256())
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        cert_path = (self.cert_dir if install else self.keys_dir) / f"{name}.pem"
        cert_path.write_bytes(pem)
        key_path = self.keys_dir / f"{name}.key"
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return Leaf(cert_path, key_path, certificate)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    pki = Pki(tmp_path_factory.mktemp("pki"))
    pki.alice = pki.issue("alice", ["alice@example.org"])
    pki.carol = pki.issue("carol", ["Carol@Example.org", "carol.alt@example.org"])
    pki.expired = pki.issue(
        "expired", ["old@example.org"], not_before=NOW - 60 * DAY, not_after=NOW - DAY
    )
    pki.ec = pki.issue("ecuser", ["ec@example.org"], key_type="ec")
    pki.clientonly = pki.issue(
        "clientonly", ["client@example.org"], eku=[ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    rogue = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pki.untrusted = pki.issue("untrusted", ["rogue@example.org"], issuer_key=rogue)
    pki.signer = pki.issue("signer", ["postmaster@sender.example"], install=False)
    return pki


def gpg(home: Path, *args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--no-tty", "--pinentry-mode", "loopback",
         "--passphrase", "", *args],
        input=input,
        capture_output=True,
        check=check,
        timeout=60,
    )


def _fingerprint_of(home: Path, uid: str) -> str:
    out = gpg(home, "--with-colons", "--list-keys", uid).stdout.decode()
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


@dataclass
class GpgWorld:
    recipient_home: Path
    """Home with the recipients' secret keys (what the recipients' mail clients hold)."""

    postveil_home: Path
    """postveil's home with only the imported public keys."""

    fingerprints: dict[str, str]


@pytest.fixture(scope="session")
def gpg_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GpgWorld]:
    base = tmp_path_factory.mktemp("gpg")
    home = base / "recipients"
    home.mkdir(mode=0o700)
    fingerprints: dict[str, str] = {}
    # future-default is ed25519 with a cv25519 encryption subkey: generation is instant.
    for name in ("alice", "bob", "dave", "erin"):
        gpg(home, "--quick-gen-key", f"{name.title()} <{name}@example.org>", "future-default", "default", "never")
        fingerprints[name] = _fingerprint_of(home, f"{name}@example.org")
    gpg(home, "--faked-system-time", "20200101T000000", "--quick-gen-key",
        "Old <oldpgp@example.org>", "future-default", "default", "1y")
    fingerprints["oldpgp"] = _fingerprint_of(home, "oldpgp@example.org")
    # Signing-only key: no encryption subkey.
    gpg(home, "--quick-gen-key", "Sig <sig@example.org>", "ed25519", "sign", "never")
    fingerprints["sig"] = _fingerprint_of(home, "sig@example.org")
    # Erin gets a second user id, which is then revoked.
    gpg(home, "--quick-add-uid", fingerprints["erin"], "Erin Old <erin.old@example.org>")
    gpg(home, "--quick-revoke-uid", fingerprints["erin"], "Erin Old <erin.old@example.org>")
    public = gpg(home, "--armor", "--export").stdout

    postveil_home = base / "postveil"
    postveil_home.mkdir(mode=0o700)
    keyring = PgpKeyring(str(postveil_home))
    keyring.import_keys(public)
    # Dave's key is revoked after the import, as an admin would import a revocation.
    revocation = (home / "openpgp-revocs.d" / f"{fingerprints['dave']}.rev").read_bytes()
    revocation = revocation.replace(b":-----BEGIN", b"-----BEGIN")
    keyring.import_keys(revocation)

    yield GpgWorld(home, postveil_home, fingerprints)
    for path in (home, postveil_home):
        subprocess.run(["gpgconf", "--homedir", str(path), "--kill", "all"], check=False)


def gpg_decrypt(world: GpgWorld, armored: bytes) -> bytes:
    return gpg(world.recipient_home, "--decrypt", input=armored).stdout


def openssl_decrypt(message: bytes, leaf: Leaf, tmp_path: Path) -> bytes:
    source = tmp_path / "encrypted.eml"
    source.write_bytes(message)
    result = subprocess.run(
        ["openssl", "cms", "-decrypt", "-in", str(source), "-recip", str(leaf.cert_path),
         "-inkey", str(leaf.key_path), "-binary"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return result.stdout


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target
