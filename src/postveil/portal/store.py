"""The built-in portal's store: messages encrypted at rest, pickups, codes and sessions.

Each message is encrypted with AES-256-GCM under a key of its own (the data key). The
data key is kept in the database, encrypted with the master key (``portal.key_file``).
Both encryptions bind the message id as associated data, so a ciphertext moved to
another row does not decrypt. The database holds no message text, no subject and no
token or code in the clear: only SHA-256 digests of the tokens and keyed digests of
the codes, so a copy of the database opens nothing.

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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from postveil.errors import PostveilError
from postveil.keyfile import read_key_file, write_key_file

SCHEMA_VERSION = 1
_NONCE = 12
_CODE_DIGITS = 8


class PortalError(PostveilError):
    """The store cannot do what was asked; the message names the cause and the fix."""


class PortalKeyError(PortalError):
    """The master key file is missing, unreadable, too open or malformed."""


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
    wrapped_key BLOB NOT NULL
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


class PortalStore:
    """Encrypted messages and their pickups in ``directory`` (see the module text)."""

    def __init__(self, directory: str | os.PathLike[str], master_key: bytes) -> None:
        if len(master_key) != 32:
            raise PortalKeyError("the portal master key must be 32 bytes")
        self.directory = Path(directory)
        self._master = AESGCM(master_key)
        # Codes are checked against a keyed digest: 10^8 codes are too few for a plain
        # hash to keep them from someone with a copy of the database.
        self._code_key = hmac.new(
            master_key, b"postveil-portal code digest", hashlib.sha256
        ).digest()
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
                timeout=10.0,
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
        except (OSError, sqlite3.Error) as exc:
            raise PortalError(f"cannot open the portal store in {self.directory}: {exc}") from exc
        if found != str(SCHEMA_VERSION):
            raise PortalError(
                f"the portal store in {self.directory} has schema {found}, this postveil reads "
                f"{SCHEMA_VERSION}"
            )

    @classmethod
    def open(
        cls, directory: str | os.PathLike[str], key_file: str | os.PathLike[str]
    ) -> PortalStore:
        return cls(directory, load_master_key(key_file))

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
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
        key_nonce = secrets.token_bytes(_NONCE)
        wrapped = key_nonce + self._master.encrypt(key_nonce, data_key, aad)
        path = self._messages / message_id
        tokens = tuple((recipient, secrets.token_urlsafe(32)) for recipient in recipients)
        try:
            _write_synced(path, blob)
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO messages (id, created, expires, sender, queue_id, size, wrapped_key)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (message_id, now, now + retention, sender, queue_id, len(raw), wrapped),
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
        return Deposit(message_id, now + retention, tokens)

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
            "SELECT m.id, m.wrapped_key FROM pickups p JOIN messages m ON m.id = p.message_id"
            " WHERE p.token_digest = ? AND m.expires > ?",
            (_digest(token), now),
        ).fetchone()
        if row is None:
            return None
        message_id, wrapped = row
        aad = message_id.encode("ascii")
        try:
            data_key = self._master.decrypt(wrapped[:_NONCE], wrapped[_NONCE:], aad)
            blob = (self._messages / message_id).read_bytes()
            raw = AESGCM(data_key).decrypt(blob[:_NONCE], blob[_NONCE:], aad)
        except InvalidTag as exc:
            raise PortalError(
                f"portal message {message_id} does not decrypt: the file is damaged or the "
                "master key is not the one it was stored with"
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

    def _code_digest(self, token: str, code: str) -> bytes:
        return hmac.new(
            self._code_key, _digest(token) + code.encode("ascii", "replace"), hashlib.sha256
        ).digest()

    def issue_code(
        self, token: str, *, lifetime: float, per_hour: int, now: float | None = None
    ) -> CodeIssue:
        """Make a new code for a pickup, replacing any earlier one, unless ``per_hour``
        codes were made in the last hour. Raises PortalError for an unknown token."""
        now = time.time() if now is None else now
        with self._transaction() as db:
            row = db.execute(
                "SELECT p.codes_sent FROM pickups p JOIN messages m ON m.id = p.message_id"
                " WHERE p.token_digest = ? AND m.expires > ?",
                (_digest(token), now),
            ).fetchone()
            if row is None:
                raise PortalError("unknown or expired pickup")
            recent = [float(t) for t in row[0].split() if float(t) > now - 3600]
            if len(recent) >= per_hour:
                return CodeIssue(None, "rate")
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
        return CodeIssue(code)

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
            if not (
                code.isascii()
                and code.isdigit()
                and hmac.compare_digest(stored, self._code_digest(token, code))
            ):
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
