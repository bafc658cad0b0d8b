"""The notice to the sender when a recipient first opens a portal message."""

from __future__ import annotations

import asyncio
import email
import logging
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import pytest

from postveil.config import parse_config
from postveil.config.portal import PortalSection
from postveil.portal import mailer
from postveil.portal.notices import SenderNotices
from postveil.portal.store import Pickup
from tests import planted
from tests.portal.conftest import (
    BODY_TEXT,
    RECIPIENT,
    SENDER,
    SUBJECT,
    RunningPortal,
    StartPortal,
    sample_message,
    write_config,
)
from tests.portal.test_web_flow import sign_in

ORIGINAL_ID = "<20261204100000.4711@clinic.example.org>"
ORIGINAL_DATE = "Fri, 04 Dec 2026 10:00:00 +0000"


def message_with_id() -> bytes:
    return f"Message-ID: {ORIGINAL_ID}\r\n".encode() + sample_message()


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the condition"
        await asyncio.sleep(0.02)


def notice_records(portal: RunningPortal) -> list[dict[str, str]]:
    return [
        record
        for record in portal.audit_records()
        if record["event"] in ("sender_notified", "sender_notice_failed")
    ]


async def test_notice_sent_once_with_concurrent_opens(start_portal: StartPortal) -> None:
    portal = await start_portal(notify_sender="first_open")
    message_id, token = portal.deposit(message_with_id())

    async with portal.client() as client:
        await sign_in(client, portal, token)

        async def fetch(suffix: str) -> int:
            async with client.get(portal.url(token, suffix)) as response:
                await response.read()
                return response.status

        suffixes = ["/message"] * 5 + ["/download"] * 2 + ["/part/1"]
        statuses = await asyncio.gather(*(fetch(suffix) for suffix in suffixes))
        assert statuses == [200] * len(suffixes)
        await wait_until(lambda: len(portal.sink.messages_to(SENDER)) >= 1)
        # Later opens send nothing more.
        assert await fetch("/message") == 200
        await asyncio.sleep(0.3)

    notices = portal.sink.messages_to(SENDER)
    assert len(notices) == 1
    records = notice_records(portal)
    assert [record["event"] for record in records] == ["sender_notified"]
    assert records[0]["message"] == message_id
    assert records[0]["recipient"] == RECIPIENT


async def test_notice_names_recipient_not_subject(start_portal: StartPortal) -> None:
    portal = await start_portal(notify_sender="first_open")
    _, token = portal.deposit(message_with_id())

    async with portal.client() as client:
        await sign_in(client, portal, token)
        async with client.get(portal.url(token, "/message")) as response:
            assert response.status == 200
        await wait_until(lambda: len(portal.sink.messages_to(SENDER)) == 1)

    raw = portal.sink.messages_to(SENDER)[0]
    notice = email.message_from_bytes(raw, policy=default_policy)
    assert notice["To"] == SENDER
    assert notice["Subject"] == "Secure message opened"
    assert notice["Auto-Submitted"] == "auto-generated"
    text = notice.get_body().get_content()  # type: ignore[union-attr]
    assert RECIPIENT in text
    assert ORIGINAL_ID in text
    assert ORIGINAL_DATE in text
    assert "Opened:" in text
    for secret in (SUBJECT, "Befund", BODY_TEXT, planted.PATIENT_NAME, planted.SSN):
        assert secret not in text
        assert secret.encode() not in raw
    assert token not in text


@pytest.mark.parametrize("sender", ["", "MAILER-DAEMON", "no-reply@localhost"])
async def test_no_notice_for_null_or_own_sender(
    start_portal: StartPortal, caplog: pytest.LogCaptureFixture, sender: str
) -> None:
    caplog.set_level(logging.INFO)
    portal = await start_portal(notify_sender="first_open")
    _, token = portal.deposit(message_with_id(), sender=sender)

    async with portal.client() as client:
        await sign_in(client, portal, token)
        async with client.get(portal.url(token, "/message")) as response:
            assert response.status == 200
        await asyncio.sleep(0.3)

    # Only the code mail went out.
    assert len(portal.sink.messages) == 1
    assert notice_records(portal) == []
    assert "no pickup notice for" in caplog.text


@pytest.mark.parametrize(
    "sender", ["=?utf-8?q?records?=@example.org", "=?us-ascii?b?cmVjb3Jkcw==?=@example.org"]
)
async def test_no_notice_to_decoded_sender(start_portal: StartPortal, sender: str) -> None:
    # Written into a To header, the encoded word would be decoded to another mailbox,
    # records@example.org, and smtplib took the envelope recipient from that header.
    portal = await start_portal(notify_sender="first_open")
    _, token = portal.deposit(message_with_id(), sender=sender)

    async with portal.client() as client:
        await sign_in(client, portal, token)
        async with client.get(portal.url(token, "/message")) as response:
            assert response.status == 200
        await asyncio.sleep(0.3)

    assert portal.sink.messages_to("records@example.org") == []
    assert len(portal.sink.messages) == 1
    assert notice_records(portal) == []


