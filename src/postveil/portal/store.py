"""The built-in portal's store: messages encrypted at rest, pickups, codes and sessions.

Each message is encrypted with AES-256-GCM under a key of its own (the data key). The
data key is kept in the database, encrypted with the master key (``portal.key_file``).
Both encryptions bind the message id as associated data, so a ciphertext moved to
another row does not decrypt. The database holds no message text, no subject and no
token or code in the clear: only SHA-256 digests of the tokens and keyed digests of
the codes, so a copy of the database opens nothing.

Each row names the master key that encrypted its data key by key id
(:mod:`postveil.portal.keys`), so the store can read with previous master keys while
``postveil portal rekey`` moves the data keys to a new one.

A pickup is one recipient's access to one message, reached through a random link
token. Opening the message also needs a code sent to the recipient's address
(:meth:`PortalStore.issue_code`, :meth:`PortalStore.check_code`), which proves the
reader can read that mailbox. A session token then stands for the check until it
expires.

The store is used from two processes: ``postveil portal deliver`` (Postfix's pipe
transport) adds messages, and ``postveil-portal`` serves them. SQLite in WAL mode
with a busy timeout lets both write.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from postveil.errors import PostveilError
from postveil.keyfile import read_key_file, write_key_file
from postveil.portal.keys import Keyring, MasterKey

SCHEMA_VERSION = 2
"""Version 1 had no ``messages.key_id``; :meth:`PortalStore._migrate` adds it."""

KEY_RELOAD_INTERVAL = 5.0
"""Seconds between two calls of a store's key loader (see :class:`PortalStore`)."""

_NONCE = 12
_CODE_DIGITS = 8


class PortalError(PostveilError):
    """The store cannot do what was asked; the message names the cause and the fix."""


class PortalKeyError(PortalError):
    """The master key file is missing, unreadable, too open or malformed."""


class RetiredKeyError(PortalKeyError):
    """``portal.key_file`` contains a key that ``postveil portal rekey`` moved the store
    away from."""


@dataclass(frozen=True)
class Deposit:
    """Result of :meth:`PortalStore.deposit`: the message id and one link token per
    recipient. The tokens exist only here, because the store keeps their digests."""

    message_id: str
    expires: float
    tokens: tuple[tuple[str, str], ...]
    """(recipient, token) pairs, in the order the recipients were given."""


@dataclass(frozen=True)
class Pickup:
    """One recipient's access to one message, as the web pages need it."""

    message_id: str
    recipient: str
    sender: str
    created: float
    expires: float
    opened: float | None
    size: int
    queue_id: str = ""
    """Postfix queue id of the copy the intake stored, for audit records."""


@dataclass(frozen=True)
class CodeIssue:
    """Result of :meth:`PortalStore.issue_code`: a code to send, or why none was made."""

    code: str | None
    refused: str | None = None
    """``rate`` when the hourly limit is reached; None when a code was made."""

    retired_key_id: str | None = None
    """The key id that digested codes until this call found it retired and replaced
    it (see :meth:`PortalStore._follow_rotation`); None when the key did not change."""


@dataclass(frozen=True)
class CodeCheck:
    """Result of :meth:`PortalStore.check_code`."""

    session: str | None
    """A new session token when the code was right."""

    outcome: str
    """``ok``, ``wrong``, ``voided`` (this wrong entry made the code void), ``void``
    (the code was already void), ``expired`` or ``none`` (no code was requested)."""


@dataclass(frozen=True)
class ExpiredMessage:
    """A stored message's id, queue id and recipients, as :meth:`PortalStore.expired`
    and :meth:`PortalStore.find` return them."""

    message_id: str
    queue_id: str
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class WaitingMessage:
    """A stored message as ``postveil portal list`` shows it."""

    message_id: str
    created: float
    expires: float
    sender: str
    queue_id: str
    recipients: tuple[tuple[str, float | None], ...]
    """(recipient, time the recipient first read the message or None) pairs."""


def load_master_key(path: str | os.PathLike[str]) -> bytes:
    """Read the 32-byte master key written by :func:`generate_master_key`."""
    return read_key_file(
        path,
        name="portal key",
        create_hint="create one with 'postveil portal init'",
        error=PortalKeyError,
    )


def load_keyring(
    key_file: str | os.PathLike[str], previous_key_files: Sequence[str | os.PathLike[str]] = ()
) -> Keyring:
    """Read the current master key and the previous ones; raises PortalKeyError when a
    file is missing, unreadable, too open or malformed."""
    current = MasterKey.from_bytes(
        load_master_key(key_file), "portal.key_file", os.fspath(key_file)
    )
    previous = [
        MasterKey.from_bytes(load_master_key(path), "portal.previous_key_files", os.fspath(path))
        for path in previous_key_files
    ]
    return Keyring(current, previous)


