"""The built-in portal's mail intake: ``postveil portal deliver``.

Postfix's pipe(8) transport runs it once per portal copy, with the message on
standard input. It checks the seal that postveil-milter put on the copy's recipient
headers, stores the message without those headers, and mails each recipient a link.

The exit status follows <sysexits.h>, which pipe(8) reads:

- 0: stored and every recipient notified.
- 75 (EX_TEMPFAIL): anything that may work on a retry (configuration, keys, store,
  relay, audit trail). Postfix keeps the message queued and tries again.
- 77 (EX_NOPERM): no recipient headers, or a seal that is missing, malformed, too
  old or does not match. Mail that lacks the milter's seal will never be accepted.
- 65 (EX_DATAERR): larger than ``portal.max_message_size``, a sealed recipient
  value that is not a single ``local@domain`` address, or an envelope sender with
  control characters.

Every exit other than 0 prints one line that starts with an RFC 3463 status code
(4.x.x or 5.x.x). pipe(8) gives that code precedence over the exit status. It puts
the line in the maillog and, for a bounce, in the delivery status notification. No
line contains any of the message's text.
"""

from __future__ import annotations

import email.errors
import email.policy
import logging
import os
import re
from dataclasses import dataclass
from typing import BinaryIO

from postveil.audit import AuditLog, PortalEvent
from postveil.audit.errors import AuditError
from postveil.config import Config
from postveil.crypto.mime import RawMessage, to_crlf
from postveil.log import MessageLogger
from postveil.portal import mailer
from postveil.portal.seal import SEAL_HEADER, PortalSeal
from postveil.portal.store import PortalError, PortalStore

logger = logging.getLogger("postveil.portal.intake")

EX_OK = os.EX_OK
EX_DATAERR = os.EX_DATAERR
EX_NOPERM = os.EX_NOPERM
EX_TEMPFAIL = os.EX_TEMPFAIL

AUDIT_PROGRAM = "postveil portal deliver"


@dataclass(frozen=True)
class IntakeResult:
    """Exit status and the one line for Postfix (stdout on success, else stderr)."""

    status: int
    line: str


@dataclass(frozen=True)
class PortalCopy:
    """A portal copy split into what the intake checks and what it stores."""

    recipients: tuple[str, ...]
    """Values of the recipient headers, unfolded, in message order."""

    seals: tuple[str, ...]
    stored: bytes
    """The message with CRLF line ends and without the recipient and seal headers."""


class IntakeDeferred(Exception):
    """The intake cannot take the message now, so Postfix should retry (exit 75)."""

    def __init__(self, reason: str, dsn: str = "4.3.0") -> None:
        super().__init__(reason)
        self.reason = reason
        self.dsn = dsn


def deferred(reason: str, dsn: str = "4.3.0") -> IntakeResult:
    return IntakeResult(EX_TEMPFAIL, _one_line(f"{dsn} portal intake: {reason}"))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def read_limited(source: BinaryIO, limit: int) -> bytes | None:
    """Read ``source`` to its end; None when it has more than ``limit`` bytes, in which
    case at most ``limit + 1`` bytes were read."""
    data = source.read(limit + 1)
    return None if len(data) > limit else data


def split_portal_copy(raw: bytes, recipient_header: str) -> PortalCopy:
    """Find the recipient and seal headers of ``raw`` and build the copy to store.

    LF and CRLF line ends are both accepted (pipe(8) delivers LF); the stored copy has
    CRLF, the form the message had in SMTP. Folded header lines are unfolded for the
    values and removed whole from the stored copy.
    """
    canonical = to_crlf(raw)
    message = RawMessage.parse(canonical)
    removed = {recipient_header.lower(), SEAL_HEADER.lower()}
    recipients = tuple(message.values(recipient_header))
    seals = tuple(message.values(SEAL_HEADER))
    kept = b"".join(field.raw for field in message.headers if field.lower_name not in removed)
    header_length = sum(len(field.raw) for field in message.headers)
    # The rest of the input, from the empty line on, is kept byte for byte.
    return PortalCopy(recipients, seals, kept + canonical[header_length:])


_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")

_ADDRESS_CHARACTER = r'[^\s@<>(),;:"\\\[\]\x00-\x1f\x7f-\x9f]'
_ADDRESS_RE = re.compile(f"{_ADDRESS_CHARACTER}+@{_ADDRESS_CHARACTER}+")
"""A plain ``local@domain`` address: one ``@``, no whitespace or control characters,
and none of the characters that separate, quote or comment addresses in a header."""


