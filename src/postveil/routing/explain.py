"""Plain-language explanations of routing results, for staff who send the mail.

The audit record and the logs keep the technical reasons (``pgp: no PGP key for the
address``). The sender's notice and the reject reply use these sentences instead. They
are built from the method names only, so they never contain a key fingerprint, a TLS
detail or anything taken from the message.
"""

from __future__ import annotations

from collections.abc import Sequence

from postveil.routing.classify import MessageClass
from postveil.routing.decide import Method

GENERIC_REASON = "none of the delivery methods allowed for this message is available"


def plain_reason(unavailable: Sequence[Method], *, recipients: int = 1) -> str:
    """Explain why none of the ``unavailable`` methods could carry the message.

    Returns one lower-case clause without a final full stop, for example "no usable
    encryption key or certificate is on file for this address, and the recipient's mail
    server is not known to enforce TLS". ``recipients`` above 1 words it for several.
    """
    several = recipients > 1
    addresses = "these addresses" if several else "this address"
    parts: list[str] = []
    pgp = Method.PGP in unavailable
    smime = Method.SMIME in unavailable
    if pgp and smime:
        parts.append(f"no usable encryption key or certificate is on file for {addresses}")
    elif pgp:
        parts.append(f"no usable PGP encryption key is on file for {addresses}")
    elif smime:
        parts.append(f"no usable S/MIME certificate is on file for {addresses}")
    if Method.TLS in unavailable:
        if several:
            parts.append("the recipients' mail servers are not known to enforce TLS")
        else:
            parts.append("the recipient's mail server is not known to enforce TLS")
    if Method.PORTAL in unavailable:
        parts.append("no secure portal is set up")
    if not parts:
        return GENERIC_REASON
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + ", and " + parts[-1]


def plain_class_reason(message_class: MessageClass, tags: Sequence[str]) -> str:
    """Explain why the message needed protection, as a clause that follows "because".

    ``tags`` are the configured tags found in the Subject. They are configuration
    values, not message text, so naming them reveals nothing the sender wrote.
    """
    requested = {
        MessageClass.ESCALATED: "encryption",
        MessageClass.FORCED_PGP: "PGP encryption",
        MessageClass.FORCED_SMIME: "S/MIME encryption",
        MessageClass.FORCED_PORTAL: "delivery through the secure portal",
    }
    if message_class in requested:
        if not tags:
            return f"the system that sent it asked for {requested[message_class]}"
        noun = "tag" if len(tags) == 1 else "tags"
        return f"the {noun} {_join(tags)} in its Subject asked for {requested[message_class]}"
    if message_class is MessageClass.SENSITIVE:
        return "it appears to contain patient or other protected health information"
    if message_class is MessageClass.BULK:
        return "it comes from a bulk sender address, whose mail may only travel over TLS"
    return "the routing rules require it"


def _join(items: Sequence[str]) -> str:
    """Join ``items`` as in "a, b and c"."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
