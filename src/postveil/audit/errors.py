"""Exceptions of the audit trail."""

from __future__ import annotations

from postveil.errors import PostveilError, TemporaryFailure


class AuditError(PostveilError):
    """Root of the audit trail's errors."""


class AuditWriteError(AuditError, TemporaryFailure):
    """A record could not be written (disk full, log not writable, lock failed).

    The record is not in the log. A caller that needed it for a message must reply
    with a temporary failure (or the configured ``audit.on_write_failure`` reply), so
    the message is never delivered without its record.
    """


class AuditKeyError(AuditError):
    """The HMAC key file is missing, unreadable, malformed or readable by others."""


class InvalidRecordError(AuditError, ValueError):
    """A record field has the wrong type or form; the message names the field."""
