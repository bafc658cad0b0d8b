"""Versions per group: cleartext edits, portal copies, header removals, notices."""

from __future__ import annotations

import pytest

from postveil.config.portal import PortalSection
from postveil.config.routing import RoutingSection
from postveil.crypto import (
    CryptoFailure,
    RawMessage,
    RenderContext,
    read_triggers,
    render_version,
)
from postveil.crypto.mime import HeaderEdits, decode_text
from postveil.routing.decide import Method, RecipientDecision
from postveil.routing.plan import RecipientGroup, VersionKind

ROUTING = RoutingSection()
PORTAL = PortalSection(intake_address="intake@portal.example")

MESSAGE = (
    b"From: doc@sender.example\r\n"
    b"To: a@example.org, b@example.org\r\n"
    b"Bcc: hidden@example.org\r\n"
    b"Subject: Results [Secure] for you\r\n"
    b"X-Postveil-Protect: yes\r\n"
    b"X-Postveil-Portal-Recipient: attacker@evil.example\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"body\r\n"
)


def _render(kind: VersionKind, recipients: tuple[str, ...], portal: PortalSection = PORTAL):
    message = RawMessage.parse(MESSAGE)
    group = RecipientGroup(kind, recipients, (), False)
    context = RenderContext(routing=ROUTING, portal=portal)
    return render_version(message, group, read_triggers(message, ROUTING), context)


def test_cleartext_removes_tag_and_headers() -> None:
    version = _render(VersionKind.CLEARTEXT, ("a@example.org",))
    result = RawMessage.parse(version.raw)

    assert result.values("Subject") == ["Results for you"]
    assert result.get_all("Bcc") == []
    assert result.get_all("X-Postveil-Protect") == []
    assert result.body == b"body\r\n"
    assert version.body is None
    assert version.envelope_recipients == ("a@example.org",)


def test_cleartext_edits_are_milter_ready() -> None:
    version = _render(VersionKind.CLEARTEXT, ("a@example.org",))

    assert set(version.edits.remove) == {"X-Postveil-Protect", "Bcc"}
    assert version.edits.replace == (("Subject", "Results for you"),)
    assert version.edits.add == ()


def test_cleartext_subject_position_kept() -> None:
    version = _render(VersionKind.CLEARTEXT, ("a@example.org",))
    names = [field.name for field in RawMessage.parse(version.raw).headers]

    assert names.index("Subject") == 2


def test_untagged_subject_untouched() -> None:
    raw = MESSAGE.replace(b"Results [Secure] for you", b"Plain =?UTF-8?Q?r=C3=A9sum=C3=A9?=")
    message = RawMessage.parse(raw)
    group = RecipientGroup(VersionKind.CLEARTEXT, ("a@example.org",), (), False)
    version = render_version(message, group, read_triggers(message, ROUTING), RenderContext(ROUTING, PORTAL))

    assert version.edits.replace == ()
    assert b"Subject: Plain =?UTF-8?Q?r=C3=A9sum=C3=A9?=\r\n" in version.raw


def test_encoded_subject_reencoded() -> None:
    raw = MESSAGE.replace(b"Results [Secure] for you", b"=?UTF-8?Q?[secure]_r=C3=A9sum=C3=A9?=")
    message = RawMessage.parse(raw)
    group = RecipientGroup(VersionKind.CLEARTEXT, ("a@example.org",), (), False)
    version = render_version(message, group, read_triggers(message, ROUTING), RenderContext(ROUTING, PORTAL))

    new_subject = RawMessage.parse(version.raw).first_value("Subject") or ""
    assert new_subject.isascii()
    assert decode_text(new_subject) == "résumé"


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        (b"=?UTF-8?Q?[_secure_]_r=C3=A9sum=C3=A9?=", "résumé"),
        (b"=?UTF-8?B?WyBzZWN1cmUgXSBMYWIgcmVzdWx0cw==?=", "Lab results"),
        (b"Lab =?UTF-8?Q?[_Secure]?= results", "Lab results"),
        (b"=?ISO-8859-1?Q?[_SECURE_]_Befund_f=FCr?=", "Befund für"),
        (b"=?UTF-8?Q?Lab_[?= =?UTF-8?Q?_secure_]?=", "Lab"),
        ("Befund für [ secure ] Jürgen".encode(), "Befund für Jürgen"),
        # An RFC 2231 language tag after the charset.
        (b"=?UTF-8*en?Q?[_secure_]_Lab?=", "Lab"),
        (b"=?utf-8*de?B?W3NlY3VyZV0gQmVmdW5k?=", "Befund"),
        # A word that does not decode (a byte invalid in its charset, a charset Python
        # does not know) still leaves the tag visible to the reader.
        (b"=?UTF-8?Q?[secure]_Lab_=FF?=", "Lab \ufffd"),
        (b"=?UTF-8?B?W3NlY3VyZV0gTGFi?= =?x-unknown?Q?_results?=", "Lab results"),
    ],
)
def test_spaced_tag_removed_from_encoded_subject(subject: bytes, expected: str) -> None:
    raw = MESSAGE.replace(b"Results [Secure] for you", subject)
    message = RawMessage.parse(raw)
    triggers = read_triggers(message, ROUTING)
    group = RecipientGroup(VersionKind.CLEARTEXT, ("a@example.org",), (), False)
    version = render_version(message, group, triggers, RenderContext(ROUTING, PORTAL))

    new_subject = RawMessage.parse(version.raw).first_value("Subject") or ""
    assert triggers.tags == ("[secure]",)
    assert decode_text(new_subject) == expected
    assert "secure" not in new_subject.lower()


