"""Batched appends under random delays and failures: every caller returns, and the
files contain exactly the records whose callers got a result.

Nothing on this machine makes a real write or flush fail at random (no
device-mapper), so os.write and os.fdatasync are wrapped to sleep a little and to
fail with EIO now and then. The real call runs otherwise.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from postveil.audit import AuditKey, AuditLog, AuditWriteError, list_log_files, verify_chain
from postveil.audit import writer
from postveil.audit.verify import default_head_for
from postveil.config.audit import AuditSection
from tests.audit.conftest import make_decision

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
