"""Plain-language reasons for the sender's notice and the reject reply."""

from __future__ import annotations

import pytest

from postveil.routing import (
    CredentialStatus,
    MessageClass,
    Method,
    RecipientFacts,
    decide_recipient,
)
from postveil.routing.explain import GENERIC_REASON, plain_class_reason, plain_reason

KEY_AND_TLS = (
    "no usable encryption key or certificate is on file for this address, and the "
    "recipient's mail server is not known to enforce TLS"
)


@pytest.mark.parametrize(
    ("unavailable", "recipients", "expected"),
    [
        ((Method.TLS, Method.PGP, Method.SMIME), 1, KEY_AND_TLS),
        ((Method.PGP, Method.SMIME, Method.TLS), 1, KEY_AND_TLS),
        (
            (Method.TLS, Method.PGP, Method.SMIME, Method.PORTAL),
            1,
            "no usable encryption key or certificate is on file for this address, the "
            "recipient's mail server is not known to enforce TLS, and no secure portal is set up",
        ),
        (
            (Method.TLS, Method.PGP, Method.SMIME),
            3,
            "no usable encryption key or certificate is on file for these addresses, and the "
            "recipients' mail servers are not known to enforce TLS",
        ),
        ((Method.PGP,), 1, "no usable PGP encryption key is on file for this address"),
        ((Method.SMIME,), 1, "no usable S/MIME certificate is on file for this address"),
        ((Method.SMIME, Method.PORTAL), 1, "no usable S/MIME certificate is on file for this address, and no secure portal is set up"),
        ((Method.PORTAL,), 1, "no secure portal is set up"),
        ((Method.TLS,), 1, "the recipient's mail server is not known to enforce TLS"),
        ((), 1, GENERIC_REASON),
    ],
)
def test_plain_reason(unavailable: tuple[Method, ...], recipients: int, expected: str) -> None:
    assert plain_reason(unavailable, recipients=recipients) == expected


def test_plain_reason_has_no_jargon() -> None:
    everything = plain_reason((Method.TLS, Method.PGP, Method.SMIME, Method.PORTAL))

    assert "tls:" not in everything
    assert "pgp:" not in everything
    assert ";" not in everything


@pytest.mark.parametrize(
    ("message_class", "tags", "expected"),
    [
        (MessageClass.ESCALATED, ("[secure]",), "the tag [secure] in its Subject asked for encryption"),
        (
            MessageClass.ESCALATED,
            ("[secure]", "[encrypt]"),
            "the tags [secure] and [encrypt] in its Subject asked for encryption",
        ),
        (MessageClass.ESCALATED, (), "the system that sent it asked for encryption"),
        (MessageClass.FORCED_PGP, ("[pgp]",), "the tag [pgp] in its Subject asked for PGP encryption"),
        (
            MessageClass.FORCED_SMIME,
            ("[secure]", "[smime]", "[pgp]"),
            "the tags [secure], [smime] and [pgp] in its Subject asked for S/MIME encryption",
        ),
        (MessageClass.FORCED_PORTAL, (), "the system that sent it asked for delivery through the secure portal"),
        (MessageClass.SENSITIVE, (), "it appears to contain patient or other protected health information"),
        (MessageClass.BULK, (), "it comes from a bulk sender address, whose mail may only travel over TLS"),
    ],
)
def test_plain_class_reason(message_class: MessageClass, tags: tuple[str, ...], expected: str) -> None:
    assert plain_class_reason(message_class, tags) == expected


def test_decision_lists_unavailable_methods() -> None:
    facts = RecipientFacts(
        False,
        "no TLS policy for the domain",
        CredentialStatus(None, "PGP key expired"),
        CredentialStatus(None, "no certificate for the address"),
        True,
    )

    unroutable = decide_recipient("x@example.org", (Method.TLS, Method.PGP, Method.SMIME), facts)
    portal = decide_recipient("x@example.org", (Method.TLS, Method.PGP, Method.PORTAL), facts)

    assert unroutable.unavailable == (Method.TLS, Method.PGP, Method.SMIME)
    assert len(unroutable.skipped) == 3
    assert portal.method is Method.PORTAL
    assert portal.unavailable == (Method.TLS, Method.PGP)
