"""The sender's notice of removed recipients: wording per case, identification, MIME."""

from __future__ import annotations

import datetime
import email
import email.policy
from dataclasses import dataclass, field

import pytest

from postveil.config.routing import RoutingSection
from postveil.crypto import RawMessage, build_notice
from postveil.routing import MessageClass, Method, RecipientDecision, plan_delivery

NOW = datetime.datetime(2026, 12, 4, 9, 30, tzinfo=datetime.UTC)
SENDER = "doc@clinic.example"
DATE = "Fri, 04 Dec 2026 10:15:03 +0100"
MESSAGE_ID = "<m1@clinic.example>"

SENSITIVE = (Method.TLS, Method.PGP, Method.SMIME, Method.PORTAL)
NO_PORTAL = (Method.TLS, Method.PGP, Method.SMIME)


def removed(recipient: str, *methods: Method) -> RecipientDecision:
    skipped = tuple(f"{method.value}: no {method.value} for the address" for method in methods)
    return RecipientDecision(recipient, None, "no acceptable method: x", None, skipped, methods)


def sent(recipient: str, method: Method = Method.TLS) -> RecipientDecision:
    return RecipientDecision(recipient, method, "available", None)


@dataclass(frozen=True)
class Case:
    decisions: list[RecipientDecision]
    subject: str
    opening: str
    message_class: MessageClass = MessageClass.ESCALATED
    tags: tuple[str, ...] = ("[secure]",)
    portal: bool = False
    routing: RoutingSection = field(default_factory=lambda: RoutingSection(no_method_action="remove_and_notify"))
    present: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()


CASES = {
    "single recipient, nobody got it": Case(
        [removed("patient@plain.example", *NO_PORTAL)],
        "Your message was not delivered",
        "Your message was not delivered to its recipient. Nobody received it.",
        present=(
            "No usable encryption key or certificate is on file for this address, and the "
            "recipient's mail server is not known to enforce TLS.",
            "For IT: tls: no tls for the address; pgp: no pgp for the address; smime: no smime "
            "for the address",
            "Ask your IT team to import the encryption key or certificate of each recipient "
            "listed above.",
            "Then send the message again.",
        ),
        absent=("other recipient", "delivered to its other", "listed above only", "portal"),
    ),
    "two recipients, nobody got it": Case(
        [removed("a@plain.example", *NO_PORTAL), removed("b@plain.example", *NO_PORTAL)],
        "Your message was not delivered",
        "Your message was not delivered to any of its 2 recipients. Nobody received it.",
        present=("  a@plain.example\n", "  b@plain.example\n"),
        absent=("other recipient",),
    ),
    "one of three removed": Case(
        [removed("x@plain.example", *NO_PORTAL), sent("a@tls.example"), sent("b@tls.example", Method.PGP)],
        "Your message was not delivered to some recipients",
        "Your message was not delivered to 1 of its 3 recipients. It was sent to the other 2 recipients.",
        present=("send the message again to the recipient listed above only",),
        absent=("a@tls.example", "b@tls.example"),
    ),
    "two of three removed": Case(
        [removed("x@plain.example", *NO_PORTAL), removed("y@plain.example", *NO_PORTAL), sent("a@tls.example")],
        "Your message was not delivered to some recipients",
        "Your message was not delivered to 2 of its 3 recipients. It was sent to the other recipient.",
        present=(
            "  x@plain.example\n",
            "  y@plain.example\n",
            "no secure way to deliver it to the recipients below",
            "send the message again to the recipients listed above only",
        ),
    ),
    "portal configured for forced pgp": Case(
        [removed("x@plain.example", Method.PGP), sent("a@plain.example", Method.PORTAL)],
        "Your message was not delivered to some recipients",
        "Your message was not delivered to 1 of its 2 recipients. It was sent to the other recipient.",
        message_class=MessageClass.FORCED_PGP,
        tags=("[pgp]",),
        portal=True,
        present=(
            "the tag [pgp] in its Subject asked for PGP encryption",
            "No usable PGP encryption key is on file for this address.",
            "Or send the message again to the recipient listed above only with [portal] in the "
            "Subject, in place of any other tag. It then goes through the secure portal.",
        ),
    ),
    "no portal configured": Case(
        [removed("x@plain.example", *SENSITIVE)],
        "Your message was not delivered",
        "Your message was not delivered to its recipient. Nobody received it.",
        message_class=MessageClass.SENSITIVE,
        tags=(),
        present=(
            "it appears to contain patient or other protected health information",
            "and no secure portal is set up.",
        ),
        absent=("with [portal] in the",),
    ),
    "bulk sender without tls": Case(
        [removed("x@plain.example", Method.TLS)],
        "Your message was not delivered",
        "Your message was not delivered to its recipient. Nobody received it.",
        message_class=MessageClass.BULK,
        tags=(),
        present=(
            "it comes from a bulk sender address",
            "The recipient's mail server is not known to enforce TLS.",
        ),
        absent=("import the encryption key",),
    ),
    "trigger header without tag": Case(
        [removed("x@plain.example", *NO_PORTAL)],
        "Your message was not delivered",
        "Your message was not delivered to its recipient. Nobody received it.",
        tags=(),
        present=("the system that sent it asked for encryption",),
    ),
    "configured next step": Case(
        [removed("x@plain.example", *NO_PORTAL)],
        "Your message was not delivered",
        "Your message was not delivered to its recipient. Nobody received it.",
        routing=RoutingSection(
            no_method_action="remove_and_notify",
            notice_next_step="Call the IT help desk on extension 4321.",
        ),
        present=("  - Call the IT help desk on extension 4321.\n",),
    ),
}