def is_single_address(value: str) -> bool:
    """Return True when ``value`` is one plain ``local@domain`` address that a To
    header carries unchanged.

    The portal's mail puts the address in its To header, and smtplib takes the
    envelope recipient from that header. Python's email package decodes an encoded
    word in the local part (``=?utf-8?q?kim?=@example.org`` becomes
    ``kim@example.org``, another mailbox) and reads a domain with an empty label as
    no address at all, so such values are rejected.
    """
    if _ADDRESS_RE.fullmatch(value) is None:
        return False
    try:
        parsed = email.policy.default.header_factory("To", value).addresses
    except (ValueError, IndexError, email.errors.HeaderParseError):
        return False
    return len(parsed) == 1 and f"{parsed[0].username}@{parsed[0].domain}" == value


def check_recipients(recipients: tuple[str, ...]) -> str | None:
    """Return why a recipient value is unusable, or None when each is one address.

    The seal vouches only that the milter wrote these values. A value such as
    ``a@b.test, c@d.test`` would put a second address in the notification's To
    header, and an empty or domain-less value would send the link to the relay's
    null or local recipient. Quoted local parts and address literals are rejected
    too, although the milter could pass them on from a lenient SMTP server.
    """
    for number, recipient in enumerate(recipients, start=1):
        if not is_single_address(recipient):
            return f"recipient header {number} of {len(recipients)} is not a single mail address"
    return None


def check_copy(
    copy: PortalCopy, seal: PortalSeal, *, max_age: float, now: float | None = None
) -> str | None:
    """Return why ``copy`` must be rejected, or None when its seal covers its recipients."""
    if not copy.recipients:
        return "no recipient headers"
    if len(copy.seals) > 1:
        return f"{len(copy.seals)} seal headers, expected one"
    value = copy.seals[0] if copy.seals else None
    return seal.check(value, copy.recipients, max_age=max_age, now=now)


