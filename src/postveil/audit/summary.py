"""One syslog/journald line per message decision, joinable with Postfix's maillog.

The line starts with the Postfix queue id, like Postfix's own lines about the message.
It names the audit record by ``seq`` and the first 16 hex digits of its hash, so a
copy of the maillog kept elsewhere also anchors the audit chain. It carries counts and
categories only: no addresses (Postfix logs those) and no matched values.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from postveil.audit.records import MessageDecision
from postveil.log import MessageLogger

if TYPE_CHECKING:
    # Imported for annotations only, because the writer imports this module.
    from postveil.audit.writer import AppendResult

_logger = logging.getLogger("postveil.audit")


def format_counts(counts: Mapping[str, int]) -> str:
    """``{"tls": 2, "portal": 1}`` -> ``portal:1,tls:2``; ``-`` when empty."""
    if not counts:
        return "-"
    return ",".join([f"{name}:{count}" for name, count in sorted(counts.items())])


def summary_text(decision: MessageDecision, result: AppendResult) -> str:
    """Return the summary line without the queue id prefix."""
    # A plain dict, because collections.Counter costs more than this per message.
    methods: dict[str, int] = {}
    for recipient in decision.recipients:
        methods[recipient.method] = methods.get(recipient.method, 0) + 1
    return (
        f"audit seq={result.seq} hash={result.hash[:16]} action={decision.action} "
        f"recipients={len(decision.recipients)} methods={format_counts(methods)} "
        f"detections={format_counts(decision.detections)} "
        f"tags={','.join(decision.tags) or '-'} config={decision.config_version}"
    )


def log_decision_summary(
    decision: MessageDecision, result: AppendResult, logger: logging.Logger | None = None
) -> None:
    """Log the decision's summary at INFO on ``postveil.audit``, prefixed with the queue id."""
    adapter = MessageLogger(logger or _logger, decision.queue_id)
    adapter.info("%s", summary_text(decision, result))
