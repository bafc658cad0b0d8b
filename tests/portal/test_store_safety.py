"""Fixes to the portal store that the web pages rely on."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from postveil.portal.store import PortalError, PortalStore, generate_master_key


class FailingCommit:
    """A connection whose next COMMIT fails, as on a full disk."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self.fail_next_commit = True

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT" and self.fail_next_commit:
            self.fail_next_commit = False
            raise sqlite3.OperationalError("database or disk is full")
        return self.connection.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)


@pytest.fixture
def store(tmp_path: Path) -> PortalStore:
    generate_master_key(tmp_path / "portal.key")
    return PortalStore.open(tmp_path / "store", tmp_path / "portal.key")


def test_failed_commit_leaves_store_usable(store: PortalStore) -> None:
    token = store.deposit(
        b"Subject: x\r\n\r\nbody\r\n",
        sender="clinic@example.org",
        recipients=["pat@example.org"],
        retention=3600,
    ).tokens[0][1]
    connection = store._db
    store._db = FailingCommit(connection)  # type: ignore[assignment]

    with pytest.raises(PortalError, match="commit failed"):
        store.issue_code(token, lifetime=600, per_hour=5)
    assert not connection.in_transaction

    issue = store.issue_code(token, lifetime=600, per_hour=5)
    assert issue.code is not None
    store._db = connection
    store.close()


def test_pickup_has_queue_id(store: PortalStore) -> None:
    token = store.deposit(
        b"Subject: x\r\n\r\nbody\r\n",
        sender="clinic@example.org",
        recipients=["pat@example.org"],
        retention=3600,
        queue_id="4QzQueue",
    ).tokens[0][1]

    pickup = store.pickup(token)

    assert pickup is not None
    assert pickup.queue_id == "4QzQueue"
    store.close()


def test_new_store_private_under_umask_022(tmp_path: Path) -> None:
    generate_master_key(tmp_path / "portal.key")
    previous = os.umask(0o022)
    try:
        store = PortalStore.open(tmp_path / "store", tmp_path / "portal.key")
        store.deposit(
            b"Subject: x\r\n\r\nbody\r\n",
            sender="clinic@example.org",
            recipients=["pat@example.org"],
            retention=3600,
        )
    finally:
        os.umask(previous)

    for path in (tmp_path / "store", *(tmp_path / "store").iterdir()):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    store.close()
