"""Moving the portal's data keys to a new master key (``postveil portal rekey``).

The steps an administrator follows are in docs/portal.md, "Rotating the master key".
The store must be opened with the new key as ``portal.key_file`` and the old ones in
``portal.previous_key_files``. :func:`rewrap_all` first records the new key id in the
store and retires the old keys, so that from then on an intake still running with the
old configuration, or with the key files swapped, defers instead of storing under an
old key. It then encrypts each data key again in transactions of ``batch_size`` rows,
so a crash loses at most one batch and a new run finishes the job.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from postveil.portal.store import PortalError, PortalStore, RewrapFailure

BATCH_SIZE = 20
"""Data keys encrypted again per transaction. A write of the intake or of
postveil-portal waits for at most one such transaction."""

LOCK_FILE = "rekey.lock"


class RekeyLocked(PortalError):
    """Another ``postveil portal rekey`` is running on the same store."""


@dataclass(frozen=True)
class RekeyResult:
    rewrapped: int
    """Data keys encrypted again with the current master key."""

    failures: tuple[RewrapFailure, ...]
    """Data keys that no configured key decrypts; they were left as they were."""

    retired: tuple[str, ...] = ()
    """Key ids that this run retired (see :meth:`PortalStore.declare_current_key`)."""


@contextmanager
def rekey_lock(directory: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on ``rekey.lock`` in the store directory; raises
    RekeyLocked at once when another process holds it."""
    path = Path(directory) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise PortalError(f"cannot open the lock file {path}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise RekeyLocked(
                f"another 'postveil portal rekey' is running on {directory} (it holds "
                f"{path}); wait until it ends, then run this again"
            ) from exc
        yield
    finally:
        os.close(fd)


def pending_count(store: PortalStore) -> int:
    """Count the messages whose data key another key than the current one encrypted."""
    current = store.keyring.current.key_id
    return sum(count for key_id, count in store.key_counts().items() if key_id != current)


def rewrap_all(
    store: PortalStore,
    *,
    batch_size: int = BATCH_SIZE,
    after_batch: Callable[[int], None] | None = None,
) -> RekeyResult:
    """Record the current key as the store's master key, then encrypt every data key
    again with it. ``after_batch`` is called with the running total after each
    committed batch (tests use it to stop the process half-way).

    Passes repeat until one encrypts nothing more. Message ids are random, so a single
    pass would miss a row that an older postveil (which records no key id) stored
    behind the pass's position.
    """
    retired = store.declare_current_key()
    rewrapped = 0
    failures: dict[str, RewrapFailure] = {}
    while True:
        rewrapped_in_pass = 0
        after = ""
        while True:
            batch = store.rewrap_batch(after, batch_size)
            if batch.last_id is None:
                break
            rewrapped_in_pass += batch.rewrapped
            for failure in batch.failures:
                failures.setdefault(failure.message_id, failure)
            if after_batch is not None:
                after_batch(rewrapped + rewrapped_in_pass)
            after = batch.last_id
        rewrapped += rewrapped_in_pass
        if rewrapped_in_pass == 0:
            break
    return RekeyResult(rewrapped, tuple(failures.values()), tuple(retired))
