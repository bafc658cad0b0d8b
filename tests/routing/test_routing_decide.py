"""The per-recipient decision, as a table of (methods, facts) -> method and reason."""

from __future__ import annotations

import pytest

from postveil.routing import CredentialStatus, Method, RecipientFacts, decide_recipient

NO_KEY = CredentialStatus(None, "no PGP key for the address")
KEY = CredentialStatus("A" * 40, "PGP key AAAAAAAAAAAAAAAA valid")
NO_CERT = CredentialStatus(None, "no certificate for the address")
EC_CERT = CredentialStatus(None, "certificate key is EC, and S/MIME encryption here supports only RSA recipient keys")
CERT = CredentialStatus("B" * 64, "certificate BBBBBBBBBBBBBBBB valid")

SENSITIVE = (Method.TLS, Method.PGP, Method.SMIME, Method.PORTAL)
ESCALATED = (Method.PGP, Method.SMIME, Method.PORTAL)
BULK = (Method.TLS, Method.DROP)


def facts(tls: bool = False, pgp=NO_KEY, smime=NO_CERT, portal: bool = False) -> RecipientFacts:
    reason = "MTA-STS policy in enforce mode" if tls else "no TLS policy for the domain"
    return RecipientFacts(tls, reason, pgp, smime, portal)


@pytest.mark.parametrize(
    ("methods", "recipient_facts", "method", "fingerprint", "reason_part"),
    [
        ((Method.PLAIN,), facts(), Method.PLAIN, None, "clean"),
        (SENSITIVE, facts(tls=True, pgp=KEY), Method.TLS, None, "MTA-STS"),
        (SENSITIVE, facts(pgp=KEY, smime=CERT), Method.PGP, "A" * 40, "PGP key"),
        (SENSITIVE, facts(smime=CERT), Method.SMIME, "B" * 64, "certificate"),
        (SENSITIVE, facts(smime=EC_CERT, portal=True), Method.PORTAL, None, "portal"),
        (SENSITIVE, facts(), None, None, "no acceptable method"),
        (ESCALATED, facts(tls=True), None, None, "no acceptable method"),
        (ESCALATED, facts(tls=True, portal=True), Method.PORTAL, None, "portal"),
        (ESCALATED, facts(tls=True, smime=CERT), Method.SMIME, "B" * 64, "certificate"),
        (BULK, facts(tls=True), Method.TLS, None, "MTA-STS"),
        (BULK, facts(pgp=KEY), Method.DROP, None, "dropped"),
        ((Method.PGP,), facts(smime=CERT, portal=True), None, None, "no PGP key"),
        ((Method.SMIME, Method.PORTAL), facts(smime=EC_CERT), None, None, "key is EC"),
    ],
)
def test_decide_table(methods, recipient_facts, method, fingerprint, reason_part) -> None:
    decision = decide_recipient("r@example.org", methods, recipient_facts)

    assert decision.recipient == "r@example.org"
    assert decision.method == method
    assert decision.fingerprint == fingerprint
    assert reason_part in decision.reason


def test_skipped_methods_explained() -> None:
    decision = decide_recipient("r@example.org", SENSITIVE, facts(smime=CERT))

    assert decision.skipped == ("tls: no TLS policy for the domain", "pgp: no PGP key for the address")


def test_non_rsa_certificate_moves_to_next_method() -> None:
    decision = decide_recipient("r@example.org", (Method.SMIME, Method.PORTAL), facts(smime=EC_CERT, portal=True))

    assert decision.method is Method.PORTAL
    assert "key is EC" in decision.skipped[0]


@pytest.mark.parametrize(
    ("methods", "expected"),
    [
        (ESCALATED, Method.PRE_ENCRYPTED),
        (BULK, Method.PRE_ENCRYPTED),
        ((Method.PLAIN,), Method.PLAIN),
    ],
)
def test_already_encrypted(methods, expected) -> None:
    decision = decide_recipient("r@example.org", methods, facts(), already_encrypted="smime")

    assert decision.method is expected
