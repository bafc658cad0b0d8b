"""A throw-away certificate authority for test servers and S/MIME recipients."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme


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

    def server_context(self, *names: str) -> ssl.SSLContext:
        """Build a server SSLContext that presents a certificate for ``names``."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.issue(*names).configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context
