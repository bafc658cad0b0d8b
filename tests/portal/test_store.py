"""The portal store: encryption at rest, tokens, codes, sessions and expiry."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from postveil.portal.store import (
    PortalError,
    PortalKeyError,
    PortalStore,
    generate_master_key,
    load_master_key,
)

RAW = b"From: gp@clinic.test\r\nSubject: results\r\n\r\nHbA1c 9.1% for Maria Lopez, MRN 4471203\r\n"
NOW = 1_800_000_000.0
HOUR = 3600.0


@pytest.fixture
def store(tmp_path: Path) -> PortalStore:
    generate_master_key(tmp_path / "portal.key")
    opened = PortalStore.open(tmp_path / "store", tmp_path / "portal.key")
    yield opened
    opened.close()


def deposit(store: PortalStore, recipients: tuple[str, ...] = ("a@dest.test",)):
    return store.deposit(
        RAW, sender="gp@clinic.test", recipients=recipients, retention=24 * HOUR, now=NOW
    )


def open_session(store: PortalStore, token: str, now: float = NOW) -> str:
    issued = store.issue_code(token, lifetime=600, per_hour=5, now=now)
    assert issued.code is not None
    check = store.check_code(token, issued.code, attempts=5, session_lifetime=900, now=now)
    assert check.outcome == "ok"
    assert check.session is not None
    return check.session


def test_nothing_readable_at_rest(store: PortalStore, tmp_path: Path) -> None:
    made = deposit(store, ("a@dest.test", "b@dest.test"))
    on_disk = b"".join(
        path.read_bytes() for path in (tmp_path / "store").rglob("*") if path.is_file()
    )
    assert b"HbA1c" not in on_disk
    assert b"4471203" not in on_disk
    assert b"results" not in on_disk
    for _recipient, token in made.tokens:
        assert token.encode() not in on_disk


def test_round_trip_through_code_and_session(store: PortalStore) -> None:
    made = deposit(store)
    ((recipient, token),) = made.tokens
    pickup = store.pickup(token, now=NOW)
    assert pickup is not None
    assert (pickup.recipient, pickup.sender, pickup.opened) == (recipient, "gp@clinic.test", None)
    session = open_session(store, token)
    assert store.read_message(token, session, now=NOW + 1) == RAW
    assert store.pickup(token, now=NOW + 2).opened == NOW + 1


def test_session_opens_only_its_own_pickup(store: PortalStore) -> None:
    first, second = deposit(store, ("a@dest.test", "b@dest.test")).tokens
    session = open_session(store, first[1])
    assert store.read_message(second[1], session, now=NOW) is None
    assert store.read_message(first[1], "not-a-session", now=NOW) is None


def test_wrong_codes_void_the_code(store: PortalStore) -> None:
    ((_, token),) = deposit(store).tokens
    issued = store.issue_code(token, lifetime=600, per_hour=5, now=NOW)
    wrong = "00000000" if issued.code != "00000000" else "11111111"
    outcomes = [
        store.check_code(token, wrong, attempts=3, session_lifetime=900, now=NOW).outcome
        for _ in range(3)
    ]
    assert outcomes == ["wrong", "wrong", "voided"]
    # Even the right code no longer opens anything.
    assert (
        store.check_code(token, issued.code, attempts=3, session_lifetime=900, now=NOW).outcome
        == "void"
    )


@pytest.mark.parametrize("entered", ["", "abc", "1234567", "１２３４５６７８", "12345678 9"])
def test_malformed_codes_are_wrong(store: PortalStore, entered: str) -> None:
    ((_, token),) = deposit(store).tokens
    store.issue_code(token, lifetime=600, per_hour=5, now=NOW)
    assert (
        store.check_code(token, entered, attempts=5, session_lifetime=900, now=NOW).outcome
        == "wrong"
    )


def test_code_is_used_once_and_expires(store: PortalStore) -> None:
    ((_, token),) = deposit(store).tokens
    issued = store.issue_code(token, lifetime=600, per_hour=5, now=NOW)
    assert (
        store.check_code(
            token, issued.code, attempts=5, session_lifetime=900, now=NOW + 601
        ).outcome
        == "expired"
    )
    issued = store.issue_code(token, lifetime=600, per_hour=5, now=NOW)
    assert (
        store.check_code(token, issued.code, attempts=5, session_lifetime=900, now=NOW).outcome
        == "ok"
    )
    assert (
        store.check_code(token, issued.code, attempts=5, session_lifetime=900, now=NOW).outcome
        == "none"
    )


def test_codes_per_hour(store: PortalStore) -> None:
    ((_, token),) = deposit(store).tokens
    results = [
        store.issue_code(token, lifetime=600, per_hour=2, now=NOW + i).refused for i in range(3)
    ]
    assert results == [None, None, "rate"]
    assert store.issue_code(token, lifetime=600, per_hour=2, now=NOW + HOUR + 1).refused is None


def test_session_expires(store: PortalStore) -> None:
    ((_, token),) = deposit(store).tokens
    session = open_session(store, token)
    assert store.read_message(token, session, now=NOW + 899) == RAW
    assert store.read_message(token, session, now=NOW + 901) is None


def test_purge_deletes_expired_messages_and_files(store: PortalStore, tmp_path: Path) -> None:
    ((_, token),) = deposit(store).tokens
    assert store.purge(now=NOW + HOUR) == 0
    assert store.purge(now=NOW + 25 * HOUR) == 1
    assert store.pickup(token, now=NOW) is None
    assert list((tmp_path / "store" / "messages").iterdir()) == []
    assert store.counts(now=NOW) == {"messages": 0, "pickups": 0, "opened": 0}


def test_expired_pickup_is_unknown(store: PortalStore) -> None:
    ((_, token),) = deposit(store).tokens
    assert store.pickup(token, now=NOW + 24 * HOUR + 1) is None
    with pytest.raises(PortalError):
        store.issue_code(token, lifetime=600, per_hour=5, now=NOW + 24 * HOUR + 1)


def test_withdraw(store: PortalStore, tmp_path: Path) -> None:
    made = deposit(store)
    store.withdraw(made.message_id)
    assert store.pickup(made.tokens[0][1], now=NOW) is None
    assert not (tmp_path / "store" / "messages" / made.message_id).exists()


def test_other_master_key_does_not_decrypt(tmp_path: Path) -> None:
    generate_master_key(tmp_path / "one.key")
    generate_master_key(tmp_path / "two.key")
    first = PortalStore.open(tmp_path / "store", tmp_path / "one.key")
    ((_, token),) = deposit(first).tokens
    first.close()
    second = PortalStore.open(tmp_path / "store", tmp_path / "two.key")
    session = open_session(second, token)
    with pytest.raises(PortalError, match="neither portal.key_file nor"):
        second.read_message(token, session, now=NOW)
    second.close()


def test_swapped_ciphertexts_do_not_decrypt(store: PortalStore, tmp_path: Path) -> None:
    one = deposit(store)
    two = deposit(store)
    files = tmp_path / "store" / "messages"
    a, b = (files / one.message_id), (files / two.message_id)
    a_bytes = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(a_bytes)
    token = one.tokens[0][1]
    session = open_session(store, token)
    with pytest.raises(PortalError, match="does not decrypt"):
        store.read_message(token, session, now=NOW)


def test_database_holds_digests_only(store: PortalStore, tmp_path: Path) -> None:
    ((_, token),) = deposit(store).tokens
    issued = store.issue_code(token, lifetime=600, per_hour=5, now=NOW)
    dump = "\n".join(sqlite3.connect(tmp_path / "store" / "portal.sqlite3").iterdump())
    assert token not in dump
    assert issued.code not in dump


def test_key_file_checks(tmp_path: Path) -> None:
    path = tmp_path / "portal.key"
    with pytest.raises(PortalKeyError, match="postveil portal init"):
        load_master_key(path)
    generate_master_key(path)
    with pytest.raises(FileExistsError):
        generate_master_key(path)
    os.chmod(path, 0o640)
    with pytest.raises(PortalKeyError, match="chmod 600"):
        load_master_key(path)
    os.chmod(path, 0o600)
    path.write_text("not hex\n")
    with pytest.raises(PortalKeyError, match="64 hex digits"):
        load_master_key(path)


def test_deposit_needs_recipients(store: PortalStore) -> None:
    with pytest.raises(PortalError, match="no recipients"):
        store.deposit(RAW, sender="gp@clinic.test", recipients=(), retention=HOUR)


def test_unwritable_store_gives_portal_error(tmp_path: Path) -> None:
    generate_master_key(tmp_path / "portal.key")
    (tmp_path / "blocked").write_text("a file where the directory should be")
    with pytest.raises(PortalError, match="cannot open the portal store"):
        PortalStore.open(tmp_path / "blocked", tmp_path / "portal.key")


def test_message_purged_during_read_is_gone(
    store: PortalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = deposit(store)
    token = made.tokens[0][1]
    session = open_session(store, token)

    def purged_meanwhile(path: Path) -> bytes:
        # Another process's purge runs between the row lookup and the file read.
        other = sqlite3.connect(tmp_path / "store" / "portal.sqlite3")
        other.execute("DELETE FROM messages WHERE id = ?", (made.message_id,))
        other.commit()
        other.close()
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(Path, "read_bytes", purged_meanwhile)
    assert store.read_message(token, session, now=NOW) is None


def test_missing_file_of_live_message_is_an_error(store: PortalStore, tmp_path: Path) -> None:
    made = deposit(store)
    token = made.tokens[0][1]
    session = open_session(store, token)
    (tmp_path / "store" / "messages" / made.message_id).unlink()
    with pytest.raises(PortalError, match="cannot read portal message"):
        store.read_message(token, session, now=NOW)


def test_sender_notice_claimed_once(store: PortalStore, tmp_path: Path) -> None:
    result = deposit(store, ("a@dest.test", "b@dest.test"))
    (_, token_a), (_, token_b) = result.tokens
    assert store.claim_sender_notice(token_a, now=NOW)
    assert not store.claim_sender_notice(token_a, now=NOW + 1)
    # Each recipient's pickup has a claim of its own.
    assert store.claim_sender_notice(token_b, now=NOW)
    assert not store.claim_sender_notice("unknown-token-0123456789", now=NOW)
    # The claim is stored in the database, so another process finds it too.
    other = PortalStore.open(tmp_path / "store", tmp_path / "portal.key")
    try:
        assert not other.claim_sender_notice(token_a, now=NOW + 2)
    finally:
        other.close()


def test_sender_notice_claims_deleted_with_message(store: PortalStore) -> None:
    result = deposit(store)
    token = result.tokens[0][1]
    assert store.claim_sender_notice(token, now=NOW)
    store.withdraw(result.message_id)
    (count,) = store._db.execute("SELECT COUNT(*) FROM sender_notices").fetchone()
    assert count == 0
