"""The store of re-injected copies and the keys that recognise a retried message."""

from __future__ import annotations

import logging
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postveil.milter.reinject import ReinjectionFailure, reinject
from postveil.milter.reinjected import (
    NOTICE_KIND,
    ReinjectStore,
    ReinjectStoreError,
    copy_key,
    retry_digest,
)

REPO = Path(__file__).resolve().parents[2]

QUEUE_ID = "4jhpJK4BLVzJ9HM"
RETRY_QUEUE_ID = "4jhpKx1Zq0z9sTT"
ARRIVAL = b" Sun,  6 Dec 2026 01:57:05 +0000 (UTC)"
RETRY_ARRIVAL = b" Sun,  6 Dec 2026 02:27:41 +0000 (UTC)"
FIRST_TRANSACTION = (1796522225.4, 1796522226.9)
"""MAIL FROM and end of message of the first attempt: ARRIVAL and the next second."""
RETRY_TRANSACTION = (1796524061.2, 1796524062.0)
"""The same for the retry, at RETRY_ARRIVAL."""
BODY = b"See you on Monday.\r\n"

SENDER_FIELDS = [("From", b" <doctor@clinic.test>"), ("To", b" <bob@example.net>"), ("Subject", b" Results")]


def postfix_message_id(queue_id: str) -> tuple[str, bytes]:
    """Return the Message-ID Postfix (3.7) adds to a message without one."""
    return ("Message-Id", f" <{queue_id}@mx.clinic.test>".encode())


def fields(*extra: tuple[str, bytes]) -> list[tuple[str, bytes]]:
    return [*SENDER_FIELDS, *extra]


# (case, fields of the first attempt, queue id, fields of the retry, queue id, same digest)
DIGEST_CASES = [
    ("sender fields only", fields(), QUEUE_ID, fields(), RETRY_QUEUE_ID, True),
    (
        "date and message-id added by postfix",
        fields(postfix_message_id(QUEUE_ID), ("Date", ARRIVAL)),
        QUEUE_ID,
        fields(postfix_message_id(RETRY_QUEUE_ID), ("Date", RETRY_ARRIVAL)),
        RETRY_QUEUE_ID,
        True,
    ),
    (
        "resent fields added by postfix",
        fields(("Resent-Message-ID", f" <{QUEUE_ID}@mx>".encode()), ("Resent-Date", ARRIVAL)),
        QUEUE_ID,
        fields(("Resent-Message-ID", f" <{RETRY_QUEUE_ID}@mx>".encode()), ("Resent-Date", RETRY_ARRIVAL)),
        RETRY_QUEUE_ID,
        True,
    ),
    (
        "received naming the queue id",
        [("Received", f" by mx.clinic.test (Postfix, from userid 0)\n\tid {QUEUE_ID};{ARRIVAL.decode()}".encode()),
         *SENDER_FIELDS],
        QUEUE_ID,
        [("Received", f" by mx.clinic.test (Postfix, from userid 0)\n\tid {RETRY_QUEUE_ID};{RETRY_ARRIVAL.decode()}".encode()),
         *SENDER_FIELDS],
        RETRY_QUEUE_ID,
        True,
    ),
    (
        "sender's own date differs",
        fields(("Date", b" Sat, 5 Dec 2026 10:00:00 +0100")),
        QUEUE_ID,
        fields(("Date", b" Sat, 5 Dec 2026 10:00:01 +0100")),
        RETRY_QUEUE_ID,
        False,
    ),
    (
        "sender's date in postfix's format outside the transaction",
        fields(("Date", b" Sat,  5 Dec 2026 10:00:00 +0000 (UTC)")),
        QUEUE_ID,
        fields(("Date", b" Sat,  5 Dec 2026 10:00:01 +0000 (UTC)")),
        RETRY_QUEUE_ID,
        False,
    ),
    (
        "sender's date in another format within the transaction",
        fields(("Date", b" Sun, 6 Dec 2026 01:57:05 +0000")),
        QUEUE_ID,
        fields(("Date", b" Sun, 6 Dec 2026 02:27:41 +0000")),
        RETRY_QUEUE_ID,
        False,
    ),
    (
        "sender's own message-id differs",
        fields(("Message-ID", b" <a@clinic.test>")),
        QUEUE_ID,
        fields(("Message-ID", b" <b@clinic.test>")),
        RETRY_QUEUE_ID,
        False,
    ),
    (
        "upstream received differs",
        fields(("Received", b" from a by b id 111; Sat, 5 Dec 2026")),
        QUEUE_ID,
        fields(("Received", b" from a by b id 222; Sat, 5 Dec 2026")),
        RETRY_QUEUE_ID,
        False,
    ),
    (
        "no queue id known",
        fields(postfix_message_id(QUEUE_ID)),
        None,
        fields(postfix_message_id(RETRY_QUEUE_ID)),
        None,
        False,
    ),
    (
        "queue id only inside a longer word",
        fields(("Message-ID", f" <x{QUEUE_ID}1@clinic.test>".encode())),
        QUEUE_ID,
        fields(("Message-ID", f" <x{RETRY_QUEUE_ID}2@clinic.test>".encode())),
        RETRY_QUEUE_ID,
        False,
    ),
]


