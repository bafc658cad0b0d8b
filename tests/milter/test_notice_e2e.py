"""The sender's notice end to end: private Postfix, postveil-policyd and postveil-milter
with ``no_method_action: remove_and_notify``, and SMTP sinks for the sender's and the
recipients' domains."""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from postveil.harness.postfix import PrivatePostfix
from postveil.harness.pytest_plugin import unique_domain
from postveil.harness.recipients import PgpRecipient
from postveil.harness.smtp import ReceivedMessage
from postveil.harness.world import TestDomain, World
from tests import planted

pytestmark = pytest.mark.postfix

NOTICE_FROM = "postmaster@clinic.test"


@dataclass
class Scene:
    postfix: PrivatePostfix
    clinic: TestDomain
    plain: TestDomain
    pgp: PgpRecipient

    @property
    def sender(self) -> str:
        return f"doctor@{self.clinic.name}"


@pytest.fixture(scope="module")
def scene(world: World, postfix: PrivatePostfix) -> Iterator[Scene]:
    clinic = world.add_domain(unique_domain("clinic"))
    plain = world.add_domain(unique_domain("notls"), tls="none")
    pgp = world.add_pgp_recipient(f"bob@{plain.name}")
    config = world.base_config()
    config["routing"] = {"no_method_action": "remove_and_notify", "notice_from": NOTICE_FROM}
    config_path = world.write_config(config, "notice-e2e.yaml")
    world.start_policyd(config_path)
    world.start_milter(config_path)
    try:
        yield Scene(postfix, clinic, plain, pgp)
    finally:
        world.stop_daemon("milter")
        world.stop_daemon("policyd")


def tagged_message(sender: str, to: list[str], message_id: str) -> bytes:
    head = (
        f"From: <{sender}>\r\nTo: {', '.join(to)}\r\n"
        f"Subject: [ secure ] Results for {planted.PATIENT_NAME}\r\n"
        "Date: Fri, 04 Dec 2026 10:15:03 +0100\r\n"
        f"Message-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    return (head + f"MRN {planted.MRN}, SSN {planted.SSN}.\r\n").encode()


def wait_for(domain: TestDomain, recipient: str, message_id: str, timeout: float = 30) -> ReceivedMessage:
    """Wait for a message to ``recipient`` that mentions ``message_id``."""
    deadline = time.monotonic() + timeout
    while True:
        for message in domain.sink.messages:
            if recipient in message.rcpt_tos and message_id.encode() in message.data:
                return message
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing about <{message_id}> reached {recipient}")
        time.sleep(0.1)


def flowing(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines())


def test_notice_when_nobody_received(scene: Scene) -> None:
    message_id = "notice-nobody@clinic.test"
    recipient = f"patient@{scene.plain.name}"

    result = scene.postfix.send(tagged_message(scene.sender, [recipient], message_id), scene.sender, [recipient])
    assert result.code == 250, result.text

    notice = wait_for(scene.clinic, scene.sender, message_id)
    parsed = email.message_from_bytes(notice.data, policy=email.policy.default)
    body = flowing(parsed.get_content())

    # aiosmtpd records the null sender of MAIL FROM:<> as "<>".
    assert notice.mail_from == "<>"
    assert notice.rcpt_tos == (scene.sender,)
    assert parsed.defects == []
    assert parsed["From"] == NOTICE_FROM
    assert parsed["Subject"] == "Your message was not delivered"
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content_charset() == "utf-8"
    assert "Nobody received it." in body
    assert "other recipient" not in body
    assert "Fri, 04 Dec 2026 10:15:03 +0100" in body
    assert f"<{message_id}>" in body
    assert recipient in body
    assert "no usable encryption key or certificate is on file for this address" in body.lower()
    assert planted.PATIENT_NAME not in notice.data.decode()
    assert planted.MRN not in notice.data.decode()
    assert planted.SSN not in notice.data.decode()
    assert [m for m in scene.plain.sink.messages if message_id.encode() in m.data] == []


def test_notice_when_some_received(scene: Scene) -> None:
    message_id = "notice-some@clinic.test"
    removed = f"patient@{scene.plain.name}"
    delivered = scene.pgp.address

    result = scene.postfix.send(
        tagged_message(scene.sender, [removed, delivered], message_id), scene.sender, [removed, delivered]
    )
    assert result.code == 250, result.text

    notice = wait_for(scene.clinic, scene.sender, message_id)
    parsed = email.message_from_bytes(notice.data, policy=email.policy.default)
    body = flowing(parsed.get_content())

    assert notice.mail_from == "<>"
    assert parsed["Subject"] == "Your message was not delivered to some recipients"
    assert "not delivered to 1 of its 2 recipients. It was sent to the other recipient." in body
    assert removed in body
    assert delivered not in body
    copy = wait_for(scene.plain, delivered, message_id)
    assert copy.rcpt_tos == (delivered,)
    assert planted.SSN.encode() not in copy.data
    assert planted.SSN.encode() in scene.pgp.decrypt(copy.data)


def test_null_sender_rejected_not_removed(scene: Scene) -> None:
    """A bounce or auto-reply (MAIL FROM:<>) has no address for the notice. Removing a
    recipient would lose it silently, so the message is rejected instead."""
    message_id = "notice-null-sender@clinic.test"
    removed = f"patient@{scene.plain.name}"
    delivered = scene.pgp.address

    result = scene.postfix.send(tagged_message("", [removed, delivered], message_id), "", [removed, delivered])

    assert result.code == 550, result.text
    assert "5.7.1" in result.text
    assert removed in result.text
    time.sleep(1.0)  # give a copy that should not exist time to arrive
    assert [m for m in scene.plain.sink.messages if message_id.encode() in m.data] == []
    assert [m for m in scene.clinic.sink.messages if message_id.encode() in m.data] == []
