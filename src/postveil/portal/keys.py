"""The portal's master keys: the current one, which encrypts new data keys, and the
previous ones, which only decrypt data keys that are still encrypted with them.

Each key is named by its key id, the first 16 hex digits of the SHA-256 of the key,
as the audit trail names its HMAC keys. The store records the key id of the master
key that encrypted each data key. A key id names a key without revealing it, so it
may appear in logs, audit records and the output of ``postveil portal status``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_ID_DIGITS = 16


def master_key_id(key: bytes) -> str:
    """Return the key id of ``key``: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(key).hexdigest()[:KEY_ID_DIGITS]


@dataclass(frozen=True)
class MasterKey:
    """One master key, ready to encrypt and decrypt data keys."""

    key_id: str
    setting: str
    """The setting that named the key file: ``portal.key_file`` or
    ``portal.previous_key_files``; empty for a key not read from a file."""

    path: str
    aead: AESGCM = field(repr=False)
    code_key: bytes = field(repr=False)
    """HMAC key of the digests of verification codes, derived from the master key."""

    @classmethod
    def from_bytes(cls, key: bytes, setting: str = "", path: str = "") -> MasterKey:
        # Codes are checked against a keyed digest: 10^8 codes are too few for a plain
        # hash to keep them from someone with a copy of the database.
        code_key = hmac.new(key, b"postveil-portal code digest", hashlib.sha256).digest()
        return cls(master_key_id(key), setting, path, AESGCM(key), code_key)

    @property
    def source(self) -> str:
        """The setting and the path, for messages."""
        return f"{self.setting} {self.path}" if self.setting else "the key given to the store"


class Keyring:
    """The current master key and the previous keys that still open stored data keys.

    A key id that appears twice (the same key named in two settings) is kept once,
    with the first source that named it.
    """

    def __init__(self, current: MasterKey, previous: Iterable[MasterKey] = ()) -> None:
        self.current = current
        self._by_id: dict[str, MasterKey] = {current.key_id: current}
        self.add(previous)

    def add(self, keys: Iterable[MasterKey]) -> list[str]:
        """Add keys that only decrypt; return the ids of those that were new."""
        added = []
        for key in keys:
            if key.key_id not in self._by_id:
                self._by_id[key.key_id] = key
                added.append(key.key_id)
        return added

    def promote(self, key_id: str) -> None:
        """Make the key with ``key_id`` the current one. The key that was current
        stays in the keyring as a previous key. Raises KeyError for an unknown id."""
        key = self._by_id[key_id]
        others = {known: other for known, other in self._by_id.items() if known != key_id}
        self.current = key
        self._by_id = {key_id: key, **others}

    def get(self, key_id: str) -> MasterKey | None:
        return self._by_id.get(key_id)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._by_id

    @property
    def keys(self) -> tuple[MasterKey, ...]:
        """Every key, the current one first."""
        return tuple(self._by_id.values())

    @property
    def previous(self) -> tuple[MasterKey, ...]:
        """Every key but the current one."""
        return self.keys[1:]

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)
