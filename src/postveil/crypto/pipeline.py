"""One call from raw message and gathered facts to the versions to send.

The milter gathers the facts that need I/O elsewhere (the detection verdict and each
recipient domain's TLS requirement), then calls :func:`process_message`. Key and
certificate lookups happen here, through the keyring and certificate store of the
:class:`RenderContext`. Any :class:`CryptoFailure` propagates: the caller tempfails.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from postveil.config import Config
from postveil.config.routing import RoutingSection
from postveil.crypto.encrypted import EncryptionCheck, check_encryption
from postveil.crypto.errors import CryptoFailure
from postveil.crypto.mime import RawMessage, address_list
from postveil.crypto.notice import build_notice
from postveil.crypto.pgp import PgpKeyring
from postveil.crypto.render import MessageVersion, RenderContext, read_triggers, render_version
from postveil.crypto.smime import CertificateStore, SmimeSigner
from postveil.detection.categories import HIGH_RISK, PATIENT_IDENTIFIERS
from postveil.portal.seal import PortalSeal
from postveil.routing.classify import Classification, VerdictLike, classify, methods_for
from postveil.routing.decide import (
    CredentialStatus,
    Method,
    RecipientDecision,
    RecipientFacts,
    decide_recipient,
)
from postveil.routing.plan import DeliveryPlan, PlanAction, plan_delivery
from postveil.routing.record import DecisionRecord
from postveil.routing.triggers import Triggers

NOT_LOOKED_UP = CredentialStatus(None, "not needed by the class's method list")


@dataclass(frozen=True)
class TlsRequirement:
    """The TLS requirement of a recipient's domain, computed by the policy code."""

    required: bool
    reason: str


@dataclass(frozen=True)
class Outcome:
    triggers: Triggers
    classification: Classification
    decisions: tuple[RecipientDecision, ...]
    plan: DeliveryPlan
    versions: tuple[MessageVersion, ...]
    """One per plan group, same order; empty when the plan rejects."""

    notice: bytes | None
    """Message to send to the sender when recipients were removed."""

    record: DecisionRecord


def build_context(config: Config) -> RenderContext:
    """Create the certificate store, keyring and optional signer that ``config`` names.

    Raises SmimeFailure when signing is on and the signing certificate or key cannot be
    loaded, and PortalKeyError when ``portal.seal_key_file`` cannot be read. The store
    and keyring read their files at the first lookup.
    """
    signer = None
    if config.smime.sign and config.smime.signing_certificate and config.smime.signing_key:
        signer = SmimeSigner.load(config.smime.signing_certificate, config.smime.signing_key)
    seal = None
    if config.portal.intake_address is not None and config.portal.seal_key_file is not None:
        seal = PortalSeal.load(config.portal.seal_key_file)
    custom = config.detection.custom_identifiers
    health = {item.name for item in custom if item.kind == "health"}
    named = {item.name for item in custom if item.kind != "health"}
    identifiers = (HIGH_RISK | PATIENT_IDENTIFIERS | named) - health
    return RenderContext(
        routing=config.routing,
        portal=config.portal,
        certificates=CertificateStore(config.smime.certificate_dir, config.smime.trust_store),
        keyring=PgpKeyring(config.pgp.gnupg_home, config.pgp.gpg_binary, timeout=config.pgp.timeout),
        signer=signer,
        seal=seal,
        identifier_categories=frozenset(identifiers),
    )


