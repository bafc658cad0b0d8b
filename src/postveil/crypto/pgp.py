"""PGP/MIME (RFC 3156) with python-gnupg and postveil's own GnuPG home.

Every key in the home is trusted (``--trust-model always``) because an admin imported
it. A key serves a recipient when one of its user ids has exactly that email address,
compared without case. Neither the key nor that user id may be revoked, expired,
disabled or invalid, and the key must have a usable encryption subkey.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

import gnupg

from postveil.crypto.errors import PgpFailure
from postveil.crypto.mime import CRLF
from postveil.routing.decide import CredentialStatus

# gpg's validity letters (field 2 of --with-colons output) that make a key or uid unusable.
_BAD_VALIDITY = {"r": "revoked", "e": "expired", "d": "disabled", "i": "invalid"}
# Files whose change invalidates the cached key listing.
_KEYRING_FILES = ("pubring.kbx", "pubring.gpg", "trustdb.gpg")
# gpg computes validity (for example an expired user id) when it lists, so a listing is
# reused for at most this many seconds even when no keyring file changed.
LISTING_MAX_AGE = 60.0
# Never reach out to keyservers or the web key directory.
_GPG_OPTIONS = ["--no-auto-key-retrieve", "--auto-key-locate", "local", "--no-greeting"]

# gpg (2.2) writes the revocation certificate in openpgp-revocs.d with a colon before
# the armor header, so that an accidental import does nothing. The file's own text
# instructs the user to remove that colon before importing, so import removes it.
_PROTECTED_ARMOR_RE = re.compile(rb"^:(-----BEGIN PGP )", re.MULTILINE)

PGP_VERSION_PART = (
    b"Content-Type: application/pgp-encrypted\r\n"
    b"Content-Description: PGP/MIME version identification\r\n"
    b"\r\n"
    b"Version: 1\r\n"
)


@dataclass(frozen=True)
class KeyInfo:
    fingerprint: str
    uids: tuple[str, ...]
    validity: str
    """gpg's validity letter of the primary key."""

    expires: int | None
    """Expiry of the primary key, seconds since the epoch."""

    can_encrypt: bool

    usable_until: int | None = None
    """When the key stops being usable for encryption, seconds since the epoch: the
    latest expiry of its valid encryption subkeys, or the primary key's expiry if that
    comes first. None when neither expires."""

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(parseaddr(uid)[1].casefold() for uid in self.uids)


def _encryption_deadline(key: dict[str, Any], primary_expires: int | None) -> int | None:
    """Return when a listed key stops being usable for encryption (see KeyInfo)."""
    # A lowercase letter in the primary key's capabilities is its own usage, an
    # uppercase one the usage of the key as a whole (gpg's --with-colons format).
    deadlines = [primary_expires] if "e" in key.get("cap", "") else []
    for subkey in key.get("subkey_info", {}).values():
        if "e" in subkey.get("cap", "") and subkey.get("trust", "") not in _BAD_VALIDITY:
            deadlines.append(int(subkey["expires"]) if subkey.get("expires") else None)
    if not deadlines or None in deadlines:
        return primary_expires
    latest = max(deadline for deadline in deadlines if deadline is not None)
    return latest if primary_expires is None else min(latest, primary_expires)


class _GpgRun:
    """One python-gnupg call: the timers of the gpg processes it started, and whether
    one of them had to kill its process."""

    def __init__(self) -> None:
        self.timed_out = False
        self.timers: list[threading.Timer] = []

    def finish(self) -> None:
        for timer in self.timers:
            timer.cancel()


