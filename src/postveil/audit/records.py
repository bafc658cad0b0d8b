"""Record kinds of the audit trail, as frozen dataclasses.

Each class validates its fields when constructed and returns them with ``fields()``,
ready for the writer, which adds the chain fields (``seq``, ``time``, ``prev``, HMAC).
Detections are category names with counts; no record type has a field for a matched
value or for message text. Categories and tags must look like identifiers
(``^[a-z][a-z0-9_.:-]*$``), so a matched value such as a card number cannot be passed
in their place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from postveil.audit.errors import InvalidRecordError

_IDENTIFIER_RE = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_OR_SURROGATE_RE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
"""Matches a control character or a surrogate. Surrogates are the only ``str`` characters
that UTF-8 cannot encode, so text without a match passes both checks of ``_check_text``."""

MAX_TEXT = 998
"""Maximum length of a string field in characters: the SMTP line limit, so any address fits."""


def _check_text(
    name: str, value: object, *, optional: bool = False, max_length: int = MAX_TEXT
) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise InvalidRecordError(
            f"audit record field {name}: expected a string, got {type(value).__name__}"
        )
    if len(value) > max_length:
        raise InvalidRecordError(
            f"audit record field {name}: {len(value)} characters, at most {max_length} allowed"
        )
    # Valid text, the usual case, costs one search. Otherwise the checks below tell
    # which problem it has.
    if _CONTROL_OR_SURROGATE_RE.search(value) is None:
        return
    if _CONTROL_RE.search(value):
        raise InvalidRecordError(f"audit record field {name}: contains a control character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRecordError(f"audit record field {name}: not encodable as UTF-8") from None


def _check_identifier(name: str, value: object) -> None:
    if not isinstance(value, str) or not _IDENTIFIER_RE.match(value):
        # The value is left out of the message: a caller's mistake here may be a
        # matched identifier passed where a category belongs.
        raise InvalidRecordError(
            f"audit record field {name}: value is not an identifier "
            "(lower-case letter, then letters, digits, '_', '.', ':' or '-', at most 64)"
        )


@dataclass(frozen=True)
class RecipientDecision:
    """Protection chosen for one recipient of a message, and the rule that chose it."""

    address: str
    method: str
    """Protection chosen: ``tls``, ``pgp``, ``smime``, ``portal``, or what the message
    got instead (``reject``, ``tempfail``, ``hold``)."""

    reason: str
    """Name of the rule that decided, as the milter's verdict reports it."""

    fingerprint: str | None = None
    """PGP key fingerprint or S/MIME certificate SHA-256 fingerprint used to encrypt."""

    portal_ref: str | None = None
    """Portal message reference handed to the recipient instead of the message."""

    def __post_init__(self) -> None:
        _check_text("recipients.address", self.address)
        _check_identifier("recipients.method", self.method)
        _check_text("recipients.reason", self.reason)
        _check_text("recipients.fingerprint", self.fingerprint, optional=True, max_length=200)
        _check_text("recipients.portal_ref", self.portal_ref, optional=True, max_length=200)

    def fields(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "method": self.method,
            "reason": self.reason,
            "fingerprint": self.fingerprint,
            "portal_ref": self.portal_ref,
        }


