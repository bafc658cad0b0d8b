"""Batched appends under random delays and failures: every caller returns, and the
files contain exactly the records whose callers got a result.

Nothing on this machine makes a real write or flush fail at random (no
device-mapper), so os.write and os.fdatasync are wrapped to sleep a little and to
fail with EIO now and then. The real call runs otherwise.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from postveil.audit import AuditKey, AuditLog, AuditWriteError, list_log_files, verify_chain, writer
from postveil.audit.verify import default_head_for
from postveil.config.audit import AuditSection
from tests.audit.conftest import make_decision
from tests.audit.test_batch_waits import hold_flock

THREADS = 24
PER_THREAD = 12
JOIN_SECONDS = 30


def flaky(real: Callable[..., Any], failure_rate: float, seed: int) -> Callable[..., Any]:
    chooser = random.Random(seed)
    chooser_lock = threading.Lock()

    def call(*args: Any) -> Any:
        with chooser_lock:
            delay = chooser.random() * 0.002
            fail = chooser.random() < failure_rate
        time.sleep(delay)
        if fail:
            raise OSError(5, "Input/output error")
        return real(*args)

    return call


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_failures_keep_outcomes_exact(
    make_section: Callable[..., AuditSection],
    audit_key: AuditKey,
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
) -> None:
    section = make_section(fsync="always", rotate_size=20_000)
    log = AuditLog(section, "stress")
    monkeypatch.setattr(writer, "_MAX_BATCH", 5)
    monkeypatch.setattr(os, "fdatasync", flaky(os.fdatasync, 0.1, seed))
    monkeypatch.setattr(os, "write", flaky(os.write, 0.05, seed + 100))
    outcomes: dict[str, object] = {}
    start = threading.Barrier(THREADS)

    def write(thread_number: int) -> None:
        pause = random.Random(seed * 1000 + thread_number)
        start.wait()
        for number in range(PER_THREAD):
            queue_id = f"T{thread_number:02d}N{number:02d}"
            time.sleep(pause.random() * 0.001)
            try:
                outcomes[queue_id] = log.append(make_decision(number, queue_id=queue_id))
            except AuditWriteError as exc:
                outcomes[queue_id] = exc

    threads = [
        threading.Thread(target=write, args=(index,), daemon=True) for index in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_SECONDS)
    stuck = [thread for thread in threads if thread.is_alive()]
    monkeypatch.undo()
    log.close()

    assert not stuck
    assert len(outcomes) == THREADS * PER_THREAD
    succeeded = {
        queue_id: outcome for queue_id, outcome in outcomes.items() if not isinstance(outcome, Exception)
    }
    failed = set(outcomes) - set(succeeded)
    assert failed, "the injected failures never struck"
    assert succeeded, "no append succeeded"

    files = list_log_files(section.directory)
    stored = [json.loads(line) for path in files for line in path.read_bytes().splitlines()]
    stored_ids = [fields["queue_id"] for fields in stored]
    assert len(stored_ids) == len(set(stored_ids))
    assert set(stored_ids) == set(succeeded)
    by_id = {fields["queue_id"]: fields["seq"] for fields in stored}
    for queue_id, outcome in succeeded.items():
        assert by_id[queue_id] == outcome.seq  # type: ignore[attr-defined]
    result = verify_chain(files, {audit_key.key_id: audit_key}, head=default_head_for(files))
    assert result.broken is None, str(result.broken)
    assert result.records == len(succeeded)


def test_close_while_threads_wait(
    make_section: Callable[..., AuditSection], audit_key: AuditKey, log_dir: Any
) -> None:
    """Callers queued behind a batch when close() runs get an error, and none waits."""
    section = make_section(rotate_size=0)
    log = AuditLog(section, "close")
    log.append(make_decision(0))
    outcomes: dict[int, object] = {}

    def write(number: int) -> None:
        try:
            outcomes[number] = log.append(make_decision(number))
        except AuditWriteError as exc:
            outcomes[number] = exc

    holder = hold_flock(log_dir, 0.4)
    threads = [threading.Thread(target=write, args=(number,), daemon=True) for number in range(1, 9)]
    for thread in threads:
        thread.start()
    time.sleep(0.1)
    closer = threading.Thread(target=log.close, daemon=True)
    closer.start()
    holder.join(5)
    closer.join(5)
    for thread in threads:
        thread.join(5)

    assert not closer.is_alive()
    assert not any(thread.is_alive() for thread in threads)
    assert len(outcomes) == 8
    written = [outcome for outcome in outcomes.values() if not isinstance(outcome, Exception)]
    files = list_log_files(section.directory)
    result = verify_chain(files, {audit_key.key_id: audit_key}, head=default_head_for(files))
    assert result.broken is None, str(result.broken)
    assert result.records == 1 + len(written)
    for outcome in outcomes.values():
        if isinstance(outcome, AuditWriteError):
            assert "closed" in str(outcome)


def _append_in_child(log: AuditLog, connection: Any) -> None:
    try:
        connection.send(log.append(make_decision(99, queue_id="CHILD")).seq)
    except AuditWriteError as exc:
        connection.send(str(exc))


def test_fork_while_threads_wait(
    make_section: Callable[..., AuditSection], audit_key: AuditKey, log_dir: Any
) -> None:
    """A child forked while the parent's threads wait in append does not inherit their
    queue or leader, so its own append is written and the parent's still finish."""
    section = make_section(rotate_size=0)
    log = AuditLog(section, "fork")
    log.append(make_decision(0))
    outcomes: dict[int, object] = {}

    def write(number: int) -> None:
        outcomes[number] = log.append(make_decision(number))

    holder = hold_flock(log_dir, 0.5)
    threads = [threading.Thread(target=write, args=(number,), daemon=True) for number in range(1, 5)]
    for thread in threads:
        thread.start()
    time.sleep(0.1)
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_append_in_child, args=(log, sender))
    child.start()
    holder.join(5)
    child.join(10)
    for thread in threads:
        thread.join(5)
    log.close()

    assert child.exitcode == 0
    assert receiver.poll(1)
    assert isinstance(receiver.recv(), int)
    assert not any(thread.is_alive() for thread in threads)
    assert len(outcomes) == 4
    files = list_log_files(section.directory)
    result = verify_chain(files, {audit_key.key_id: audit_key}, head=default_head_for(files))
    assert result.broken is None, str(result.broken)
    assert result.records == 6