class _TimedGPG(gnupg.GPG):
    """python-gnupg with a time limit: each gpg process is killed after ``timeout`` seconds.

    python-gnupg 0.5 has no timeout of its own. It starts every gpg process through
    ``_open_subprocess`` in the calling thread, so the current call's :class:`_GpgRun`
    is found in a thread-local slot.
    """

    def __init__(self, *args: Any, timeout: float, **kwargs: Any) -> None:
        self.timeout = timeout
        self.current = threading.local()
        run = _GpgRun()
        self.current.run = run
        try:
            super().__init__(*args, **kwargs)
        finally:
            run.finish()
            self.current.run = None
        if run.timed_out:
            raise OSError(f"gpg --list-config timed out after {timeout:g} s")

    def _open_subprocess(self, args: list[str], passphrase: bool = False) -> subprocess.Popen[bytes]:
        process = super()._open_subprocess(args, passphrase)
        run = getattr(self.current, "run", None)
        if run is None:
            run = _GpgRun()

        def kill() -> None:
            run.timed_out = True
            process.kill()

        timer = threading.Timer(self.timeout, kill)
        timer.daemon = True
        timer.start()
        run.timers.append(timer)
        return process


class PgpKeyring:
    """Read, encrypt with, import and remove keys in one GnuPG home.

    Every gpg failure, a gpg run over ``timeout`` seconds, and a home that is missing or
    not a directory raise :class:`PgpFailure`.
    """

    def __init__(
        self,
        gnupg_home: str,
        gpg_binary: str = "gpg",
        clock: Callable[[], float] = time.time,
        timeout: float = 30.0,
    ) -> None:
        self.gnupg_home = gnupg_home
        self.gpg_binary = gpg_binary
        self.clock = clock
        self.timeout = timeout
        self._gpg: _TimedGPG | None = None
        self._listing: tuple[tuple[object, ...], float, list[KeyInfo]] | None = None
        self._uid_cache: dict[str, dict[str, str]] = {}
        # The milter calls lookups from several threads; the caches change under this lock.
        self._lock = threading.Lock()

    def open(self) -> None:
        """Start gpg with its version check, which writes nothing to the home. Raises
        PgpFailure. Later calls then import no more modules, which a caller that switches
        to a user who cannot read them needs (``postveil status`` run as root)."""
        self._open()

    def _open(self) -> _TimedGPG:
        # Checked on every use: python-gnupg would otherwise create a missing home, and an
        # empty keyring would silently replace the admin's keys.
        if not os.path.isdir(self.gnupg_home):
            raise PgpFailure(
                f"GnuPG home {self.gnupg_home} (pgp.gnupg_home) is missing or not a directory; "
                "create it as docs/install.md shows, or correct pgp.gnupg_home"
            )
        if self._gpg is None:
            try:
                self._gpg = _TimedGPG(
                    gpgbinary=self.gpg_binary,
                    gnupghome=self.gnupg_home,
                    options=_GPG_OPTIONS,
                    timeout=self.timeout,
                )
            except (OSError, ValueError) as exc:
                raise PgpFailure(f"cannot run gpg with home {self.gnupg_home}: {exc}") from exc
        return self._gpg

    def _keyring_signature(self) -> tuple[object, ...]:
        signature: list[object] = []
        for name in _KEYRING_FILES:
            try:
                stat = os.stat(os.path.join(self.gnupg_home, name))
            except FileNotFoundError:
                signature.append(None)
                continue
            except OSError as exc:
                raise PgpFailure(f"cannot read {name} in GnuPG home {self.gnupg_home}: {exc.strerror}") from exc
            signature.append((stat.st_size, stat.st_mtime_ns, stat.st_ino))
        return tuple(signature)

    def keys(self) -> list[KeyInfo]:
        """List every public key. Raises PgpFailure when gpg cannot read the keyring.

        The listing is cached until a keyring file changes or LISTING_MAX_AGE passes.
        """
        self._open()
        with self._lock:
            signature = self._keyring_signature()
            now = time.monotonic()
            if self._listing is not None:
                cached_signature, listed_at, cached = self._listing
                if cached_signature == signature and now - listed_at < LISTING_MAX_AGE:
                    return list(cached)
            keys = self._list_keys()
            self._listing = (signature, now, keys)
            self._uid_cache = {}
            return list(keys)

    def _run(self, operation: str, call: Callable[[_TimedGPG], Any]) -> Any:
        """Run one python-gnupg call; raise PgpFailure when its gpg process timed out."""
        gpg = self._open()
        run = _GpgRun()
        gpg.current.run = run
        try:
            result = call(gpg)
        finally:
            run.finish()
            gpg.current.run = None
        if run.timed_out:
            raise PgpFailure(f"gpg {operation} timed out after {self.timeout:g} s in {self.gnupg_home}")
        return result

    def _list_keys(self) -> list[KeyInfo]:
        listing = self._run("key listing", lambda gpg: gpg.list_keys())
        if listing.returncode != 0:
            raise PgpFailure(f"gpg failed to list keys in {self.gnupg_home}: {_gpg_problem(listing)}")
        keys = []
        for key in listing:
            expires = int(key["expires"]) if key.get("expires") else None
            keys.append(
                KeyInfo(
                    fingerprint=key["fingerprint"],
                    uids=tuple(key["uids"]),
                    validity=key.get("trust", ""),
                    expires=expires,
                    can_encrypt="E" in key.get("cap", ""),
                    usable_until=_encryption_deadline(key, expires),
                )
            )
        return keys

    def _uid_validity(self, fingerprint: str) -> dict[str, str]:
        """Map each user id of one key to its validity letter (cached with the listing)."""
        with self._lock:
            cached = self._uid_cache.get(fingerprint)
        if cached is not None:
            return cached
        listing = self._run("key listing", lambda gpg: gpg.list_keys(keys=fingerprint))
        if listing.returncode != 0:
            raise PgpFailure(f"gpg failed to list key {fingerprint}: {_gpg_problem(listing)}")
        validity = {uid: data.get("trust", "") for uid, data in listing.uid_map.items()}
        with self._lock:
            self._uid_cache[fingerprint] = validity
        return validity

    def lookup(self, address: str) -> CredentialStatus:
        """Return the usable key for ``address`` or why there is none."""
        folded_address = address.casefold()
        candidates = [key for key in self.keys() if folded_address in key.addresses]
        if not candidates:
            return CredentialStatus(None, "no PGP key for the address")
        now = self.clock()
        first_problem = ""
        for key in candidates:
            problem = self._key_problem(key, folded_address, now)
            if problem is None:
                return CredentialStatus(key.fingerprint, f"PGP key {key.fingerprint[-16:]} valid")
            first_problem = first_problem or problem
        return CredentialStatus(None, first_problem)

    def key_problem(self, key: KeyInfo, now: float | None = None) -> str | None:
        """Return why ``key`` cannot be used for any address, or None if it can."""
        now = self.clock() if now is None else now
        if key.validity in _BAD_VALIDITY:
            return f"PGP key {_BAD_VALIDITY[key.validity]}"
        if key.expires is not None and key.expires <= now:
            return "PGP key expired"
        if not key.can_encrypt:
            return "PGP key has no usable encryption subkey"
        return None

    def _key_problem(self, key: KeyInfo, address: str, now: float) -> str | None:
        problem = self.key_problem(key, now)
        if problem is not None:
            return problem
        validity = self._uid_validity(key.fingerprint)
        for uid, letter in validity.items():
            if parseaddr(uid)[1].casefold() == address and letter not in _BAD_VALIDITY:
                return None
        return "PGP user id for the address is revoked or expired"

    def encrypt(self, data: bytes, fingerprints: Sequence[str]) -> bytes:
        """Encrypt ``data`` to every key in ``fingerprints``; return ASCII armor."""
        if not fingerprints:
            raise PgpFailure("no PGP key to encrypt to")
        result = self._run(
            "encryption",
            lambda gpg: gpg.encrypt(data, list(fingerprints), always_trust=True, armor=True),
        )
        if not result.ok or not result.data:
            raise PgpFailure(f"gpg encryption failed: {_gpg_problem(result)}")
        return result.data

    def import_keys(self, data: bytes) -> list[str]:
        """Import public keys or revocation certificates; return the fingerprints gpg
        reports (empty for a revocation of a key already present). Armored secret keys
        are refused."""
        return list(self.import_report(data).changes)

    def preview_import(self, data: bytes) -> list[ImportPreview]:
        """List what importing ``data`` would change, without changing the keyring.

        Runs gpg's ``--import-options show-only``. Raises PgpFailure for a file with a
        secret key (armored or binary), and when the file contains no public key and no
        revocation certificate for a key in the keyring.
        """
        data = unprotect_armor(data)
        if b"PRIVATE KEY BLOCK" in data:
            raise PgpFailure("the file contains a secret key; import only public keys")
        show_only = ["--import-options", "show-only", "--with-colons"]
        result = self._run("import preview", lambda gpg: gpg.import_keys(data, extra_args=show_only))
        listing = bytes(result.data or b"").decode("utf-8", "replace")
        records = [line.split(":") for line in listing.splitlines()]
        if any(record[0] in ("sec", "ssb") for record in records):
            raise PgpFailure("the file contains a secret key; import only public keys")

        # Colon records as gpg 2.2 prints them. "pub" starts a key, and the "fpr" right
        # after it is the primary fingerprint. "uid" records come before the "sub"
        # subkeys. An "rvs" record is a revocation signature whose field 13 is the
        # revoked key's fingerprint.
        key_addresses: dict[str, list[str]] = {}
        revoked: list[str] = []
        primary: str | None = None
        awaiting_primary = False
        for record in records:
            kind = record[0]
            if kind == "pub":
                primary, awaiting_primary = None, True
            elif kind == "fpr" and awaiting_primary and len(record) > 9:
                primary, awaiting_primary = record[9], False
                key_addresses.setdefault(primary, [])
            elif kind == "sub":
                awaiting_primary = False
            elif kind == "uid" and primary is not None and len(record) > 9:
                key_addresses[primary].append(parseaddr(record[9])[1].casefold())
            elif kind == "rvs" and len(record) > 12 and record[12]:
                revoked.append(record[12])

        applicable = [
            ImportPreview(fingerprint, "key-import", tuple(addresses))
            for fingerprint, addresses in key_addresses.items()
        ]
        known = {key.fingerprint: key for key in self.keys()}
        for fingerprint in dict.fromkeys(revoked):
            if fingerprint not in key_addresses and fingerprint in known:
                addresses = known[fingerprint].addresses
                applicable.append(ImportPreview(fingerprint, "key-revoke", addresses))
        if not applicable:
            unknown = [fingerprint for fingerprint in dict.fromkeys(revoked) if fingerprint not in known]
            if unknown:
                raise PgpFailure(
                    f"the file is a revocation certificate for key {', '.join(unknown)}, "
                    "which is not in the keyring"
                )
            problem = "" if getattr(result, "returncode", None) == 0 else f" ({_gpg_problem(result)})"
            raise PgpFailure(f"the file contains no public key and no revocation certificate{problem}")
        return applicable

    def import_report(self, data: bytes) -> ImportReport:
        """Import public keys or revocation certificates and report what changed.

        A revocation certificate as gpg stores it, with a colon before its armor
        header, is accepted. Raises PgpFailure for a file with an armored secret key,
        and when gpg imported nothing.

        NOTE: a binary secret key is caught only by :meth:`preview_import`, so callers
        that import a file from outside call that first, as ``postveil keys import`` does.
        """
        data = unprotect_armor(data)
        if b"PRIVATE KEY BLOCK" in data:
            raise PgpFailure("the file contains a secret key; import only public keys")
        result = self._run("import", lambda gpg: gpg.import_keys(data))
        revocations = int(getattr(result, "n_revoc", 0) or 0)
        unchanged = int(getattr(result, "unchanged", 0) or 0)
        if not result.fingerprints and not revocations and not unchanged:
            raise PgpFailure(f"gpg imported no key: {_gpg_problem(result)}")
        changes: dict[str, list[str]] = {}
        for item in getattr(result, "results", []):
            fingerprint, code = item.get("fingerprint"), item.get("ok")
            if fingerprint and code is not None:
                changes.setdefault(fingerprint, []).extend(_import_changes(int(code)))
        for fingerprint in result.fingerprints:
            changes.setdefault(fingerprint, [])
        considered = [
            line.split()[2]
            for line in str(getattr(result, "stderr", "") or "").splitlines()
            if line.startswith("[GNUPG:] KEY_CONSIDERED ") and len(line.split()) > 2
        ]
        return ImportReport(
            {fingerprint: tuple(dict.fromkeys(words)) or ("unchanged",) for fingerprint, words in changes.items()},
            revocations,
            tuple(dict.fromkeys(fingerprint for fingerprint in considered if fingerprint not in changes)),
        )

    def remove(self, fingerprint: str) -> None:
        """Delete the public key with the full ``fingerprint``."""
        result = self._run("key deletion", lambda gpg: gpg.delete_keys(fingerprint))
        if str(result) != "ok":
            raise PgpFailure(f"gpg failed to delete key {fingerprint}: {_gpg_problem(result)}")


