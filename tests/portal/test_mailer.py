"""The portal's mail: what a notification carries, and the relay's errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller

from postveil.config.portal import PortalSection
from postveil.harness.net import free_port
from postveil.portal import mailer
from postveil.portal.store import PortalError


class Replying:
    """An SMTP handler that gives a fixed reply at RCPT or DATA."""

    def __init__(self, rcpt: str = "250 OK", data: str = "250 OK") -> None:
        self.rcpt = rcpt
        self.data = data

    async def handle_RCPT(self, server, session, envelope, address, options):  # noqa: N802
        if self.rcpt.startswith("250"):
            envelope.rcpt_tos.append(address)
        return self.rcpt

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        return self.data


@pytest.fixture
def relay(request: pytest.FixtureRequest) -> Iterator[PortalSection]:
    port = free_port()
    controller = Controller(request.param, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield PortalSection(notify_relay=f"127.0.0.1:{port}")
    finally:
        controller.stop()


def test_notification_carries_no_message_content() -> None:
    section = PortalSection(organisation="Lakeside Clinic", notify_from="portal@clinic.test")
    notice = mailer.notification(
        section,
        recipient="ana@dest.test",
        sender="gp@clinic.test",
        link="https://p.test/m/TOKEN",
        expires=0,
    )
    text = notice.get_content()
    assert "https://p.test/m/TOKEN" in text
    assert "gp@clinic.test" in text
    assert notice["Subject"] == "Secure message from gp@clinic.test"
    assert notice["Auto-Submitted"] == "auto-generated"


@pytest.mark.parametrize("relay", [Replying(data="451 4.3.0 try later")], indirect=True)
def test_relay_reply_is_named(relay: PortalSection) -> None:
    message = mailer.code_message(relay, recipient="ana@dest.test", code="12345678", lifetime=600)
    with pytest.raises(PortalError, match=r"replied 451 4\.3\.0 try later$"):
        mailer.send(relay, message)


@pytest.mark.parametrize("relay", [Replying(rcpt="550 5.1.1 no such user")], indirect=True)
def test_refused_recipient_is_named(relay: PortalSection) -> None:
    message = mailer.code_message(relay, recipient="ana@dest.test", code="12345678", lifetime=600)
    with pytest.raises(PortalError, match=r"rejected the recipient: 550 5\.1\.1 no such user"):
        mailer.send(relay, message)


def test_relay_down_is_named() -> None:
    section = PortalSection(notify_relay="127.0.0.1:9")
    message = mailer.code_message(section, recipient="ana@dest.test", code="12345678", lifetime=600)
    with pytest.raises(PortalError, match="cannot send through portal.notify_relay 127.0.0.1:9"):
        mailer.send(section, message)


def test_notification_shows_bidi_override_in_sender() -> None:
    section = PortalSection(notify_from="portal@clinic.test")
    notice = mailer.notification(
        section,
        recipient="ana@dest.test",
        sender="\u202etset.cinilc@pg",
        link="https://p.test/m/TOKEN",
        expires=0,
    )

    assert notice["Subject"] == "Secure message from \ufffdtset.cinilc@pg"
    assert "\u202e" not in notice.get_content()


def test_long_link_stays_on_one_line() -> None:
    link = "https://secure-messages.hospital-group.example.org/portal/m/" + "T" * 43
    for organisation in ("Lakeside Clinic", "Clínica Lago"):
        section = PortalSection(organisation=organisation, notify_from="portal@clinic.test")
        notice = mailer.notification(
            section, recipient="ana@dest.test", sender="gp@clinic.test", link=link, expires=0
        )
        assert link.encode() + b"\n" in notice.as_bytes()


@pytest.mark.parametrize(
    ("lifetime", "text"),
    [(3, "3 seconds"), (60, "1 minute"), (90, "1 minute"), (600, "10 minutes")],
)
def test_code_lifetime_is_not_overstated(lifetime: float, text: str) -> None:
    message = mailer.code_message(
        PortalSection(), recipient="ana@dest.test", code="12345678", lifetime=lifetime
    )
    assert f"It is valid for {text} and can be used once." in message.get_content()


def test_original_identity_reads_headers_only() -> None:
    raw = (
        b"Subject: Befund\r\nMessage-ID:\r\n <a.b@clinic.test>\r\nDate: Fri, 04 Dec 2026 10:00:00"
        b" +0000\r\n\r\nMessage-ID: <in-the-body@x>\r\n"
    )
    assert mailer.original_identity(raw) == ("<a.b@clinic.test>", "Fri, 04 Dec 2026 10:00:00 +0000")


def test_original_identity_missing_long_and_hidden() -> None:
    long_id = "<" + "x" * 500 + "@clinic.test>"
    raw = f"Message-ID: {long_id}\r\nDate: Fri,\u202e 04 Dec\r\n\r\nbody\r\n".encode()
    message_id, date = mailer.original_identity(raw)
    assert len(message_id) == mailer.MAX_QUOTED_HEADER
    assert "\u202e" not in date
    assert mailer.original_identity(b"Subject: x\r\n\r\nbody\r\n") == ("(none)", "(none)")


def test_pickup_notice_text() -> None:
    section = PortalSection(organisation="Example Clinic", notify_from="portal@clinic.test")
    notice = mailer.pickup_notice(
        section,
        sender="gp@clinic.test",
        recipient="pat@dest.test",
        opened=1_800_000_000.0,
        stored=1_799_990_000.0,
        original_message_id="<a.b@clinic.test>",
        original_date="Fri, 04 Dec 2026 10:00:00 +0000",
    )
    assert notice["To"] == "gp@clinic.test"
    assert notice["From"] == "Example Clinic secure portal <portal@clinic.test>"
    text = notice.get_content()
    assert "pat@dest.test opened the message" in text
    assert "Opened:      15 January 2027, 08:00:00 UTC" in text
    assert "Message-ID:  <a.b@clinic.test>" in text
    assert "Stored:      15 January 2027, 05:13:20 UTC" in text
