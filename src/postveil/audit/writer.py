"""The audit log writer: one chain shared by every thread and process on the host.

Each append takes a ``threading.Lock`` (threads of one process) and then
``fcntl.flock`` on ``audit.lock`` (processes). Under both locks it reads the last
record back from the files, so records from the milter and the policy daemon form one
chain in one order. Rotation happens under the same lock by renaming the active file.

Records that threads of one process append at the same time are written as one batch
(group commit). A waiting thread that finds no batch in progress takes every queued
record, writes them with one write under the locks, flushes once, updates the head
once and wakes the others. A lone append is a batch of one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from postveil.audit.chain import (
    ACTIVE_NAME,
    FORMAT_VERSION,
    GENESIS_HASH,
    HEAD_NAME,
    HEAD_SIZE,
    LOCK_NAME,
    AuditKey,
    Head,
    InvalidHeadError,
    head_line,
    line_hash,
    list_log_files,
    parse_head,
    rotated_name,
    seal,
)
from postveil.audit.errors import AuditWriteError
from postveil.audit.records import MessageDecision, Record
from postveil.audit.summary import log_decision_summary
from postveil.config.audit import AuditSection

logger = logging.getLogger("postveil.audit")

_TAIL_CHUNK = 4096


@dataclass(frozen=True)
class AppendResult:
    """Location of a written record: its sequence number, line hash, file and time."""

    seq: int
    hash: str
    """SHA-256 of the record's line: the ``prev`` of the next record."""

    path: str
    time: str


def format_time(epoch: float) -> str:
    """ISO 8601 UTC with microseconds and a ``Z``, the form stored in ``time``."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def last_complete_line(fd: int, size: int, path: Path) -> bytes | None:
    """Return the last newline-terminated line in the first ``size`` bytes of ``fd``."""
    end = _end_of_last_line(fd, size, path)
    if end == 0:
        return None
    start = _end_of_last_line(fd, end - 1, path)
    return _pread_all(fd, end - 1 - start, start, path)


def _end_of_last_line(fd: int, size: int, path: Path) -> int:
    """Offset just after the last newline before ``size``, or 0 when there is none."""
    chunk = _TAIL_CHUNK
    end = size
    while end > 0:
        start = max(0, end - chunk)
        data = _pread_all(fd, end - start, start, path)
        newline = data.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
        chunk *= 4
    return 0


def _pread_all(fd: int, length: int, offset: int, path: Path) -> bytes:
    parts = []
    while length > 0:
        try:
            piece = os.pread(fd, length, offset)
        except OSError as exc:
            raise AuditWriteError(f"cannot read {path}: {exc.strerror}") from exc
        if not piece:
            break
        parts.append(piece)
        length -= len(piece)
        offset += len(piece)
    return b"".join(parts)


_MAX_BATCH = 256
"""Maximum records in one batch; the rest wait for the next one."""


_HANDED_OVER = -1
"""``AuditLog._leader`` while the next batch's writer has been chosen but not yet woken."""