@pytest.mark.parametrize(
    ("first", "first_id", "retry", "retry_id", "same"),
    [case[1:] for case in DIGEST_CASES],
    ids=[case[0] for case in DIGEST_CASES],
)
def test_retry_digest_cases(
    first: list[tuple[str, bytes]], first_id: str | None, retry: list[tuple[str, bytes]], retry_id: str | None, same: bool
) -> None:
    first_digest = retry_digest(first, BODY, first_id, FIRST_TRANSACTION)
    retry_digest_value = retry_digest(retry, BODY, retry_id, RETRY_TRANSACTION)
    assert (first_digest == retry_digest_value) is same


def test_retry_digest_body_counts() -> None:
    assert retry_digest(fields(), BODY, QUEUE_ID, FIRST_TRANSACTION) != retry_digest(
        fields(), BODY + b"P.S.\r\n", QUEUE_ID, FIRST_TRANSACTION
    )


def test_retry_digest_line_endings_ignored() -> None:
    folded = fields(("Comments", b" one,\r\n two"))
    unix = fields(("Comments", b" one,\n two"))
    assert retry_digest(folded, BODY, QUEUE_ID, FIRST_TRANSACTION) == retry_digest(
        unix, BODY, QUEUE_ID, FIRST_TRANSACTION
    )


def test_copy_key_inputs() -> None:
    digest = retry_digest(fields(), BODY, QUEUE_ID, FIRST_TRANSACTION)
    base = copy_key(digest, "doctor@clinic.test", "pgp", ["bob@example.net", "carol@example.net"])

    assert base == copy_key(digest, "doctor@clinic.test", "pgp", ["carol@example.net", "bob@example.net"])
    assert len(base) == 64
    assert base != copy_key(digest, "other@clinic.test", "pgp", ["bob@example.net", "carol@example.net"])
    assert base != copy_key(digest, "doctor@clinic.test", "smime", ["bob@example.net", "carol@example.net"])
    assert base != copy_key(digest, "doctor@clinic.test", "pgp", ["bob@example.net"])
    assert base != copy_key(digest, "doctor@clinic.test", NOTICE_KIND, ["bob@example.net", "carol@example.net"])
    other_digest = retry_digest(fields(), BODY + b"x", QUEUE_ID, FIRST_TRANSACTION)
    assert base != copy_key(other_digest, "doctor@clinic.test", "pgp", ["bob@example.net", "carol@example.net"])


def test_copy_key_fields_not_ambiguous() -> None:
    digest = b"\x00" * 32
    assert copy_key(digest, "a", "pgp", ["bc"]) != copy_key(digest, "a", "pgp", ["b", "c"])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ReinjectStore]:
    instance = ReinjectStore(tmp_path / "state" / "reinjected.sqlite3", expiry=3600.0, max_entries=100)
    yield instance
    instance.close()


def test_store_add_then_queued(store: ReinjectStore) -> None:
    store.add("k1", "QID1", now=1000.0)

    assert store.queued(["k1", "k2"], now=1001.0) == {"k1": "QID1"}
    assert store.queued([], now=1001.0) == {}


def test_store_expired_key_not_returned(store: ReinjectStore) -> None:
    store.add("k1", "QID1", now=1000.0)

    assert store.queued(["k1"], now=1000.0 + 3600.0) == {"k1": "QID1"}
    assert store.queued(["k1"], now=1000.0 + 3601.0) == {}


def test_store_add_removes_expired_rows(store: ReinjectStore) -> None:
    store.add("old", "QID1", now=1000.0)
    store.add("new", "QID2", now=1000.0 + 4000.0)

    with sqlite3.connect(store.path) as connection:
        keys = [row[0] for row in connection.execute("SELECT key FROM copies")]
    assert keys == ["new"]


