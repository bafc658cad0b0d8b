"""The per-recipient decision: the first method of the class's list that is available."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class Method(StrEnum):
    PLAIN = "plain"
    """Deliver unchanged; transport security is whatever Postfix negotiates."""

    TLS = "tls"
    """Deliver unchanged; available only when the recipient domain's policy enforces TLS."""

    PGP = "pgp"
    SMIME = "smime"
    PORTAL = "portal"
    DROP = "drop"
    """Remove the recipient without a notice (the "TLS exclusive" rule of bulk mail)."""

    PRE_ENCRYPTED = "pre_encrypted"
    """The sender already encrypted the message; deliver it unchanged."""


@dataclass(frozen=True)
class CredentialStatus:
    """Result of looking up a recipient's PGP key or S/MIME certificate."""

    fingerprint: str | None
    """Fingerprint of the usable key or certificate; None when there is none."""

    reason: str
    """Reason it is usable or not, for example ``certificate expired``. No key material."""

    @property
    def usable(self) -> bool:
        return self.fingerprint is not None


@dataclass(frozen=True)
class RecipientFacts:
    """Facts the milter gathered about one recipient before the decision."""

    tls_required: bool
    """The recipient domain's TLS requirement (MTA-STS enforce, DANE, monitoring) holds."""

    tls_reason: str
    pgp: CredentialStatus
    smime: CredentialStatus
    portal_configured: bool


@dataclass(frozen=True)
class RecipientDecision:
    recipient: str
    method: Method | None
    """None: no method of the class's list is available."""

    reason: str
    fingerprint: str | None
    """Key or certificate used, for ``pgp`` and ``smime``."""

    skipped: tuple[str, ...] = ()
    """Reasons the earlier methods of the list were not available, in list order."""

    unavailable: tuple[Method, ...] = ()
    """The methods that ``skipped`` explains, in the same order."""


def decide_recipient(
    recipient: str,
    methods: Sequence[Method],
    facts: RecipientFacts,
    already_encrypted: str | None = None,
) -> RecipientDecision:
    """Return the first method of ``methods`` available for ``recipient``.

    ``already_encrypted`` describes the sender's encryption of a message that must not be
    encrypted again (``smime``, ``pgp`` or a longer description such as ``S/MIME with CMS
    EnvelopedData``): such a message is delivered unchanged to every recipient unless the
    list starts with ``plain`` (clean mail stays ``plain``).
    """
    if already_encrypted is not None and methods[0] is not Method.PLAIN:
        return RecipientDecision(
            recipient, Method.PRE_ENCRYPTED, f"already encrypted by the sender ({already_encrypted})", None
        )

    skipped: list[str] = []
    unavailable: list[Method] = []
    for method in methods:
        available, reason, fingerprint = _availability(method, facts)
        if available:
            return RecipientDecision(
                recipient, method, reason, fingerprint, tuple(skipped), tuple(unavailable)
            )
        skipped.append(f"{method.value}: {reason}")
        unavailable.append(method)
    return RecipientDecision(
        recipient,
        None,
        "no acceptable method: " + "; ".join(skipped),
        None,
        tuple(skipped),
        tuple(unavailable),
    )


def _availability(method: Method, facts: RecipientFacts) -> tuple[bool, str, str | None]:
    if method is Method.PLAIN:
        return True, "clean message, delivered as usual", None
    if method is Method.DROP:
        return True, "dropped: no earlier method was available", None
    if method is Method.TLS:
        return facts.tls_required, facts.tls_reason, None
    if method is Method.PGP:
        return facts.pgp.usable, facts.pgp.reason, facts.pgp.fingerprint
    if method is Method.SMIME:
        return facts.smime.usable, facts.smime.reason, facts.smime.fingerprint
    if method is Method.PORTAL:
        if facts.portal_configured:
            return True, "portal configured", None
        return False, "no portal configured", None
    return False, f"{method.value} cannot be chosen from a class list", None