async def test_no_notice_by_default(start_portal: StartPortal) -> None:
    portal = await start_portal()
    _, token = portal.deposit(message_with_id())

    async with portal.client() as client:
        await sign_in(client, portal, token)
        async with client.get(portal.url(token, "/message")) as response:
            assert response.status == 200
        await asyncio.sleep(0.3)

    assert portal.sink.messages_to(SENDER) == []
    assert notice_records(portal) == []


async def test_rejected_notice_audited_view_shown(
    start_portal: StartPortal, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    portal = await start_portal(notify_sender="first_open")
    portal.sink.reject(SENDER)
    _, token = portal.deposit(message_with_id())

    async with portal.client() as client:
        await sign_in(client, portal, token)
        async with client.get(portal.url(token, "/message")) as response:
            page = await response.text()
        assert response.status == 200
        assert SUBJECT in page
        await wait_until(lambda: len(notice_records(portal)) == 1)
        # A failed notice is not tried again on the next open.
        async with client.get(portal.url(token, "/message")) as response:
            assert response.status == 200
        await asyncio.sleep(0.3)

    records = notice_records(portal)
    assert [record["event"] for record in records] == ["sender_notice_failed"]
    assert "550" in records[0]["reason"]
    assert portal.sink.messages_to(SENDER) == []
    assert "cannot send the pickup notice for" in caplog.text
    assert token not in caplog.text
    assert planted.PATIENT_NAME not in caplog.text
    assert planted.PATIENT_NAME not in portal.audit_text()


async def test_hanging_relay_does_not_delay_view(start_portal: StartPortal) -> None:
    # The relay is real for the code mail. Only the notice waits, so that the test
    # can tell the view's time from the notice's, which one SMTP sink cannot do.
    def send_slowly_to_sender(section: PortalSection, message: EmailMessage) -> None:
        if message["To"] == SENDER:
            time.sleep(2.0)
        mailer.send(section, message)

    portal = await start_portal(
        notify_sender="first_open", send=send_slowly_to_sender, send_timeout=1.0
    )
    _, token = portal.deposit(message_with_id())

    async with portal.client() as client:
        await sign_in(client, portal, token)
        started = time.monotonic()
        async with client.get(portal.url(token, "/message")) as response:
            assert response.status == 200
        assert time.monotonic() - started < 0.9
        await wait_until(lambda: len(notice_records(portal)) == 1)

    records = notice_records(portal)
    assert records[0]["event"] == "sender_notice_failed"
    assert records[0]["reason"] == "timed out"


async def test_hanging_notices_do_not_delay_code_mail(start_portal: StartPortal) -> None:
    # As above, only the notices wait. Six of them would fill every mail thread if
    # notices and code mails shared them.
    def send_slowly_to_sender(section: PortalSection, message: EmailMessage) -> None:
        if message["To"] == SENDER:
            time.sleep(4.0)
        mailer.send(section, message)

    portal = await start_portal(
        notify_sender="first_open", send=send_slowly_to_sender, send_timeout=6.0
    )
    tokens = [portal.deposit(message_with_id())[1] for _ in range(6)]
    _, waiting = portal.deposit(message_with_id())

    async with portal.client() as client:
        for token in tokens:
            await sign_in(client, portal, token)
        for token in tokens:
            async with client.get(portal.url(token, "/message")) as response:
                assert response.status == 200
        started = time.monotonic()
        async with client.post(portal.url(waiting, "/code"), allow_redirects=False) as response:
            assert response.status == 303
        assert time.monotonic() - started < 2.0


async def test_stop_with_notice_ending_meanwhile(tmp_path: Path) -> None:
    # In-memory send and audit functions: the race needs one notice to end while the
    # stop records another one as failed, which a real relay cannot time.
    config_path = write_config(tmp_path, notify_sender="first_open")
    section = parse_config(config_path.read_bytes(), str(config_path)).portal
    relay_answers = asyncio.Event()
    records: list[tuple[str, str, str]] = []

    async def claim(token: str) -> bool:
        return True

    async def send(message: EmailMessage) -> None:
        await relay_answers.wait()

    async def audit(event: str, pickup: Pickup, reason: str) -> bool:
        if event == "sender_notice_failed":
            # The relay accepts the other notice while this record is written.
            relay_answers.set()
            await asyncio.sleep(0.05)
        records.append((event, pickup.message_id, reason))
        return True

    notices = SenderNotices(section, claim=claim, send=send, audit=audit)
    now = time.time()
    for message_id in ("first", "second"):
        pickup = Pickup(message_id, RECIPIENT, SENDER, now, now + 3600, None, 100)
        await notices.start(f"token-{message_id}", pickup, message_with_id())

    await notices.finish(0.1)

    assert sorted(message_id for _, message_id, _ in records) == ["first", "second"]
    for event, _, reason in records:
        assert event == "sender_notice_failed"
        assert reason == "postveil-portal stopped while sending it"
