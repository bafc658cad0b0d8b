"""Copies of a message already handed to Postfix's re-injection listener.

When a message fails after some of its copies were re-injected, the client retries it
and the milter would queue those copies a second time. The milter therefore stores a
key for each copy the listener accepted, and on a retry it skips the copies whose key
it finds. A key covers what a retry keeps: the message as received minus the header
fields Postfix writes anew for each attempt, the envelope sender, the copy's kind and
its recipients (see :func:`retry_digest` and :func:`copy_key`).

Keys are written only after the listener replied 250, so a crash between the two
steps leaves a copy queued but not stored: the retry sends it again (a duplicate),
and no copy is ever skipped that was not queued. When the whole message succeeds,
its keys are removed again, so a later message with the same bytes is delivered in
full. What is left expires after ``milter.reinject_store_expiry``.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from postveil.errors import TemporaryFailure

log = logging.getLogger("postveil.milter")

_KEY_VERSION = b"postveil reinjected copy v1"
"""Prefix of every hashed key, so a future change of the key's inputs cannot match old keys."""

NOTICE_KIND = "notice"
"""The kind of the sender notice in :func:`copy_key`, next to the version kinds."""


class ReinjectStoreError(TemporaryFailure):
    """The store of re-injected copies could not be opened, read or written."""


def retry_digest(
    headers: Sequence[tuple[str, bytes]],
    body: bytes | memoryview,
    queue_id: str | None,
    transaction: tuple[float, float],
) -> bytes:
    """Return a SHA-256 digest of the message that is the same on each delivery attempt.

    ``headers`` are the fields as the milter received them (name, value with its
    leading space). ``transaction`` is the time (epoch seconds) of MAIL FROM and of
    end of message. Postfix (3.7) writes some fields anew for each attempt, and they
    are left out:

    - a Message-ID or Resent-Message-ID that contains the queue id, which Postfix's
      cleanup service adds (``<QUEUEID@myhostname>``) when the client sent none;
    - a Date or Resent-Date in Postfix's own format (``Sun,  6 Dec 2026 02:03:46
      +0000 (UTC)``) that names a second of this transaction, which cleanup adds
      when the client sent none;
    - a Received field that contains the queue id. Postfix's smtpd does not pass
      the milter its own Received field, but a field naming the queue id can only
      come from this attempt.

    A client's own field that happens to look like one of these is left out on the
    first attempt but not on a later one, so the digests differ and the retry sends
    every copy again. Without a queue id only the Date rule applies.
    """
    digest = hashlib.sha256()
    for name, value in headers:
        if _written_for_attempt(name, value, queue_id, transaction):
            continue
        digest.update(name.encode("utf-8", "surrogateescape") + b":" + value.replace(b"\r\n", b"\n") + b"\n")
    digest.update(b"\n")
    digest.update(body)
    return digest.digest()


_POSTFIX_DATE_RE = re.compile(
    rb"^[A-Z][a-z]{2}, [ \d]\d [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4} \([^()\r\n]*\)$"
)
"""A date as Postfix's mail_date() writes it: day of the month padded with a space,
numeric zone, zone name in parentheses."""


def _written_for_attempt(name: str, value: bytes, queue_id: str | None, transaction: tuple[float, float]) -> bool:
    """Return whether Postfix wrote this header field for the current attempt."""
    lower = name.lower()
    if lower in ("message-id", "resent-message-id", "received"):
        return bool(queue_id) and _names_queue_id(value, queue_id or "")
    if lower in ("date", "resent-date"):
        return _postfix_date_within(value.strip(), transaction)
    return False


def _postfix_date_within(value: bytes, transaction: tuple[float, float]) -> bool:
    if not _POSTFIX_DATE_RE.match(value):
        return False
    try:
        when = email.utils.parsedate_to_datetime(value.decode("ascii")).timestamp()
    except (ValueError, TypeError):
        return False
    # Postfix truncates its arrival time (taken at MAIL FROM) to whole seconds.
    start, end = transaction
    return math.floor(start) - 1 <= when <= end + 1


def _names_queue_id(value: bytes, queue_id: str) -> bool:
    """Return whether ``value`` contains ``queue_id`` as a word of its own."""
    needle = queue_id.encode("ascii", "replace")
    start = value.find(needle)
    while start >= 0:
        end = start + len(needle)
        before = value[start - 1 : start]
        after = value[end : end + 1]
        if not (before.isalnum() or after.isalnum()):
            return True
        start = value.find(needle, start + 1)
    return False


def copy_key(message_digest: bytes, sender: str, kind: str, recipients: Iterable[str]) -> str:
    """Return the store key (64 hex digits) of one copy of a message.

    ``kind`` is the version kind (``cleartext``, ``pgp``, ``smime``, ``portal``) or
    NOTICE_KIND. A copy whose kind or recipients change between attempts (a key
    imported meanwhile, say) gets a new key, so it is sent again rather than skipped.
    """
    digest = hashlib.sha256(_KEY_VERSION)
    for part in (message_digest, sender.encode("utf-8", "surrogateescape"), kind.encode()):
        digest.update(len(part).to_bytes(4, "big") + part)
    for recipient in sorted(recipients):
        encoded = recipient.encode("utf-8", "surrogateescape")
        digest.update(len(encoded).to_bytes(4, "big") + encoded)
    return digest.hexdigest()