def process_message(
    raw: bytes,
    *,
    queue_id: str,
    sender: str,
    recipients: Sequence[str],
    verdict: VerdictLike | None,
    tls: Mapping[str, TlsRequirement] | Callable[[], Mapping[str, TlsRequirement]],
    context: RenderContext,
    config_version: str = "",
) -> Outcome:
    """Decide and render every version of ``raw`` for the envelope ``recipients``.

    ``tls`` maps each recipient to its domain's TLS requirement; a recipient without an
    entry counts as not requiring TLS. It may instead be a function returning that
    map, called only when the message's class lists the ``tls`` method, so clean mail
    routed ``plain`` costs no facts lookup. Raises CryptoFailure when a lookup or
    encryption fails, and whatever the ``tls`` function raises.
    """
    message = RawMessage.parse(raw)
    routing = context.routing
    triggers = read_triggers(message, routing)
    classification = classify(triggers, verdict, sender, routing)
    methods = methods_for(classification.message_class, routing)
    encryption = _check_encryption(message, verdict, routing, context.identifier_categories)
    already = encryption.reason if encryption.scheme is not None else None
    if callable(tls):
        tls = tls() if Method.TLS in methods else {}

    decisions = tuple(
        decide_recipient(
            recipient,
            methods,
            _facts(recipient, methods, tls, context, already),
            already_encrypted=already,
        )
        for recipient in recipients
    )
    visible = address_list(message.values("To") + message.values("Cc"))
    # A message from the null sender (a bounce or an auto-reply) has no address for the
    # notice. A removed recipient would be lost silently, so the message is rejected.
    no_method_action = routing.no_method_action if sender else "reject"
    plan = plan_delivery(decisions, visible, no_method_action)

    versions: tuple[MessageVersion, ...] = ()
    notice = None
    if plan.action is not PlanAction.REJECT:
        versions = tuple(render_version(message, group, triggers, context) for group in plan.groups)
        if plan.unroutable:
            notice = build_notice(
                sender,
                plan,
                message_date=message.first_value("Date"),
                message_id=message.first_value("Message-ID"),
                message_class=classification.message_class,
                tags=triggers.tags,
                routing=routing,
                portal_configured=context.portal.intake_address is not None,
            )

    categories = dict(verdict.categories) if verdict is not None else {}
    record = DecisionRecord.build(
        queue_id=queue_id,
        message_id=message.first_value("Message-ID"),
        sender=sender,
        message_class=classification.message_class.value,
        class_reason=classification.reason,
        action=plan.action.value,
        decisions=decisions,
        tags=triggers.tags,
        categories=categories,
        detection_rule=verdict.rule if verdict is not None and verdict.sensitive else None,
        unscanned_parts=len(getattr(verdict, "unscanned_parts", []) or []),
        config_version=config_version,
        classifier_failed=getattr(verdict, "classifier_error", None) is not None,
        sender_encrypted=encryption.scheme is not None,
        encryption_check=encryption.code,
        encryption_reason=encryption.reason,
    )
    return Outcome(triggers, classification, decisions, plan, versions, notice, record)


def _check_encryption(
    message: RawMessage,
    verdict: VerdictLike | None,
    routing: RoutingSection,
    identifier_categories: frozenset[str],
) -> EncryptionCheck:
    """Check whether the sender already encrypted ``message`` (see ``check_encryption``).

    Detection cannot read encrypted data. So when a message that counts as encrypted is
    sensitive by a rule other than the one for unscanned parts, which the encrypted part
    itself fires, the sensitive text lies outside the encryption, such as in the
    Subject. Such a message is protected like any other. So is a message with an
    identifier of a person outside: the encrypted part is the health information that
    the rules would need beside it, and the identifier ties a patient to it. Health
    words alone, which would not make plain mail sensitive, leave the sender's
    encryption counted.
    """
    check = check_encryption(message, routing)
    if check.scheme is None or verdict is None:
        return check
    if verdict.sensitive and verdict.rule != "unscanned_part":
        return EncryptionCheck(
            None, "findings-outside", "detection found sensitive text outside the encrypted data"
        )
    if any(count > 0 and category in identifier_categories for category, count in verdict.categories.items()):
        return EncryptionCheck(
            None, "findings-outside", "detection found a patient identifier outside the encrypted data"
        )
    return check


def _facts(
    recipient: str,
    methods: Sequence[Method],
    tls: Mapping[str, TlsRequirement],
    context: RenderContext,
    already_encrypted: str | None,
) -> RecipientFacts:
    requirement = tls.get(recipient, TlsRequirement(False, "no TLS requirement known"))
    portal = context.portal.intake_address is not None
    pgp = smime = NOT_LOOKED_UP
    if already_encrypted is not None:
        return RecipientFacts(requirement.required, requirement.reason, pgp, smime, portal)
    # Look up keys and certificates only until a method is available, so a clean message
    # or a recipient on a TLS-enforcing domain never runs gpg.
    for method in methods:
        if method in (Method.PLAIN, Method.DROP):
            break
        if method is Method.TLS and requirement.required:
            break
        if method is Method.PORTAL and portal:
            break
        if method is Method.PGP:
            if context.keyring is None:
                pgp = CredentialStatus(None, "no GnuPG home configured")
            else:
                pgp = context.keyring.lookup(recipient)
            if pgp.usable:
                break
        if method is Method.SMIME:
            if context.certificates is None:
                smime = CredentialStatus(None, "no certificate store configured")
            else:
                smime = context.certificates.lookup(recipient).status
            if smime.usable:
                break
    return RecipientFacts(requirement.required, requirement.reason, pgp, smime, portal)

__all__ = ["CryptoFailure", "Outcome", "TlsRequirement", "build_context", "process_message"]
