"""A full disk or an unwritable log raises AuditWriteError, a TemporaryFailure, and never
leaves a half-written record behind."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from postveil.audit import AuditKey, AuditLog, AuditWriteError, list_log_files, verify_chain
from postveil.audit.verify import default_head_for
from postveil.config.audit import AuditSection
from postveil.errors import TemporaryFailure
from tests.audit.conftest import make_decision


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: the kernel returns ENOSPC exactly as on a full disk.

    Mounting needs root (CAP_SYS_ADMIN); elsewhere the test is skipped and the
    unwritable-path tests below still run.
    """
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    completed = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if completed.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {completed.stderr.strip()}")
    try:
        yield mount_point
    finally:
        # Lazy, so that a failed test with a file still open cannot leave the mount behind.
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def test_full_disk_raises_and_keeps_chain(
    small_tmpfs: Path, make_section: Callable[..., AuditSection], audit_key: AuditKey
) -> None:
    section = make_section(directory=str(small_tmpfs / "audit"), rotate_size=0)
    filler = small_tmpfs / "filler"
    filler.write_bytes(b"x" * 16384)
    written = 0
    with AuditLog(section, "test") as log, pytest.raises(AuditWriteError) as raised:
        for number in range(1000):
            log.append(make_decision(number))
            written += 1
    assert isinstance(raised.value, TemporaryFailure)
    assert "No space left on device" in str(raised.value)
    assert str(section.directory) in str(raised.value)
    assert written > 10

    files = list_log_files(section.directory)
    result = verify_chain(files, {audit_key.key_id: audit_key}, head=default_head_for(files))
    assert result.broken is None, str(result.broken)
    assert result.records == written

    # Room again (an operator removed a file): the chain continues where it stopped.
    filler.unlink()
    with AuditLog(section, "test") as log:
        log.append(make_decision(9999))
    result = verify_chain(files, {audit_key.key_id: audit_key}, head=default_head_for(files))
    assert result.broken is None, str(result.broken)
    assert result.records == written + 1


def test_directory_path_is_a_file(make_section: Callable[..., AuditSection], log_dir: Path) -> None:
    # Root ignores permission bits, so a mode-0500 directory would still be writable
    # here; a regular file where the directory should be fails for root too.
    log_dir.write_text("not a directory\n")
    log = AuditLog(make_section(), "test")

    with pytest.raises(AuditWriteError) as raised:
        log.append(make_decision(1))

    assert isinstance(raised.value, TemporaryFailure)
    assert f"cannot open audit lock file in {log_dir}" in str(raised.value)


def test_active_file_is_a_directory(
    make_section: Callable[..., AuditSection], log_dir: Path
) -> None:
    (log_dir / "audit.jsonl").mkdir(parents=True)
    log = AuditLog(make_section(), "test")

    with pytest.raises(AuditWriteError) as raised:
        log.append(make_decision(1))

    assert f"cannot open {log_dir / 'audit.jsonl'}: Is a directory" in str(raised.value)


def test_write_error_on_dev_full(make_section: Callable[..., AuditSection], log_dir: Path) -> None:
    # /dev/full fails every write with ENOSPC. As the active file it simulates a
    # disk that fills between the open and the write.
    log_dir.mkdir()
    os.symlink("/dev/full", log_dir / "audit.jsonl")
    log = AuditLog(make_section(), "test")

    with pytest.raises(AuditWriteError) as raised:
        log.append(make_decision(1))

    assert "No space left on device" in str(raised.value)
    assert (log_dir / "audit.head").stat().st_size == 0


def test_full_disk_fails_every_waiting_writer(
    small_tmpfs: Path, make_section: Callable[..., AuditSection], audit_key: AuditKey
) -> None:
    """Threads whose records share a batch all get the error when it cannot be written.
    None of them waits forever, and every append that succeeded is in the chain."""

    section = make_section(directory=str(small_tmpfs / "audit"), rotate_size=0)
    (small_tmpfs / "filler").write_bytes(b"x" * 16384)
    successes: list[int] = []
    failures: list[BaseException] = []
    log = AuditLog(section, "test")

    def write(thread_number: int) -> None:
        for number in range(200):
            try:
                log.append(make_decision(number, queue_id=f"F{thread_number}N{number:03d}"))
                successes.append(1)
            except AuditWriteError as exc:
                failures.append(exc)
                return

    threads = [threading.Thread(target=write, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    log.close()

    assert len(failures) == 6
    assert all("No space left on device" in str(failure) for failure in failures)
    files = list_log_files(section.directory)
    result = verify_chain(files, {audit_key.key_id: audit_key}, head=default_head_for(files))
    assert result.broken is None, str(result.broken)
    assert result.records == len(successes)
