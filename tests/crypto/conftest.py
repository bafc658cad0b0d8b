"""Session fixtures of the crypto tests: a test PKI and GnuPG homes (see crypto_fixtures)."""

from crypto_fixtures import gpg_world, pki

__all__ = ["gpg_world", "pki"]
