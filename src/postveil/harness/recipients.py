"""Recipients who can read encrypted mail: a PGP key pair or an S/MIME certificate.

Each recipient keeps its private key in its own directory, and its public half is
installed into the world's postveil state (GnuPG home or certificate directory), as an
admin would with ``postveil keys import`` or ``postveil certs import``. ``decrypt``
runs the real ``gpg --decrypt`` or ``openssl cms -decrypt``.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from email import message_from_bytes
from email.policy import compat32
from pathlib import Path

from postveil.crypto import PgpKeyring
from postveil.harness.pki import TestPKI


def _run(command: list[str], data: bytes | None = None) -> bytes:
    result = subprocess.run(command, input=data, capture_output=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({result.returncode}): {result.stderr.decode(errors='replace')[-800:]}")
    return result.stdout


@dataclass
class PgpRecipient:
    address: str
    home: Path
    fingerprint: str

    @classmethod
    def create(cls, address: str, directory: Path, postveil_gnupg_home: Path) -> PgpRecipient:
        """Generate a key pair for ``address`` and import its public key for postveil."""
        home = directory / f"gpg-{address.replace('@', '_at_')}"
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        base = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
        _run([*base, "--quick-gen-key", f"Test Recipient <{address}>", "future-default", "default", "never"])
        listing = _run(["gpg", "--homedir", str(home), "--batch", "--with-colons", "--list-keys", address])
        fingerprint = next(
            line.split(":")[9] for line in listing.decode().splitlines() if line.startswith("fpr:")
        )
        public = _run(["gpg", "--homedir", str(home), "--batch", "--armor", "--export", fingerprint])
        PgpKeyring(str(postveil_gnupg_home)).import_keys(public)
        return cls(address, home, fingerprint)

    def decrypt(self, message: bytes) -> bytes:
        """Decrypt a PGP/MIME message (RFC 3156) and return the inner MIME entity."""
        parsed = message_from_bytes(message, policy=compat32)
        parts = parsed.get_payload()
        if parsed.get_content_type() != "multipart/encrypted" or not isinstance(parts, list):
            raise ValueError(f"not PGP/MIME: {parsed.get_content_type()}")
        armored = parts[1].get_payload(decode=True)
        return _run(["gpg", "--homedir", str(self.home), "--batch", "--decrypt"], armored)

    @property
    def encryption_key_ids(self) -> list[str]:
        """Long key ids of this recipient's encryption subkeys (upper-case hex)."""
        listing = _run(["gpg", "--homedir", str(self.home), "--batch", "--with-colons", "--list-keys", self.fingerprint])
        return [line.split(":")[4].upper() for line in listing.decode().splitlines() if line.startswith("sub:")]

    def key_ids_in(self, message: bytes) -> list[str]:
        """List the key ids a PGP/MIME message is encrypted to (``gpg --list-packets``)."""
        parsed = message_from_bytes(message, policy=compat32)
        armored = parsed.get_payload()[1].get_payload(decode=True)
        empty = self.home.parent / "empty-gnupg"
        empty.mkdir(exist_ok=True, mode=0o700)
        result = subprocess.run(
            ["gpg", "--homedir", str(empty), "--batch", "--list-packets"],
            input=armored, capture_output=True, timeout=60,
        )
        text = (result.stdout + result.stderr).decode(errors="replace")
        return [
            line.split("keyid ")[1].split()[0].upper() for line in text.splitlines() if "pubkey enc packet" in line
        ]


@dataclass
class SmimeRecipient:
    address: str
    cert_path: Path
    key_path: Path

    @classmethod
    def create(cls, address: str, pki: TestPKI, certificate_dir: Path) -> SmimeRecipient:
        """Issue a certificate for ``address`` and install it in postveil's directory."""
        cert_path, key_path = pki.write_smime_leaf(address)
        shutil.copy(cert_path, certificate_dir / cert_path.name)
        return cls(address, cert_path, key_path)

    def decrypt(self, message: bytes) -> bytes:
        """Decrypt an S/MIME enveloped-data message with ``openssl cms -decrypt``."""
        return _run(
            ["openssl", "cms", "-decrypt", "-recip", str(self.cert_path), "-inkey", str(self.key_path)],
            message,
        )
