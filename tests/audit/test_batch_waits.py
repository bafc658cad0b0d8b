"""Batched appends: no caller waits forever, and a failed batch leaves nothing behind.

A second process holding the flock (a plain descriptor here) keeps a batch in
progress for as long as a test needs, and SIGALRM stands for any signal whose handler
runs while the main thread waits in append.
"""

from __future__ import annotations

import fcntl
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from postveil.audit import AuditKey, AuditLog, AuditWriteError, list_log_files, verify_chain
from postveil.audit.verify import default_head_for
from postveil.audit.writer import AppendResult, _Pending
from postveil.config.audit import AuditSection
from tests.audit.conftest import make_decision


def records_in_files(section: AuditSection) -> int:
    return sum(len(path.read_bytes().splitlines()) for path in list_log_files(section.directory))


def hold_flock(log_dir: Path, seconds: float) -> threading.Thread:
    """Hold the audit flock from another descriptor for ``seconds``, as another
    process would. Returns once the lock is taken."""
    lock_taken = threading.Event()

    def hold() -> None:
        holder = os.open(log_dir / "audit.lock", os.O_RDWR)
        fcntl.flock(holder, fcntl.LOCK_EX)
        lock_taken.set()
        time.sleep(seconds)
        fcntl.flock(holder, fcntl.LOCK_UN)
        os.close(holder)

    thread = threading.Thread(target=hold)
    thread.start()
    lock_taken.wait(5)
    return thread


