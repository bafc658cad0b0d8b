"""The decision record: one structured entry per message for the audit trail."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from postveil.routing.decide import RecipientDecision


@dataclass(frozen=True)
class RecipientRecord:
    recipient: str
    method: str | None
    """Method name, ``None`` when no method was acceptable."""

    reason: str
    fingerprint: str | None


@dataclass(frozen=True)
class DecisionRecord:
    """Decision for one message with its reasons, for the audit trail. It contains no
    message text and no matched identifier, because detection results are categories and
    counts only."""

    queue_id: str
    message_id: str | None
    sender: str
    message_class: str
    class_reason: str
    action: str
    """``deliver``, ``reject``, ``remove_and_notify`` or ``tempfail``."""

    recipients: tuple[RecipientRecord, ...]
    tags: tuple[str, ...]
    detection_categories: tuple[tuple[str, int], ...]
    """(category, count) pairs sorted by category."""

    detection_rule: str | None = None
    unscanned_parts: int = 0
    config_version: str = ""
    classifier_failed: bool = False
    """postveil-classifierd should have been asked but did not reply, and the rules'
    verdict was kept (``classifier.on_failure: rules``)."""

    sender_encrypted: bool = False
    """The message counted as already encrypted by the sender (method ``pre_encrypted``)."""

    encryption_check: str = "none"
    """Identifier of the format that counted as encrypted or of the check that failed;
    ``none`` for mail without an encryption label."""

    encryption_reason: str = "no encryption label"
    """Reason the message counted as encrypted or not, from its structure only."""

    @classmethod
    def build(
        cls,
        *,
        queue_id: str,
        message_id: str | None,
        sender: str,
        message_class: str,
        class_reason: str,
        action: str,
        decisions: Sequence[RecipientDecision],
        tags: Sequence[str],
        categories: Mapping[str, int] | None = None,
        detection_rule: str | None = None,
        unscanned_parts: int = 0,
        config_version: str = "",
        classifier_failed: bool = False,
        sender_encrypted: bool = False,
        encryption_check: str = "none",
        encryption_reason: str = "no encryption label",
    ) -> DecisionRecord:
        """Assemble a record from routing results; ``categories`` is the verdict's counts."""
        recipients = tuple(
            RecipientRecord(
                d.recipient, d.method.value if d.method is not None else None, d.reason, d.fingerprint
            )
            for d in decisions
        )
        return cls(
            queue_id=queue_id,
            message_id=message_id,
            sender=sender,
            message_class=message_class,
            class_reason=class_reason,
            action=action,
            recipients=recipients,
            tags=tuple(tags),
            detection_categories=tuple(sorted((categories or {}).items())),
            detection_rule=detection_rule,
            unscanned_parts=unscanned_parts,
            config_version=config_version,
            classifier_failed=classifier_failed,
            sender_encrypted=sender_encrypted,
            encryption_check=encryption_check,
            encryption_reason=encryption_reason,
        )

    def log_line(self) -> str:
        """Format the whole record as one compact JSON object for a log line, until the
        audit trail stores records itself."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"), sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        """Return plain JSON-compatible data (lists and dicts)."""
        return {
            "queue_id": self.queue_id,
            "message_id": self.message_id,
            "sender": self.sender,
            "message_class": self.message_class,
            "class_reason": self.class_reason,
            "action": self.action,
            "recipients": [
                {
                    "recipient": r.recipient,
                    "method": r.method,
                    "reason": r.reason,
                    "fingerprint": r.fingerprint,
                }
                for r in self.recipients
            ],
            "tags": list(self.tags),
            "detection": {
                "rule": self.detection_rule,
                "categories": dict(self.detection_categories),
                "unscanned_parts": self.unscanned_parts,
            },
            "config_version": self.config_version,
            "sender_encryption": {
                "counted": self.sender_encrypted,
                "check": self.encryption_check,
                "reason": self.encryption_reason,
            },
        }

