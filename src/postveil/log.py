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
        handler = logging.StreamHandler(sys.stderr)
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