@contextmanager
def alarm_in(seconds: float, handler: Callable[[int, Any], None]) -> Iterator[None]:
    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_failed_flush_leaves_no_record(
    make_section: Callable[..., AuditSection], audit_key: AuditKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fdatasync fails with EIO. Nothing on this machine makes a real flush fail (no
    device-mapper), so os.fdatasync is replaced; the write before it is real."""
    section = make_section(fsync="always", rotate_size=0)
    log = AuditLog(section, "test")
    log.append(make_decision(0))

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    errors: list[AuditWriteError] = []
    gate = threading.Barrier(4)

    def write(number: int) -> None:
        gate.wait()
        try:
            log.append(make_decision(number))
        except AuditWriteError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(number,)) for number in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    monkeypatch.undo()
    log.append(make_decision(5))
    log.close()

    assert len(errors) == 4
    assert records_in_files(section) == 2
    files = list_log_files(section.directory)
    result = verify_chain(files, {audit_key.key_id: audit_key}, head=default_head_for(files))
    assert result.broken is None, str(result.broken)


def test_interrupted_waiter_does_not_block_later_appends(
    make_section: Callable[..., AuditSection], log_dir: Path
) -> None:
    section = make_section(rotate_size=0)
    log = AuditLog(section, "test")
    log.append(make_decision(0))
    holder = hold_flock(log_dir, 1.0)
    leader = threading.Thread(target=log.append, args=(make_decision(1),))
    leader.start()
    time.sleep(0.2)

    def interrupt(signum: int, frame: Any) -> None:
        raise TimeoutError("interrupted")

    with alarm_in(0.3, interrupt), pytest.raises(TimeoutError):
        log.append(make_decision(2))
    holder.join(5)
    leader.join(5)

    later = threading.Thread(target=log.append, args=(make_decision(3),), daemon=True)
    later.start()
    later.join(5)

    assert not leader.is_alive()
    assert not later.is_alive()
    log.close()
    assert records_in_files(section) == 3


def test_append_from_signal_handler_of_waiting_thread(
    make_section: Callable[..., AuditSection], log_dir: Path
) -> None:
    """The handler's append writes the next batch, the waiting caller's record
    included, so both return."""
    section = make_section(rotate_size=0)
    log = AuditLog(section, "test")
    log.append(make_decision(0))
    nested: list[int] = []
    holder = hold_flock(log_dir, 1.0)
    leader = threading.Thread(target=log.append, args=(make_decision(1),))
    leader.start()
    time.sleep(0.2)

    def append_in_handler(signum: int, frame: Any) -> None:
        nested.append(log.append(make_decision(3)).seq)

    with alarm_in(0.3, append_in_handler):
        outer = log.append(make_decision(2))
    holder.join(5)
    leader.join(5)
    log.close()

    assert nested and outer.seq != nested[0]
    assert records_in_files(section) == 4


def test_append_from_signal_handler_of_writing_thread_raises(
    make_section: Callable[..., AuditSection], log_dir: Path
) -> None:
    """A handler that appends while its own thread writes a batch gets an error
    instead of waiting for itself; the batch then completes."""
    section = make_section(rotate_size=0)
    log = AuditLog(section, "test")
    log.append(make_decision(0))
    errors: list[AuditWriteError] = []

    def append_in_handler(signum: int, frame: Any) -> None:
        try:
            log.append(make_decision(9))
        except AuditWriteError as exc:
            errors.append(exc)

    holder = hold_flock(log_dir, 1.0)
    with alarm_in(0.3, append_in_handler):
        result = log.append(make_decision(1))
    holder.join(5)
    log.close()

    assert len(errors) == 1
    assert "re-entered" in str(errors[0])
    assert result.seq == 2
    assert records_in_files(section) == 2


def raise_once_when_chosen(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make ``_Pending.done`` raise once in the thread chosen to lead the next batch.

    A signal handler runs between any two bytecodes of the main thread. No real
    signal can be timed to land right after the wake-up of a chosen leader, so the
    first check of ``done`` after that wake-up raises in its place.
    """
    raised: list[str] = []
    original = _Pending.done

    def done(self: _Pending) -> bool:
        if self.lead and not raised:
            raised.append("interrupted")
            raise TimeoutError("interrupted after being chosen to lead")
        return original.fget(self)  # type: ignore[misc]

    monkeypatch.setattr(_Pending, "done", property(done))
    return raised


def test_chosen_leader_interrupted_hands_over(
    make_section: Callable[..., AuditSection],
    audit_key: AuditKey,
    log_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    section = make_section(rotate_size=0)
    log = AuditLog(section, "test")
    log.append(make_decision(0))
    raised = raise_once_when_chosen(monkeypatch)
    outcomes: dict[int, object] = {}

    def write(number: int) -> None:
        try:
            outcomes[number] = log.append(make_decision(number))
        except BaseException as exc:  # noqa: BLE001 - the test records every outcome
            outcomes[number] = exc

    holder = hold_flock(log_dir, 0.5)
    threads = []
    for number in range(1, 5):
        thread = threading.Thread(target=write, args=(number,), daemon=True)
        thread.start()
        threads.append(thread)
        time.sleep(0.05)
    holder.join(5)
    for thread in threads:
        thread.join(5)
    later = threading.Thread(target=write, args=(5,), daemon=True)
    later.start()
    later.join(5)

    assert raised == ["interrupted"]
    assert not any(thread.is_alive() for thread in threads)
    assert not later.is_alive()
    assert isinstance(outcomes[2], TimeoutError)
    for number in (1, 3, 4, 5):
        assert isinstance(outcomes[number], AppendResult)
    log.close()
    assert records_in_files(section) == 5
    files = list_log_files(section.directory)
    result = verify_chain(files, {audit_key.key_id: audit_key}, head=default_head_for(files))
    assert result.broken is None, str(result.broken)


def test_interrupt_after_flush_keeps_results(
    make_section: Callable[..., AuditSection],
    audit_key: AuditKey,
    log_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An exception that strikes after the batch is flushed, here from the head
    update in place of a signal handler, leaves the batch's callers their results."""
    section = make_section(fsync="always", rotate_size=0)
    log = AuditLog(section, "test")
    log.append(make_decision(0))
    real_write_head = AuditLog._write_head
    strikes: list[int] = []

    def write_head(self: AuditLog, head: Any, stamp: str) -> None:
        # Seq 4 ends the batch of records 2 and 3, written by the thread of record 2.
        if head.seq == 4 and not strikes:
            strikes.append(head.seq)
            raise TimeoutError("interrupted after the flush")
        real_write_head(self, head, stamp)

    monkeypatch.setattr(AuditLog, "_write_head", write_head)
    outcomes: dict[int, object] = {}

    def write(number: int) -> None:
        try:
            outcomes[number] = log.append(make_decision(number))
        except BaseException as exc:  # noqa: BLE001 - the test records every outcome
            outcomes[number] = exc

    holder = hold_flock(log_dir, 0.3)
    threads = [threading.Thread(target=write, args=(number,), daemon=True) for number in (1, 2, 3)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    holder.join(5)
    for thread in threads:
        thread.join(5)
    log.close()

    assert strikes
    assert not any(thread.is_alive() for thread in threads)
    assert isinstance(outcomes[1], AppendResult)
    assert isinstance(outcomes[2], TimeoutError)
    assert isinstance(outcomes[3], AppendResult)
    assert records_in_files(section) == 4
    files = list_log_files(section.directory)
    result = verify_chain(files, {audit_key.key_id: audit_key}, head=default_head_for(files))
    assert result.broken is None, str(result.broken)


def test_append_in_handler_of_chosen_leader(
    make_section: Callable[..., AuditSection],
    audit_key: AuditKey,
    log_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A handler that appends after its thread was woken to lead, before that thread
    takes the batch, writes its record alone and both appends return.

    No real signal can be timed to that moment, so the chosen thread's first check of
    ``done`` runs the handler's append in its place."""
    section = make_section(rotate_size=0)
    log = AuditLog(section, "test")
    log.append(make_decision(0))
    original = _Pending.done
    nested: list[object] = []

    def done(self: _Pending) -> bool:
        if self.lead and not nested:
            nested.append("started")
            nested.append(log.append(make_decision(9)))
        return original.fget(self)  # type: ignore[misc]

    monkeypatch.setattr(_Pending, "done", property(done))
    outcomes: dict[int, object] = {}

    def write(number: int) -> None:
        outcomes[number] = log.append(make_decision(number))

    holder = hold_flock(log_dir, 0.3)
    threads = [threading.Thread(target=write, args=(number,), daemon=True) for number in (1, 2, 3)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    holder.join(5)
    for thread in threads:
        thread.join(5)

    assert not any(thread.is_alive() for thread in threads)
    assert len(nested) == 2
    assert isinstance(nested[1], AppendResult)
    assert all(isinstance(outcomes[number], AppendResult) for number in (1, 2, 3))
    log.close()
    assert records_in_files(section) == 5
    files = list_log_files(section.directory)
    result = verify_chain(files, {audit_key.key_id: audit_key}, head=default_head_for(files))
    assert result.broken is None, str(result.broken)
