"""Grouping into versions, Bcc isolation, and the outcome for unroutable recipients."""

from __future__ import annotations

import pytest

from postveil.routing import Method, PlanAction, RecipientDecision, VersionKind, plan_delivery
from postveil.routing.plan import REJECT_TEXT_MAX, find_bcc


def d(recipient: str, method: Method | None, fingerprint: str | None = None) -> RecipientDecision:
    return RecipientDecision(recipient, method, "reason", fingerprint)


def test_three_recipients_three_versions() -> None:
    decisions = [
        d("tls@enforcing.example", Method.TLS),
        d("pgp@example.org", Method.PGP, "F1"),
        d("portal@example.net", Method.PORTAL),
    ]
    plan = plan_delivery(decisions, ["tls@enforcing.example", "pgp@example.org", "portal@example.net"], "reject")

    assert plan.action is PlanAction.DELIVER
    assert [(g.kind, g.recipients) for g in plan.groups] == [
        (VersionKind.CLEARTEXT, ("tls@enforcing.example",)),
        (VersionKind.PGP, ("pgp@example.org",)),
        (VersionKind.PORTAL, ("portal@example.net",)),
    ]
    assert plan.groups[1].fingerprints == ("F1",)


def test_visible_pgp_recipients_share_a_version() -> None:
    decisions = [d("a@example.org", Method.PGP, "FA"), d("b@example.org", Method.PGP, "FB")]
    plan = plan_delivery(decisions, ["a@example.org", "b@example.org"], "reject")

    assert len(plan.groups) == 1
    assert plan.groups[0].fingerprints == ("FA", "FB")


def test_bcc_pgp_recipient_gets_own_copy() -> None:
    decisions = [d("to@example.org", Method.PGP, "FT"), d("bcc@example.org", Method.PGP, "FB")]
    plan = plan_delivery(decisions, ["To@Example.org"], "reject")

    assert [(g.recipients, g.fingerprints, g.bcc) for g in plan.groups] == [
        (("to@example.org",), ("FT",), False),
        (("bcc@example.org",), ("FB",), True),
    ]


def test_each_bcc_separate_even_same_kind() -> None:
    decisions = [d("b1@example.org", Method.TLS), d("b2@example.org", Method.TLS), d("to@example.org", Method.TLS)]
    plan = plan_delivery(decisions, ["to@example.org"], "reject")

    assert [g.recipients for g in plan.groups] == [("to@example.org",), ("b1@example.org",), ("b2@example.org",)]


def test_cleartext_group_first() -> None:
    decisions = [d("p@example.org", Method.PGP, "F"), d("t@example.org", Method.TLS)]
    plan = plan_delivery(decisions, ["p@example.org", "t@example.org"], "reject")

    assert plan.groups[0].kind is VersionKind.CLEARTEXT


def test_unroutable_rejects_naming_recipients() -> None:
    decisions = [d("ok@example.org", Method.TLS), d("x@example.org", None), d("y@example.org", None)]
    plan = plan_delivery(decisions, ["ok@example.org", "x@example.org", "y@example.org"], "reject")

    assert plan.action is PlanAction.REJECT
    assert plan.groups == ()
    code, xcode, text = plan.reject_reply()
    assert (code, xcode) == ("550", "5.7.1")
    assert "x@example.org, y@example.org" in text


def test_unroutable_removed_with_notice() -> None:
    decisions = [d("ok@example.org", Method.TLS), d("x@example.org", None)]
    plan = plan_delivery(decisions, ["ok@example.org", "x@example.org"], "remove_and_notify")

    assert plan.action is PlanAction.REMOVE_AND_NOTIFY
    assert [g.recipients for g in plan.groups] == [("ok@example.org",)]
    assert [u.recipient for u in plan.unroutable] == ["x@example.org"]