@dataclass(frozen=True)
class MessageDecision:
    """The milter's decision for one message and all of its recipients."""

    kind: ClassVar[str] = "message"
    CSV_FIELDS: ClassVar[tuple[str, ...]] = (
        "queue_id",
        "message_id",
        "sender",
        "action",
        "tags",
        "config_version",
    )

    queue_id: str
    sender: str
    """Envelope sender; the empty string for the null sender ``<>``."""

    recipients: Sequence[RecipientDecision]
    config_version: str
    message_id: str | None = None
    """The Message-ID header as received, or None when the message had none."""

    detections: Mapping[str, int] = field(default_factory=dict)
    """Detection category -> number of matches, for example ``{"ssn": 2}``."""

    tags: Sequence[str] = ()
    """Markers such as a subject keyword that escalated the message (``subject:secure``)."""

    action: str = "accept"
    """The milter's reply for the whole message: accept, tempfail, reject or discard."""

    def __post_init__(self) -> None:
        _check_text("queue_id", self.queue_id, max_length=64)
        if not self.queue_id:
            raise InvalidRecordError("audit record field queue_id: must not be empty")
        _check_text("sender", self.sender)
        _check_text("message_id", self.message_id, optional=True)
        _check_text("config_version", self.config_version, max_length=64)
        _check_identifier("action", self.action)
        if not self.recipients:
            raise InvalidRecordError(
                "audit record field recipients: at least one recipient is required"
            )
        for recipient in self.recipients:
            if not isinstance(recipient, RecipientDecision):
                raise InvalidRecordError(
                    "audit record field recipients: expected RecipientDecision items"
                )
        for category, count in self.detections.items():
            _check_identifier("detections", category)
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                # Only an int is echoed: a string here could be a matched value.
                count_text = repr(count) if isinstance(count, int) else f"a {type(count).__name__}"
                raise InvalidRecordError(
                    f"audit record field detections.{category}: "
                    f"expected a count >= 0, got {count_text}"
                )
        for tag in self.tags:
            _check_identifier("tags", tag)

    def fields(self) -> dict[str, Any]:
        return {
            "queue_id": self.queue_id,
            "message_id": self.message_id,
            "sender": self.sender,
            "recipients": [recipient.fields() for recipient in self.recipients],
            "detections": dict(sorted(self.detections.items())),
            "tags": list(self.tags),
            "action": self.action,
            "config_version": self.config_version,
        }


