"""Deleting messages at the end of ``portal.retention`` or on an admin's request, each
after its audit records."""

from __future__ import annotations

import time

from postveil.audit import AuditLog, PortalEvent
from postveil.portal.store import PortalStore


def purge_expired(store: PortalStore, audit: AuditLog, now: float | None = None) -> int:
    """Record an ``expired`` event per recipient of each expired message, then delete
    those messages and expired sessions. Returns the number of messages deleted.

    The records come first, so no message is deleted without one: when the audit trail
    cannot be written, AuditError propagates and nothing is deleted until a later call.
    """
    now = time.time() if now is None else now
    for message in store.expired(now):
        for recipient in message.recipients:
            audit.append(PortalEvent("expired", message.message_id, recipient, message.queue_id))
    return store.purge(now)


def revoke(
    store: PortalStore, audit: AuditLog, message_id: str, reason: str
) -> tuple[str, ...] | None:
    """Record a ``revoked`` event per recipient, then delete the message, so its links
    stop working at once. Returns the recipients, or None when no message has that id.

    When the audit trail cannot be written, AuditError propagates and the message stays.
    """
    message = store.find(message_id)
    if message is None:
        return None
    for recipient in message.recipients:
        audit.append(
            PortalEvent("revoked", message.message_id, recipient, message.queue_id, reason)
        )
    store.withdraw(message_id)
    return message.recipients
