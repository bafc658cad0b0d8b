"""Several processes, each with several threads, write one chain without losing a record."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from postveil.audit import AuditKey, AuditLog, list_log_files, verify_chain
from postveil.audit.chain import HEAD_NAME, read_head
from postveil.audit.search import read_records
from postveil.audit.verify import default_head_for
from postveil.config.audit import AuditSection
from tests.audit.conftest import make_decision

PROCESSES = 4
THREADS = 4
PER_THREAD = 625
TOTAL = PROCESSES * THREADS * PER_THREAD

# fork is explicit because the default start method differs between Python versions
# and platforms; every child builds its own AuditLog from the section's fields.
_fork = multiprocessing.get_context("fork")


def _write_from_threads(section: AuditSection, process_number: int, start: Any) -> None:
    log = AuditLog(section, f"writer-{process_number}")

    def write(thread_number: int) -> None:
        for number in range(PER_THREAD):
            queue_id = f"P{process_number}T{thread_number}N{number:04d}"
            log.append(make_decision(number, queue_id=queue_id))

    threads = [threading.Thread(target=write, args=(index,)) for index in range(THREADS)]
    start.wait()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()


def test_processes_and_threads_write_one_chain(
    make_section: Callable[..., AuditSection], audit_key: AuditKey
) -> None:
    # fsync never keeps this test about locking, not disk latency; rotation by size
    # makes the processes cross file boundaries while they contend for the lock.
    section = make_section(fsync="never", rotate_size="400KB")
    start = _fork.Event()
    processes = [
        _fork.Process(target=_write_from_threads, args=(section, number, start))
        for number in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0] * PROCESSES

    files = list_log_files(section.directory)
    result = verify_chain(files, {audit_key.key_id: audit_key}, head=default_head_for(files))

    assert result.broken is None, str(result.broken)
    assert result.records == TOTAL
    assert (result.first_seq, result.last_seq) == (1, TOTAL)
    assert result.head_checked
    assert len(files) > 1
    queue_ids = [record.fields["queue_id"] for record in read_records(files)]
    assert len(queue_ids) == TOTAL
    assert len(set(queue_ids)) == TOTAL
    programs = {record.fields["program"] for record in read_records(files)}
    assert programs == {f"writer-{number}" for number in range(PROCESSES)}


def _append_inherited(log: AuditLog, label: str) -> None:
    for number in range(50):
        log.append(make_decision(number, queue_id=f"{label}{number:03d}"))
    log.close()


def test_log_shared_across_fork(
    make_section: Callable[..., AuditSection], audit_key: AuditKey
) -> None:
    section = make_section(fsync="never")
    log = AuditLog(section, "parent")
    for number in range(5):
        log.append(make_decision(number, queue_id=f"BEFORE{number}"))
    children = [
        _fork.Process(target=_append_inherited, args=(log, f"CHILD{index}X")) for index in range(2)
    ]
    for child in children:
        child.start()
    for number in range(50):
        log.append(make_decision(number, queue_id=f"PARENT{number:03d}"))
    for child in children:
        child.join(timeout=60)
    log.close()

    assert [child.exitcode for child in children] == [0, 0]
    files = list_log_files(Path(section.directory))
    result = verify_chain(files, {audit_key.key_id: audit_key}, head=default_head_for(files))
    assert result.broken is None, str(result.broken)
    assert result.records == 155


GROUP_PROCESSES = 2
GROUP_THREADS = 4
GROUP_PER_THREAD = 100


def _write_group_commit(section: AuditSection, process_number: int, start: Any) -> None:
    log = AuditLog(section, f"writer-{process_number}")

    def write(thread_number: int) -> None:
        for number in range(GROUP_PER_THREAD):
            log.append(make_decision(number, queue_id=f"G{process_number}T{thread_number}N{number:03d}"))

    threads = [threading.Thread(target=write, args=(index,)) for index in range(GROUP_THREADS)]
    start.wait()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()


def test_group_commit_keeps_one_chain_across_rotations(
    make_section: Callable[..., AuditSection], audit_key: AuditKey
) -> None:
    """With fsync always the flush happens outside the locks; records of several
    processes and threads still form one chain, across rotated files, with a head."""
    section = make_section(fsync="always", rotate_size="60KB")
    start = _fork.Event()
    processes = [
        _fork.Process(target=_write_group_commit, args=(section, number, start))
        for number in range(GROUP_PROCESSES)
    ]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0] * GROUP_PROCESSES

    total = GROUP_PROCESSES * GROUP_THREADS * GROUP_PER_THREAD
    files = list_log_files(section.directory)
    result = verify_chain(files, {audit_key.key_id: audit_key}, head=default_head_for(files))
    assert result.broken is None, str(result.broken)
    assert (result.records, result.first_seq, result.last_seq) == (total, 1, total)
    assert result.head_checked
    assert len(files) > 1


def test_concurrent_appends_share_flushes(
    make_section: Callable[..., AuditSection], audit_key: AuditKey, monkeypatch: Any
) -> None:
    """Appends that write while a flush runs share the next one.

    The test disk flushes in well under a millisecond, so threads would rarely
    overlap. Each real fdatasync is therefore made 5 ms slower, like a slower disk."""

    real_fdatasync = os.fdatasync
    flushes: list[int] = []

    def slow_fdatasync(fd: int) -> None:
        flushes.append(fd)
        time.sleep(0.005)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)
    section = make_section(fsync="always")
    log = AuditLog(section, "writer")
    threads_count, per_thread = 8, 25

    def write(thread_number: int) -> None:
        for number in range(per_thread):
            log.append(make_decision(number, queue_id=f"S{thread_number}N{number:03d}"))

    threads = [threading.Thread(target=write, args=(index,)) for index in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()

    total = threads_count * per_thread
    # About a quarter on an idle machine; a loaded machine interleaves the threads less.
    assert len(flushes) < total * 0.8
    files = list_log_files(section.directory)
    result = verify_chain(files, {audit_key.key_id: audit_key}, head=default_head_for(files))
    assert result.broken is None, str(result.broken)
    assert result.records == total
    assert result.head_checked
    head = read_head(Path(section.directory) / HEAD_NAME, {audit_key.key_id: audit_key})
    assert head is not None and head.seq == total