@dataclass(frozen=True)
class TlsRequirementChange:
    """A domain's TLS requirement changed, for example from ``may`` to ``verify``."""

    kind: ClassVar[str] = "tls_requirement"
    CSV_FIELDS: ClassVar[tuple[str, ...]] = ("domain", "old", "new", "source", "reason")

    domain: str
    old: str | None
    """Previous requirement, or None when the domain was not known before."""

    new: str
    source: str
    """Cause of the change: ``mta-sts``, ``dane``, ``probe``, ``admin`` or ``expiry``."""

    reason: str

    def __post_init__(self) -> None:
        _check_text("domain", self.domain, max_length=255)
        _check_text("old", self.old, optional=True, max_length=64)
        _check_text("new", self.new, max_length=64)
        _check_identifier("source", self.source)
        _check_text("reason", self.reason)

    def fields(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "old": self.old,
            "new": self.new,
            "source": self.source,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class AdminOverride:
    """An administrator overrode a decision or a domain's facts by hand, or changed the
    recipient keys and certificates that decide how mail is encrypted."""

    kind: ClassVar[str] = "admin_override"
    CSV_FIELDS: ClassVar[tuple[str, ...]] = (
        "actor",
        "target",
        "action",
        "reason",
        "command",
        "fingerprint",
    )

    actor: str
    """Login name of the administrator who ran the admin command."""

    target: str
    """Domain, address(es) or queue id the override applies to. Several addresses are
    separated by ``, ``."""

    action: str
    """Action taken: ``set-tls``, ``clear-tls``, ``purge-domain-facts`` or
    ``release-tls-hold`` from ``postveil domain``; ``key-import``, ``key-revoke``,
    ``key-remove``, ``cert-import`` or ``cert-remove`` from ``postveil keys`` and
    ``postveil certs``; ``portal-rekey`` and ``portal-rekey-abandon`` from ``postveil
    portal rekey``."""

    reason: str
    """Reason the administrator gave, or the empty string when none was given."""

    command: str | None = None
    """The command that made the change, for example ``postveil domain set example.org
    --tls secure`` (without the reason, which has its own field)."""

    fingerprint: str | None = None
    """PGP key fingerprint or S/MIME certificate SHA-256 fingerprint that a key or
    certificate action changed, for ``portal-rekey`` the key id of the new master
    key (first 16 hex digits of its SHA-256), for ``portal-rekey-abandon`` the key id
    of the rotation given up, else None. Never the key itself."""

    def __post_init__(self) -> None:
        _check_text("actor", self.actor, max_length=255)
        _check_text("target", self.target)
        _check_identifier("action", self.action)
        _check_text("reason", self.reason)
        _check_text("command", self.command, optional=True)
        _check_text("fingerprint", self.fingerprint, optional=True, max_length=200)

    def fields(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "target": self.target,
            "action": self.action,
            "reason": self.reason,
            "command": self.command,
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class ConfigEvent:
    """A daemon loaded or reloaded its configuration, or failed to reload it."""

    kind: ClassVar[str] = "config"
    CSV_FIELDS: ClassVar[tuple[str, ...]] = ("event", "source", "config_version", "error")

    event: Literal["load", "reload", "reload_failed"]
    source: str
    """Path of the configuration file."""

    config_version: str
    """Version of the configuration now in use (after a failed reload, the old one)."""

    error: str | None = None
    """For ``reload_failed``: the number and kind of problems, not the offending values."""

    def __post_init__(self) -> None:
        if self.event not in ("load", "reload", "reload_failed"):
            raise InvalidRecordError(
                f"audit record field event: invalid config event {self.event!r}"
            )
        _check_text("source", self.source)
        _check_text("config_version", self.config_version, max_length=64)
        _check_text("error", self.error, optional=True)

    def fields(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "source": self.source,
            "config_version": self.config_version,
            "error": self.error,
        }


@dataclass(frozen=True)
class DaemonEvent:
    """A daemon started or stopped."""

    kind: ClassVar[str] = "daemon"
    CSV_FIELDS: ClassVar[tuple[str, ...]] = ("event", "version", "reason")

    event: Literal["start", "stop"]
    version: str
    """postveil version of the daemon."""

    reason: str = ""
    """Reason for a stop, for example ``SIGTERM``. Empty for a start."""

    def __post_init__(self) -> None:
        if self.event not in ("start", "stop"):
            raise InvalidRecordError(
                f"audit record field event: invalid daemon event {self.event!r}"
            )
        _check_text("version", self.version, max_length=64)
        _check_text("reason", self.reason)

    def fields(self) -> dict[str, Any]:
        return {"event": self.event, "version": self.version, "reason": self.reason}


PORTAL_EVENTS = (
    "stored",
    "refused",
    "notified",
    "withdrawn",
    "code_sent",
    "code_refused",
    "code_wrong",
    "code_void",
    "code_entry_refused",
    "verified",
    "opened",
    "sender_notified",
    "sender_notice_failed",
    "downloaded",
    "expired",
    "revoked",
)
"""Events of a message in the built-in portal (docs/portal.md)."""


@dataclass(frozen=True)
class PortalEvent:
    """Something happened to a message in the built-in portal, for one recipient.

    ``message`` is the portal's random id of the message, the same in every event of
    that message. No record contains a link token, a code or any of the message's text.
    """

    kind: ClassVar[str] = "portal"
    CSV_FIELDS: ClassVar[tuple[str, ...]] = ("event", "message", "recipient", "queue_id", "reason")

    event: str
    message: str
    """The portal's id of the message; empty for ``refused``, where none was stored."""

    recipient: str = ""
    queue_id: str = ""
    """Postfix queue id of the copy the intake received, when known."""

    reason: str = ""
    """Reason a message or a code was rejected; empty otherwise."""

    def __post_init__(self) -> None:
        if self.event not in PORTAL_EVENTS:
            raise InvalidRecordError(
                f"audit record field event: invalid portal event {self.event!r}"
            )
        _check_text("message", self.message, max_length=64)
        _check_text("recipient", self.recipient)
        _check_text("queue_id", self.queue_id, max_length=64)
        _check_text("reason", self.reason)

    def fields(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "message": self.message,
            "recipient": self.recipient,
            "queue_id": self.queue_id,
            "reason": self.reason,
        }


Record = (
    MessageDecision | TlsRequirementChange | AdminOverride | ConfigEvent | DaemonEvent | PortalEvent
)

RECORD_TYPES: dict[str, type[Record]] = {
    record_type.kind: record_type
    for record_type in (
        MessageDecision,
        TlsRequirementChange,
        AdminOverride,
        ConfigEvent,
        DaemonEvent,
        PortalEvent,
    )
}
"""Record class by the ``kind`` value stored in each line."""
