"""Pickup notices: with ``portal.notify_sender: first_open``, the envelope sender
learns when each recipient first opened the message.

The notice is sent in the background, so a relay that fails or hangs never holds up
the recipient's page. It names the recipient, the time, and the original's Message-ID
and Date, never its subject or text (:func:`postveil.portal.mailer.pickup_notice`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from email.message import EmailMessage

from postveil.config.portal import PortalSection
from postveil.portal import mailer
from postveil.portal.intake import is_single_address
from postveil.portal.store import Pickup, PortalError

log = logging.getLogger("postveil.portal")

NULL_SENDERS = frozenset({"", "<>", "mailer-daemon"})
"""Envelope senders that get no pickup notice, in lower case. Postfix's pipe(8)
passes the null sender as MAILER-DAEMON by default."""

NOTICE_STOP_WAIT = 3.0
"""Seconds a stop waits for pickup notices still being sent. It comes after the
wait for requests in progress (STOP_GRACE in daemon.py, 10 s), and both fit in the
systemd unit's 15 s."""


class SenderNotices:
    """Pickup notices of one portal daemon, and the tasks still sending them.

    ``claim(token)`` records in the store that the pickup's notice is being sent and
    returns False when it was recorded before. ``send(message)`` sends one message
    (PortalError or TimeoutError on failure). ``audit(event, pickup, reason)`` writes
    a portal record and logs its own failures.
    """

    def __init__(
        self,
        section: PortalSection,
        *,
        claim: Callable[[str], Awaitable[bool]],
        send: Callable[[EmailMessage], Awaitable[None]],
        audit: Callable[[str, Pickup, str], Awaitable[bool]],
    ) -> None:
        self.section = section
        self._claim = claim
        self._send = send
        self._audit = audit
        self._sending: dict[asyncio.Task[None], Pickup] = {}

    def skip_reason(self, sender: str) -> str | None:
        """Return why ``sender`` gets no pickup notice, or None when it gets one."""
        section = self.section
        if sender.lower() in NULL_SENDERS:
            return "null sender"
        own = {section.sender_address.lower()}
        if section.intake_address is not None:
            own.add(section.intake_address.lower())
        if sender.lower() in own:
            return "the sender is the portal's own address"
        if not is_single_address(sender):
            return "the sender is not a single mail address"
        return None

    async def start(self, token: str, pickup: Pickup, raw: bytes) -> None:
        """Start sending the notice for a read of ``pickup`` that found it unopened.

        Of several concurrent first reads, the one whose claim the store accepts
        sends. The claim comes before the send, so a notice goes at most once: one
        that fails is recorded and not tried again. Never raises, because the
        recipient's read goes on whatever happens here.
        """
        skip = self.skip_reason(pickup.sender)
        if skip is not None:
            log.info(
                "message %s: no pickup notice for %s: %s", pickup.message_id, pickup.recipient, skip
            )
            return
        try:
            claimed = await self._claim(token)
        except PortalError as exc:
            log.error(
                "message %s: no pickup notice for %s, because the claim was not stored: %s",
                pickup.message_id,
                pickup.recipient,
                exc,
            )
            await self._audit("sender_notice_failed", pickup, f"claim not stored: {exc}")
            return
        if not claimed:
            return
        message_id, date = mailer.original_identity(raw)
        task = asyncio.create_task(self._deliver(pickup, time.time(), message_id, date))
        self._sending[task] = pickup
        task.add_done_callback(self._sending.pop)

    async def _deliver(
        self, pickup: Pickup, opened: float, original_message_id: str, original_date: str
    ) -> None:
        try:
            notice = mailer.pickup_notice(
                self.section,
                sender=pickup.sender,
                recipient=pickup.recipient,
                opened=opened,
                stored=pickup.created,
                original_message_id=original_message_id,
                original_date=original_date,
            )
            await self._send(notice)
        except Exception as exc:  # noqa: BLE001 - the task's boundary: every failure is recorded
            if isinstance(exc, PortalError):
                cause = str(exc)
            elif isinstance(exc, TimeoutError):
                cause = "timed out"
            else:
                # The class only: the text of an error such as EmailMessage's
                # ValueError for an unwritable header may quote the value.
                cause = f"failed with {type(exc).__name__}"
            log.error(
                "message %s: cannot send the pickup notice for %s to the sender: %s",
                pickup.message_id,
                pickup.recipient,
                cause,
            )
            await self._audit("sender_notice_failed", pickup, cause)
            return
        log.info(
            "message %s: sent the pickup notice for %s to the sender",
            pickup.message_id,
            pickup.recipient,
        )
        await self._audit("sender_notified", pickup, "")

    async def finish(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for notices being sent, then cancel the rest
        and record them as failed. A cancelled notice may still reach the relay,
        because the mail thread cannot be stopped."""
        if not self._sending:
            return
        _, pending = await asyncio.wait(set(self._sending), timeout=timeout)
        # Cancel every late notice before the first await below. Otherwise one could
        # end while another is recorded, leave self._sending, and raise KeyError here,
        # which would skip the rest of the daemon's cleanup.
        stopped = {task: self._sending[task] for task in pending}
        for task in stopped:
            task.cancel()
        await asyncio.gather(*stopped, return_exceptions=True)
        for task, pickup in stopped.items():
            if not task.cancelled():
                # It ended in the moment of the cancellation and recorded its outcome.
                continue
            log.warning(
                "message %s: stopping before the relay accepted the pickup notice for %s",
                pickup.message_id,
                pickup.recipient,
            )
            await self._audit(
                "sender_notice_failed", pickup, "postveil-portal stopped while sending it"
            )
