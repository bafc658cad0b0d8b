"""Batched appends while SIGALRM strikes the main thread at random moments.

Python runs signal handlers in the main thread only, between two bytecodes, so the
main thread appends here among worker threads while a repeating timer fires.
"""

from __future__ import annotations

import fcntl
import inspect
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from postveil.audit import AuditKey, AuditLog, AuditWriteError, list_log_files, verify_chain, writer
from postveil.audit.verify import default_head_for
from postveil.config.audit import AuditSection
from tests.audit.conftest import make_decision

WORKERS = 6
PER_WORKER = 40
MAIN_APPENDS = 150


class Interrupted(Exception):
    """Raised by the SIGALRM handler."""


def run_under_alarm(
    log: AuditLog, handler: Callable[[int, Any], None], interval: float
) -> tuple[dict[str, object], list[threading.Thread]]:
    outcomes: dict[str, object] = {}

    def write(worker: int) -> None:
        for number in range(PER_WORKER):
            queue_id = f"W{worker}N{number:03d}"
            try:
                outcomes[queue_id] = log.append(make_decision(number, queue_id=queue_id))
            except AuditWriteError as exc:
                outcomes[queue_id] = exc

    workers = [threading.Thread(target=write, args=(index,), daemon=True) for index in range(WORKERS)]
    for worker in workers:
        worker.start()
    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, interval, interval)
    try:
        for number in range(MAIN_APPENDS):
            queue_id = f"M{number:03d}"
            try:
                outcomes[queue_id] = log.append(make_decision(number, queue_id=queue_id))
            except (AuditWriteError, Interrupted) as exc:
                outcomes[queue_id] = exc
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    for worker in workers:
        worker.join(20)
    return outcomes, workers


def stored_queue_ids(section: AuditSection, audit_key: AuditKey) -> list[str]:
    files = list_log_files(section.directory)
    result = verify_chain(files, {audit_key.key_id: audit_key}, head=default_head_for(files))
    assert result.broken is None, str(result.broken)
    return [json.loads(line)["queue_id"] for path in files for line in path.read_bytes().splitlines()]


def called_from(frame: Any, function_name: str) -> bool:
    while frame is not None:
        if frame.f_code.co_name == function_name:
            return True
        frame = frame.f_back
    return False


def slow_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make each flush 1 ms slower, so that batches overlap the timer often."""
    real = os.fdatasync

    def flush(fd: int) -> None:
        time.sleep(0.001)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", flush)


def test_raising_handler_loses_no_caller(
    make_section: Callable[..., AuditSection], audit_key: AuditKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_flush(monkeypatch)
    section = make_section(fsync="always", rotate_size=0)
    log = AuditLog(section, "signals")
    strikes: list[float] = []

    def interrupt(signum: int, frame: Any) -> None:
        # Strike only inside the audit writer, so the test loop itself is never hit,
        # and not inside the cleanup of a previous strike (a known limit noted there).
        in_writer = frame is not None and frame.f_code.co_filename == writer.__file__
        if in_writer and not called_from(frame, "_abandon"):
            strikes.append(time.monotonic())
            raise Interrupted

    outcomes, workers = run_under_alarm(log, interrupt, 0.0007)
    log.close()

    assert not any(worker.is_alive() for worker in workers)
    assert len(outcomes) == WORKERS * PER_WORKER + MAIN_APPENDS
    assert strikes
    stored = stored_queue_ids(section, audit_key)
    assert len(stored) == len(set(stored))
    for queue_id, outcome in outcomes.items():
        if isinstance(outcome, AuditWriteError):
            assert queue_id not in stored, queue_id
        elif not isinstance(outcome, Interrupted):
            assert queue_id in stored, queue_id


def test_appending_handler_loses_no_caller(
    make_section: Callable[..., AuditSection], audit_key: AuditKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_flush(monkeypatch)
    section = make_section(fsync="always", rotate_size=0)
    log = AuditLog(section, "signals")
    nested: list[object] = []
    inside = threading.Event()

    def append_in_handler(signum: int, frame: Any) -> None:
        # The timer may fire again while the handler's own append runs. A handler
        # that appends while its thread holds the writer's queue lock deadlocks (a
        # known limit noted at AuditLog.append), so the handler skips that moment.
        if inside.is_set() or log._queue_lock.locked():
            return
        inside.set()
        queue_id = f"H{len(nested):04d}"
        try:
            nested.append((queue_id, log.append(make_decision(0, queue_id=queue_id))))
        except AuditWriteError as exc:
            nested.append((queue_id, exc))
        finally:
            inside.clear()

    outcomes, workers = run_under_alarm(log, append_in_handler, 0.003)
    log.close()

    assert not any(worker.is_alive() for worker in workers)
    assert len(outcomes) == WORKERS * PER_WORKER + MAIN_APPENDS
    assert nested
    stored = stored_queue_ids(section, audit_key)
    assert len(stored) == len(set(stored))
    for queue_id, outcome in [*outcomes.items(), *nested]:  # type: ignore[misc]
        if isinstance(outcome, AuditWriteError):
            assert queue_id not in stored, queue_id
        else:
            assert queue_id in stored, queue_id


# The tests below raise from a trace function instead of a signal handler. CPython
# (3.11 checked) raises such an exception at the traced instruction, so each test
# strikes one chosen point, where a signal handler could run, on every run.


def run_traced(tracer: Callable[[FrameType, str, Any], Any], call: Callable[[], object]) -> None:
    """Run ``call`` in this thread under ``tracer`` and expect Interrupted from it."""
    sys.settrace(tracer)
    try:
        with pytest.raises(Interrupted):
            call()
    finally:
        sys.settrace(None)


def append_in_thread(log: AuditLog, queue_id: str) -> tuple[threading.Thread, dict[str, object]]:
    """Start a thread that appends one record, and return it with a dict that receives
    its result or error."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = log.append(make_decision(1, queue_id=queue_id))
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "condition not met within 5 s"
        time.sleep(0.001)


