"""A throw-away certificate authority for test servers and S/MIME recipients."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


class TestPKI:
    """A CA (RSA keys, so certificates also serve as S/MIME recipients) writing PEM files.

    ``ca_path`` is the CA bundle that clients (Postfix, the MTA-STS fetcher) trust.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA(key_type=trustme.KeyType.RSA)
        self.ca_path = self.directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        self._issued: dict[tuple[str, ...], trustme.LeafCert] = {}

    def issue(self, *names: str) -> trustme.LeafCert:
        """Issue (once) a leaf certificate for DNS names or email addresses."""
        key = tuple(names)
        if key not in self._issued:
            self._issued[key] = self.ca.issue_cert(*names, key_type=trustme.KeyType.RSA)
        return self._issued[key]

    def write_leaf(self, *names: str) -> tuple[Path, Path]:
        """Write the chain and key of a leaf for ``names``; return (cert_path, key_path)."""
        leaf = self.issue(*names)
        stem = "_".join(n.replace("@", "_at_").replace("*", "star") for n in names)[:80]
        cert_path = self.directory / f"{stem}.crt"
        key_path = self.directory / f"{stem}.key"
        with cert_path.open("wb") as handle:
            for blob in leaf.cert_chain_pems:
                handle.write(blob.bytes())
        leaf.private_key_pem.write_to_path(str(key_path))
        key_path.chmod(0o600)
        return cert_path, key_path

    def write_smime_leaf(self, address: str) -> tuple[Path, Path]:
        """Issue an S/MIME certificate (RSA, emailProtection) for ``address``.

        trustme's leaves carry no emailProtection usage, so this one is built with
        cryptography and signed by the same CA. Returns (cert_path, key_path).
        """
        ca_cert = x509.load_pem_x509_certificate(self.ca.cert_pem.bytes())
        ca_key = serialization.load_pem_private_key(self.ca.private_key_pem.bytes(), password=None)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.EMAIL_ADDRESS, address)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=True,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        stem = address.replace("@", "_at_")
        cert_path = self.directory / f"smime-{stem}.crt"
        key_path = self.directory / f"smime-{stem}.key"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)
        return cert_path, key_path

    def server_context(self, *names: str) -> ssl.SSLContext:
        """Build a server SSLContext that presents a certificate for ``names``."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.issue(*names).configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context
