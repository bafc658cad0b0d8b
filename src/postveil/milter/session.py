"""Per-connection milter state and the callbacks Postfix drives.

The callbacks only gather facts (envelope, headers, body) and translate a verdict
into a milter reply. Every error caught here becomes a temporary failure with the
queue id and the reason logged: a message that needed protection is never passed
on unprotected because postveil failed.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import Milter

from postveil.audit import AuditWriteError, MessageDecision
from postveil.audit import RecipientDecision as AuditRecipient
from postveil.config import Config
from postveil.crypto.mime import HeaderEdits, HeaderField
from postveil.crypto.pipeline import Outcome
from postveil.crypto.render import MessageVersion
from postveil.errors import TemporaryFailure
from postveil.log import MessageLogger
from postveil.milter.processor import MessageProcessor
from postveil.milter.reinject import ReinjectionFailure, reinject
from postveil.milter.reinjected import (
    NOTICE_KIND,
    ReinjectStore,
    ReinjectStoreError,
    copy_key,
    retry_digest,
)
from postveil.routing.plan import PlanAction

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


@dataclass(frozen=True)
class PendingCopy:
    """A version of the message, or the notice to the sender, to re-inject."""

    kind: str
    """The version kind (``pgp``, ``portal`` and so on) or ``notice``."""

    description: str
    """Name of the copy in log lines, without recipients or content."""

    message: bytes
    sender: str
    recipients: tuple[str, ...]
    key: str | None = None
    """Key in milter.reinject_store; None without a store."""


REPLACE_BODY_CHUNK = 65536

MACROS: dict[int, tuple[str, ...]] = {
    Milter.M_CONNECT: (),
    Milter.M_HELO: (),
    Milter.M_ENVFROM: ("i",),
    Milter.M_ENVRCPT: ("i",),
    Milter.M_DATA: (),
    Milter.M_EOH: (),
    Milter.M_EOM: ("i",),
}
"""Macros postveil requests from Postfix, by protocol stage: only the queue id. Without
this list Postfix expands and sends about twenty per message (its milter_*_macros
defaults), also for the steps that QUIET_STEPS skips."""

QUIET_STEPS = (
    Milter.P_NOCONNECT
    | Milter.P_NOHELO
    | Milter.P_NODATA
    | Milter.P_NR_MAIL
    | Milter.P_NR_RCPT
    | Milter.P_NR_HDR
    | Milter.P_NR_BODY
)
"""Protocol steps skipped, or sent without waiting for a reply, on a unix socket.