def test_exception_as_queue_lock_released(
    make_section: Callable[..., AuditSection], audit_key: AuditKey
) -> None:
    section = make_section()
    log = AuditLog(section, "traced")
    lock_was_held = False

    def raise_after_release(frame: FrameType, event: str, arg: Any) -> Any:
        # Raise at the first instruction after the with-block releases _queue_lock,
        # which is where a signal handler runs once the lock's __exit__ call returns.
        nonlocal lock_was_held
        if event == "opcode":
            if log._queue_lock.locked():
                lock_was_held = True
            elif lock_was_held:
                raise Interrupted
        return raise_after_release

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if frame.f_code is not AuditLog.append.__code__:
            return None
        frame.f_trace_opcodes = True
        return raise_after_release

    run_traced(tracer, lambda: log.append(make_decision(0, queue_id="FIRST")))
    assert lock_was_held

    thread, outcome = append_in_thread(log, "SECOND")
    thread.join(5)
    assert not thread.is_alive(), "the next append waits for a leader that left"
    assert "result" in outcome, outcome
    assert log._leader is None
    assert log._queue == []
    log.close()
    assert stored_queue_ids(section, audit_key) == ["SECOND"]


def test_exception_before_successor_woken(
    make_section: Callable[..., AuditSection], audit_key: AuditKey
) -> None:
    section = make_section()
    log = AuditLog(section, "traced")
    second: list[tuple[threading.Thread, dict[str, object]]] = []
    struck = False

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal struck
        if event != "call":
            return None
        caller = frame.f_back.f_code.co_name if frame.f_back is not None else ""
        if frame.f_code.co_name == "_write_batch" and not second:
            # Queue a second record behind this batch, so that _hand_over chooses it.
            thread, outcome = append_in_thread(log, "SECOND")
            second.append((thread, outcome))
            wait_until(lambda: thread.ident in log._waiting and len(log._queue) == 1)
        elif frame.f_code.co_name == "wake" and caller == "_hand_over":
            # The successor is chosen and _leader is _HANDED_OVER, but not yet woken.
            struck = True
            raise Interrupted
        return None

    run_traced(tracer, lambda: log.append(make_decision(0, queue_id="FIRST")))
    assert struck

    thread, outcome = second[0]
    thread.join(5)
    assert not thread.is_alive(), "the chosen successor was never woken"
    assert "result" in outcome, outcome
    log.close()
    # The first batch was complete when the exception struck, so its record stays.
    assert stored_queue_ids(section, audit_key) == ["FIRST", "SECOND"]


def test_exception_after_flock_releases_it(
    make_section: Callable[..., AuditSection], audit_key: AuditKey, log_dir: Path
) -> None:
    section = make_section()
    log = AuditLog(section, "traced")
    log.append(make_decision(0, queue_id="FIRST"))
    lines, first_line = inspect.getsourcelines(AuditLog._lock_exclusively)
    [target] = [first_line + index for index, line in enumerate(lines) if "held = os.fstat" in line]

    def raise_after_flock(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line" and frame.f_lineno == target:
            raise Interrupted
        return raise_after_flock

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if frame.f_code is AuditLog._lock_exclusively.__code__:
            return raise_after_flock
        return None

    run_traced(tracer, lambda: log.append(make_decision(1, queue_id="SECOND")))

    # A second open file description of audit.lock takes the flock as another
    # process would.
    other = os.open(log_dir / "audit.lock", os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pytest.fail("audit.lock stays locked until this process appends again")
    finally:
        os.close(other)
    log.append(make_decision(2, queue_id="THIRD"))
    log.close()
    assert stored_queue_ids(section, audit_key) == ["FIRST", "THIRD"]