@dataclass(frozen=True)
class ImportReport:
    """Changes that one ``import_report`` call made to the keyring."""

    changes: dict[str, tuple[str, ...]]
    """Fingerprint -> what gpg changed for that key: "new key", "new user ids",
    "new signatures", "new subkeys", or "unchanged"."""

    revocations: int
    """Revocation certificates applied."""

    other_keys: tuple[str, ...] = ()
    """Fingerprints of keys gpg read but did not list as changed, such as the key
    that a revocation certificate revoked."""


@dataclass(frozen=True)
class ImportPreview:
    """One change that importing a file would make, found before the import."""

    fingerprint: str
    action: str
    """``key-import`` for a public key, ``key-revoke`` for a revocation certificate."""

    addresses: tuple[str, ...]
    """Email addresses of the key's user ids, case-folded."""


def unprotect_armor(data: bytes) -> bytes:
    """Remove the colon gpg puts before the armor header of a revocation certificate."""
    return _PROTECTED_ARMOR_RE.sub(rb"\1", data)


# Bits of the reason in gpg's IMPORT_OK status line (GnuPG doc/DETAILS).
_IMPORT_BITS = ((1, "new key"), (2, "new user ids"), (4, "new signatures"), (8, "new subkeys"))


def _import_changes(code: int) -> list[str]:
    return [words for bit, words in _IMPORT_BITS if code & bit]


