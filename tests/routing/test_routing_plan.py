"""Grouping into versions, Bcc isolation, and the outcome for unroutable recipients."""

from __future__ import annotations

from postveil.routing import Method, PlanAction, RecipientDecision, VersionKind, plan_delivery
from postveil.routing.plan import find_bcc


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
    assert len(text) < 450
    assert text.endswith("more")
    assert "recipient000@" in text


def test_shared_key_encrypted_once() -> None:
    decisions = [d("a@example.org", Method.PGP, "F"), d("b@example.org", Method.PGP, "F")]
    plan = plan_delivery(decisions, ["a@example.org", "b@example.org"], "reject")

    assert plan.groups[0].fingerprints == ("F",)
