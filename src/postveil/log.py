"""Logging set-up shared by the daemons and the CLI.

Every line about a message carries the Postfix queue id (or, before Postfix has
assigned one, a connection id) as its first field, so maillog and postveil lines
join on it. Never pass matched identifiers, keys or message text to a logger.
"""

from __future__ import annotations

import errno
import logging
import logging.handlers
import os
import select
import sys
from collections.abc import MutableMapping
from typing import Any

from postveil.config.logging import LoggingSection

_FORMAT_STDERR = "%(levelname)s %(name)s: %(message)s"
_FORMAT_SYSLOG = "%(program)s[%(process)d]: %(levelname)s %(name)s: %(message)s"


class _ProgramFilter(logging.Filter):
    def __init__(self, program: str) -> None:
        super().__init__()
        self.program = program

    def filter(self, record: logging.LogRecord) -> bool:
        record.program = self.program
        return True


def setup_logging(section: LoggingSection, program: str, previous: LoggingSection | None = None) -> None:
    """Configure the root logger from the ``logging`` section; call again on reload.

    ``previous`` is the section applied before, so that per-logger levels it set
    and the new one drops return to inheriting the root level. Raises OSError, with
    the old handlers left in place, when the syslog socket does not exist.
    """
    # Neither format uses the caller's file and line, the thread or the
    # multiprocessing name, so records skip computing them (Python's logging HOWTO,
    # "Optimization"). Finding the caller walks the stack on every record.
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # type: ignore[attr-defined]
    root = logging.getLogger()
    handler: logging.Handler
    if section.target == "syslog":
        # SysLogHandler ignores a missing socket and then drops every record.
        if not os.path.exists(section.syslog_socket):
            raise FileNotFoundError(errno.ENOENT, "syslog socket not found", section.syslog_socket)
        handler = logging.handlers.SysLogHandler(
            address=section.syslog_socket, facility=section.syslog_facility
        )
        handler.setFormatter(logging.Formatter(_FORMAT_SYSLOG))
    else:
        handler = _stderr_handler()
        handler.setFormatter(logging.Formatter(_FORMAT_STDERR))
    handler.addFilter(_ProgramFilter(program))
    # Add the new handler before removing the old ones, so that other threads
    # logging during a reload lose no record.
    old_handlers = list(root.handlers)
    root.addHandler(handler)
    for old in old_handlers:
        root.removeHandler(old)
        old.close()
    root.setLevel(section.level)
    if previous is not None:
        for name in previous.levels.keys() - section.levels.keys():
            logging.getLogger(name).setLevel(logging.NOTSET)
    for name, level in section.levels.items():
        logging.getLogger(name).setLevel(level)


def _stderr_handler() -> logging.Handler:
    """Return a handler for standard error: a :class:`LineHandler` on its descriptor,
    or a StreamHandler when standard error has none (replaced by a test runner)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return logging.StreamHandler(sys.stderr)
    return LineHandler(fd)


class LineHandler(logging.Handler):
    """Write each record as one line with one ``write()`` to a file descriptor.

    A StreamHandler holds its lock, and the stream its own, while the write runs
    without the GIL. With one thread per SMTP connection in the milter, the other
    threads then queue on those locks, and each hand-over costs futex calls and
    context switches (measured in docs/benchmarks.md). This handler takes no lock:
    the kernel keeps a write of one line whole on a pipe (up to PIPE_BUF, 4096 bytes),
    a socket or a regular file, so lines from different threads never mix. Lines
    longer than that may interleave on a pipe.
    """

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        # Handler.handle with the lock left out (see the class docstring).
        result = self.filter(record)
        if isinstance(result, logging.LogRecord):
            record = result
        if result:
            self.emit(record)
        return bool(result)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
            while data:
                try:
                    written = os.write(self._fd, data)
                except BlockingIOError:
                    # Another process set O_NONBLOCK on the shared standard error. Wait
                    # as a blocking write would, so the rest of the line is not lost.
                    select.select([], [self._fd], [])
                    continue
                data = data[written:]
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


class MessageLogger(logging.LoggerAdapter):
    """Prefix each line with the message's correlation id: ``<queue id>: text``.

    ``set_id`` switches from the connection id to the queue id once Postfix
    assigns one, so later lines join with the maillog.
    """

    def __init__(self, logger: logging.Logger, correlation_id: str) -> None:
        super().__init__(logger, {"correlation_id": correlation_id})

    def set_id(self, correlation_id: str) -> None:
        self.extra = {"correlation_id": correlation_id}

    @property
    def correlation_id(self) -> str:
        return str(self.extra["correlation_id"]) if self.extra else "-"

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return f"{self.correlation_id}: {msg}", kwargs