class _Pending:
    """One record waiting in the append queue, and then its outcome."""

    __slots__ = ("batch", "error", "fields", "kind", "lead", "result", "wakeup")

    def __init__(self, kind: str, fields: dict[str, Any]) -> None:
        self.kind = kind
        self.fields = fields
        self.result: AppendResult | None = None
        self.error: BaseException | None = None
        self.lead = False
        """Chosen to write the next batch, which starts with this record."""
        self.batch: list[_Pending] | None = None
        """The batch this record's thread took from the queue to write, once it leads."""
        self.wakeup = threading.Lock()
        """Held until the record is done or chosen to lead. Only its own thread waits on
        it, so a finished batch wakes its callers and one successor, not every waiter."""
        self.wakeup.acquire()

    def wake(self) -> None:
        """Release the record's thread; releasing it again does nothing."""
        try:
            self.wakeup.release()
        except RuntimeError:
            pass

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None

    def outcome(self) -> AppendResult:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class AuditLog:
    """Append records to the audit trail configured by an ``audit`` section.

    ``append`` returns once the record is in the kernel (and on disk with
    ``fsync: always``), and raises AuditWriteError when it is not, which callers
    turn into a temporary failure. Safe to share between threads, and usable across
    ``fork``: a child reopens its own descriptors on first use.
    """

    def __init__(
        self, section: AuditSection, program: str | None = None, *, key: AuditKey | None = None
    ) -> None:
        """Load the HMAC key (AuditKeyError when unusable); files are opened on first append.

        ``program`` names the writer in every record (default: the script's name).
        """
        self._section = section
        self._program = program or os.path.basename(sys.argv[0]) or "postveil"
        self._key = key if key is not None else AuditKey.load(section.key_file)
        self._directory = Path(section.directory)
        self._active_path = self._directory / ACTIVE_NAME
        self._head_path = self._directory / HEAD_NAME
        self._lock_path = self._directory / LOCK_NAME
        self._active_text = str(self._active_path)
        """``AppendResult.path`` of a record in the active file."""
        self._host = socket.gethostname()
        self._thread_lock = threading.Lock()
        self._pid = os.getpid()
        self._lock_fd = -1
        self._log_fd = -1
        self._log_identity: tuple[int, int] | None = None
        self._head_fd = -1
        self._head_identity: tuple[int, int] | None = None
        self._first_records: dict[tuple[int, int], tuple[int, float]] = {}
        self._unsynced = False
        self._sync_timer: threading.Timer | None = None
        self._closed = False
        self._head_failing = False
        self._queue: list[_Pending] = []
        """Records waiting for the next batch; a batch's records leave it when taken."""
        self._queue_lock = threading.Lock()
        self._waiting: set[int] = set()
        """Threads whose record waits in the queue for its batch."""
        self._leader: int | None = None
        """Thread id of the thread writing a batch, _HANDED_OVER while the next one is
        chosen but not yet running, None when no batch is in progress. While the queue
        contains records, it is never None."""
        self._head_cache: tuple[bytes, Head] | None = None
        self._own_tail: tuple[tuple[int, int], int, int, str] | None = None
        """(file identity, size, seq, hash) after this process's last batch. While the
        active file still has that identity and size, no other writer has appended, so
        the next batch links to (seq, hash) without reading the file back."""

    @property
    def key_id(self) -> str:
        return self._key.key_id

    def append(self, record: Record) -> AppendResult:
        """Add ``record`` to the chain. Raises AuditWriteError when it is not written."""
        fields = record.fields()
        if os.getpid() != self._pid:
            self._reset_after_fork()
        pending = _Pending(record.kind, fields)
        me = threading.get_ident()
        # NOTE: A signal handler that appends while its thread holds _queue_lock (a few
        # bytecodes at a time), or _thread_lock in close() or in another handler's
        # append written alone, still deadlocks, because neither lock can be taken
        # again by the same thread.

        # Set before this call touches the queue, so that an exception from here on,
        # even one raised as the lock is released, reaches the cleanup below.
        registered = False
        try:
            with self._queue_lock:
                if self._leader == me:
                    # A signal handler appending while its thread writes a batch would
                    # wait for itself forever.
                    raise AuditWriteError(
                        "audit append re-entered while this thread writes a batch"
                    )
                nested = me in self._waiting
                if not nested:
                    registered = True
                    self._queue.append(pending)
                    leading = self._leader is None
                    if leading:
                        self._leader = me
                    else:
                        self._waiting.add(me)
            if nested:
                # A signal handler appending while its thread waits below in append:
                # the next batch may be handed to the waiting record, which cannot run
                # until the handler returns, so this record is written on its own.
                return self._write_alone(pending)
            if not leading:
                pending.wakeup.acquire()
            # The thread stays in _waiting until it is marked as the leader, so that a
            # signal handler appending in between writes alone instead of queueing
            # behind a batch that only this thread can start.
            if pending.done:
                with self._queue_lock:
                    self._waiting.discard(me)
            else:
                # Chosen to lead, or leading from the start: this thread writes every
                # queued record up to the batch limit, its own first among them.
                with self._queue_lock:
                    self._leader = me
                    self._waiting.discard(me)
                    pending.lead = False
                    pending.batch = self._queue[:_MAX_BATCH]
                    del self._queue[: len(pending.batch)]
                self._write_and_finish(pending.batch)
        except BaseException:
            # A signal handler may raise between any two steps above, so the cleanup
            # reads the shared state instead of trusting how far this thread got.
            if registered:
                self._abandon(pending, me)
            raise
        return pending.outcome()

    def _write_and_finish(self, batch: list[_Pending]) -> None:
        try:
            self._write_batch(batch)
        except AuditWriteError as exc:
            self._finish_batch(batch, exc)
        except BaseException as exc:
            # Never leave the others waiting, whatever went wrong.
            self._finish_batch(batch, AuditWriteError(f"audit write failed: {type(exc).__name__}"))
            raise
        else:
            self._finish_batch(batch, None)

    def _write_alone(self, pending: _Pending) -> AppendResult:
        """Write one record as a batch of its own, outside the queue."""
        return self._write_batch([pending])[0]

    def _finish_batch(self, batch: list[_Pending], error: AuditWriteError | None) -> None:
        """Wake the batch's callers, giving ``error`` to each record without a result,
        and hand the next batch over."""
        with self._queue_lock:
            if error is not None:
                for item in batch:
                    if not item.done:
                        item.error = error
            for item in batch:
                item.wake()
            self._hand_over()

    def _hand_over(self) -> None:
        """Choose the oldest queued record's thread to write the next batch (call with
        ``_queue_lock`` held)."""
        if self._queue:
            successor = self._queue[0]
            successor.lead = True
            self._leader = _HANDED_OVER
            successor.wake()
        else:
            self._leader = None

    def _abandon(self, pending: _Pending, me: int) -> None:
        """Clean up after an exception in ``append``, wherever it struck.

        Unfinished records of a batch this thread took get an AuditWriteError. Its own
        record leaves the queue unless a batch wrote it, and a thread that leads or was
        chosen to lead passes that role on.

        NOTE: A second exception raised inside this cleanup (a signal handler that
        raises again) can still leave the queue without a leader.
        """
        with self._queue_lock:
            self._waiting.discard(me)
            taken = pending.batch or []
            if taken:
                self._queue = [item for item in self._queue if item not in taken]
                interrupted = AuditWriteError("audit write interrupted")
                for item in taken:
                    if not item.done:
                        item.error = interrupted
                    item.wake()
            elif not pending.done and pending in self._queue:
                self._queue.remove(pending)
            if self._leader == me or (self._leader == _HANDED_OVER and pending.lead):
                pending.lead = False
                self._hand_over()
            elif self._leader == _HANDED_OVER:
                # _hand_over may have been interrupted after it chose the successor but
                # before wake() released it. Waking the successor a second time is
                # harmless, because its thread waits on that lock only once.
                for item in self._queue:
                    if item.lead:
                        item.wake()

    def _write_batch(self, batch: list[_Pending]) -> list[AppendResult]:
        with self._thread_lock:
            if self._closed:
                raise AuditWriteError(f"audit log {self._directory} is closed")
            try:
                # Inside the try, because a signal handler may raise after flock()
                # returns and before _lock_exclusively does. The unlock stays inline,
                # since a signal could also strike at the entry of a helper function.
                self._lock_exclusively()
                return self._append_locked(batch)
            finally:
                if self._lock_fd >= 0:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def record_message(self, decision: MessageDecision) -> AppendResult:
        """Append a message decision and log its one-line summary with the queue id."""
        result = self.append(decision)
        log_decision_summary(decision, result)
        return result

    def close(self) -> None:
        """Flush unsynced records (``fsync: batch``) and close the files."""
        if os.getpid() != self._pid:
            self._reset_after_fork()
        with self._thread_lock:
            if self._sync_timer is not None:
                self._sync_timer.cancel()
                self._sync_timer = None
            self._sync_pending()
            self._close_log_fd()
            self._close_head_fd()
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1
            self._closed = True

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- under the locks ---------------------------------------------------------

    def _append_locked(self, batch: list[_Pending]) -> list[AppendResult]:
        """Chain, write and (by ``audit.fsync``) flush the batch's records in order."""
        fd, size = self._open_active()
        own = self._own_tail
        if own is not None and own[0] == self._log_identity and own[1] == size:
            seq, prev_hash = own[2], own[3]
        else:
            size, last_line = self._read_tail(fd, size)
            seq, prev_hash = self._find_last_link(last_line)

        now = time.time()
        stamp = format_time(now)
        lines = []
        for item in batch:
            seq += 1
            body = {
                **item.fields,
                "v": FORMAT_VERSION,
                "seq": seq,
                "time": stamp,
                "kind": item.kind,
                "host": self._host,
                "program": self._program,
                "pid": os.getpid(),
                "prev": prev_hash,
            }
            line = seal(body, self._key)
            prev_hash = line_hash(line)
            lines.append((seq, prev_hash, line))
        data = b"".join(line + b"\n" for _, _, line in lines)

        if size > 0 and self._rotation_due(fd, size, len(data), now):
            self._rotate(fd)
            fd, size = self._open_active()

        path = self._active_text
        results = [AppendResult(seq=number, hash=digest, path=path, time=stamp) for number, digest, _ in lines]
        try:
            self._write_record(fd, size, data)
            self._sync_record(fd)
            # The batch is committed once each record carries its result: an exception
            # after this loop (a signal handler) no longer turns it into an error.
            for item, result in zip(batch, results, strict=True):
                item.result = result
        except BaseException:
            # Every caller in the batch gets an error, so none of its records may stay.
            for item in batch:
                item.result = None
            # NOTE: A signal handler that raises as _undo_write starts leaves the batch
            # in the file while every caller gets an error, so Postfix retries and the
            # trail contains those decisions twice.
            self._undo_write(fd, size)
            raise
        self._write_head(Head(seq=seq, hash=prev_hash, file=ACTIVE_NAME), stamp)
        if self._log_identity is not None:
            self._own_tail = (self._log_identity, size + len(data), seq, prev_hash)
        return results

    def _lock_exclusively(self) -> None:
        """Take the flock on ``audit.lock``, the same file every other writer locks.

        When the directory was moved or the lock file replaced since this process
        opened it, the old descriptor would lock a file no other writer uses, so the
        lock is taken again on the current file.
        """
        path = self._lock_path
        while True:
            if self._lock_fd < 0:
                try:
                    os.makedirs(self._directory, mode=0o750, exist_ok=True)
                    self._lock_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
                except OSError as exc:
                    raise AuditWriteError(
                        f"cannot open audit lock file in {self._directory}: {exc.strerror}"
                    ) from exc
            try:
                # NOTE: flock waits without a timeout. A writer that hangs while holding
                # the lock (a stalled disk) stalls every writer, and the milter's
                # callers then see only Postfix's own milter timeouts.
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
                held = os.fstat(self._lock_fd)
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            except OSError as exc:
                raise AuditWriteError(f"cannot lock {path}: {exc.strerror}") from exc
            if current is not None and (current.st_dev, current.st_ino) == (
                held.st_dev,
                held.st_ino,
            ):
                return
            # Forget the descriptor before closing it, so that an exception in between
            # cannot leave _lock_fd naming a closed or reused descriptor.
            stale, self._lock_fd = self._lock_fd, -1
            os.close(stale)

    def _open_active(self) -> tuple[int, int]:
        """Return a descriptor of the current ``audit.jsonl`` and its size, reopening after
        a rotation. Call it under the flock, so that no other writer changes the size."""
        try:
            status = os.stat(self._active_path)
            identity: tuple[int, int] | None = (status.st_dev, status.st_ino)
        except FileNotFoundError:
            identity = None
        except OSError as exc:
            raise AuditWriteError(f"cannot stat {self._active_path}: {exc.strerror}") from exc
        if self._log_fd >= 0 and identity == self._log_identity:
            # The path still names the open file, so its status is the file's.
            return self._log_fd, status.st_size
        self._close_log_fd()
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
        try:
            try:
                fd = os.open(self._active_path, flags | os.O_CREAT | os.O_EXCL, 0o640)
                created = True
            except FileExistsError:
                fd = os.open(self._active_path, flags)
                created = False
            if created and self._section.fsync != "never":
                self._sync_directory()
            status = os.fstat(fd)
        except OSError as exc:
            raise AuditWriteError(f"cannot open {self._active_path}: {exc.strerror}") from exc
        self._log_fd = fd
        self._log_identity = (status.st_dev, status.st_ino)
        return fd, status.st_size

    def _read_tail(self, fd: int, size: int) -> tuple[int, bytes | None]:
        """Return (size, last complete line) of the active file.

        A trailing line without its newline is a record whose write never completed
        (power failure, or a failed write that could not be undone). No caller received
        success for it, so it is cut off and the cut is logged.
        """
        while size > 0:
            try:
                data = os.pread(fd, 1, size - 1)
            except OSError as exc:
                raise AuditWriteError(f"cannot read {self._active_path}: {exc.strerror}") from exc
            if data == b"\n":
                break
            keep = _end_of_last_line(fd, size, self._active_path)
            self._cut_incomplete_line(fd, size, keep)
            size = keep
        if size == 0:
            return 0, None
        return size, last_complete_line(fd, size, self._active_path)

    def _cut_incomplete_line(self, fd: int, size: int, keep: int) -> None:
        try:
            os.ftruncate(fd, keep)
        except OSError as exc:
            raise AuditWriteError(
                f"{self._active_path} ends with an incomplete record and cannot be repaired: "
                f"{exc.strerror}"
            ) from exc
        logger.error(
            "audit: removed an incomplete record (%d bytes) from the end of %s; "
            "its write never completed",
            size - keep,
            self._active_path,
        )

    def _find_last_link(self, last_line: bytes | None) -> tuple[int, str]:
        """Return (seq, hash) of the record the next one links to."""
        source = self._active_path
        if last_line is None:
            source, last_line = self._last_line_of_rotated()
        from_files: tuple[int, str] | None = None
        if last_line is not None:
            try:
                seq = json.loads(last_line)["seq"]
                if not isinstance(seq, int):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                raise AuditWriteError(
                    f"the last record of {source} is damaged, so the next one cannot link to it; "
                    "run 'postveil audit verify' and move the damaged file out of the directory"
                ) from None
            from_files = (seq, line_hash(last_line))

        head = self._read_head()
        if head is not None and (from_files is None or head.seq > from_files[0]):
            if from_files is None:
                logger.warning(
                    "audit: no audit files in %s; continuing the chain after seq %d from %s",
                    self._directory,
                    head.seq,
                    HEAD_NAME,
                )
            else:
                logger.error(
                    "audit: %s ends at seq %d but %s records seq %d as written: records were "
                    "removed; continuing after seq %d so the gap stays visible to verify",
                    source,
                    from_files[0],
                    HEAD_NAME,
                    head.seq,
                    head.seq,
                )
            return head.seq, head.hash
        if from_files is None:
            return 0, GENESIS_HASH
        return from_files

    def _last_line_of_rotated(self) -> tuple[Path, bytes | None]:
        try:
            files = [path for path in list_log_files(self._directory) if path.name != ACTIVE_NAME]
        except OSError as exc:
            raise AuditWriteError(f"cannot list {self._directory}: {exc.strerror}") from exc
        if not files:
            return self._active_path, None
        newest = files[-1]
        try:
            fd = os.open(newest, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise AuditWriteError(f"cannot read {newest}: {exc.strerror}") from exc
        try:
            return newest, last_complete_line(fd, os.fstat(fd).st_size, newest)
        finally:
            os.close(fd)

    def _read_head(self) -> Head | None:
        fd = self._open_head()
        if fd < 0:
            return None
        try:
            raw = os.pread(fd, 2 * HEAD_SIZE, 0)
        except OSError as exc:
            logger.error("audit: cannot read %s: %s", self._head_path, exc.strerror)
            return None
        if not raw:
            return None
        # Unchanged bytes since the last read or write: skip the JSON and HMAC work.
        if self._head_cache is not None and self._head_cache[0] == raw:
            return self._head_cache[1]
        try:
            head = parse_head(raw, self._head_path, {self._key.key_id: self._key})
        except InvalidHeadError as exc:
            logger.error("audit: ignoring %s: %s", HEAD_NAME, exc)
            return None
        self._head_cache = (raw, head)
        return head

    def _open_head(self) -> int:
        """Return a descriptor of ``audit.head`` (created empty if missing), or -1 on error.

        The head is only a guard against records cut from the end, so a failure to
        open it is logged and the append goes on.
        """
        try:
            status = os.stat(self._head_path)
            identity: tuple[int, int] | None = (status.st_dev, status.st_ino)
        except OSError:
            identity = None
        if self._head_fd >= 0 and identity == self._head_identity:
            return self._head_fd
        self._close_head_fd()
        try:
            fd = os.open(self._head_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
            status = os.fstat(fd)
        except OSError as exc:
            self._report_head_failure(exc)
            return -1
        self._head_fd = fd
        self._head_identity = (status.st_dev, status.st_ino)
        return fd

    def _rotation_due(self, fd: int, size: int, incoming: int, now: float) -> bool:
        limit = self._section.rotate_size
        if limit and size + incoming > limit:
            return True
        if self._section.rotate_age:
            _, first_time = self._first_record(fd)
            return now - first_time >= self._section.rotate_age
        return False

    def _first_record(self, fd: int) -> tuple[int, float]:
        """Return (seq, time) of the first record of the open active file, cached per inode."""
        if fd == self._log_fd and self._log_identity is not None:
            identity = self._log_identity
        else:
            status = os.fstat(fd)
            identity = (status.st_dev, status.st_ino)
        cached = self._first_records.get(identity)
        if cached is not None:
            return cached
        data = b""
        while b"\n" not in data:
            piece = os.pread(fd, _TAIL_CHUNK, len(data))
            if not piece:
                break
            data += piece
        try:
            fields = json.loads(data.split(b"\n", 1)[0])
            first = (int(fields["seq"]), parse_time(fields["time"]))
        except (ValueError, KeyError, TypeError):
            raise AuditWriteError(
                f"the first record of {self._active_path} is damaged, so the file cannot be "
                "rotated; run 'postveil audit verify'"
            ) from None
        self._first_records = {identity: first}
        return first

    def _rotate(self, fd: int) -> None:
        first_seq, _ = self._first_record(fd)
        target = self._directory / rotated_name(first_seq)
        if target.exists():
            raise AuditWriteError(f"cannot rotate {self._active_path}: {target} already exists")
        self._sync_pending()
        try:
            os.rename(self._active_path, target)
            if self._section.fsync != "never":
                self._sync_directory()
        except OSError as exc:
            raise AuditWriteError(
                f"cannot rotate {self._active_path} to {target}: {exc.strerror}"
            ) from exc
        self._close_log_fd()
        logger.info("audit: rotated %s to %s", self._active_path, target.name)

    def _write_record(self, fd: int, size: int, data: bytes) -> None:
        try:
            # A short write (the disk filled up mid-record) is retried for the rest,
            # which then fails with the real error, usually ENOSPC.
            remaining = memoryview(data)
            while remaining:
                written = os.write(fd, remaining)
                if written == 0:
                    raise OSError(errno.EIO, "write returned 0 bytes")
                remaining = remaining[written:]
        except OSError as exc:
            self._undo_write(fd, size)
            raise AuditWriteError(
                f"cannot write audit record to {self._active_path}: {exc.strerror or exc}"
            ) from exc

    def _undo_write(self, fd: int, size: int) -> None:
        try:
            os.ftruncate(fd, size)
        except OSError as exc:
            # The next append cuts the incomplete line off; verify reports it meanwhile.
            logger.error(
                "audit: cannot remove a partly written record from %s: %s",
                self._active_path,
                exc.strerror,
            )

    def _sync_record(self, fd: int) -> None:
        policy = self._section.fsync
        if policy == "always":
            try:
                os.fdatasync(fd)
            except OSError as exc:
                raise AuditWriteError(
                    f"cannot flush {self._active_path} to disk: {exc.strerror}"
                ) from exc
        elif policy == "batch":
            self._unsynced = True
            if self._sync_timer is None:
                self._sync_timer = threading.Timer(
                    self._section.fsync_interval, self._sync_from_timer
                )
                self._sync_timer.daemon = True
                self._sync_timer.start()

    def _sync_from_timer(self) -> None:
        with self._thread_lock:
            self._sync_timer = None
            self._sync_pending()

    def _sync_pending(self) -> None:
        if not self._unsynced or self._log_fd < 0:
            return
        self._unsynced = False
        try:
            os.fdatasync(self._log_fd)
        except OSError as exc:
            # No caller waits for this flush, so an error can only be logged.
            logger.error("audit: cannot flush %s to disk: %s", self._active_path, exc.strerror)

    def _sync_directory(self) -> None:
        fd = os.open(self._directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_head(self, head: Head, stamp: str) -> None:
        """Overwrite ``audit.head``; a failure is logged, because the record is already written.

        A head that lags behind the files is expected after a crash between the two
        writes, and verify accepts it.
        """
        fd = self._open_head()
        if fd < 0:
            return
        line = head_line(head, stamp, self._key)
        try:
            os.pwrite(fd, line, 0)
        except OSError as exc:
            self._report_head_failure(exc)
            return
        self._head_cache = (line, head)
        if self._head_failing:
            logger.info("audit: %s is updated again", self._head_path)
            self._head_failing = False

    def _report_head_failure(self, exc: OSError) -> None:
        if not self._head_failing:
            logger.error(
                "audit: cannot update %s: %s (logged once until an update succeeds)",
                self._head_path,
                exc.strerror,
            )
        self._head_failing = True

    def _close_head_fd(self) -> None:
        if self._head_fd >= 0:
            os.close(self._head_fd)
        self._head_fd = -1
        self._head_identity = None

    def _close_log_fd(self) -> None:
        if self._log_fd >= 0:
            self._sync_pending()
            os.close(self._log_fd)
        self._log_fd = -1
        self._log_identity = None
        self._own_tail = None

    def _reset_after_fork(self) -> None:
        # Descriptors inherited from the parent share its flock and file offsets, so a
        # child needs its own. Only the forking thread exists in the child, so nothing
        # else can hold the new lock yet.
        self._thread_lock = threading.Lock()
        for fd in (self._lock_fd, self._log_fd, self._head_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._lock_fd = -1
        self._log_fd = -1
        self._log_identity = None
        self._own_tail = None
        self._head_fd = -1
        self._head_identity = None
        self._unsynced = False
        self._sync_timer = None
        self._queue = []
        self._queue_lock = threading.Lock()
        self._waiting = set()
        self._leader = None
        self._pid = os.getpid()
