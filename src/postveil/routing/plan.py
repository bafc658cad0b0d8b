"""Grouping of recipients into message versions, and the outcome for unroutable ones."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from postveil.routing.decide import Method, RecipientDecision
from postveil.routing.explain import GENERIC_REASON, plain_reason

REJECT_CODE = "550"
REJECT_XCODE = "5.7.1"
# SMTP limits a reply line to 512 octets (RFC 5321, section 4.5.3.1.5), so the reply
# names recipients up to this many characters and counts the rest.
REJECT_NAMES_MAX = 300
# The same 512 octets less "550 5.7.1 " and the closing CRLF: the plain reason is added
# to the reply text only while the whole text stays within this many octets.
REJECT_TEXT_MAX = 512 - len(f"{REJECT_CODE} {REJECT_XCODE} ") - len("\r\n")


class VersionKind(StrEnum):
    CLEARTEXT = "cleartext"
    """Original content (tags and the trigger header removed): plain, tls, pre_encrypted."""

    PGP = "pgp"
    SMIME = "smime"
    PORTAL = "portal"


_KIND_OF_METHOD = {
    Method.PLAIN: VersionKind.CLEARTEXT,
    Method.TLS: VersionKind.CLEARTEXT,
    Method.PRE_ENCRYPTED: VersionKind.CLEARTEXT,
    Method.PGP: VersionKind.PGP,
    Method.SMIME: VersionKind.SMIME,
    Method.PORTAL: VersionKind.PORTAL,
}


class PlanAction(StrEnum):
    DELIVER = "deliver"
    """Every recipient has a method (``drop`` counts as one)."""

    REJECT = "reject"
    """Reject the whole message with :meth:`DeliveryPlan.reject_reply`."""

    REMOVE_AND_NOTIFY = "remove_and_notify"
    """Remove the unroutable recipients and send the sender a notice."""


@dataclass(frozen=True)
class RecipientGroup:
    """Recipients that receive the same version of the message."""

    kind: VersionKind
    recipients: tuple[str, ...]
    fingerprints: tuple[str, ...]
    """Keys (pgp) or certificates (smime) to encrypt to, each once; empty otherwise."""

    bcc: bool
    """A single Bcc recipient, kept apart so no other recipient learns of it through key
    ids or headers."""


@dataclass(frozen=True)
class DeliveryPlan:
    action: PlanAction
    groups: tuple[RecipientGroup, ...]
    """Versions to send. ``groups[0]`` stays in the original transaction and is changed in
    place; the others are re-injected. Empty when no recipient is left, so the message is
    discarded."""

    dropped: tuple[RecipientDecision, ...]
    unroutable: tuple[RecipientDecision, ...]
    """Recipients without an acceptable method (rejected or removed per ``action``)."""

    def reject_reply(self) -> tuple[str, str, str]:
        """Return (code, enhanced code, text) of the reply that rejects the message."""
        recipients = [decision.recipient for decision in self.unroutable]
        names = ""
        named_count = 0
        for recipient in recipients:
            candidate = f"{names}, {recipient}" if names else recipient
            if len(candidate) > REJECT_NAMES_MAX and named_count:
                break
            names = candidate
            named_count += 1
        if named_count < len(recipients):
            names += f" and {len(recipients) - named_count} more"
        text = f"message needs protection and no acceptable delivery method exists for: {names}"
        with_reason = f"{text}. Reason: {self.plain_reject_reason()}"
        if len(with_reason.encode()) <= REJECT_TEXT_MAX:
            text = with_reason
        return REJECT_CODE, REJECT_XCODE, text

    def plain_reject_reason(self) -> str:
        """Return the plain-language reason shared by the unroutable recipients.

        Every unroutable recipient of one message went through the same method list, so
        they normally share one reason. When they do not, a general reason is returned.
        """
        reasons = {
            plain_reason(decision.unavailable, recipients=len(self.unroutable))
            for decision in self.unroutable
        }
        return reasons.pop() if len(reasons) == 1 else GENERIC_REASON


def find_bcc(envelope_recipients: Iterable[str], visible_addresses: Iterable[str]) -> set[str]:
    """Return the envelope recipients absent from To and Cc (``visible_addresses``),
    compared without regard to case."""
    visible = {address.casefold() for address in visible_addresses}
    return {rcpt for rcpt in envelope_recipients if rcpt.casefold() not in visible}


def plan_delivery(
    decisions: Sequence[RecipientDecision],
    visible_addresses: Iterable[str],
    no_method_action: str,
) -> DeliveryPlan:
    """Group ``decisions`` into versions.

    Visible recipients (in To or Cc) with the same version kind share one version, so a
    PGP version is encrypted to every visible PGP recipient's key. Each Bcc recipient gets
    a group of its own. ``no_method_action`` is ``routing.no_method_action``.
    """
    unroutable = tuple(decision for decision in decisions if decision.method is None)
    dropped = tuple(decision for decision in decisions if decision.method is Method.DROP)
    if unroutable and no_method_action == "reject":
        return DeliveryPlan(PlanAction.REJECT, (), dropped, unroutable)

    bcc = find_bcc((decision.recipient for decision in decisions), visible_addresses)
    shared: dict[VersionKind, list[RecipientDecision]] = {}
    own: list[RecipientGroup] = []
    for decision in decisions:
        if decision.method is None or decision.method is Method.DROP:
            continue
        kind = _KIND_OF_METHOD[decision.method]
        if decision.recipient in bcc:
            own.append(_group(kind, [decision], bcc=True))
        else:
            shared.setdefault(kind, []).append(decision)

    groups = [_group(kind, members, bcc=False) for kind, members in shared.items()]
    # The in-place group: visible cleartext if any, because it needs the fewest changes.
    groups.sort(key=lambda group: group.kind is not VersionKind.CLEARTEXT)
    action = PlanAction.REMOVE_AND_NOTIFY if unroutable else PlanAction.DELIVER
    return DeliveryPlan(action, tuple(groups + own), dropped, unroutable)


def _group(kind: VersionKind, members: list[RecipientDecision], bcc: bool) -> RecipientGroup:
    # Two recipients may share one key or certificate; encrypt to it once.
    fingerprints = tuple(dict.fromkeys(m.fingerprint for m in members if m.fingerprint is not None))
    return RecipientGroup(kind, tuple(m.recipient for m in members), fingerprints, bcc)