Only end of message then needs a round trip. Because Postfix does not wait for a reply
before then, a failure in an earlier step is kept and given at end of message. Not
used on TCP sockets, because there a command sent with no reply due can sit in
Postfix's Nagle buffer until the milter's delayed ACK (about 40 ms on Linux loopback,
measured in docs/benchmarks.md)."""

_NO_REPLY_FLAGS = {
    "MAIL FROM": Milter.P_NR_MAIL,
    "RCPT TO": Milter.P_NR_RCPT,
    "header": Milter.P_NR_HDR,
    "body": Milter.P_NR_BODY,
}
"""Per step, the protocol flag that, once negotiated, means Postfix waits for no reply."""

_TEMPFAIL_REPLY = ("451", "4.3.0", "postveil could not process this message, try again later")
"""The generic temporary failure reply; the reason goes to the log only."""

_UNRECORDED_REPLY = ("550", "5.3.0", "postveil could not record its decision, so the message was not sent")
"""The reply when the audit record cannot be written and audit.on_write_failure is reject."""


@Milter.header_leading_space
class PostveilMilter(Milter.Base):
    """One instance per SMTP connection that Postfix hands to the milter.

    Header values arrive with their leading white space (``P_HDR_LEADSPC``), so the
    message handed to detection and encryption is byte for byte what the sender wrote.
    """

    def __init__(
        self, get_processor: Callable[[], MessageProcessor], in_flight: InFlight, *, quiet: bool = False
    ) -> None:
        self._get_processor = get_processor
        self._in_flight = in_flight
        self._quiet = quiet
        self._deferred_reply: tuple[str, str, str] | None = None
        self._deferred_reason = ""
        self._deferred_cause = ""
        self.connection_id = f"conn{next(_connection_ids)}"
        self.log = MessageLogger(log, self.connection_id)
        self.processor: MessageProcessor = get_processor()
        self.config: Config = self.processor.config
        self._reset_message()

    # -- helpers ----------------------------------------------------------------

    def _reset_message(self) -> None:
        self.queue_id: str | None = None
        self.sender: str | None = None
        self.mail_time = 0.0
        """When MAIL FROM arrived (epoch seconds), about when Postfix took its arrival time."""
        self.recipients: list[str] = []
        self.headers: list[tuple[str, bytes]] = []
        self.body_spool: tempfile.SpooledTemporaryFile[bytes] | None = None
        self.body_size = 0
        self.oversize = False
        self._counted = False
        self._deadline = math.inf

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
        return self._defer(*_TEMPFAIL_REPLY, reason)

    def _defer(self, code: str, xcode: str, text: str, reason: str, cause: str = "") -> int:
        """Set a temporary failure reply, kept for end of message if Postfix is not
        waiting for a reply to the current step. ``cause`` is the audit trail's text
        for it, which names a step and an error class only; ``reason`` may say more."""
        self._deferred_reply = (code, xcode, text)
        self._deferred_reason = reason
        self._deferred_cause = cause or reason
        self.setreply(code, xcode, text)
        return Milter.TEMPFAIL

    def _drop_content(self) -> None:
        """Free the headers and body of a message that will be deferred, but keep its
        envelope and queue id for the deferral's audit record."""
        if self.body_spool is not None:
            self.body_spool.close()
            self.body_spool = None
        self.headers = []
        self.body_size = 0

    def _quiet_step(self, step: str, flag: int, callback: Callable[[], int]) -> int:
        """Run a step that may have been negotiated without a reply (``flag``).

        After a failure in such a step the message is only waited out: later steps
        only collect recipients, and end of message gives the kept temporary failure.
        """
        if self._deferred_reply is not None and self._protocol & flag:
            return Milter.NOREPLY
        result = self._guard(step, callback)
        if not self._protocol & flag:
            return result
        if result != Milter.CONTINUE and self._deferred_reply is None:
            self.log.error("%s returned %s with no reply due: deferring the message", step, result)
            self._defer(*_TEMPFAIL_REPLY, f"{step} returned {result}", f"{step} returned an unexpected reply")
            self._drop_content()
        return Milter.NOREPLY

    def negotiate(self, opts: list[int]) -> int:
        offered = opts[1]
        result: int = super().negotiate(opts)
        if result != Milter.CONTINUE:
            return result
        if self._quiet:
            opts[1] |= offered & QUIET_STEPS
            self._protocol = opts[1]
        if self._actions & Milter.SETSYMLIST:
            for stage, macros in MACROS.items():
                # NOTE: Milter.Base.setsymlist (pymilter 1.0.5) passes bytes where its
                # C module takes str and raises TypeError, so the context is called directly.
                self._ctx.setsymlist(stage, " ".join(macros))
        return result

    def _guard(self, step: str, callback: Callable[[], int]) -> int:
        """Run one step's callback and turn any failure into a temporary failure.

        After a failure before end of message the envelope is kept, so the deferral's
        audit record names the queue id and the recipients. When a reply is due, a
        failed RCPT TO fails that recipient and end of message fails the whole message.
        A failed header or body step fails the message and is recorded at once, because
        Postfix calls no end of message after it.
        """
        try:
            return callback()
        except TemporaryFailure as exc:
            if isinstance(exc, AuditWriteError) and self.config.audit.on_write_failure == "reject":
                # No record can be written, so none is tried for the rejection either.
                self.log.error("%s: %s; rejecting the message (audit.on_write_failure)", step, exc)
                self.setreply(*_UNRECORDED_REPLY)
                self._finish_message()
                return Milter.REJECT
            result = self._tempfail(f"{step}: {exc}")
            cause = type(exc).__name__
        except Exception as exc:  # the boundary: every failure becomes a tempfail
            self.log.exception("%s failed", step)
            result = self._tempfail(f"{step} failed: {type(exc).__name__}")
            cause = type(exc).__name__
        reply_due = step not in _NO_REPLY_FLAGS or not self._protocol & _NO_REPLY_FLAGS[step]
        if reply_due and step in ("header", "body", "end of message"):
            self._record_tempfail(step, cause)
            self._finish_message()
        elif reply_due and step == "MAIL FROM":
            # Postfix rejects the MAIL FROM command, so no transaction follows.
            self._finish_message()
        else:
            self._deferred_cause = f"{step} failed: {cause}"
            self._drop_content()
        return result

    def _record_tempfail(self, step: str, cause: str) -> None:
        """Append a ``tempfail`` record for a message deferred at ``step`` once it
        has a queue id.

        The trail then shows every deferral, not only the decision of the later retry.
        The cause names the step and the error's class only: an error's text may quote
        a path or a tool's output. When the trail itself cannot be written (possibly
        the cause of the failure), that is logged and the message is still deferred.
        """
        if not self.queue_id:
            # A failure before the first recipient: Postfix has not opened a queue
            # file, so no message exists to record. The log line names the connection.
            return
        reason = f"temporary failure at {step}: {cause}"
        try:
            self._record_unrouted("tempfail", "tempfail", reason)
        except Exception as exc:  # noqa: BLE001 - the message is deferred either way
            self.log.error("cannot write the temporary failure to the audit trail: %s", exc)

    def _message_id(self) -> str | None:
        """Return the first Message-ID received, unfolded as in the records of routed
        messages, so a deferral's record and its retry's share it; None before the headers."""
        for name, value in self.headers:
            if name.lower() == "message-id":
                return HeaderField(name, name.encode("utf-8", "surrogateescape") + b":" + value + b"\r\n").value
        return None

    def _record_unrouted(self, action: str, method: str, reason: str, tags: tuple[str, ...] = ()) -> None:
        """Append a record that gives every recipient ``method`` and ``reason``, for a
        message replied to without routing. Raises what the audit trail raises."""
        record = MessageDecision(
            queue_id=self.queue_id or self.connection_id,
            message_id=self._message_id(),
            sender=(self.sender or "").strip(),
            recipients=[AuditRecipient(bare_address(recipient), method, reason) for recipient in self.recipients],
            config_version=self.config.version,
            tags=tags,
            action=action,
        )
        self.processor.audit.record_message(record)

    # -- callbacks ---------------------------------------------------------------

    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        self.log.debug("connect from %s", hostname)
        return Milter.CONTINUE

    # HELO and DATA are negotiated although postveil needs neither. Postfix (3.7) still
    # sends the macros of a skipped command, and no reply is due for them. On an inet
    # socket the next command can then wait in Postfix's Nagle buffer for the milter's
    # delayed ACK: 42-45 ms a message on Linux loopback, measured at DATA. The reply to
    # a command carries the ACK back at once. Measurements are in docs/benchmarks.md.

    def hello(self, hostname: str) -> int:
        return Milter.CONTINUE

    def data(self) -> int:
        return Milter.CONTINUE

    def envfrom(self, mailfrom: str, *params: str) -> int:
        # A new message: nothing kept from an earlier one applies.
        self._deferred_reply = None
        return self._quiet_step("MAIL FROM", Milter.P_NR_MAIL, lambda: self._envfrom(mailfrom))

    def _envfrom(self, mailfrom: str) -> int:
        self._finish_message()
        if self._in_flight.stopping:
            self.log.info("shutting down: new message deferred")
            return self._defer("421", "4.3.2", "postveil is restarting, try again later", "shutting down")
        self.processor = self._get_processor()
        self.config = self.processor.config
        self._in_flight.enter()
        self._counted = True
        self.sender = bare_address(mailfrom)
        self.mail_time = time.time()
        queue_id = self.getsymval("i")
        if queue_id:
            self.queue_id = queue_id
            self.log.set_id(queue_id)
        return Milter.CONTINUE

    def envrcpt(self, recipient: str, *params: str) -> int:
        if self._deferred_reply is not None:
            # The message will be deferred at end of message. Its recipients are still
            # collected, because the deferral's audit record names them.
            self._collect_recipient(recipient)
            return Milter.NOREPLY if self._protocol & Milter.P_NR_RCPT else Milter.CONTINUE
        return self._quiet_step("RCPT TO", Milter.P_NR_RCPT, lambda: self._envrcpt(recipient))

    def _collect_recipient(self, recipient: str) -> None:
        # With Postfix's default smtpd_delay_open_until_valid_rcpt = yes the queue id
        # exists only from the first valid RCPT TO on.
        if self.queue_id is None:
            queue_id = self.getsymval("i")
            if queue_id:
                self.queue_id = queue_id
                self.log.set_id(queue_id)
        self.recipients.append(recipient)

    def _envrcpt(self, recipient: str) -> int:
        self._collect_recipient(recipient)
        return Milter.CONTINUE

    @Milter.decode("bytes")
    def header(self, name: str, value: bytes) -> int:
        if self._deferred_reply is not None and not self._protocol & Milter.P_NR_HDR:
            return Milter.CONTINUE
        return self._quiet_step("header", Milter.P_NR_HDR, lambda: self._header(name, value))

    def _header(self, name: str, value: bytes) -> int:
        self.headers.append((name, value))
        return Milter.CONTINUE

    def body(self, chunk: bytes) -> int:
        if self._deferred_reply is not None and not self._protocol & Milter.P_NR_BODY:
            return Milter.CONTINUE
        return self._quiet_step("body", Milter.P_NR_BODY, lambda: self._body(chunk))

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
        if self._deferred_reply is not None:
            # An earlier step failed while Postfix was not waiting for its reply. That
            # step's log line may carry only the connection id, so this one repeats the
            # reason with the queue id.
            queue_id = self.getsymval("i")
            if queue_id:
                self.queue_id = queue_id
                self.log.set_id(queue_id)
            self.log.error("temporary failure at end of message: %s", self._deferred_reason)
            self.setreply(*self._deferred_reply)
            self._deferred_reply = None
            self._record_tempfail("end of message", self._deferred_cause)
            self._finish_message()
            return Milter.TEMPFAIL
        return self._guard("end of message", self._eom)

    def _eom(self) -> int:
        # Postfix waits for the reply from here on, for at most milter_content_timeout.
        self._deadline = time.monotonic() + self.config.milter.reinject_deadline
        queue_id = self.getsymval("i")
        if queue_id and queue_id != self.queue_id:
            self.queue_id = queue_id
            self.log.set_id(queue_id)
        self.log.debug("end of message: %d body bytes, %d recipient(s)", self.body_size, len(self.recipients))
        if self.oversize:
            result = self._oversize()
        else:
            result = self._route()
        self._finish_message()
        return result

    def _route(self) -> int:
        """Decide per recipient, record the decision, send the versions, reply."""
        raw, body_offset = self._assemble()
        addresses = [bare_address(r) for r in self.recipients]
        outcome = self.processor.decide(
            raw, queue_id=self.queue_id or self.connection_id, sender=self.sender or "", recipients=addresses
        )
        self._log_decisions(outcome)
        if outcome.plan.action is PlanAction.REJECT:
            self.processor.record(outcome, "reject")
            code, xcode, text = outcome.plan.reject_reply()
            self.setreply(code, xcode, text)
            return Milter.REJECT

        in_place = outcome.versions[0] if outcome.versions else None
        if in_place is not None and not self._can_remove_others(in_place.envelope_recipients):
            # The original transaction is discarded and every version re-injected.
            in_place = None
        re_injected = outcome.versions[1:] if in_place is not None else outcome.versions

        copies = self._copies(re_injected, outcome.notice, memoryview(raw)[body_offset:])
        store = self.processor.reinject_store
        keys = [copy.key for copy in copies if copy.key is not None]
        # Raises ReinjectStoreError before anything leaves, so a store that cannot be
        # read defers the message without sending a copy.
        earlier = store.queued(keys) if store is not None else {}
        skipped_kinds = sorted({copy.kind for copy in copies if copy.key in earlier})

        # No delivery without a record: the audit write comes first, and its failure
        # (AuditWriteError, a TemporaryFailure) defers the message.
        action = "accept" if in_place is not None else "discard"
        self.processor.record(outcome, action, [f"skipped_copy:{kind}" for kind in skipped_kinds])

        queued: list[str] = []
        for copy in copies:
            if copy.key in earlier:
                self.log.info(
                    "%s for %d recipient(s) already queued as %s by an earlier attempt: not re-injected again",
                    copy.description,
                    len(copy.recipients),
                    earlier[copy.key],
                )
                continue
            try:
                queued.append(self._send_copy(copy))
            except ReinjectionFailure as exc:
                raise ReinjectionFailure(f"{copy.description} not re-injected: {exc}; {self._retry_note(queued)}") from exc

        if in_place is None:
            if outcome.versions:
                self.log.info("every version re-injected: original message discarded")
            else:
                self.log.info("no recipient left: message discarded")
            result = Milter.DISCARD
        else:
            self._apply_in_place(in_place.edits, in_place.body, in_place.envelope_recipients)
            result = Milter.ACCEPT
        if store is not None and keys:
            self._forget_copies(store, keys)
        return result

    def _copies(self, versions: Sequence[MessageVersion], notice: bytes | None, body: memoryview) -> list[PendingCopy]:
        """List the copies to re-inject: ``versions``, then the notice to the sender.

        Each gets its store key when milter.reinject_store is set.
        """
        pending = [
            PendingCopy(
                version.group.kind.value,
                f"{version.group.kind.value} version",
                version.raw,
                self.sender or "",
                version.envelope_recipients,
            )
            for version in versions
        ]
        if notice is not None and self.sender:
            pending.append(PendingCopy(NOTICE_KIND, "notice of removed recipients", notice, "", (self.sender,)))
        if not pending or self.processor.reinject_store is None:
            return pending
        digest = retry_digest(self.headers, body, self.queue_id, (self.mail_time, time.time()))
        return [
            replace(copy, key=copy_key(digest, self.sender or "", copy.kind, copy.recipients)) for copy in pending
        ]

    def _retry_note(self, queued: list[str]) -> str:
        """Tell the administrator what a retry does with the copies queued so far and
        where to look for the cause of a failed re-injection."""
        host, port = self.config.milter.reinject_address
        if not queued:
            done = "no copy was queued by this attempt"
        elif self.processor.reinject_store is not None:
            done = f"the retry skips the copies queued as {', '.join(queued)}"
        else:
            done = f"the retry sends the copies queued as {', '.join(queued)} again (milter.reinject_store is null)"
        return (
            f"{done}; check the re-injection listener at {host}:{port} (milter.reinject) and its lines in "
            "Postfix's log, because a 5xx reply from it defers every retry"
        )

    def _send_copy(self, copy: PendingCopy) -> str:
        """Re-inject one copy, store its key and return the copy's queue id.

        A key that cannot be stored is logged and the message goes on, because the
        copy is queued either way: only a retry of this message would send it again.
        """
        section = self.config.milter
        new_id = reinject(
            copy.message,
            copy.sender,
            copy.recipients,
            address=section.reinject_address,
            timeout=section.reinject_timeout,
            deadline=self._deadline,
        )
        self.log.info("re-injected %s for %d recipient(s) as %s", copy.description, len(copy.recipients), new_id)
        store = self.processor.reinject_store
        if store is None or copy.key is None:
            return new_id
        try:
            store.add(copy.key, new_id)
        except ReinjectStoreError as exc:
            self.log.error("%s; if this message is retried, %s is sent again", exc, new_id)
        return new_id

    def _forget_copies(self, store: ReinjectStore, keys: list[str]) -> None:
        """Remove the message's keys before the final reply, unless it is too late.

        After milter.reinject_deadline Postfix may have given up on the reply already,
        so the message is deferred and its keys kept for the retry. A failure to remove
        them is logged and the reply is sent as planned. The keys expire, and until then
        they match only a message with the same content, sender and recipients.
        """
        if time.monotonic() > self._deadline:
            raise TemporaryFailure(
                "milter.reinject_deadline passed before the reply; the copies already queued are skipped on the retry"
            )
        try:
            store.forget(keys)
        except ReinjectStoreError as exc:
            self.log.error("%s; the keys of this message stay until they expire", exc)

    def _can_remove_others(self, kept: tuple[str, ...]) -> bool:
        """Return whether smfi_delrcpt can remove every recipient outside ``kept``.

        Postfix's smtpd passes each recipient as the client wrote it, in angle brackets
        unless the client left them out, and smfi_delrcpt then matches it (see
        bare_address for a source route). Postfix (3.7) passes the recipients of mail
        from sendmail(1) without brackets and after its address rewriting: a domain
        added, a source route dropped, canonical_maps applied. smfi_delrcpt compares
        with the address as submitted, and a recipient it misses receives the kept
        version. So when a recipient without brackets must leave, the milter
        re-injects every version instead.
        """
        wanted = {address.lower() for address in kept}
        for recipient in self.recipients:
            if bare_address(recipient).lower() not in wanted and not recipient.lstrip().startswith("<"):
                return False
        return True

    def _assemble(self) -> tuple[bytes, int]:
        """Rebuild the message as received (header fields, empty line, body) and return
        it with the offset of its body."""
        parts = []
        for name, value in self.headers:
            folded = value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            parts.append(name.encode("utf-8", "surrogateescape") + b":" + folded + b"\r\n")
        parts.append(b"\r\n")
        body_offset = sum(len(part) for part in parts)
        if self.body_spool is not None:
            self.body_spool.seek(0)
            parts.append(self.body_spool.read())
        return b"".join(parts), body_offset

    def _apply_in_place(self, edits: HeaderEdits, body: bytes | None, recipients: tuple[str, ...]) -> None:
        """Change the original transaction into the first group's version."""
        self._apply_header_edits(edits)
        if body is not None:
            for start in range(0, len(body), REPLACE_BODY_CHUNK):
                self.replacebody(body[start : start + REPLACE_BODY_CHUNK])
        self._set_recipients(recipients)

    def _apply_header_edits(self, edits: HeaderEdits) -> None:
        """Translate remove, replace and add edits into libmilter header calls.

        libmilter addresses a header by name and 1-based index among headers of that
        name, so occurrences are deleted from the last one down.
        """
        if not (edits.remove or edits.replace or edits.add):
            # Most clean mail has no trigger header, Bcc or Subject tag to change.
            return
        counts: dict[str, int] = {}
        spelling: dict[str, str] = {}
        for name, _ in self.headers:
            counts[name.lower()] = counts.get(name.lower(), 0) + 1
            spelling.setdefault(name.lower(), name)

        for name in edits.remove:
            for index in range(counts.get(name.lower(), 0), 0, -1):
                self.chgheader(spelling.get(name.lower(), name), index, None)
            counts[name.lower()] = 0

        for name, value in edits.replace:
            occurrences = counts.get(name.lower(), 0)
            for index in range(occurrences, 1, -1):
                self.chgheader(spelling.get(name.lower(), name), index, None)
            if occurrences:
                self.chgheader(spelling.get(name.lower(), name), 1, milter_header_value(value))
            else:
                self.addheader(name, milter_header_value(value))

        for name, value in edits.add:
            self.addheader(name, milter_header_value(value))

    def _set_recipients(self, recipients: tuple[str, ...]) -> None:
        """Make ``recipients`` the transaction's envelope recipients (case-insensitive).

        Call it only when _can_remove_others accepts the recipients, because Postfix
        does not report a smfi_delrcpt that matched nothing.
        """
        wanted = {address.lower() for address in recipients}
        already = set()
        for recipient in self.recipients:
            address = bare_address(recipient)
            if address.lower() in wanted:
                already.add(address.lower())
            else:
                # Postfix deletes only a recipient whose stored address equals this one
                # exactly (case included), and it stores none with a source route.
                self.delrcpt(f"<{address}>")
        for address in recipients:
            if address.lower() not in already:
                self.addrcpt(f"<{address}>")

    def _log_decisions(self, outcome: Outcome) -> None:
        # The message's class, action, detections and tags are in the audit summary
        # line that follows (postveil.audit), so only the per-recipient part is here.
        record = outcome.record
        if record.encryption_check != "none" and not record.sender_encrypted:
            self.log.info("labelled as encrypted but not counted as such: %s", record.encryption_reason)
        for item in record.recipients:
            self.log.info("rcpt=<%s> method=%s reason=%s", item.recipient, item.method or "none", item.reason)

    def _oversize(self) -> int:
        """Reply to a message over ``milter.max_message_size`` as ``oversize_action`` sets,
        with an audit record. An accepted message goes out uninspected, so it is
        accepted only once its record is written."""
        action = self.config.milter.oversize_action
        limit = self.config.milter.max_message_size
        self.log.warning("message body of %d bytes exceeds max_message_size %d: %s", self.body_size, limit, action)
        reason = f"not inspected: the body of {self.body_size} bytes exceeds milter.max_message_size ({limit})"
        tags = ("size:over_limit",)
        if action == "accept":
            # No delivery without a record: a failed write defers the message
            # (AuditWriteError is a TemporaryFailure, which _guard turns into the reply).
            self._record_unrouted("accept", "uninspected", reason, tags)
            return Milter.ACCEPT
        try:
            if action == "reject":
                self._record_unrouted("reject", "reject", reason, tags)
            else:
                self._record_unrouted("tempfail", "tempfail", reason, tags)
        except Exception as exc:  # noqa: BLE001 - the reply below stands either way
            self.log.error("cannot write the %s of an oversize message to the audit trail: %s", action, exc)
        if action == "reject":
            self.setreply("552", "5.3.4", f"message exceeds the size postveil inspects ({limit} bytes)")
            return Milter.REJECT
        self.setreply("452", "4.3.4", "message too large for postveil to inspect now, try again later")
        return Milter.TEMPFAIL

    def abort(self) -> int:
        self.log.debug("message aborted by the client or Postfix")
        self._deferred_reply = None
        self._finish_message()
        return Milter.CONTINUE

    def close(self) -> int:
        self._finish_message()
        return Milter.CONTINUE


_SOURCE_ROUTE_RE = re.compile(r"@(?:\[[^\]]*\]|[^,:\[\]]*)(?:,@(?:\[[^\]]*\]|[^,:\[\]]*))*:")
"""An RFC 5321 source route such as ``@relay.example,@[192.0.2.1]:``. It ends at the
first colon outside a domain literal."""


def bare_address(address: str) -> str:
    """Return an envelope address as Postfix stores and delivers it: without the angle
    brackets and without a source route.

    Postfix's smtpd (3.7) drops a source route (``<@relay.example:bob@example.net>``)
    before it stores the address, but passes the milter the address as written. The
    route's host is not where the mail goes, and smfi_delrcpt matches only the stored
    form, so the route must go before routing and before the recipient is removed.
    """
    bare = address.strip().strip("<>")
    route = _SOURCE_ROUTE_RE.match(bare)
    return bare[route.end() :] if route else bare


def milter_header_value(value: str) -> str:
    """Format a header value for libmilter: leading space (P_HDR_LEADSPC), LF folding."""
    return " " + value.replace("\r\n", "\n")
