"""Build the version of a message that one recipient group receives.

Every version loses the trigger header and any Bcc header, and its Subject loses the
tags. Encrypted versions keep outside only the headers on the allowlist
(:func:`postveil.crypto.protect.split_headers`), move every other header, the content
headers and the real Subject inside, and show ``routing.outer_subject`` outside. The
result carries both the header edits (for the milter's in-place change) and the complete
bytes (for re-injection).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from postveil.config.portal import PortalSection
from postveil.config.routing import RoutingSection
from postveil.crypto.errors import CryptoFailure
from postveil.crypto.mime import (
    HeaderEdits,
    RawMessage,
    decode_text,
    encode_text_like,
    unique,
)
from postveil.crypto.pgp import PgpKeyring, pgp_mime_body
from postveil.crypto.protect import build_inner_entity, removed_header_names, split_headers
from postveil.crypto.smime import (
    CertificateStore,
    SmimeSigner,
    encrypt_entity,
    smime_headers,
    wrap_base64,
)
from postveil.detection.categories import HIGH_RISK, PATIENT_IDENTIFIERS
from postveil.portal.seal import SEAL_HEADER, PortalSeal
from postveil.routing.plan import RecipientGroup, VersionKind
from postveil.routing.triggers import Triggers, find_triggers


@dataclass(frozen=True)
class RenderContext:
    routing: RoutingSection
    portal: PortalSection
    certificates: CertificateStore | None = None
    keyring: PgpKeyring | None = None
    signer: SmimeSigner | None = None
    seal: PortalSeal | None = None
    """Seals the recipient headers of portal copies (``portal.seal_key_file``)."""
    identifier_categories: frozenset[str] = HIGH_RISK | PATIENT_IDENTIFIERS
    """Detection categories of high-risk and patient identifiers, custom ones included.
    Found outside the encryption of sender-encrypted mail, they make it count as not
    encrypted."""


@dataclass(frozen=True)
class MessageVersion:
    group: RecipientGroup
    envelope_recipients: tuple[str, ...]
    """Recipients of the SMTP transaction: the group, or the portal intake address."""

    edits: HeaderEdits
    body: bytes | None
    """Replacement body (CRLF line endings); None keeps the original body."""

    raw: bytes
    """The complete message, ``edits`` and ``body`` applied."""

    @property
    def needs_smtputf8(self) -> bool:
        """True when the header block or an envelope recipient is not ASCII, so
        re-injection must use the SMTPUTF8 extension (RFC 6531)."""
        head = self.raw.split(b"\r\n\r\n", 1)[0]
        return not head.isascii() or not all(r.isascii() for r in self.envelope_recipients)


def read_triggers(message: RawMessage, config: RoutingSection) -> Triggers:
    """Find the tags in the decoded Subject and read the trigger header of ``message``.

    A message with several Subject fields (RFC 5322 allows one) counts the tags of each,
    because a mail program may show any of them. The cleaned Subject is the first one
    without tags, and the header edits then delete the others.
    """
    subjects = [decode_text(value, lenient=True) for value in message.values("Subject")]
    first = subjects[0] if subjects else None
    triggers = find_triggers(first, message.values(config.trigger_header), config)
    for later in subjects[1:]:
        extra = find_triggers(later, (), config)
        if not extra.tags:
            continue
        cleaned = triggers.cleaned_subject
        triggers = dataclasses.replace(
            triggers,
            tags=unique([*triggers.tags, *extra.tags]),
            escalated=triggers.escalated or extra.escalated,
            forced_method=triggers.forced_method or extra.forced_method,
            cleaned_subject=first if cleaned is None else cleaned,
        )
    return triggers


def _subject_value(message: RawMessage, triggers: Triggers) -> str | None:
    """Subject header value without tags, encoded like the original; None if unchanged."""
    if triggers.cleaned_subject is None:
        return None
    return encode_text_like(message.first_value("Subject") or "", triggers.cleaned_subject)


def _common_removals(message: RawMessage, routing: RoutingSection) -> list[str]:
    return [name for name in removed_header_names(routing) if message.get_all(name)]


def render_version(
    message: RawMessage, group: RecipientGroup, triggers: Triggers, context: RenderContext
) -> MessageVersion:
    """Build the version of ``message`` for ``group``.

    Raises CryptoFailure (or a subclass) when a key, certificate or the portal is missing
    or encryption fails; the caller must then tempfail the whole message.
    """
    routing = context.routing
    subject = _subject_value(message, triggers)
    removals = _common_removals(message, routing)

    if group.kind is VersionKind.CLEARTEXT:
        replace = (("Subject", subject),) if subject is not None else ()
        edits = HeaderEdits(remove=tuple(removals), replace=replace)
        return MessageVersion(group, group.recipients, edits, None, edits.apply(message))

    if group.kind is VersionKind.PORTAL:
        return _portal_version(message, group, subject, removals, context)

    inner = build_inner_entity(message, subject, routing)
    if group.kind is VersionKind.SMIME:
        if context.certificates is None:
            raise CryptoFailure("S/MIME recipients but no certificate store configured")
        if context.signer is not None:
            inner = context.signer.sign(inner)
        certificates = [context.certificates.by_fingerprint(fp) for fp in group.fingerprints]
        body = wrap_base64(encrypt_entity(inner, certificates))
        content_headers = smime_headers()
    else:
        if context.keyring is None:
            raise CryptoFailure("PGP recipients but no GnuPG home configured")
        content_type, body = pgp_mime_body(context.keyring.encrypt(inner, group.fingerprints))
        content_headers = (("MIME-Version", "1.0"), ("Content-Type", content_type))

    moved = split_headers(message, routing).moved_names()
    edits = HeaderEdits(
        remove=unique([*removals, *moved]),
        replace=(("Subject", routing.outer_subject),),
        add=content_headers,
    )
    return MessageVersion(group, group.recipients, edits, body, edits.apply(message, body))


def _portal_version(
    message: RawMessage,
    group: RecipientGroup,
    subject: str | None,
    removals: list[str],
    context: RenderContext,
) -> MessageVersion:
    intake = context.portal.intake_address
    if intake is None:
        raise CryptoFailure("portal recipients but portal.intake_address is not set")
    header = context.portal.recipient_header
    # A copy of the header written by the sender must not redirect the portal's delivery.
    written = [name for name in (header, SEAL_HEADER) if message.get_all(name)]
    remove = unique([*removals, *written])
    replace = (("Subject", subject),) if subject is not None else ()
    add = tuple((header, recipient) for recipient in group.recipients)
    if context.seal is not None:
        add += ((SEAL_HEADER, context.seal.make(group.recipients)),)
    edits = HeaderEdits(remove=remove, replace=replace, add=add)
    return MessageVersion(group, (intake,), edits, None, edits.apply(message))
