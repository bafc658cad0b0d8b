"""Per-connection milter state and the callbacks Postfix drives.

The callbacks only gather facts (envelope, headers, body) and translate a verdict
into a milter reply. Every error caught here becomes a temporary failure with the
queue id and the reason logged: a message that needed protection is never passed
on unprotected because postveil failed.
"""

from __future__ import annotations

import itertools
import logging
import tempfile
import threading
from collections.abc import Callable
from typing import Any

import Milter

from postveil.config import Config
from postveil.log import MessageLogger

log = logging.getLogger("postveil.milter")

_connection_ids = itertools.count(1)

SPOOL_IN_MEMORY = 1024 * 1024
"""Bodies up to this many bytes stay in memory; larger ones spill to a temp file."""


class InFlight:
    """Counts messages between MAIL FROM and end-of-message (or abort)."""

    def __init__(self) -> None:
        self._count = 0
        self._condition = threading.Condition()
        self.stopping = False

    def enter(self) -> None:
        with self._condition:
            self._count += 1

    def leave(self) -> None:
        with self._condition:
            self._count -= 1
            self._condition.notify_all()

    @property
    def count(self) -> int:
        with self._condition:
            return self._count

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no message is in flight; return False on timeout."""
        with self._condition:
            return self._condition.wait_for(lambda: self._count == 0, timeout)


class PostveilMilter(Milter.Base):
    """One instance per SMTP connection that Postfix hands to the milter."""

    def __init__(self, get_config: Callable[[], Config], in_flight: InFlight) -> None:
        self._get_config = get_config
        self._in_flight = in_flight
        self.connection_id = f"conn{next(_connection_ids)}"
        self.log = MessageLogger(log, self.connection_id)
        self.config: Config = get_config()
        self._reset_message()

    # -- helpers ----------------------------------------------------------------

    def _reset_message(self) -> None:
        self.queue_id: str | None = None
        self.sender: str | None = None
        self.recipients: list[str] = []
        self.headers: list[tuple[str, bytes]] = []
        self.body_spool: tempfile.SpooledTemporaryFile[bytes] | None = None
        self.body_size = 0
        self.oversize = False
        self._counted = False

    def _finish_message(self) -> None:
        if self.body_spool is not None:
            self.body_spool.close()
        if self._counted:
            self._in_flight.leave()
        self._reset_message()
        self.log.set_id(self.connection_id)

    def _tempfail(self, reason: str) -> int:
        """Reply 451 4.3.0 with a generic text; the details go to the log only."""
        self.log.error("temporary failure: %s", reason)
        self.setreply("451", "4.3.0", "postveil could not process this message, try again later")
        return Milter.TEMPFAIL

    def _guard(self, step: str, callback: Callable[[], int]) -> int:
        try:
            return callback()
        except Exception as exc:  # the boundary: every failure becomes a tempfail
            self.log.exception("%s failed", step)
            result = self._tempfail(f"{step} failed: {type(exc).__name__}")
            self._finish_message()
            return result

    # -- callbacks ---------------------------------------------------------------

    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        self.log.debug("connect from %s", hostname)
        return Milter.CONTINUE

    def envfrom(self, mailfrom: str, *params: str) -> int:
        return self._guard("MAIL FROM", lambda: self._envfrom(mailfrom))

    def _envfrom(self, mailfrom: str) -> int:
        self._finish_message()
        if self._in_flight.stopping:
            self.log.info("shutting down: new message deferred")
            self.setreply("421", "4.3.2", "postveil is restarting, try again later")
            return Milter.TEMPFAIL
        self.config = self._get_config()
        self._in_flight.enter()
        self._counted = True
        self.sender = mailfrom.strip("<>")
        queue_id = self.getsymval("i")
        if queue_id:
            self.queue_id = queue_id
            self.log.set_id(queue_id)
        return Milter.CONTINUE

    def envrcpt(self, recipient: str, *params: str) -> int:
        return self._guard("RCPT TO", lambda: self._envrcpt(recipient))

    def _envrcpt(self, recipient: str) -> int:
        self.recipients.append(recipient.strip("<>"))
        return Milter.CONTINUE

    @Milter.decode("bytes")
    def header(self, name: str, value: bytes) -> int:
        return self._guard("header", lambda: self._header(name, value))

    def _header(self, name: str, value: bytes) -> int:
        self.headers.append((name, value))
        return Milter.CONTINUE

    def body(self, chunk: bytes) -> int:
        return self._guard("body", lambda: self._body(chunk))

    def _body(self, chunk: bytes) -> int:
        self.body_size += len(chunk)
        if self.body_size > self.config.milter.max_message_size:
            self.oversize = True
            return Milter.CONTINUE
        if self.body_spool is None:
            self.body_spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        self.body_spool.write(chunk)
        return Milter.CONTINUE

    def eom(self) -> int:
        return self._guard("end of message", self._eom)

    def _eom(self) -> int:
        queue_id = self.getsymval("i")
        if queue_id and queue_id != self.queue_id:
            self.queue_id = queue_id
            self.log.set_id(queue_id)
        if self.oversize:
            result = self._oversize()
        else:
            self.log.info(
                "accepted: from=<%s> recipients=%d size=%d",
                self.sender,
                len(self.recipients),
                self.body_size,
            )
            result = Milter.ACCEPT
        self._finish_message()
        return result

    def _oversize(self) -> int:
        action = self.config.milter.oversize_action
        limit = self.config.milter.max_message_size
        self.log.warning("message body of %d bytes exceeds max_message_size %d: %s", self.body_size, limit, action)
        if action == "reject":
            self.setreply("552", "5.3.4", f"message exceeds the size postveil inspects ({limit} bytes)")
            return Milter.REJECT
        if action == "tempfail":
            self.setreply("452", "4.3.4", "message too large for postveil to inspect now, try again later")
            return Milter.TEMPFAIL
        return Milter.ACCEPT

    def abort(self) -> int:
        self.log.debug("message aborted by the client or Postfix")
        self._finish_message()
        return Milter.CONTINUE

    def close(self) -> int:
        self._finish_message()
        return Milter.CONTINUE