def test_store_full_drops_oldest(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = ReinjectStore(tmp_path / "reinjected.sqlite3", expiry=3600.0, max_entries=100)
    for number in range(100):
        store.add(f"k{number}", f"QID{number}", now=1000.0 + number)
    assert "is full" not in caplog.text

    with caplog.at_level(logging.WARNING, logger="postveil.milter"):
        store.add("k100", "QID100", now=1100.0)

    assert store.queued(["k0"], now=1100.0) == {}
    assert store.queued(["k1", "k100"], now=1100.0) == {"k1": "QID1", "k100": "QID100"}
    assert "is full (milter.reinject_store_max_entries 100): dropped the 1 oldest" in caplog.text


def test_store_forget(store: ReinjectStore) -> None:
    store.add("k1", "QID1", now=1000.0)
    store.add("k2", "QID2", now=1000.0)

    store.forget(["k1"])

    assert store.queued(["k1", "k2"], now=1000.0) == {"k2": "QID2"}


def test_store_same_key_again_replaces(store: ReinjectStore) -> None:
    store.add("k1", "QID1", now=1000.0)
    store.add("k1", "QID2", now=2000.0)

    assert store.queued(["k1"], now=2000.0 + 3000.0) == {"k1": "QID2"}


def test_store_damaged_file_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "reinjected.sqlite3"
    path.write_bytes(b"this is not an SQLite database, just text " * 100)
    store = ReinjectStore(path, expiry=3600.0, max_entries=100)

    with pytest.raises(ReinjectStoreError) as raised:
        store.queued(["k1"])

    assert str(path) in str(raised.value)
    assert "move it away" in str(raised.value)


def test_store_unusable_directory_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    store = ReinjectStore(blocker / "reinjected.sqlite3", expiry=3600.0, max_entries=100)

    with pytest.raises(ReinjectStoreError, match="cannot open the store of re-injected copies"):
        store.queued(["k1"])
    with pytest.raises(ReinjectStoreError):
        store.add("k1", "QID1")


def test_store_error_is_temporary_failure() -> None:
    from postveil.errors import TemporaryFailure

    assert issubclass(ReinjectStoreError, TemporaryFailure)


def test_store_shared_by_threads(store: ReinjectStore) -> None:
    errors: list[BaseException] = []

    def add_many(thread: int) -> None:
        try:
            for number in range(10):
                store.add(f"t{thread}-{number}", f"Q{thread}x{number}")
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=add_many, args=(thread,)) for thread in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    keys = [f"t{thread}-{number}" for thread in range(8) for number in range(10)]
    assert len(store.queued(keys)) == 80


ADD_IN_PROCESS = """
import sys
from postveil.milter.reinjected import ReinjectStore
store = ReinjectStore(sys.argv[1], expiry=3600.0, max_entries=100000)
for number in range(200):
    store.add(f"{sys.argv[2]}-{number}", "QID")
"""


def test_store_shared_by_processes(tmp_path: Path) -> None:
    path = tmp_path / "reinjected.sqlite3"
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}
    writers = [
        subprocess.Popen([sys.executable, "-c", ADD_IN_PROCESS, str(path), name], env=env, stderr=subprocess.PIPE)
        for name in ("a", "b", "c")
    ]
    for writer in writers:
        _, stderr = writer.communicate(timeout=60)
        assert writer.returncode == 0, stderr.decode()

    store = ReinjectStore(path, expiry=3600.0, max_entries=100000)
    keys = [f"{name}-{number}" for name in ("a", "b", "c") for number in range(200)]
    assert len(store.queued(keys)) == 600
    store.close()


@pytest.fixture
def silent_listener() -> Iterator[tuple[str, int]]:
    """A TCP listener that accepts connections and never sends a byte, like a hung smtpd."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        try:
            while True:
                connection, _ = server.accept()
                accepted.append(connection)
        except OSError:
            return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[:2]
    server.close()
    for connection in accepted:
        connection.close()


def test_reinject_cut_off_at_deadline(silent_listener: tuple[str, int]) -> None:
    started = time.monotonic()

    with pytest.raises(ReinjectionFailure, match="re-injection to 127.0.0.1"):
        reinject(
            b"Subject: x\r\n\r\nbody\r\n",
            "doctor@clinic.test",
            ["bob@example.net"],
            address=silent_listener,
            timeout=30.0,
            deadline=started + 0.5,
        )

    assert time.monotonic() - started < 5.0


def test_reinject_after_deadline_never_connects(silent_listener: tuple[str, int]) -> None:
    with pytest.raises(ReinjectionFailure, match="milter.reinject_deadline passed"):
        reinject(
            b"Subject: x\r\n\r\nbody\r\n",
            "doctor@clinic.test",
            ["bob@example.net"],
            address=silent_listener,
            timeout=30.0,
            deadline=time.monotonic() - 1.0,
        )
