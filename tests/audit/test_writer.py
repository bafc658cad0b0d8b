"""AuditLog: record layout, rotation, repair of incomplete lines, head handling, fsync."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from postveil.audit import (
    AdminOverride,
    AuditKey,
    AuditKeyError,
    AuditLog,
    AuditWriteError,
    ConfigEvent,
    DaemonEvent,
    RecipientDecision,
    TlsRequirementChange,
    list_log_files,
    verify_chain,
)
from postveil.audit.chain import GENESIS_HASH, line_hash
from postveil.audit.verify import default_head_for
from postveil.config.audit import AuditSection
from tests.audit.conftest import make_decision


def verify_dir(directory: str | Path, key: AuditKey, *, partial: bool = False):
    files = list_log_files(directory)
    return verify_chain(files, {key.key_id: key}, head=default_head_for(files), partial=partial)


def test_records_link_and_carry_chain_fields(
    make_section: Callable[..., AuditSection], audit_key: AuditKey
) -> None:
    section = make_section()
    with AuditLog(section, "postveil-milter") as log:
        first = log.append(make_decision(1))
        second = log.append(DaemonEvent("start", "0.1.0"))

    lines = (Path(section.directory) / "audit.jsonl").read_bytes().splitlines()
    records = [json.loads(line) for line in lines]
    assert records[0]["seq"] == 1
    assert records[0]["prev"] == GENESIS_HASH
    assert records[1]["seq"] == 2
    assert records[1]["prev"] == line_hash(lines[0])
    assert first.hash == line_hash(lines[0])
    assert second.seq == 2
    assert records[0]["kind"] == "message"
    assert records[1]["kind"] == "daemon"
    assert records[0]["program"] == "postveil-milter"
    assert records[0]["pid"] == os.getpid()
    assert records[0]["key_id"] == audit_key.key_id
    assert records[0]["time"].endswith("Z")
    assert records[0]["detections"] == {"mrn": 2, "ssn": 1}
    assert records[0]["recipients"][1]["fingerprint"] == "ab" * 32


def test_every_record_kind_verifies(
    make_section: Callable[..., AuditSection], audit_key: AuditKey
) -> None:
    section = make_section()
    with AuditLog(section, "postveil-policyd") as log:
        log.append(DaemonEvent("start", "0.1.0"))
        log.append(ConfigEvent("load", "/etc/postveil/postveil.yaml", "0123456789abcdef"))
        log.append(
            TlsRequirementChange(
                "clinic.example", "may", "verify", "mta-sts", "policy mode enforce"
            )
        )
        log.append(AdminOverride("alice", "lab.example", "force-tls", "contract requires TLS"))
        log.append(
            ConfigEvent(
                "reload_failed", "/etc/postveil/postveil.yaml", "0123456789abcdef", "2 errors"
            )
        )
        log.append(DaemonEvent("stop", "0.1.0", "SIGTERM"))

    result = verify_dir(section.directory, audit_key)
    assert result.broken is None
    assert result.records == 6


def test_rotation_by_size_names_files_by_first_seq(
    make_section: Callable[..., AuditSection], audit_key: AuditKey
) -> None:
    section = make_section(rotate_size="3KB")
    with AuditLog(section, "test") as log:
        for number in range(20):
            log.append(make_decision(number))

    files = list_log_files(section.directory)
    assert files[-1].name == "audit.jsonl"
    for path in files[:-1]:
        first = json.loads(path.read_bytes().splitlines()[0])
        assert path.name == f"audit.{first['seq']:012d}.jsonl"
        assert path.stat().st_size <= 3000
    assert verify_dir(section.directory, audit_key).records == 20


def test_rotation_by_age(make_section: Callable[..., AuditSection], audit_key: AuditKey) -> None:
    section = make_section(rotate_age="200ms", rotate_size=0)
    with AuditLog(section, "test") as log:
        log.append(make_decision(1))
        log.append(make_decision(2))
        time.sleep(0.25)
        log.append(make_decision(3))

    files = list_log_files(section.directory)
    assert [path.name for path in files] == ["audit.000000000001.jsonl", "audit.jsonl"]
    new_first = json.loads(files[1].read_bytes().splitlines()[0])
    old_last = files[0].read_bytes().splitlines()[-1]
    assert new_first["prev"] == line_hash(old_last)
    assert verify_dir(section.directory, audit_key).records == 3


def test_incomplete_last_line_is_cut(
    make_section: Callable[..., AuditSection], audit_key: AuditKey, caplog: pytest.LogCaptureFixture
) -> None:
    section = make_section()
    active = Path(section.directory) / "audit.jsonl"
    with AuditLog(section, "test") as log:
        log.append(make_decision(1))
        log.append(make_decision(2))
    complete = active.read_bytes()
    with open(active, "ab") as handle:
        handle.write(b'{"action":"accept","config_ver')

    with caplog.at_level(logging.ERROR, logger="postveil.audit"), AuditLog(section, "test") as log:
        result = log.append(make_decision(3))

    assert result.seq == 3
    assert active.read_bytes().startswith(complete)
    assert "removed an incomplete record (30 bytes)" in caplog.text
    assert verify_dir(section.directory, audit_key).records == 3


def test_damaged_last_record_stops_writing(make_section: Callable[..., AuditSection]) -> None:
    section = make_section()
    active = Path(section.directory) / "audit.jsonl"
    with AuditLog(section, "test") as log:
        log.append(make_decision(1))
    active.write_bytes(active.read_bytes()[:-20] + b"\n")

    with AuditLog(section, "test") as log, pytest.raises(AuditWriteError) as raised:
        log.append(make_decision(2))

    assert f"the last record of {active} is damaged" in str(raised.value)


def test_records_cut_from_end_leave_visible_gap(
    make_section: Callable[..., AuditSection], audit_key: AuditKey, caplog: pytest.LogCaptureFixture
) -> None:
    section = make_section()
    active = Path(section.directory) / "audit.jsonl"
    with AuditLog(section, "test") as log:
        for number in range(5):
            log.append(make_decision(number))
    lines = active.read_bytes().splitlines(keepends=True)
    active.write_bytes(b"".join(lines[:3]))

    with caplog.at_level(logging.ERROR, logger="postveil.audit"), AuditLog(section, "test") as log:
        result = log.append(make_decision(6))

    assert result.seq == 6
    assert "ends at seq 3 but audit.head records seq 5 as written" in caplog.text
    broken = verify_dir(section.directory, audit_key).broken
    assert broken is not None
    assert broken.line == 4
    assert "seq 6 follows seq 3 at line 3: records 4-5 are missing here" in broken.problem


def test_archived_files_chain_continues_from_head(
    make_section: Callable[..., AuditSection], audit_key: AuditKey, tmp_path: Path
) -> None:
    section = make_section()
    directory = Path(section.directory)
    with AuditLog(section, "test") as log:
        for number in range(3):
            log.append(make_decision(number))
    archive = tmp_path / "archive"
    archive.mkdir()
    archived = directory.rename(archive / "2026-12")
    directory.mkdir()
    (archived / "audit.head").rename(directory / "audit.head")

    with AuditLog(section, "test") as log:
        result = log.append(make_decision(4))

    assert result.seq == 4
    assert verify_dir(directory, audit_key, partial=True).broken is None
    assert verify_dir(directory, audit_key).broken is not None
    joined = verify_chain(
        [archived / "audit.jsonl", directory / "audit.jsonl"], {audit_key.key_id: audit_key}
    )
    assert joined.broken is None
    assert joined.records == 4


def test_batch_fsync_flushes_after_interval(make_section: Callable[..., AuditSection]) -> None:
    section = make_section(fsync="batch", fsync_interval="50ms")
    with AuditLog(section, "test") as log:
        log.append(make_decision(1))
        assert log._unsynced
        deadline = time.monotonic() + 2.0
        while log._unsynced and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not log._unsynced


def test_new_files_have_restricted_modes(make_section: Callable[..., AuditSection]) -> None:
    section = make_section()
    with AuditLog(section, "test") as log:
        log.append(make_decision(1))

    directory = Path(section.directory)
    assert directory.stat().st_mode & 0o777 == 0o750
    assert (directory / "audit.jsonl").stat().st_mode & 0o777 == 0o640


def test_appending_after_close_fails(make_section: Callable[..., AuditSection]) -> None:
    log = AuditLog(make_section(), "test")
    log.close()

    with pytest.raises(AuditWriteError, match="is closed"):
        log.append(make_decision(1))


def test_key_readable_by_others_is_rejected(
    make_section: Callable[..., AuditSection], key_file: Path
) -> None:
    key_file.chmod(0o644)

    with pytest.raises(AuditKeyError, match=r"has mode 0644.*chmod 600"):
        AuditLog(make_section(), "test")


def test_missing_key_names_keygen(
    make_section: Callable[..., AuditSection], tmp_path: Path
) -> None:
    with pytest.raises(AuditKeyError, match="postveil audit keygen"):
        AuditLog(make_section(key_file=str(tmp_path / "absent.key")), "test")


def test_malformed_key_is_rejected(
    make_section: Callable[..., AuditSection], key_file: Path
) -> None:
    key_file.write_text("not hex\n")

    with pytest.raises(AuditKeyError, match="expected 64 hex digits"):
        AuditLog(make_section(), "test")


def test_chain_continues_from_rotated_file_without_active(
    make_section: Callable[..., AuditSection], audit_key: AuditKey
) -> None:
    # The state after a crash between the rename of a rotation and the first write to
    # the new file, with audit.head lost as well: only the rotated file has the end.
    section = make_section()
    directory = Path(section.directory)
    with AuditLog(section) as log:
        for number in range(3):
            log.append(make_decision(number))
    (directory / "audit.jsonl").rename(directory / "audit.000000000001.jsonl")
    (directory / "audit.head").unlink()

    with AuditLog(section) as log:
        result = log.append(make_decision(4))

    assert result.seq == 4
    assert verify_dir(directory, audit_key).records == 4
    assert json.loads((directory / "audit.jsonl").read_bytes())["program"] == Path(sys.argv[0]).name


def test_long_records_cross_tail_chunks(
    make_section: Callable[..., AuditSection], audit_key: AuditKey
) -> None:
    recipients = [
        RecipientDecision(f"patient{number}@patient.example", "tls", "rule:tls")
        for number in range(200)
    ]
    section = make_section()
    with AuditLog(section, "test") as log:
        log.append(make_decision(1, recipients=recipients))
        log.append(make_decision(2, recipients=recipients))
        result = log.append(make_decision(3))

    assert (Path(section.directory) / "audit.jsonl").stat().st_size > 4 * 4096
    assert result.seq == 3
    assert verify_dir(section.directory, audit_key).records == 3


def test_writer_follows_replaced_lock_file(
    make_section: Callable[..., AuditSection], audit_key: AuditKey
) -> None:
    # A long-running writer and one started after the directory was moved and
    # recreated must lock the same file, or their appends could interleave.
    section = make_section()
    directory = Path(section.directory)
    old_writer = AuditLog(section, "old")
    old_writer.append(make_decision(1))
    directory.rename(directory.with_name("moved"))
    directory.mkdir()
    new_writer = AuditLog(section, "new")

    new_writer.append(make_decision(2))
    old_writer.append(make_decision(3))

    lock_inode = (directory / "audit.lock").stat().st_ino
    assert os.fstat(old_writer._lock_fd).st_ino == lock_inode
    assert os.fstat(new_writer._lock_fd).st_ino == lock_inode
    old_writer.close()
    new_writer.close()
    assert verify_dir(directory, audit_key).records == 2


# A writer remembers where its own last batch ended and skips reading the file back
# while the file is as it left it. These tests change the file between two appends
# of one open writer, which must then read the file as a new writer would.


def test_open_writer_links_after_another_writers_records(
    make_section: Callable[..., AuditSection], audit_key: AuditKey
) -> None:
    section = make_section()
    with AuditLog(section, "first") as first, AuditLog(section, "second") as second:
        first.append(make_decision(1))
        second.append(make_decision(2))
        second.append(make_decision(3))
        result = first.append(make_decision(4))

    assert result.seq == 4
    assert verify_dir(section.directory, audit_key).broken is None


def test_open_writer_sees_records_cut_from_end(
    make_section: Callable[..., AuditSection], audit_key: AuditKey, caplog: pytest.LogCaptureFixture
) -> None:
    section = make_section()
    active = Path(section.directory) / "audit.jsonl"
    with caplog.at_level(logging.ERROR, logger="postveil.audit"), AuditLog(section, "test") as log:
        for number in range(5):
            log.append(make_decision(number))
        lines = active.read_bytes().splitlines(keepends=True)
        with open(active, "r+b") as handle:
            handle.truncate(len(b"".join(lines[:3])))
        result = log.append(make_decision(6))

    assert result.seq == 6
    assert "ends at seq 3 but audit.head records seq 5 as written" in caplog.text
    assert verify_dir(section.directory, audit_key).broken is not None


def test_open_writer_cuts_incomplete_line_added_behind_it(
    make_section: Callable[..., AuditSection], audit_key: AuditKey
) -> None:
    section = make_section()
    active = Path(section.directory) / "audit.jsonl"
    with AuditLog(section, "test") as log:
        log.append(make_decision(1))
        with open(active, "ab") as handle:
            handle.write(b'{"action":"acc')
        result = log.append(make_decision(2))

    assert result.seq == 2
    assert verify_dir(section.directory, audit_key).records == 2
