"""Message classes: which ordered method list applies to a message."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from postveil.config.routing import RoutingSection
from postveil.routing.decide import Method
from postveil.routing.triggers import Triggers


class MessageClass(StrEnum):
    CLEAN = "clean"
    SENSITIVE = "sensitive"
    ESCALATED = "escalated"
    BULK = "bulk"
    FORCED_PGP = "forced_pgp"
    FORCED_SMIME = "forced_smime"
    FORCED_PORTAL = "forced_portal"


_FORCED_CLASS = {
    Method.PGP: MessageClass.FORCED_PGP,
    Method.SMIME: MessageClass.FORCED_SMIME,
    Method.PORTAL: MessageClass.FORCED_PORTAL,
}


class VerdictLike(Protocol):
    """The part of the detection engine's verdict that routing reads."""

    @property
    def sensitive(self) -> bool: ...

    @property
    def rule(self) -> str: ...

    @property
    def categories(self) -> Mapping[str, int]: ...


@dataclass(frozen=True)
class Classification:
    message_class: MessageClass
    reason: str


def classify(
    triggers: Triggers, verdict: VerdictLike | None, sender: str, config: RoutingSection
) -> Classification:
    """Pick the message class. The strongest signal wins, in this order: a forced method,
    escalation (tag or trigger header), a sensitive detection verdict, a bulk sender, clean.

    A bulk sender's sensitive message is therefore ``sensitive``: its list protects at
    least as well as the bulk list, and the message is not dropped merely for lack of TLS.
    ``verdict`` None means detection did not run (clean unless another signal applies).
    """
    if triggers.forced_method is not None:
        source = "trigger header" if not triggers.tags else "subject tag"
        return Classification(
            _FORCED_CLASS[triggers.forced_method],
            f"{source} forces {triggers.forced_method.value}",
        )
    if triggers.escalated:
        source = "subject tag " + ", ".join(triggers.tags) if triggers.tags else "trigger header"
        return Classification(MessageClass.ESCALATED, f"escalated by {source}")
    if verdict is not None and verdict.sensitive:
        return Classification(MessageClass.SENSITIVE, f"detection rule {verdict.rule}")
    if is_bulk_sender(sender, config.bulk_senders):
        return Classification(MessageClass.BULK, "sender is listed in routing.bulk_senders")
    return Classification(MessageClass.CLEAN, "no trigger and nothing sensitive detected")


def is_bulk_sender(sender: str, patterns: list[str]) -> bool:
    """Match ``sender`` against ``user@example.org`` and ``@example.org`` patterns,
    ignoring case."""
    address = sender.strip().strip("<>").casefold()
    domain = address.rpartition("@")[2]
    for pattern in patterns:
        folded = pattern.casefold()
        if folded.startswith("@"):
            if domain == folded[1:]:
                return True
        elif address == folded:
            return True
    return False


def methods_for(message_class: MessageClass, config: RoutingSection) -> tuple[Method, ...]:
    """Return the configured ordered method list of ``message_class``."""
    names: list[str] = getattr(config.methods, message_class.value)
    return tuple(Method(name) for name in names)
