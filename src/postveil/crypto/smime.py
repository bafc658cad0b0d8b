"""S/MIME (RFC 8551): recipient certificates from a directory, enveloped-data with AES-256.

cryptography's PKCS7EnvelopeBuilder accepts only RSA recipient keys (checked with
cryptography 50), so a certificate with another key type is reported unusable and
routing moves to the next method of the list.
"""

from __future__ import annotations

import base64
import datetime
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from postveil.crypto.errors import SmimeFailure
from postveil.crypto.mime import CRLF
from postveil.routing.decide import CredentialStatus

Clock = Callable[[], datetime.datetime]

logger = logging.getLogger(__name__)

PEM_SUFFIXES = (".pem", ".crt", ".cer")
SMIME_CONTENT_TYPE = "application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m"
_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
CA_PROBLEM = (
    "CA certificate (basicConstraints cA), used only as an intermediate, never encrypted to"
)
UNTRUSTED_ROOT_PROBLEM = (
    "certificate does not chain to the trust store: its chain ends at a root CA that is "
    "not in smime.trust_store"
)
# Any PEM private key block: PKCS#8 "PRIVATE KEY" and "ENCRYPTED PRIVATE KEY", the
# traditional "RSA/EC/DSA PRIVATE KEY", "OPENSSH PRIVATE KEY" and "PGP PRIVATE KEY BLOCK".
_PEM_PRIVATE_KEY_RE = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY")


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 fingerprint of the DER certificate, upper-case hex without separators."""
    return certificate.fingerprint(hashes.SHA256()).hex().upper()


def certificate_addresses(certificate: x509.Certificate) -> tuple[str, ...]:
    """Return the email addresses of ``certificate`` (subjectAltName rfc822Name entries,
    then subject emailAddress attributes), case-folded."""
    addresses: list[str] = []
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        addresses.extend(san.value.get_values_for_type(x509.RFC822Name))
    except x509.ExtensionNotFound:
        pass
    for attribute in certificate.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS):
        addresses.append(str(attribute.value))
    return tuple(dict.fromkeys(address.casefold() for address in addresses))


def key_type_name(certificate: x509.Certificate) -> str:
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC"
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return "EdDSA"
    return type(key).__name__


def contains_private_key(data: bytes) -> bool:
    """Return whether ``data`` contains a PEM private key block of any kind."""
    return _PEM_PRIVATE_KEY_RE.search(data) is not None


def load_pem_certificates(data: bytes, source: str) -> list[x509.Certificate]:
    """Parse every certificate in PEM ``data``; raise ValueError naming ``source``.

    Other PEM blocks, such as a private key, are ignored: callers that store the file
    check it with :func:`contains_private_key` first.
    """
    if _PEM_BEGIN not in data:
        raise ValueError(f"{source}: no PEM certificate found")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ValueError(f"{source}: invalid PEM certificate: {exc}") from exc


@dataclass(frozen=True)
class StoredCertificate:
    path: str
    certificate: x509.Certificate
    fingerprint: str
    addresses: tuple[str, ...]
    is_ca: bool = False
    """A CA certificate (basicConstraints cA): used only as an intermediate, never
    encrypted to."""


@dataclass(frozen=True)
class CertificateLookup:
    status: CredentialStatus
    certificate: x509.Certificate | None


class CertificateStore:
    """Recipient certificates from a directory of PEM files, checked against a trust store.

    The directory is scanned again when a file's name, size or modification time
    changes, so ``postveil certs import`` takes effect without a restart. A missing or
    unreadable directory or trust store raises :class:`SmimeFailure` on every lookup. A
    file that does not parse, or that contains a private key, is skipped and listed in
    :attr:`problems`. Unless ``log_problems`` is False (for a caller that prints the
    problems itself), each problem is also logged as a warning once per reload.
    """

    def __init__(
        self,
        certificate_dir: str,
        trust_store: str,
        clock: Clock = _utcnow,
        *,
        log_problems: bool = True,
    ) -> None:
        self.certificate_dir = certificate_dir
        self.trust_store = trust_store
        self.clock = clock
        self.log_problems = log_problems
        self._signature: tuple[tuple[str, int, int], ...] | None = None
        self._leaves: list[StoredCertificate] = []
        self._authorities: list[StoredCertificate] = []
        self._roots: list[x509.Certificate] = []
        self.problems: list[str] = []
        # The milter calls lookups from several threads; one of them reloads at a time.
        self._lock = threading.Lock()

    # Loading -----------------------------------------------------------------------

    def _pem_files(self, path: str) -> list[Path]:
        try:
            entries = sorted(os.scandir(path), key=lambda entry: entry.name)
        except OSError as exc:
            if path == self.trust_store:
                raise SmimeFailure(
                    f"cannot read trust store directory {path} (smime.trust_store): {exc.strerror}"
                ) from exc
            raise SmimeFailure(
                f"cannot read certificate directory {path} (smime.certificate_dir): "
                f"{exc.strerror}; create it as docs/install.md shows, or correct "
                "smime.certificate_dir"
            ) from exc
        return [Path(e.path) for e in entries if e.is_file() and e.name.endswith(PEM_SUFFIXES)]

    def _directory_signature(self) -> tuple[tuple[str, int, int], ...]:
        signature = []
        for path in self._pem_files(self.certificate_dir):
            try:
                stat = path.stat()
            except OSError as exc:
                raise SmimeFailure(f"cannot read certificate file {path}: {exc.strerror}") from exc
            signature.append((path.name, stat.st_size, stat.st_mtime_ns))
        trust = Path(self.trust_store)
        try:
            stat = trust.stat()
        except OSError as exc:
            raise SmimeFailure(
                f"cannot read trust store {trust} (smime.trust_store): {exc.strerror}; point "
                "smime.trust_store at the PEM file or directory of the CA certificates that "
                "recipients' certificates chain to"
            ) from exc
        signature.append((str(trust), stat.st_size, stat.st_mtime_ns))
        return tuple(signature)

    def _read(self, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise SmimeFailure(f"cannot read certificate file {path}: {exc.strerror}") from exc

    def refresh(self) -> None:
        """Reload the directory and the trust store when either changed."""
        with self._lock:
            self._refresh_locked()

    def _refresh_locked(self) -> None:
        signature = self._directory_signature()
        if signature == self._signature:
            return
        roots: list[x509.Certificate] = []
        trust_path = Path(self.trust_store)
        trust_files = self._pem_files(self.trust_store) if trust_path.is_dir() else [trust_path]
        for path in trust_files:
            try:
                roots.extend(load_pem_certificates(self._read(path), str(path)))
            except ValueError as exc:
                raise SmimeFailure(f"invalid trust store: {exc}") from exc
        if not roots:
            raise SmimeFailure(f"trust store {self.trust_store} contains no certificate")

        leaves: list[StoredCertificate] = []
        authorities: list[StoredCertificate] = []
        problems: list[str] = []
        for path in self._pem_files(self.certificate_dir):
            data = self._read(path)
            if contains_private_key(data):
                # The file name only: the contents are a secret.
                problems.append(
                    f"{path}: contains a private key; remove the key from the file, or delete "
                    "the file and import the certificate again"
                )
                continue
            try:
                certificates = load_pem_certificates(data, str(path))
            except ValueError as exc:
                problems.append(str(exc))
                continue
            for certificate in certificates:
                stored = StoredCertificate(
                    str(path),
                    certificate,
                    fingerprint(certificate),
                    certificate_addresses(certificate),
                    is_ca=is_ca_certificate(certificate),
                )
                (authorities if stored.is_ca else leaves).append(stored)
        self._roots, self._leaves, self._authorities = roots, leaves, authorities
        self.problems = problems
        if self.log_problems:
            for problem in problems:
                logger.warning("certificate file skipped: %s", problem)
        self._signature = signature

    # Queries -----------------------------------------------------------------------

    def certificates(self) -> list[StoredCertificate]:
        """Return the recipient (non-CA) certificates, the ones lookups choose from."""
        self.refresh()
        return list(self._leaves)

    def all_certificates(self) -> list[StoredCertificate]:
        """Return every certificate in the directory: recipients, then CA certificates."""
        self.refresh()
        return self._leaves + self._authorities

    def check(
        self,
        certificate: x509.Certificate,
        now: datetime.datetime | None = None,
        extra_intermediates: Sequence[x509.Certificate] = (),
    ) -> str | None:
        """Return why ``certificate`` cannot be used for encryption, or None if it can.

        ``extra_intermediates`` are CA certificates not yet in the directory, such as
        the rest of a file being imported; they may complete the chain.
        """
        now = now or self.clock()
        if is_ca_certificate(certificate):
            return CA_PROBLEM
        if now < certificate.not_valid_before_utc:
            return "certificate not yet valid"
        if now > certificate.not_valid_after_utc:
            return "certificate expired"
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store(self._roots))
            .time(now)
            .extension_policies(
                ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                # The web PKI end-entity policy demands serverAuth or clientAuth, which
                # S/MIME certificates need not have; key usage is checked below instead.
                ee_policy=verification.ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        intermediates = [stored.certificate for stored in self._authorities]
        intermediates.extend(c for c in extra_intermediates if is_ca_certificate(c))
        try:
            verifier.verify(certificate, intermediates)
        except verification.VerificationError as exc:
            # The library's text ("candidates exhausted: ...") means little to an admin.
            logger.debug(
                "certificate %s: chain verification failed: %s", fingerprint(certificate)[:16], exc
            )
            return self._chain_problem(certificate, intermediates)
        usage_problem = _usage_problem(certificate)
        if usage_problem:
            return usage_problem
        key_type = key_type_name(certificate)
        if key_type != "RSA":
            return (
                f"certificate key is {key_type}, and S/MIME encryption here supports only "
                "RSA recipient keys"
            )
        return None

    def _chain_problem(
        self, certificate: x509.Certificate, intermediates: list[x509.Certificate]
    ) -> str:
        """Explain in an admin's words why ``certificate`` does not chain to the trust store.

        The text leaves out names: routing reasons and audit records quote it, and a
        self-signed certificate's issuer is the recipient's own name.
        """
        if certificate.issuer == certificate.subject:
            return "certificate is self-signed, not issued by a CA in the trust store"
        if self._untrusted_root(certificate, intermediates) is not None:
            return UNTRUSTED_ROOT_PROBLEM
        known = {candidate.subject for candidate in [*self._roots, *intermediates]}
        if certificate.issuer not in known:
            return (
                "certificate does not chain to the trust store: its issuer is neither in "
                "smime.trust_store nor an intermediate in smime.certificate_dir"
            )
        return (
            "certificate does not chain to the trust store: the chain to a trusted CA is "
            "invalid (a bad signature, an expired CA, or a CA not allowed to issue it)"
        )

    def untrusted_root(
        self, certificate: x509.Certificate, extra_intermediates: Sequence[x509.Certificate] = ()
    ) -> x509.Certificate | None:
        """Return the self-signed root outside the trust store that the chain of
        ``certificate`` ends at, or None when the chain does not end at such a root."""
        self.refresh()
        intermediates = [stored.certificate for stored in self._authorities]
        intermediates.extend(c for c in extra_intermediates if is_ca_certificate(c))
        return self._untrusted_root(certificate, intermediates)

    def _untrusted_root(
        self, certificate: x509.Certificate, intermediates: Sequence[x509.Certificate]
    ) -> x509.Certificate | None:
        trusted_subjects = {root.subject for root in self._roots}
        by_subject = {candidate.subject: candidate for candidate in intermediates}
        visited: set[x509.Name] = set()
        current = certificate
        # Follow issuer names up the chain; a name loop or a missing issuer ends the walk.
        while current.issuer not in trusted_subjects and current.issuer not in visited:
            issuer = by_subject.get(current.issuer)
            if issuer is None:
                return None
            if issuer.issuer == issuer.subject:
                return issuer
            visited.add(issuer.subject)
            current = issuer
        return None

    def expiring_issuers(
        self, certificate: x509.Certificate, before: datetime.datetime
    ) -> list[x509.Certificate]:
        """Return the CA certificates above ``certificate`` that expire before ``before``,
        nearest first: intermediates in the directory and roots in the trust store.

        The walk follows issuer names, so with two CA certificates of one name it may
        name the one that the verifier would not have chosen.
        """
        self.refresh()
        by_subject = {
            stored.certificate.subject: stored.certificate for stored in self._authorities
        }
        by_subject.update((root.subject, root) for root in self._roots)
        expiring: list[x509.Certificate] = []
        visited: set[x509.Name] = set()
        current = certificate
        while current.issuer != current.subject and current.issuer not in visited:
            issuer = by_subject.get(current.issuer)
            if issuer is None:
                break
            if issuer.not_valid_after_utc < before:
                expiring.append(issuer)
            visited.add(issuer.subject)
            current = issuer
        return expiring

    def lookup(self, address: str) -> CertificateLookup:
        """Find a usable certificate for ``address`` (compared without case).

        Among several usable ones the one valid longest wins. When none is usable the
        status explains why the first candidate failed.
        """
        self.refresh()
        folded_address = address.casefold()
        candidates = [c for c in self._leaves if folded_address in c.addresses]
        if not candidates:
            return CertificateLookup(CredentialStatus(None, "no certificate for the address"), None)
        candidates.sort(key=lambda c: c.certificate.not_valid_after_utc, reverse=True)
        now = self.clock()
        first_problem = ""
        for candidate in candidates:
            problem = self.check(candidate.certificate, now)
            if problem is None:
                status = CredentialStatus(candidate.fingerprint, f"certificate {candidate.fingerprint[:16]} valid")
                return CertificateLookup(status, candidate.certificate)
            first_problem = first_problem or problem
        return CertificateLookup(CredentialStatus(None, first_problem), None)

    def by_fingerprint(self, value: str) -> x509.Certificate:
        """Return the stored certificate with SHA-256 fingerprint ``value``; raise
        SmimeFailure when it is gone (removed since the decision)."""
        self.refresh()
        for stored in self._leaves:
            if stored.fingerprint == value.upper():
                return stored.certificate
        raise SmimeFailure(f"certificate {value} is no longer in {self.certificate_dir}")


def is_ca_certificate(certificate: x509.Certificate) -> bool:
    """Return whether ``certificate`` is a CA certificate (basicConstraints cA)."""
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _usage_problem(certificate: x509.Certificate) -> str | None:
    try:
        eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if (
            ExtendedKeyUsageOID.EMAIL_PROTECTION not in eku
            and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku
        ):
            return "certificate extended key usage does not include emailProtection"
    except x509.ExtensionNotFound:
        pass
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.key_encipherment:
            return "certificate key usage does not include keyEncipherment"
    except x509.ExtensionNotFound:
        pass
    return None


# Encryption and signing ------------------------------------------------------------


@dataclass(frozen=True)
class SmimeSigner:
    """The organisation's signing certificate, its private key and intermediates."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...] = ()

    @classmethod
    def load(cls, certificate_path: str, key_path: str) -> SmimeSigner:
        """Read the certificate (plus intermediates) and unencrypted key PEM files."""
        try:
            certificates = load_pem_certificates(Path(certificate_path).read_bytes(), certificate_path)
            key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
        except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise SmimeFailure(f"cannot load the S/MIME signing certificate or key: {exc}") from exc
        if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
            raise SmimeFailure(f"{key_path}: signing key must be RSA or EC")
        return cls(certificates[0], key, tuple(certificates[1:]))

    def sign(self, entity: bytes) -> bytes:
        """Wrap ``entity`` (canonical CRLF) in multipart/signed with a detached CMS
        signature (SHA-256); the first part is ``entity`` byte for byte."""
        builder = pkcs7.PKCS7SignatureBuilder().set_data(entity).add_signer(
            self.certificate, self.key, hashes.SHA256()
        )
        for certificate in self.chain:
            builder = builder.add_certificate(certificate)
        try:
            signature = builder.sign(
                serialization.Encoding.DER,
                [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary],
            )
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise SmimeFailure(f"S/MIME signing failed: {exc}") from exc
        boundary = "postveil-signed-" + secrets.token_hex(12)
        head = (
            "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; "
            f"micalg=sha-256; boundary=\"{boundary}\"\r\n\r\n"
        )
        parts = [
            head.encode("ascii"),
            f"--{boundary}\r\n".encode("ascii"),
            entity,
            f"\r\n--{boundary}\r\n".encode("ascii"),
            b"Content-Type: application/pkcs7-signature; name=smime.p7s\r\n",
            b"Content-Transfer-Encoding: base64\r\n",
            b"Content-Disposition: attachment; filename=smime.p7s\r\n\r\n",
            wrap_base64(signature),
            f"--{boundary}--\r\n".encode("ascii"),
        ]
        return b"".join(parts)


