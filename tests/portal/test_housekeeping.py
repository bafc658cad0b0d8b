"""Deleting expired portal messages: one audit record per recipient, then deletion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from postveil.audit import AuditLog, generate_key_file
from postveil.audit.errors import AuditError
from postveil.config.audit import AuditSection
from postveil.portal.housekeeping import purge_expired
from postveil.portal.store import PortalStore, generate_master_key

NOW = 1_800_000_000.0
RAW = b"Subject: x\r\n\r\nbody\r\n"


@pytest.fixture
def store(tmp_path: Path):
    generate_master_key(tmp_path / "portal.key")
    opened = PortalStore.open(tmp_path / "store", tmp_path / "portal.key")
    yield opened
    opened.close()


def audit_log(tmp_path: Path) -> AuditLog:
    generate_key_file(tmp_path / "audit.key")
    section = AuditSection(directory=str(tmp_path / "audit"), key_file=str(tmp_path / "audit.key"))
    return AuditLog(section, program="test")


def portal_records(tmp_path: Path) -> list[dict[str, str]]:
    lines = b"".join(path.read_bytes() for path in sorted((tmp_path / "audit").glob("*.jsonl")))
    records = [json.loads(line) for line in lines.splitlines()]
    return [record for record in records if record["kind"] == "portal"]


def test_expired_message_gets_records_then_goes(store: PortalStore, tmp_path: Path) -> None:
    old = store.deposit(
        RAW,
        sender="s@a.test",
        recipients=["x@b.test", "y@b.test"],
        retention=60,
        queue_id="Q1",
        now=NOW,
    )
    young = store.deposit(RAW, sender="s@a.test", recipients=["z@b.test"], retention=3600, now=NOW)
    audit = audit_log(tmp_path)

    assert purge_expired(store, audit, now=NOW + 120) == 1
    audit.close()

    records = portal_records(tmp_path)
    assert [(r["event"], r["message"], r["recipient"], r["queue_id"]) for r in records] == [
        ("expired", old.message_id, "x@b.test", "Q1"),
        ("expired", old.message_id, "y@b.test", "Q1"),
    ]
    assert store.pickup(old.tokens[0][1], now=NOW) is None
    assert store.pickup(young.tokens[0][1], now=NOW) is not None


def test_unwritable_audit_trail_keeps_the_message(store: PortalStore, tmp_path: Path) -> None:
    made = store.deposit(RAW, sender="s@a.test", recipients=["x@b.test"], retention=60, now=NOW)
    generate_key_file(tmp_path / "audit.key")
    (tmp_path / "audit").write_text("a file where the audit directory should be")
    audit = AuditLog(
        AuditSection(directory=str(tmp_path / "audit"), key_file=str(tmp_path / "audit.key")),
        program="test",
    )

    with pytest.raises(AuditError):
        purge_expired(store, audit, now=NOW + 120)

    assert store.expired(NOW + 120)[0].message_id == made.message_id
