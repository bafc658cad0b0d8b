"""One syslog/journald line per message decision, joinable with Postfix's maillog.

The line starts with the Postfix queue id, like Postfix's own lines about the message.
It names the audit record by ``seq`` and the first 16 hex digits of its hash, so a
copy of the maillog kept elsewhere also anchors the audit chain. It carries counts and
categories only: no addresses (Postfix logs those) and no matched values.
"""

from __future__ import annotations

import logging
from collections import Counter

from postveil.audit.records import MessageDecision
from postveil.audit.writer import AppendResult
from postveil.log import MessageLogger

_logger = logging.getLogger("postveil.audit")


def format_counts(counts: dict[str, int]) -> str:
    """``{"tls": 2, "portal": 1}`` -> ``portal:1,tls:2``; ``-`` when empty."""
    return ",".join(f"{name}:{count}" for name, count in sorted(counts.items())) or "-"


def summary_text(decision: MessageDecision, result: AppendResult) -> str:
    """Return the summary line without the queue id prefix."""
    methods = Counter(recipient.method for recipient in decision.recipients)
    return (
        f"audit seq={result.seq} hash={result.hash[:16]} action={decision.action} "
        f"recipients={len(decision.recipients)} methods={format_counts(dict(methods))} "
        f"detections={format_counts(dict(decision.detections))} "
        f"tags={','.join(decision.tags) or '-'} config={decision.config_version}"
    )


def log_decision_summary(
    decision: MessageDecision, result: AppendResult, logger: logging.Logger | None = None
) -> None:
    """Log the decision's summary at INFO on ``postveil.audit``, prefixed with the queue id."""
    adapter = MessageLogger(logger or _logger, decision.queue_id)
    adapter.info("%s", summary_text(decision, result))