@pytest.mark.parametrize("body", [b"[secure]\r\n", b"Please treat as [ secure ].\r\n", b"Subject: [pgp]\r\n"])
def test_tag_in_body_is_ignored(body: bytes) -> None:
    raw = MESSAGE.replace(b"Results [Secure] for you", b"Results for you")
    raw = raw.replace(b"X-Postveil-Protect: yes\r\n", b"")
    raw = raw.replace(b"\r\n\r\nbody\r\n", b"\r\n\r\n" + body)
    triggers = read_triggers(RawMessage.parse(raw), ROUTING)

    assert triggers.tags == ()
    assert triggers.escalated is False
    assert triggers.forced_method is None


def test_portal_version_goes_to_intake() -> None:
    version = _render(VersionKind.PORTAL, ("a@example.org", "b@example.org"))
    result = RawMessage.parse(version.raw)

    assert version.envelope_recipients == ("intake@portal.example",)
    assert result.values("X-Postveil-Portal-Recipient") == ["a@example.org", "b@example.org"]
    assert result.values("Subject") == ["Results for you"]
    assert result.body == b"body\r\n"


def test_portal_sender_header_is_replaced() -> None:
    version = _render(VersionKind.PORTAL, ("a@example.org",))

    assert b"attacker@evil.example" not in version.raw
    assert "X-Postveil-Portal-Recipient" in version.edits.remove


def test_portal_not_configured_fails() -> None:
    with pytest.raises(CryptoFailure, match="intake_address"):
        _render(VersionKind.PORTAL, ("a@example.org",), PortalSection())


def test_smime_without_store_fails() -> None:
    with pytest.raises(CryptoFailure, match="certificate store"):
        _render(VersionKind.SMIME, ("a@example.org",))


def test_pgp_without_keyring_fails() -> None:
    with pytest.raises(CryptoFailure, match="GnuPG home"):
        _render(VersionKind.PGP, ("a@example.org",))


def test_header_edits_apply_order() -> None:
    message = RawMessage.parse(b"A: 1\r\nB: 2\r\nA: 3\r\nC: 4\r\n\r\nx")
    edits = HeaderEdits(remove=("C",), replace=(("A", "new"), ("D", "added")), add=(("E", "5"),))

    assert edits.apply(message) == b"A: new\r\nB: 2\r\nD: added\r\nE: 5\r\n\r\nx"


def test_pre_encrypted_method_uses_cleartext_group() -> None:
    # Pre-encrypted mail is passed through; routing maps it to the cleartext version.
    from postveil.routing.plan import plan_delivery

    decision = RecipientDecision("a@example.org", Method.PRE_ENCRYPTED, "already encrypted", None)
    plan = plan_delivery([decision], ["a@example.org"], "reject")

    assert plan.groups[0].kind is VersionKind.CLEARTEXT


def test_needs_smtputf8() -> None:
    ascii_version = _render(VersionKind.CLEARTEXT, ("a@example.org",))
    message = RawMessage.parse(MESSAGE.replace(b"Results", "Befund für".encode()))
    group = RecipientGroup(VersionKind.CLEARTEXT, ("a@example.org",), (), False)
    utf8_version = render_version(message, group, read_triggers(message, ROUTING), RenderContext(ROUTING, PORTAL))

    assert ascii_version.needs_smtputf8 is False
    assert utf8_version.needs_smtputf8 is True


THREAD_MESSAGE = MESSAGE.replace(
    b"Subject: Results [Secure] for you\r\n",
    b"Subject: Results [Secure] for you\r\nThread-Topic: Results [Secure] for you\r\n",
)


def _render_thread(kind: VersionKind, raw: bytes = THREAD_MESSAGE):
    message = RawMessage.parse(raw)
    group = RecipientGroup(kind, ("a@example.org",), (), False)
    return render_version(message, group, read_triggers(message, ROUTING), RenderContext(ROUTING, PORTAL))


@pytest.mark.parametrize("kind", [VersionKind.CLEARTEXT, VersionKind.PORTAL])
def test_tag_removed_from_thread_topic(kind: VersionKind) -> None:
    result = RawMessage.parse(_render_thread(kind).raw)

    assert result.values("Subject") == ["Results for you"]
    assert result.values("Thread-Topic") == ["Results for you"]


def test_encoded_thread_topic_reencoded() -> None:
    raw = THREAD_MESSAGE.replace(
        b"Thread-Topic: Results [Secure] for you", b"Thread-Topic: =?UTF-8?Q?R=C3=A9sultats_[secure]?="
    )
    version = _render_thread(VersionKind.CLEARTEXT, raw)
    (value,) = RawMessage.parse(version.raw).values("Thread-Topic")

    assert "secure" not in value.lower()
    assert decode_text(value) == "Résultats"


def test_thread_topic_untouched_without_tag() -> None:
    raw = THREAD_MESSAGE.replace(b"Subject: Results [Secure] for you", b"Subject: Results for you")
    raw = raw.replace(b"Thread-Topic: Results [Secure] for you", b"Thread-Topic: Results [draft]")
    version = _render_thread(VersionKind.CLEARTEXT, raw)

    assert version.edits.replace == ()
    assert b"Thread-Topic: Results [draft]\r\n" in version.raw