def wrap_base64(data: bytes, width: int = 76) -> bytes:
    """Base64 in lines of ``width`` characters, each ending in CRLF."""
    encoded = base64.b64encode(data)
    return b"".join(encoded[i : i + width] + CRLF for i in range(0, len(encoded), width))


def encrypt_entity(entity: bytes, certificates: Sequence[x509.Certificate]) -> bytes:
    """Encrypt ``entity`` (a canonical MIME entity) to every certificate with AES-256-CBC.

    Returns the DER CMS enveloped-data. Raises SmimeFailure on any library error.
    """
    builder = pkcs7.PKCS7EnvelopeBuilder().set_data(entity)
    builder = builder.set_content_encryption_algorithm(algorithms.AES256)
    try:
        for certificate in certificates:
            builder = builder.add_recipient(certificate)
        # Binary: the entity is already canonical, so no line ending is translated.
        return builder.encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SmimeFailure(f"S/MIME encryption failed: {exc}") from exc


def smime_headers() -> tuple[tuple[str, str], ...]:
    """Outer content headers of an S/MIME enveloped-data message."""
    return (
        ("MIME-Version", "1.0"),
        ("Content-Type", SMIME_CONTENT_TYPE),
        ("Content-Transfer-Encoding", "base64"),
        ("Content-Disposition", "attachment; filename=smime.p7m"),
    )