_DAMAGED_HINT = (
    "; if the file is damaged, move it away and the milter creates a new one "
    "(retries of messages it had partly re-injected then deliver those copies again)"
)


class ReinjectStore:
    """SQLite file of copy keys and the queue ids Postfix gave the copies.

    SQLite's file locks let several threads and several milter processes share the
    file. Every method is one transaction. Reads raise ReinjectStoreError. Writes
    raise it too, and the caller decides whether the message can go on (see
    docs/milter.md).
    """

    _SCHEMA = (
        "CREATE TABLE IF NOT EXISTS copies (key TEXT PRIMARY KEY, queue_id TEXT NOT NULL, queued_at REAL NOT NULL)",
        "CREATE INDEX IF NOT EXISTS copies_queued_at ON copies (queued_at)",
    )

    def __init__(self, path: str | os.PathLike[str], *, expiry: float, max_entries: int, busy_timeout: float = 5.0):
        self.path = str(path)
        self.expiry = expiry
        self.max_entries = max_entries
        self._busy_timeout = busy_timeout
        self._connection: sqlite3.Connection | None = None
        # One connection for all threads, used by one thread at a time: each call
        # takes microseconds, and pymilter starts a thread per SMTP connection, so
        # connections per thread would leak.
        self._lock = threading.Lock()

    def _open(self) -> sqlite3.Connection:
        if self._connection is not None:
            return self._connection
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise ReinjectStoreError(f"cannot open the store of re-injected copies {self.path}: {exc}") from exc
        try:
            # A power failure can lose the latest commits in WAL mode with synchronous
            # NORMAL. A lost key only means a duplicate on a retry.
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            with connection:
                for statement in self._SCHEMA:
                    connection.execute(statement)
        except sqlite3.Error as exc:
            connection.close()
            raise ReinjectStoreError(f"cannot open the store of re-injected copies {self.path}: {exc}{_DAMAGED_HINT}") from exc
        self._connection = connection
        return connection

    def queued(self, keys: Sequence[str], *, now: float | None = None) -> dict[str, str]:
        """Return the queue id of each key in ``keys`` stored within the expiry."""
        if not keys:
            return {}
        oldest = (time.time() if now is None else now) - self.expiry
        placeholders = ",".join("?" * len(keys))
        try:
            with self._lock:
                rows = self._open().execute(
                    f"SELECT key, queue_id FROM copies WHERE key IN ({placeholders}) AND queued_at >= ?",
                    (*keys, oldest),
                ).fetchall()
        except sqlite3.Error as exc:
            raise ReinjectStoreError(f"cannot read the store of re-injected copies {self.path}: {exc}{_DAMAGED_HINT}") from exc
        return {key: queue_id for key, queue_id in rows}

    def add(self, key: str, queue_id: str, *, now: float | None = None) -> None:
        """Store ``key`` with the queue id of its copy, then remove expired keys, and
        the oldest ones beyond ``max_entries``.

        Dropping the oldest keys can only cause duplicates on retries, so a full
        store never stops mail; it is logged as a warning.
        """
        now = time.time() if now is None else now
        try:
            with self._lock:
                connection = self._open()
                with connection:
                    connection.execute(
                        "INSERT INTO copies (key, queue_id, queued_at) VALUES (?, ?, ?)"
                        " ON CONFLICT (key) DO UPDATE SET queue_id = excluded.queue_id, queued_at = excluded.queued_at",
                        (key, queue_id, now),
                    )
                    connection.execute("DELETE FROM copies WHERE queued_at < ?", (now - self.expiry,))
                    (count,) = connection.execute("SELECT count(*) FROM copies").fetchone()
                    excess = count - self.max_entries
                    if excess > 0:
                        connection.execute(
                            "DELETE FROM copies WHERE key IN (SELECT key FROM copies ORDER BY queued_at LIMIT ?)",
                            (excess,),
                        )
        except sqlite3.Error as exc:
            raise ReinjectStoreError(f"cannot write the store of re-injected copies {self.path}: {exc}") from exc
        if excess > 0:
            log.warning(
                "store of re-injected copies %s is full (milter.reinject_store_max_entries %d): dropped the %d "
                "oldest, whose messages may be delivered twice if they are retried",
                self.path,
                self.max_entries,
                excess,
            )

    def forget(self, keys: Sequence[str]) -> None:
        """Remove ``keys``, once their message was accepted or discarded."""
        if not keys:
            return
        placeholders = ",".join("?" * len(keys))
        try:
            with self._lock:
                connection = self._open()
                with connection:
                    connection.execute(f"DELETE FROM copies WHERE key IN ({placeholders})", tuple(keys))
        except sqlite3.Error as exc:
            raise ReinjectStoreError(f"cannot write the store of re-injected copies {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