async def test_appends_from_to_thread_workers(
    make_section: Callable[..., AuditSection], audit_key: AuditKey
) -> None:
    """The policy daemon appends through asyncio.to_thread, so its default executor's
    threads share batches; every append returns within the timeout."""
    section = make_section(fsync="always", rotate_size=0)
    log = AuditLog(section, "policyd")
    appends = [
        asyncio.to_thread(log.append, make_decision(number, queue_id=f"P{number:03d}"))
        for number in range(200)
    ]
    results = await asyncio.wait_for(asyncio.gather(*appends), JOIN_SECONDS)
    log.close()

    assert sorted(result.seq for result in results) == list(range(1, 201))
    files = list_log_files(section.directory)
    result = verify_chain(files, {audit_key.key_id: audit_key}, head=default_head_for(files))
    assert result.broken is None, str(result.broken)
    assert result.records == 200


def test_more_waiters_than_batch_limit(
    make_section: Callable[..., AuditSection], audit_key: AuditKey, log_dir: Any
) -> None:
    """More callers queue behind a batch than one batch takes: the rest are handed on
    to following batches and every caller returns."""
    section = make_section(rotate_size=0)
    log = AuditLog(section, "overflow")
    log.append(make_decision(0))
    count = writer._MAX_BATCH + 60
    seqs: list[int] = []

    def write(number: int) -> None:
        seqs.append(log.append(make_decision(number, queue_id=f"O{number:04d}")).seq)

    holder = hold_flock(log_dir, 0.5)
    threads = [threading.Thread(target=write, args=(number,), daemon=True) for number in range(count)]
    for thread in threads:
        thread.start()
    holder.join(5)
    for thread in threads:
        thread.join(JOIN_SECONDS)
    log.close()

    assert not any(thread.is_alive() for thread in threads)
    assert sorted(seqs) == list(range(2, count + 2))
    files = list_log_files(section.directory)
    result = verify_chain(files, {audit_key.key_id: audit_key}, head=default_head_for(files))
    assert result.broken is None, str(result.broken)
    assert result.records == count + 1