def generate_master_key(path: str | os.PathLike[str], mode: int = 0o600) -> None:
    """Write a new random key file; an existing file is never overwritten
    (FileExistsError)."""
    write_key_file(path, mode)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    sender TEXT NOT NULL,
    queue_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    wrapped_key BLOB NOT NULL,
    key_id TEXT
);
CREATE TABLE IF NOT EXISTS pickups (
    token_digest BLOB PRIMARY KEY,
    message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    recipient TEXT NOT NULL,
    code_digest BLOB,
    code_expires REAL,
    code_wrong INTEGER NOT NULL DEFAULT 0,
    codes_sent TEXT NOT NULL DEFAULT '',
    opened REAL
);
CREATE INDEX IF NOT EXISTS pickups_message ON pickups(message_id);
CREATE TABLE IF NOT EXISTS sessions (
    session_digest BLOB PRIMARY KEY,
    token_digest BLOB NOT NULL REFERENCES pickups(token_digest) ON DELETE CASCADE,
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sender_notices (
    token_digest BLOB PRIMARY KEY REFERENCES pickups(token_digest) ON DELETE CASCADE,
    claimed REAL NOT NULL
);
"""
"""The current schema. ``messages.key_id`` is the key id of the master key that
encrypted ``wrapped_key``. It is NULL when no configured key opened the data key during
the migration from version 1, or for a row that a process of version 1 inserted after
the migration. Reading such a row tries every configured key."""

_CURRENT_KEY = "current_key_id"
"""Name of the ``meta`` row with the key id that ``postveil portal rekey`` last moved
the data keys to. :meth:`PortalStore.deposit` refuses to store under a configuration
that does not know this key, because such a configuration predates the rotation or
lists the wrong old key files."""

_RETIRED_PREFIX = "retired_key_id:"
"""Prefix of the ``meta`` rows that name a retired key: ``retired_key_id:<key id>``,
whose value is the key id of the rotation that retired it. ``rekey`` retires the key
it moves away from, so that a configuration with that key in ``portal.key_file`` (old,
or with the key files swapped) can neither store under it nor rekey back to it.

These rows fit schema version 2, so the version stays 2: a postveil without them
reads only the ``schema`` and ``current_key_id`` rows and ignores the others."""

_PREDECESSOR_PREFIX = "rotated_from:"
"""Prefix of the ``meta`` rows that link the rotations: ``rotated_from:<key id>``, whose
value is the key id that ``current_key_id`` had before the rotation to <key id>. A key
recorded when no key was recorded has no such row. ``rekey --abandon`` follows these
rows back one rotation per run, so it can undo any number of rotations."""

_LEGACY_PREDECESSOR = "rotated_from_key_id"
"""Name of the ``meta`` row in which older postveil versions kept only the key id
recorded before the last rotation. It is read as the predecessor of the current key,
and the next rotation replaces it with a ``rotated_from:`` row."""

_ABANDONED_PREFIX = "abandoned_key_id:"
"""Prefix of the ``meta`` rows that name a key whose rotation ``rekey --abandon`` gave
up: ``abandoned_key_id:<key id>``, whose value is the key id the store went back to.
An intake whose configuration still has that key may store messages under it after
the abandon. Such messages block abandoning the key the store went back to, because
after that no recorded rotation would lead to their key."""


class RotationInUseError(PortalError):
    """``rekey --abandon`` found stored messages that may need the abandoned key."""


@dataclass(frozen=True)
class AbandonedRotation:
    """Result of :meth:`PortalStore.abandon_rotation`."""

    key_id: str
    """Key id of the rotation that was abandoned."""

    restored: str | None
    """Key id of the rotation before it, now recorded again; None after a first one."""

    unretired: tuple[str, ...]
    """Key ids that the abandoned rotation had retired and that are usable again."""


@dataclass(frozen=True)
class RewrapFailure:
    """A data key that :meth:`PortalStore.rewrap_batch` could not decrypt."""

    message_id: str
    key_id: str | None
    reason: str


@dataclass(frozen=True)
class RewrapBatch:
    """Result of one :meth:`PortalStore.rewrap_batch` transaction."""

    last_id: str | None
    """The largest message id looked at, or None when no row was left."""

    rewrapped: int
    failures: tuple[RewrapFailure, ...]


class PortalStore:
    """Encrypted messages and their pickups in ``directory`` (see the module text).

    ``master_key`` is the current master key, or a keyring with previous keys too. New
    data keys are encrypted with the current key, and codes are digested with it. A
    message whose data key names a key id outside the keyring makes the store call
    ``key_loader``, at most once per KEY_RELOAD_INTERVAL, and add the keys it returns.
    postveil-portal passes a loader that reads the key files named in the configuration
    file again, so it reads messages that the intake stored under a new master key
    before postveil-portal was restarted. ``timeout`` is SQLite's busy timeout in
    seconds.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        master_key: bytes | Keyring,
        *,
        key_loader: Callable[[], Sequence[MasterKey]] | None = None,
        timeout: float = 10.0,
    ) -> None:
        if isinstance(master_key, Keyring):
            self._keys = master_key
        elif len(master_key) != 32:
            raise PortalKeyError("the portal master key must be 32 bytes")
        else:
            self._keys = Keyring(MasterKey.from_bytes(master_key))
        self.directory = Path(directory)
        self._key_loader = key_loader
        self._keys_loaded_at: float | None = None
        self._timeout = timeout
        self._messages = self.directory / "messages"
        database = self.directory / "portal.sqlite3"
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._messages.mkdir(exist_ok=True, mode=0o700)
            # The database names senders and recipients. SQLite would create it with
            # the process's umask (0644 under the usual 022), and its -wal and -shm
            # files copy the database file's mode, so it is created here first.
            os.close(os.open(database, os.O_RDWR | os.O_CREAT, 0o600))
            self._db = sqlite3.connect(
                database,
                timeout=timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', ?)",
                (str(SCHEMA_VERSION),),
            )
            (found,) = self._db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
            version = self._check_schema(found)
            if version < SCHEMA_VERSION:
                self._migrate()
        except (OSError, sqlite3.Error) as exc:
            self._close_quietly()
            raise PortalError(f"cannot open the portal store in {self.directory}: {exc}") from exc
        except PortalError:
            self._close_quietly()
            raise

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        key_file: str | os.PathLike[str],
        previous_key_files: Sequence[str | os.PathLike[str]] = (),
        *,
        key_loader: Callable[[], Sequence[MasterKey]] | None = None,
        timeout: float = 10.0,
    ) -> PortalStore:
        """Open the store with the master keys in ``key_file`` and
        ``previous_key_files``."""
        keyring = load_keyring(key_file, previous_key_files)
        return cls(directory, keyring, key_loader=key_loader, timeout=timeout)

    def _close_quietly(self) -> None:
        database = getattr(self, "_db", None)
        if database is not None:
            database.close()

    def _check_schema(self, found: str) -> int:
        """Return the store's schema version; raise PortalError for one this code
        cannot read."""
        version = int(found) if found.isascii() and found.isdigit() else 0
        if version > SCHEMA_VERSION:
            raise PortalError(
                f"the portal store in {self.directory} has schema version {version}, which a "
                f"newer postveil wrote; this postveil reads versions up to {SCHEMA_VERSION}. "
                "Install the newer postveil again, or restore a backup of the store made "
                "before it was upgraded"
            )
        if version < 1:
            raise PortalError(
                f"the portal store in {self.directory} has an invalid schema version "
                f"{found!r} in its meta table; it is damaged or not a portal store"
            )
        return version

    def _migrate(self) -> None:
        """Upgrade a version 1 store to the current schema in one transaction.

        Version 1 stored no key id. Each row gets the id of the configured key that
        opens its data key (normally the current one), or NULL when none does.
        Another process may be migrating at the same time, so the version is read
        again inside the transaction.
        """
        with self._transaction() as db:
            (found,) = db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
            if self._check_schema(found) >= SCHEMA_VERSION:
                return
            columns = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
            if "key_id" not in columns:
                db.execute("ALTER TABLE messages ADD COLUMN key_id TEXT")
            rows = db.execute("SELECT id, wrapped_key FROM messages").fetchall()
            for message_id, wrapped in rows:
                key = self._find_key(message_id, wrapped)
                db.execute(
                    "UPDATE messages SET key_id = ? WHERE id = ?",
                    (key.key_id if key is not None else None, message_id),
                )
            db.execute("UPDATE meta SET value = ? WHERE name = 'schema'", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):
                raise PortalError(
                    f"portal store {self.directory}: the database stayed locked by another "
                    f"process for {self._timeout:g} s; try again later"
                ) from exc
            raise PortalError(f"portal store {self.directory}: {exc}") from exc
        except sqlite3.Error as exc:
            raise PortalError(f"portal store {self.directory}: {exc}") from exc
        try:
            yield self._db
        except BaseException:
            self._rollback()
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            # Left open, the transaction would make every later BEGIN fail.
            self._rollback()
            raise PortalError(f"portal store {self.directory}: commit failed: {exc}") from exc

    def _rollback(self) -> None:
        # SQLite ends the transaction itself after some errors (SQLITE_FULL, SQLITE_IOERR),
        # and a ROLLBACK then would raise and hide the original error.
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    # -- messages ------------------------------------------------------------------

    def deposit(
        self,
        raw: bytes,
        *,
        sender: str,
        recipients: Sequence[str],
        retention: float,
        queue_id: str = "",
        now: float | None = None,
    ) -> Deposit:
        """Encrypt and store ``raw`` for ``recipients``; return their link tokens.

        The encrypted file is written and synced before the rows that point to it are
        committed, so a crash leaves at most an orphan file (removed by :meth:`purge`),
        never a row without its message.
        """
        if not recipients:
            raise PortalError("no recipients for the portal message")
        now = time.time() if now is None else now
        message_id = secrets.token_hex(16)
        data_key = AESGCM.generate_key(bit_length=256)
        aad = message_id.encode("ascii")
        nonce = secrets.token_bytes(_NONCE)
        blob = nonce + AESGCM(data_key).encrypt(nonce, raw, aad)
        wrapped = self._wrap(message_id, data_key)
        current = self._keys.current.key_id
        path = self._messages / message_id
        tokens = tuple((recipient, secrets.token_urlsafe(32)) for recipient in recipients)
        try:
            _write_synced(path, blob)
            with self._transaction() as db:
                self._check_rotation(db)
                db.execute(
                    "INSERT INTO messages"
                    " (id, created, expires, sender, queue_id, size, wrapped_key, key_id)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        message_id,
                        now,
                        now + retention,
                        sender,
                        queue_id,
                        len(raw),
                        wrapped,
                        current,
                    ),
                )
                db.executemany(
                    "INSERT INTO pickups (token_digest, message_id, recipient) VALUES (?, ?, ?)",
                    [(_digest(token), message_id, recipient) for recipient, token in tokens],
                )
        except (OSError, sqlite3.Error) as exc:
            path.unlink(missing_ok=True)
            raise PortalError(
                f"cannot store the portal message in {self.directory}: {exc}"
            ) from exc
        except PortalError:
            path.unlink(missing_ok=True)
            raise
        return Deposit(message_id, now + retention, tokens)

    def _check_rotation(self, db: sqlite3.Connection) -> None:
        """Raise PortalKeyError when ``postveil portal rekey`` moved the store to a
        master key that this process does not have. Its configuration then predates
        the rotation or lists the wrong old key files. Data keys it encrypted could be
        lost when the old key is retired. The message gives the fix for both causes.
        Raise RetiredKeyError when this process's current key is retired."""
        row = db.execute("SELECT value FROM meta WHERE name = ?", (_CURRENT_KEY,)).fetchone()
        if row is not None and row[0] not in self._keys:
            raise PortalKeyError(
                f"the portal's master key was rotated to key id {row[0]}, and no key file of "
                f"this process's configuration has that key (portal.key_file has key id "
                f"{self._keys.current.key_id}): put the file of key id {row[0]} in "
                "portal.previous_key_files, or in portal.key_file if the configuration "
                f"predates the rotation. {_abandon_hint(row[0])}"
            )
        self._check_retired(db)

    def _check_retired(self, db: sqlite3.Connection) -> None:
        """Raise RetiredKeyError when ``rekey`` retired this process's current key."""
        current = self._keys.current
        retired = db.execute(
            "SELECT value FROM meta WHERE name = ?", (_RETIRED_PREFIX + current.key_id,)
        ).fetchone()
        if retired is None:
            return
        row = db.execute("SELECT value FROM meta WHERE name = ?", (_CURRENT_KEY,)).fetchone()
        newest = row[0] if row is not None else retired[0]
        hint = "" if newest in self._keys else f". {_abandon_hint(newest)}"
        raise RetiredKeyError(
            f"{current.source} has master key id {current.key_id}, which 'postveil portal "
            f"rekey' retired when it rotated the store to key id {retired[0]}: point "
            f"portal.key_file at the newest key (key id {newest}) and keep key id "
            f"{current.key_id} in portal.previous_key_files only while messages need it{hint}"
        )

    def _follow_rotation(self, db: sqlite3.Connection) -> str | None:
        """Make the key that ``rekey`` last moved the store to this process's current
        key, when a rotation in another process retired the current one.

        The key comes from the keyring, or from the key loader when the keyring does
        not have it (see :meth:`_key_for`). Raises RetiredKeyError, and changes
        nothing, when neither has it: the current key must no longer digest codes,
        because it may be the leaked key that the rotation replaced. Returns the key id
        of the replaced key, or None when the current key is not retired.
        """
        current = self._keys.current.key_id
        retired = db.execute(
            "SELECT 1 FROM meta WHERE name = ?", (_RETIRED_PREFIX + current,)
        ).fetchone()
        if retired is None:
            return None
        row = db.execute("SELECT value FROM meta WHERE name = ?", (_CURRENT_KEY,)).fetchone()
        if row is not None and row[0] != current:
            try:
                newest = self._key_for(row[0])
            except PortalKeyError:
                # The loader failed: the error below names the way out.
                newest = None
            if newest is not None:
                self._keys.promote(newest.key_id)
        self._check_retired(db)
        return current

    def check_current_key(self) -> None:
        """Raise RetiredKeyError when ``portal.key_file`` contains a retired key."""
        try:
            self._check_retired(self._db)
        except sqlite3.Error as exc:
            raise PortalError(f"portal store {self.directory}: {exc}") from exc

    def _wrap(self, message_id: str, data_key: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return nonce + self._keys.current.aead.encrypt(nonce, data_key, message_id.encode("ascii"))

    def _find_key(self, message_id: str, wrapped: bytes) -> MasterKey | None:
        """Return the key of the keyring that decrypts ``wrapped``, or None."""
        for key in self._keys.keys:
            try:
                key.aead.decrypt(wrapped[:_NONCE], wrapped[_NONCE:], message_id.encode("ascii"))
            except InvalidTag:
                continue
            return key
        return None

    def _key_for(self, key_id: str) -> MasterKey | None:
        """Return the key with ``key_id``, calling the key loader when it is unknown."""
        key = self._keys.get(key_id)
        if key is not None or self._key_loader is None:
            return key
        now = time.monotonic()
        if self._keys_loaded_at is not None and now - self._keys_loaded_at < KEY_RELOAD_INTERVAL:
            return None
        self._keys_loaded_at = now
        self._keys.add(self._key_loader())
        return self._keys.get(key_id)

    def _unwrap(self, message_id: str, wrapped: bytes, key_id: str | None) -> bytes:
        """Decrypt a data key; raises PortalKeyError when no configured key is the one
        that encrypted it, PortalError when that key does not decrypt it."""
        aad = message_id.encode("ascii")
        if key_id is None:
            key = self._find_key(message_id, wrapped)
            if key is None:
                raise PortalKeyError(
                    f"the data key of portal message {message_id} has no recorded master key "
                    "and none of the configured master keys decrypts it"
                )
        else:
            key = self._key_for(key_id)
            if key is None:
                raise PortalKeyError(
                    f"the data key of portal message {message_id} is encrypted with master key "
                    f"id {key_id}, which is neither portal.key_file nor one of "
                    "portal.previous_key_files"
                )
        try:
            return key.aead.decrypt(wrapped[:_NONCE], wrapped[_NONCE:], aad)
        except InvalidTag as exc:
            raise PortalError(
                f"the data key of portal message {message_id} does not decrypt with master key "
                f"id {key.key_id} ({key.source}): the database row is damaged"
            ) from exc

    def withdraw(self, message_id: str) -> None:
        """Delete a message and its pickups (used when its notifications could not be
        sent, so that Postfix's retry does not leave a second copy)."""
        with self._transaction() as db:
            db.execute("DELETE FROM messages WHERE id = ?", (message_id,))
        (self._messages / message_id).unlink(missing_ok=True)

    def pickup(self, token: str, now: float | None = None) -> Pickup | None:
        """Return the pickup behind a link token, or None when it is unknown or expired."""
        now = time.time() if now is None else now
        row = self._db.execute(
            "SELECT m.id, p.recipient, m.sender, m.created, m.expires, p.opened, m.size,"
            " m.queue_id FROM pickups p JOIN messages m ON m.id = p.message_id"
            " WHERE p.token_digest = ? AND m.expires > ?",
            (_digest(token), now),
        ).fetchone()
        return Pickup(*row) if row else None

    def read_message(self, token: str, session: str, now: float | None = None) -> bytes | None:
        """Decrypt the message of a pickup for a valid session; None otherwise.

        Marks the pickup opened on the first read. Raises PortalError when the stored
        message does not decrypt (damaged file or wrong master key).
        """
        now = time.time() if now is None else now
        if not self.session_valid(token, session, now):
            return None
        row = self._db.execute(
            "SELECT m.id, m.wrapped_key, m.key_id FROM pickups p"
            " JOIN messages m ON m.id = p.message_id WHERE p.token_digest = ? AND m.expires > ?",
            (_digest(token), now),
        ).fetchone()
        if row is None:
            return None
        message_id, wrapped, key_id = row
        aad = message_id.encode("ascii")
        data_key = self._unwrap(message_id, wrapped, key_id)
        try:
            blob = (self._messages / message_id).read_bytes()
            raw = AESGCM(data_key).decrypt(blob[:_NONCE], blob[_NONCE:], aad)
        except InvalidTag as exc:
            raise PortalError(
                f"portal message {message_id} does not decrypt with its data key: the file "
                "is damaged or belongs to another store"
            ) from exc
        except FileNotFoundError as exc:
            # A purge in another process may delete the message between the row lookup
            # and the read; then it is gone, as for an expired link.
            gone = (
                self._db.execute("SELECT 1 FROM messages WHERE id = ?", (message_id,)).fetchone()
                is None
            )
            if gone:
                return None
            raise PortalError(f"cannot read portal message {message_id}: {exc.strerror}") from exc
        except OSError as exc:
            raise PortalError(f"cannot read portal message {message_id}: {exc.strerror}") from exc
        self._db.execute(
            "UPDATE pickups SET opened = ? WHERE token_digest = ? AND opened IS NULL",
            (now, _digest(token)),
        )
        return raw

    def claim_sender_notice(self, token: str, now: float | None = None) -> bool:
        """Claim the one pickup notice to the sender for this pickup. Returns True for
        the first claim and False for every later one, also across processes, so
        concurrent first opens send one notice. Raises PortalError when the store
        cannot be written."""
        now = time.time() if now is None else now
        try:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO sender_notices (token_digest, claimed)"
                " SELECT token_digest, ? FROM pickups WHERE token_digest = ?",
                (now, _digest(token)),
            )
        except sqlite3.Error as exc:
            raise PortalError(f"portal store {self.directory}: {exc}") from exc
        return cursor.rowcount == 1

    # -- codes and sessions --------------------------------------------------------

    def _code_digest(self, token: str, code: str, key: MasterKey | None = None) -> bytes:
        code_key = (key or self._keys.current).code_key
        return hmac.new(
            code_key, _digest(token) + code.encode("ascii", "replace"), hashlib.sha256
        ).digest()

    def _code_matches(self, stored: bytes, token: str, code: str) -> bool:
        """Compare with the digest under every key: a code issued before a restart
        with a new master key was digested with the key that is now a previous one."""
        matches = False
        for key in self._keys.keys:
            matches |= hmac.compare_digest(stored, self._code_digest(token, code, key))
        return matches

    def issue_code(
        self, token: str, *, lifetime: float, per_hour: int, now: float | None = None
    ) -> CodeIssue:
        """Make a new code for a pickup, replacing any earlier one, unless ``per_hour``
        codes were made in the last hour. Raises PortalError for an unknown token.

        A current key that a rotation retired since this store was opened is first
        replaced by the key of that rotation (see :meth:`_follow_rotation`), which
        raises RetiredKeyError when this process does not have that key.
        """
        now = time.time() if now is None else now
        with self._transaction() as db:
            retired = self._follow_rotation(db)
            row = db.execute(
                "SELECT p.codes_sent FROM pickups p JOIN messages m ON m.id = p.message_id"
                " WHERE p.token_digest = ? AND m.expires > ?",
                (_digest(token), now),
            ).fetchone()
            if row is None:
                raise PortalError("unknown or expired pickup")
            recent = [float(t) for t in row[0].split() if float(t) > now - 3600]
            if len(recent) >= per_hour:
                return CodeIssue(None, "rate", retired)
            code = f"{secrets.randbelow(10**_CODE_DIGITS):0{_CODE_DIGITS}d}"
            db.execute(
                "UPDATE pickups SET code_digest = ?, code_expires = ?, code_wrong = 0, codes_sent = ?"
                " WHERE token_digest = ?",
                (
                    self._code_digest(token, code),
                    now + lifetime,
                    " ".join(f"{t:.3f}" for t in [*recent, now]),
                    _digest(token),
                ),
            )
        return CodeIssue(code, retired_key_id=retired)

    def check_code(
        self,
        token: str,
        code: str,
        *,
        attempts: int,
        session_lifetime: float,
        now: float | None = None,
    ) -> CodeCheck:
        """Check an entered code. A right code is used up and opens a session; after
        ``attempts`` wrong entries the code is void."""
        now = time.time() if now is None else now
        code = "".join(code.split())
        with self._transaction() as db:
            row = db.execute(
                "SELECT p.code_digest, p.code_expires, p.code_wrong FROM pickups p"
                " JOIN messages m ON m.id = p.message_id WHERE p.token_digest = ? AND m.expires > ?",
                (_digest(token), now),
            ).fetchone()
            if row is None or row[0] is None:
                return CodeCheck(None, "none")
            stored, expires, wrong = row
            if wrong >= attempts:
                return CodeCheck(None, "void")
            if expires <= now:
                return CodeCheck(None, "expired")
            if not (code.isascii() and code.isdigit() and self._code_matches(stored, token, code)):
                db.execute(
                    "UPDATE pickups SET code_wrong = code_wrong + 1 WHERE token_digest = ?",
                    (_digest(token),),
                )
                return CodeCheck(None, "voided" if wrong + 1 >= attempts else "wrong")
            session = secrets.token_urlsafe(32)
            db.execute(
                "UPDATE pickups SET code_digest = NULL, code_expires = NULL, code_wrong = 0 WHERE token_digest = ?",
                (_digest(token),),
            )
            db.execute(
                "INSERT INTO sessions (session_digest, token_digest, expires) VALUES (?, ?, ?)",
                (_digest(session), _digest(token), now + session_lifetime),
            )
        return CodeCheck(session, "ok")

    def session_valid(self, token: str, session: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        row = self._db.execute(
            "SELECT 1 FROM sessions WHERE session_digest = ? AND token_digest = ? AND expires > ?",
            (_digest(session), _digest(token), now),
        ).fetchone()
        return row is not None

    def end_session(self, session: str) -> None:
        self._db.execute("DELETE FROM sessions WHERE session_digest = ?", (_digest(session),))

    # -- housekeeping --------------------------------------------------------------

    def waiting(self, now: float | None = None) -> list[WaitingMessage]:
        """List the messages not yet expired, oldest first."""
        now = time.time() if now is None else now
        rows = self._db.execute(
            "SELECT m.id, m.created, m.expires, m.sender, m.queue_id, p.recipient, p.opened"
            " FROM messages m JOIN pickups p ON p.message_id = m.id"
            " WHERE m.expires > ? ORDER BY m.created, m.id, p.rowid",
            (now,),
        ).fetchall()
        found: dict[str, tuple[tuple[float, float, str, str], list[tuple[str, float | None]]]] = {}
        for message_id, created, expires, sender, queue_id, recipient, opened in rows:
            entry = found.setdefault(message_id, ((created, expires, sender, queue_id), []))
            entry[1].append((recipient, opened))
        return [
            WaitingMessage(message_id, *details, tuple(recipients))
            for message_id, (details, recipients) in found.items()
        ]

    def find(self, message_id: str) -> ExpiredMessage | None:
        """Return a stored message's queue id and recipients, expired or not, or None
        when no message has that id."""
        row = self._db.execute(
            "SELECT queue_id FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        if row is None:
            return None
        recipients = self._db.execute(
            "SELECT recipient FROM pickups WHERE message_id = ? ORDER BY rowid", (message_id,)
        ).fetchall()
        return ExpiredMessage(message_id, row[0], tuple(recipient for (recipient,) in recipients))

    def expired(self, now: float) -> list[ExpiredMessage]:
        """List the messages that :meth:`purge` with the same ``now`` deletes."""
        rows = self._db.execute(
            "SELECT m.id, m.queue_id, p.recipient FROM messages m JOIN pickups p ON p.message_id = m.id"
            " WHERE m.expires <= ? ORDER BY m.id, p.rowid",
            (now,),
        ).fetchall()
        found: dict[str, tuple[str, list[str]]] = {}
        for message_id, queue_id, recipient in rows:
            found.setdefault(message_id, (queue_id, []))[1].append(recipient)
        return [
            ExpiredMessage(message_id, queue_id, tuple(recipients))
            for message_id, (queue_id, recipients) in found.items()
        ]

    def purge(self, now: float | None = None) -> int:
        """Delete expired messages, their files and pickups, expired sessions, and
        files no row points to (left by a crash during :meth:`deposit`). Returns the
        number of messages deleted."""
        now = time.time() if now is None else now
        with self._transaction() as db:
            expired = [
                row[0] for row in db.execute("SELECT id FROM messages WHERE expires <= ?", (now,))
            ]
            db.execute("DELETE FROM messages WHERE expires <= ?", (now,))
            db.execute("DELETE FROM sessions WHERE expires <= ?", (now,))
            known = {row[0] for row in db.execute("SELECT id FROM messages")}
        for message_id in expired:
            (self._messages / message_id).unlink(missing_ok=True)
        # An orphan younger than a minute may belong to a deposit still in progress.
        for path in self._messages.iterdir():
            try:
                orphan = path.name not in known and path.stat().st_mtime < now - 60
            except FileNotFoundError:
                # A deposit renamed its temporary file, or withdraw removed the file.
                continue
            if orphan:
                path.unlink(missing_ok=True)
        return len(expired)

    def counts(self, now: float | None = None) -> dict[str, int]:
        """Messages waiting and pickups opened, for ``postveil portal status``."""
        now = time.time() if now is None else now
        (messages,) = self._db.execute(
            "SELECT COUNT(*) FROM messages WHERE expires > ?", (now,)
        ).fetchone()
        (pickups, opened) = self._db.execute(
            "SELECT COUNT(*), COUNT(p.opened) FROM pickups p JOIN messages m ON m.id = p.message_id"
            " WHERE m.expires > ?",
            (now,),
        ).fetchone()
        return {"messages": messages, "pickups": pickups, "opened": opened}

    # -- master key rotation -------------------------------------------------------

    @property
    def keyring(self) -> Keyring:
        return self._keys

    def key_counts(self) -> dict[str | None, int]:
        """Count the stored messages, expired ones not yet purged included, by the key
        id of the master key that encrypted their data key (None: not recorded)."""
        rows = self._db.execute("SELECT key_id, COUNT(*) FROM messages GROUP BY key_id")
        return {key_id: count for key_id, count in rows}

    def rotated_key_id(self) -> str | None:
        """Return the key id that ``postveil portal rekey`` last moved the store to."""
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (_CURRENT_KEY,)).fetchone()
        return row[0] if row else None

    def retired_key_ids(self) -> dict[str, str]:
        """Return {retired key id: key id of the rotation that retired it}."""
        rows = self._db.execute(
            "SELECT substr(name, ?), value FROM meta WHERE substr(name, 1, ?) = ?",
            (len(_RETIRED_PREFIX) + 1, len(_RETIRED_PREFIX), _RETIRED_PREFIX),
        )
        return {key_id: replaced_by for key_id, replaced_by in rows}

    def declare_current_key(self) -> list[str]:
        """Record the current key as the store's master key and retire the keys it
        replaces, so that from the commit on every deposit by a process without this
        key, or with a retired key as its current one, fails (see ``_check_rotation``).

        The retired keys are the key that the last rotation recorded and every
        previous key of this keyring. A key retired before keeps the rotation that
        retired it first. A rerun with the same configuration, after an interruption,
        changes nothing.

        Returns the ids of the keys retired by this call. Raises PortalKeyError when
        the store was rotated to a key that is not in this keyring, or when the current
        key is retired: rewrapping to it could move the data keys back to an older key.
        """
        current = self._keys.current.key_id
        with self._transaction() as db:
            self._check_rotation(db)
            row = db.execute("SELECT value FROM meta WHERE name = ?", (_CURRENT_KEY,)).fetchone()
            rotated = row[0] if row is not None else None
            if rotated != current:
                self._link_rotation(db, rotated, current)
            replaced = {key.key_id for key in self._keys.previous}
            if rotated is not None and rotated != current:
                replaced.add(rotated)
            retired = []
            for key_id in sorted(replaced):
                cursor = db.execute(
                    "INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)",
                    (_RETIRED_PREFIX + key_id, current),
                )
                if cursor.rowcount == 1:
                    retired.append(key_id)
            db.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (_CURRENT_KEY, current)
            )
        return retired

    @staticmethod
    def _link_rotation(db: sqlite3.Connection, rotated: str | None, current: str) -> None:
        """Record that the rotation to ``current`` replaced ``rotated`` (None: no key was
        recorded), and that ``current`` is no longer an abandoned key."""
        legacy = db.execute(
            "SELECT value FROM meta WHERE name = ?", (_LEGACY_PREDECESSOR,)
        ).fetchone()
        if legacy is not None and rotated is not None:
            # The legacy row is the predecessor of the key recorded until now.
            db.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)",
                (_PREDECESSOR_PREFIX + rotated, legacy[0]),
            )
        db.execute("DELETE FROM meta WHERE name = ?", (_LEGACY_PREDECESSOR,))
        if rotated is None:
            db.execute("DELETE FROM meta WHERE name = ?", (_PREDECESSOR_PREFIX + current,))
        else:
            db.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                (_PREDECESSOR_PREFIX + current, rotated),
            )
        db.execute("DELETE FROM meta WHERE name = ?", (_ABANDONED_PREFIX + current,))

    def abandon_rotation(
        self, before_change: Callable[[str], None] | None = None
    ) -> AbandonedRotation | None:
        """Undo the record of the last rotation, for ``rekey --abandon``.

        Records the key id of the rotation before it again (or none, after the first
        recorded rotation), and makes the keys that the abandoned rotation retired
        usable again. Each call undoes one rotation, so calls in a row go back through
        every recorded rotation. ``before_change`` is called with the abandoned key id
        after the checks and before the change, in the same transaction. So a deposit
        cannot come in between, and an exception from it leaves the store unchanged.
        Returns None when no rotation is recorded.

        Raises RotationInUseError when a stored message may be under the abandoned key
        or under a key whose rotation an earlier call abandoned back to it: one
        labelled with such a key id, or one without a key id that no other configured
        key opens.
        """
        with self._transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE name = ?", (_CURRENT_KEY,)).fetchone()
            if row is None:
                return None
            key_id = row[0]
            abandoned_before = [
                name[len(_ABANDONED_PREFIX) :]
                for (name,) in db.execute(
                    "SELECT name FROM meta WHERE substr(name, 1, ?) = ? AND value = ?"
                    " ORDER BY name",
                    (len(_ABANDONED_PREFIX), _ABANDONED_PREFIX, key_id),
                )
            ]
            in_use = self._count_under(db, {key_id, *abandoned_before})
            if in_use:
                also = (
                    f" or under key id(s) {', '.join(abandoned_before)}, whose rotations were "
                    f"abandoned back to key id {key_id},"
                    if abandoned_before
                    else ""
                )
                raise RotationInUseError(
                    f"{in_use} stored message(s) are under master key id {key_id}{also} or "
                    "have no recorded key id and no other configured key opens them, so the "
                    f"rotation to key id {key_id} cannot be abandoned; nothing was changed. "
                    "Finish the rotation with 'postveil portal rekey' and a configuration "
                    f"whose portal.key_file has key id {key_id}, or revoke those messages "
                    "('postveil portal list', 'postveil portal revoke ID') first"
                )
            if before_change is not None:
                before_change(key_id)
            unretired = [
                name[len(_RETIRED_PREFIX) :]
                for (name,) in db.execute(
                    "SELECT name FROM meta WHERE substr(name, 1, ?) = ? AND value = ?"
                    " ORDER BY name",
                    (len(_RETIRED_PREFIX), _RETIRED_PREFIX, key_id),
                )
            ]
            db.execute(
                "DELETE FROM meta WHERE substr(name, 1, ?) = ? AND value = ?",
                (len(_RETIRED_PREFIX), _RETIRED_PREFIX, key_id),
            )
            before = db.execute(
                "SELECT value FROM meta WHERE name = ?", (_PREDECESSOR_PREFIX + key_id,)
            ).fetchone()
            if before is None:
                before = db.execute(
                    "SELECT value FROM meta WHERE name = ?", (_LEGACY_PREDECESSOR,)
                ).fetchone()
            db.execute(
                "DELETE FROM meta WHERE name IN (?, ?)",
                (_PREDECESSOR_PREFIX + key_id, _LEGACY_PREDECESSOR),
            )
            abandoned = [*abandoned_before, key_id]
            if before is None:
                db.execute("DELETE FROM meta WHERE name = ?", (_CURRENT_KEY,))
                # With no key recorded, no later abandon looks at these keys.
                db.executemany(
                    "DELETE FROM meta WHERE name = ?",
                    [(_ABANDONED_PREFIX + abandoned_id,) for abandoned_id in abandoned],
                )
            else:
                db.execute("UPDATE meta SET value = ? WHERE name = ?", (before[0], _CURRENT_KEY))
                db.executemany(
                    "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                    [(_ABANDONED_PREFIX + abandoned_id, before[0]) for abandoned_id in abandoned],
                )
        return AbandonedRotation(key_id, before[0] if before else None, tuple(unretired))

    def _count_under(self, db: sqlite3.Connection, key_ids: set[str]) -> int:
        """Count the messages whose data key may be encrypted with one of ``key_ids``."""
        # Only placeholders go into the query text; the key ids are parameters.
        placeholders = ", ".join("?" * len(key_ids))
        (labelled,) = db.execute(
            f"SELECT COUNT(*) FROM messages WHERE key_id IN ({placeholders})",
            tuple(key_ids),
        ).fetchone()
        unlabelled = 0
        for message_id, wrapped in db.execute(
            "SELECT id, wrapped_key FROM messages WHERE key_id IS NULL"
        ).fetchall():
            key = self._find_key(message_id, wrapped)
            if key is None or key.key_id in key_ids:
                unlabelled += 1
        return int(labelled) + unlabelled

    def rewrap_batch(self, after: str, limit: int) -> RewrapBatch:
        """Encrypt again with the current master key up to ``limit`` data keys that
        another key encrypted, of the messages with ids after ``after``, in one
        transaction. A data key that does not decrypt is left as it is and reported.

        A crash loses at most this transaction, and every row is under either its old
        or its new key, with the key id that matches, so a new run finishes the job.
        """
        current = self._keys.current.key_id
        rewrapped = 0
        failures: list[RewrapFailure] = []
        with self._transaction() as db:
            rows = db.execute(
                "SELECT id, wrapped_key, key_id FROM messages"
                " WHERE id > ? AND (key_id IS NULL OR key_id != ?) ORDER BY id LIMIT ?",
                (after, current, limit),
            ).fetchall()
            for message_id, wrapped, key_id in rows:
                try:
                    data_key = self._unwrap(message_id, wrapped, key_id)
                except PortalError as exc:
                    failures.append(RewrapFailure(message_id, key_id, str(exc)))
                    continue
                db.execute(
                    "UPDATE messages SET wrapped_key = ?, key_id = ? WHERE id = ?",
                    (self._wrap(message_id, data_key), current, message_id),
                )
                rewrapped += 1
        last_id = rows[-1][0] if rows else None
        return RewrapBatch(last_id, rewrapped, tuple(failures))


def _abandon_hint(key_id: str) -> str:
    return (
        f"If the file of key id {key_id} is lost and no message needs it, run 'postveil "
        "portal rekey --abandon' with this configuration"
    )


def _write_synced(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        temporary.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