class Intake:
    """One run of ``postveil portal deliver`` with a loaded configuration.

    Raises IntakeDeferred from the constructor when a required setting, the seal key
    or the audit key is missing or unusable.
    """

    def __init__(self, config: Config, *, audit: AuditLog | None = None) -> None:
        self.config = config
        self.section = config.portal
        where = config.source
        if self.section.seal_key_file is None:
            raise IntakeDeferred(
                f"portal.seal_key_file is not set in {where}; set it to the seal key that "
                "postveil-milter uses (postveil portal init creates one)",
                "4.3.5",
            )
        if self.section.base_url is None:
            raise IntakeDeferred(
                f"portal.base_url is not set in {where}; set it to the address at which "
                "recipients reach the portal, for example https://secure.example.org",
                "4.3.5",
            )
        try:
            self.seal = PortalSeal.load(self.section.seal_key_file)
        except PortalError as exc:
            raise IntakeDeferred(str(exc), "4.3.5") from exc
        if audit is None:
            try:
                audit = AuditLog(config.audit, program=AUDIT_PROGRAM)
            except AuditError as exc:
                raise IntakeDeferred(f"cannot open the audit trail: {exc}", "4.3.5") from exc
        self.audit = audit

    def deliver(
        self, source: BinaryIO, *, sender: str, queue_id: str = "", now: float | None = None
    ) -> IntakeResult:
        """Check, store and announce the message read from ``source``."""
        log = MessageLogger(logger, queue_id or "-")
        try:
            result = self._deliver(source, sender, queue_id, log, now)
        except IntakeDeferred as exc:
            log.error("deferred: %s", exc.reason)
            return deferred(exc.reason, exc.dsn)
        return result

    def _deliver(
        self,
        source: BinaryIO,
        sender: str,
        queue_id: str,
        log: MessageLogger,
        now: float | None,
    ) -> IntakeResult:
        limit = self.section.max_message_size
        try:
            raw = read_limited(source, limit)
        except OSError as exc:
            raise IntakeDeferred(f"cannot read the message: {exc.strerror}") from exc
        if raw is None:
            reason = f"message larger than portal.max_message_size ({limit} bytes)"
            return self._reject(EX_DATAERR, "5.3.4", reason, queue_id, log)

        copy = split_portal_copy(raw, self.section.recipient_header)
        problem = check_copy(copy, self.seal, max_age=self.section.seal_max_age, now=now)
        if problem is not None:
            return self._reject(EX_NOPERM, "5.7.1", problem, queue_id, log)
        problem = check_recipients(copy.recipients)
        if problem is not None:
            return self._reject(EX_DATAERR, "5.1.3", problem, queue_id, log)
        if _CONTROL_RE.search(sender):
            # The notification's Subject names the sender, and a header value with a
            # line break cannot be written, so every retry would fail the same way.
            reason = "envelope sender contains control characters"
            return self._reject(EX_DATAERR, "5.1.7", reason, queue_id, log)

        try:
            store = PortalStore.open(
                self.section.store_directory,
                self.section.key_file,
                self.section.previous_key_files,
            )
        except PortalError as exc:
            raise IntakeDeferred(str(exc)) from exc
        try:
            message_id = self._store_and_notify(store, copy, sender, queue_id, now)
        finally:
            store.close()
        count = len(copy.recipients)
        log.info("stored portal message %s for %d recipient(s)", message_id, count)
        return IntakeResult(
            EX_OK, f"stored as portal message {message_id} for {count} recipient(s)"
        )

    def _store_and_notify(
        self,
        store: PortalStore,
        copy: PortalCopy,
        sender: str,
        queue_id: str,
        now: float | None,
    ) -> str:
        """Deposit the copy, record it and mail each recipient their link.

        When a notification or an audit record fails, the deposit is withdrawn, so the
        retry that follows stores the message again instead of leaving two copies.
        Recipients notified before the failure are notified again on the retry, and
        only the newer link works.
        """
        section = self.section
        try:
            deposit = store.deposit(
                copy.stored,
                sender=sender,
                recipients=copy.recipients,
                retention=section.retention,
                queue_id=queue_id,
                now=now,
            )
        except PortalError as exc:
            raise IntakeDeferred(str(exc)) from exc
        try:
            for recipient, _token in deposit.tokens:
                self._record("stored", deposit.message_id, recipient, queue_id)
            for recipient, token in deposit.tokens:
                notice = mailer.notification(
                    section,
                    recipient=recipient,
                    sender=sender,
                    link=f"{section.base_url}/m/{token}",
                    expires=deposit.expires,
                )
                mailer.send(section, notice)
                self._record("notified", deposit.message_id, recipient, queue_id)
        except (PortalError, AuditError, ValueError) as exc:
            # ValueError: EmailMessage rejects a header value it cannot write.
            if isinstance(exc, AuditError):
                reason = f"cannot write the audit record: {exc}"
            else:
                reason = str(exc)
            try:
                store.withdraw(deposit.message_id)
            except PortalError as withdraw_error:
                reason += (
                    f"; withdrawing portal message {deposit.message_id} also failed "
                    f"({withdraw_error}), so it stays until portal.retention ends"
                )
                raise IntakeDeferred(reason) from exc
            self._record_withdrawal(deposit.message_id, deposit.tokens, queue_id, reason)
            raise IntakeDeferred(reason) from exc
        return deposit.message_id

    def _record_withdrawal(
        self,
        message_id: str,
        tokens: tuple[tuple[str, str], ...],
        queue_id: str,
        reason: str,
    ) -> None:
        """Record that a stored message was withdrawn, for each recipient.

        Postfix retries the message whether or not these records are written, so a
        failure here is ignored. When the audit trail itself failed, the trail then
        shows ``stored`` without ``withdrawn``.
        """
        try:
            for recipient, _token in tokens:
                self._record("withdrawn", message_id, recipient, queue_id, reason)
        except AuditError:
            pass

    def _reject(
        self, status: int, dsn: str, reason: str, queue_id: str, log: MessageLogger
    ) -> IntakeResult:
        try:
            self._record("refused", "", "", queue_id, reason)
        except AuditError as exc:
            raise IntakeDeferred(
                f"cannot write the audit record of a rejected message: {exc}"
            ) from exc
        log.warning("rejected: %s", reason)
        return IntakeResult(
            status, _one_line(f"{dsn} portal intake rejected the message: {reason}")
        )

    def _record(
        self, event: str, message_id: str, recipient: str, queue_id: str, reason: str = ""
    ) -> None:
        """Append a portal record; raises AuditError (InvalidRecordError included)."""
        self.audit.append(PortalEvent(event, message_id, recipient, queue_id, reason))