def render(case: Case, *, message_date: str | None = DATE, message_id: str | None = MESSAGE_ID) -> bytes:
    plan = plan_delivery(case.decisions, [d.recipient for d in case.decisions], "remove_and_notify")
    return build_notice(
        SENDER,
        plan,
        message_date=message_date,
        message_id=message_id,
        message_class=case.message_class,
        tags=case.tags,
        routing=case.routing,
        portal_configured=case.portal,
        now=NOW,
    )


def unwrapped(body: str) -> str:
    """Join wrapped lines back into paragraphs, so a phrase can span a line break."""
    lines = [line.strip() for line in body.splitlines()]
    return " ".join(lines)


@pytest.mark.parametrize("name", list(CASES))
def test_notice_wording(name: str) -> None:
    case = CASES[name]
    parsed = email.message_from_bytes(render(case), policy=email.policy.default)
    body = parsed.get_content().replace("\r\n", "\n")
    flowing = unwrapped(body)

    assert parsed["Subject"] == case.subject
    assert case.opening in flowing
    for phrase in case.present:
        if phrase.endswith("\n"):
            assert phrase in body, phrase
        else:
            assert phrase in flowing, phrase
    for phrase in case.absent:
        assert phrase not in body, phrase
    for decision in case.decisions:
        if decision.method is None:
            assert f"  {decision.recipient}\n" in body


def test_notice_never_claims_delivery_when_nobody_got_it() -> None:
    for name, case in CASES.items():
        body = unwrapped(email.message_from_bytes(render(case), policy=email.policy.default).get_content())
        nobody = all(decision.method is None for decision in case.decisions)

        assert ("Nobody received it." in body) is nobody, name
        assert ("It was sent to the other" in body) is not nobody, name
        assert "delivered to its other recipients" not in body, name


def test_notice_identifies_by_date_and_message_id() -> None:
    case = CASES["one of three removed"]
    body = render(case).split(b"\r\n\r\n", 1)[1]

    assert b"  Date:       Fri, 04 Dec 2026 10:15:03 +0100\r\n" in body
    assert b"  Message-ID: <m1@clinic.example>\r\n" in body


def test_notice_without_date_or_message_id() -> None:
    body = render(CASES["one of three removed"], message_date=None, message_id=None).split(b"\r\n\r\n", 1)[1]

    assert b"  Date:       (none)\r\n" in body
    assert b"  Message-ID: (none)\r\n" in body


def test_notice_identifier_stays_on_one_line() -> None:
    notice = render(CASES["one of three removed"], message_date="Fri, 04 Dec 2026\r\n\tinjected: yes", message_id="<" + "m" * 500 + ">")
    headers = RawMessage.parse(notice)

    assert headers.get_all("injected") == []
    assert b"  Date:       Fri, 04 Dec 2026 injected: yes\r\n" in notice
    assert max(len(line) for line in notice.split(b"\r\n")) <= 998


@pytest.mark.parametrize("name", list(CASES))
def test_notice_mime_is_valid(name: str) -> None:
    notice = render(CASES[name])
    parsed = email.message_from_bytes(notice, policy=email.policy.default)
    head, body = notice.split(b"\r\n\r\n", 1)

    assert parsed.defects == []
    assert all(not header.defects for header in parsed.values())
    assert parsed["From"] == "postmaster@localhost"
    assert parsed["To"] == SENDER
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["MIME-Version"] == "1.0"
    assert parsed["Date"].datetime == NOW
    assert parsed["Message-ID"].endswith("@localhost>")
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content_charset() == "utf-8"
    assert parsed["Content-Transfer-Encoding"] == "7bit"
    assert head.isascii()
    assert body.isascii()
    assert b"\n" not in notice.replace(b"\r\n", b"")
    assert max(len(line) for line in body.split(b"\r\n")) <= 78


def test_notice_non_ascii_is_8bit_utf8() -> None:
    case = Case(
        [removed("jürgen@praxis.example", *NO_PORTAL)],
        "Your message was not delivered",
        "Your message was not delivered to its recipient.",
    )
    notice = render(case)
    parsed = email.message_from_bytes(notice, policy=email.policy.default)

    assert parsed["Content-Transfer-Encoding"] == "8bit"
    assert "  jürgen@praxis.example\n" in parsed.get_content().replace("\r\n", "\n")
    assert parsed.defects == []