def test_everyone_dropped_leaves_no_group() -> None:
    decisions = [d("a@example.org", Method.DROP), d("b@example.org", Method.DROP)]
    plan = plan_delivery(decisions, ["a@example.org"], "reject")

    assert plan.action is PlanAction.DELIVER
    assert plan.groups == ()
    assert len(plan.dropped) == 2


def test_find_bcc_ignores_case() -> None:
    assert find_bcc(["A@x.example", "b@x.example"], ["a@X.example"]) == {"b@x.example"}


def test_reject_reply_stays_short() -> None:
    decisions = [d(f"recipient{i:03d}@a-rather-long-domain-name.example", None) for i in range(60)]
    plan = plan_delivery(decisions, [], "reject")

    text = plan.reject_reply()[2]
    assert len(text.encode()) <= REJECT_TEXT_MAX
    assert "and 54 more" in text
    assert "recipient000@" in text


def unroutable(recipient: str, *methods: Method) -> RecipientDecision:
    skipped = tuple(f"{method.value}: reason with fingerprint {'F' * 40}" for method in methods)
    return RecipientDecision(recipient, None, "no acceptable method: x", None, skipped, methods)


SENSITIVE = (Method.TLS, Method.PGP, Method.SMIME, Method.PORTAL)


@pytest.mark.parametrize(
    ("decisions", "reason"),
    [
        (
            [unroutable("x@example.org", Method.TLS, Method.PGP, Method.SMIME)],
            "Reason: no usable encryption key or certificate is on file for this address, "
            "and the recipient's mail server is not known to enforce TLS",
        ),
        (
            [unroutable("x@example.org", *SENSITIVE), unroutable("y@example.org", *SENSITIVE)],
            "Reason: no usable encryption key or certificate is on file for these addresses, "
            "the recipients' mail servers are not known to enforce TLS, and no secure portal "
            "is set up",
        ),
        ([unroutable("x@example.org", Method.PGP)], "Reason: no usable PGP encryption key is on file for this address"),
        ([unroutable("x@example.org", Method.SMIME)], "Reason: no usable S/MIME certificate is on file for this address"),
        (
            [unroutable("x@example.org", Method.PORTAL)],
            "Reason: no secure portal is set up",
        ),
        (
            [unroutable("x@example.org", Method.TLS)],
            "Reason: the recipient's mail server is not known to enforce TLS",
        ),
        (
            [unroutable("x@example.org", Method.PGP), unroutable("y@example.org", Method.SMIME)],
            "Reason: none of the delivery methods allowed for this message is available",
        ),
    ],
)
def test_reject_reply_plain_reason(decisions: list[RecipientDecision], reason: str) -> None:
    plan = plan_delivery(decisions, [], "reject")

    code, xcode, text = plan.reject_reply()
    assert (code, xcode) == ("550", "5.7.1")
    assert text.startswith("message needs protection and no acceptable delivery method exists for: x@example.org")
    assert text.endswith(reason)
    assert "F" * 16 not in text
    assert len(text.encode()) <= REJECT_TEXT_MAX


def test_reject_reply_omits_reason_that_does_not_fit() -> None:
    # Each umlaut takes two octets, so about 300 characters of names with the prefix and
    # the reason pass 500 octets. The reason is then left out rather than cut.
    addresses = [f"empfänger-müller-{i:02d}@großpraxis-überweisung.example" for i in range(9)]
    decisions = [unroutable(address, *SENSITIVE) for address in addresses]
    plan = plan_delivery(decisions, [], "reject")

    text = plan.reject_reply()[2]
    assert "Reason:" not in text
    assert "more" in text
    assert len(text.encode()) <= REJECT_TEXT_MAX


def test_shared_key_encrypted_once() -> None:
    decisions = [d("a@example.org", Method.PGP, "F"), d("b@example.org", Method.PGP, "F")]
    plan = plan_delivery(decisions, ["a@example.org", "b@example.org"], "reject")

    assert plan.groups[0].fingerprints == ("F",)
