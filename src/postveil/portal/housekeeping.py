"""Deleting messages at the end of ``portal.retention``, with their audit records."""

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