def _gpg_problem(result: object) -> str:
    """Short reason from a python-gnupg result: its status, or gpg's last error line."""
    status = getattr(result, "status", None)
    if status:
        return str(status)
    stderr = str(getattr(result, "stderr", "") or "")
    lines = [line for line in stderr.splitlines() if line.startswith("gpg:")]
    return lines[-1] if lines else f"exit code {getattr(result, 'returncode', '?')}"


def pgp_mime_body(armored: bytes) -> tuple[str, bytes]:
    """Return (Content-Type value, body) of a multipart/encrypted message carrying
    ``armored`` (RFC 3156 section 4)."""
    boundary = "postveil-pgp-" + secrets.token_hex(12)
    content_type = f'multipart/encrypted; protocol="application/pgp-encrypted"; boundary="{boundary}"'
    armor = armored.replace(b"\r\n", b"\n").replace(b"\n", CRLF)
    if not armor.endswith(CRLF):
        armor += CRLF
    body = b"".join(
        [
            b"This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156).\r\n",
            f"--{boundary}\r\n".encode("ascii"),
            PGP_VERSION_PART,
            f"\r\n--{boundary}\r\n".encode("ascii"),
            b'Content-Type: application/octet-stream; name="encrypted.asc"\r\n',
            b"Content-Description: OpenPGP encrypted message\r\n",
            b'Content-Disposition: inline; filename="encrypted.asc"\r\n',
            b"\r\n",
            armor,
            f"\r\n--{boundary}--\r\n".encode("ascii"),
        ]
    )
    return content_type, body
