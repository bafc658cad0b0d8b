"""Narrow temporary failures of the encryption layer.

Messages name the operation, the path or fingerprint involved and gpg's or the
library's short reason. They never contain key material or message text.
"""

from postveil.errors import TemporaryFailure


class CryptoFailure(TemporaryFailure):
    """Encryption could not be done; the message must be retried, never sent in plaintext."""


class PgpFailure(CryptoFailure):
    """gpg failed, or postveil's GnuPG home is missing or broken."""


class SmimeFailure(CryptoFailure):
    """S/MIME encryption or signing failed, or the certificate directory or trust store
    cannot be read."""
