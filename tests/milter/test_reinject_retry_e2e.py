"""Retries of a message whose copies were partly re-injected, through the private
Postfix: each recipient gets exactly one copy.

The first attempt fails after one copy was queued because Postfix's own
header_checks reject the S/MIME copy at the re-injection listener. The original
message carries a text/plain Content-Type, so the same rule never touches it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from postveil.harness.postfix import PrivatePostfix
from postveil.harness.pytest_plugin import postfix_settings, unique_domain
from postveil.harness.recipients import PgpRecipient, SmimeRecipient
from postveil.harness.smtp import ReceivedMessage
from postveil.harness.world import TestDomain, World

pytestmark = pytest.mark.postfix

SENDER = "doctor@clinic.test"
REJECT_SMIME = "/^Content-Type:.*application\\/pkcs7-mime/ REJECT S/MIME copies refused by this test\n"


@dataclass
class Scene:
    world: World
    postfix: PrivatePostfix
    portal: TestDomain

    @property
    def portal_intake(self) -> str:
        return f"intake@{self.portal.name}"

    @property
    def store_path(self) -> Path:
        return self.world.state_dir / "reinjected.sqlite3"

    def audit_records(self) -> list[dict[str, object]]:
        lines = (self.world.state_dir / "audit" / "audit.jsonl").read_text().splitlines()
        return [record for record in map(json.loads, lines) if record["kind"] == "message"]


@dataclass
class Recipients:
    """A PGP, a portal and an S/MIME recipient in a domain of their own."""

    domain: TestDomain
    pgp: PgpRecipient
    portal: str
    smime: SmimeRecipient

    @property
    def envelope(self) -> list[str]:
        # Routing groups follow this order: the PGP copy stays in the original
        # transaction, the portal copy is re-injected first and the S/MIME copy second.
        return [self.pgp.address, self.portal, self.smime.address]


@pytest.fixture(scope="module")
def scene(world: World, postfix: PrivatePostfix) -> Iterator[Scene]:
    portal = world.add_domain(unique_domain("retry-portal"))
    config = world.base_config()
    config["portal"] = {"intake_address": f"intake@{portal.name}"}
    config_path = world.write_config(config, "reinject-retry.yaml")
    world.start_policyd(config_path)
    world.start_milter(config_path)
    try:
        yield Scene(world, postfix, portal)
    finally:
        world.stop_daemon("milter")
        world.stop_daemon("policyd")


def fresh_recipients(scene: Scene, label: str) -> Recipients:
    domain = scene.world.add_domain(unique_domain(label), tls="none")
    return Recipients(
        domain,
        scene.world.add_pgp_recipient(f"bob@{domain.name}"),
        f"patient@{domain.name}",
        scene.world.add_smime_recipient(f"carol@{domain.name}"),
    )


def message_without_date(recipients: Recipients, marker: str) -> bytes:
    """A tagged message without Date and Message-ID, so Postfix adds both, differently
    on each attempt."""
    return (
        f"From: <{SENDER}>\r\nTo: {', '.join(recipients.envelope)}\r\nSubject: [secure] Referral\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Referral {marker}: please see the patient on Monday.\r\n"
    ).encode()


def received_by(domain: TestDomain, recipient: str) -> list[ReceivedMessage]:
    return [message for message in domain.sink.messages if recipient in message.rcpt_tos]


def portal_copies(scene: Scene, marker: str) -> list[ReceivedMessage]:
    return [message for message in scene.portal.sink.messages if marker.encode() in message.data]


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)


def wait_for_every_copy(scene: Scene, recipients: Recipients, marker: str, count: int) -> None:
    """Wait until each recipient has ``count`` copies, then a little longer for extra ones."""
    wait_until(
        lambda: len(received_by(recipients.domain, recipients.pgp.address)) >= count
        and len(received_by(recipients.domain, recipients.smime.address)) >= count
        and len(portal_copies(scene, marker)) >= count
    )
    time.sleep(2.0)


def test_retry_after_partial_reinjection_delivers_once(scene: Scene) -> None:
    recipients = fresh_recipients(scene, "retry")
    marker = "retry-once-7f3a"
    message = message_without_date(recipients, marker)
    checks = scene.postfix.config_dir / "reject-smime-copies.regexp"
    checks.write_text(REJECT_SMIME)

    with postfix_settings(scene.postfix, header_checks=f"regexp:{checks}"):
        first = scene.postfix.send(message, SENDER, recipients.envelope)
        wait_until(lambda: len(portal_copies(scene, marker)) >= 1)
    assert first.code == 451, first.text
    assert len(portal_copies(scene, marker)) == 1
    assert received_by(recipients.domain, recipients.smime.address) == []
    assert received_by(recipients.domain, recipients.pgp.address) == []

    time.sleep(1.1)  # a later second, so Postfix's added Date differs on the retry
    retry = scene.postfix.send(message, SENDER, recipients.envelope)
    assert retry.code == 250, retry.text
    wait_for_every_copy(scene, recipients, marker, count=1)

    assert len(received_by(recipients.domain, recipients.pgp.address)) == 1
    assert len(received_by(recipients.domain, recipients.smime.address)) == 1
    assert len(portal_copies(scene, marker)) == 1
    assert recipients.smime.decrypt(received_by(recipients.domain, recipients.smime.address)[0].data)
    assert recipients.pgp.decrypt(received_by(recipients.domain, recipients.pgp.address)[0].data)

    log = scene.world.daemons["milter"].log_text()
    assert f"{retry.queue_id}: portal version for 1 recipient(s) already queued as " in log
    assert f"{retry.queue_id}: re-injected smime version for 1 recipient(s) as " in log

    records = [
        record
        for record in scene.audit_records()
        if any(item["address"] == recipients.pgp.address for item in record["recipients"])  # type: ignore[attr-defined]
    ]
    assert [record["action"] for record in records] == ["accept", "tempfail", "accept"]
    assert records[2]["queue_id"] == retry.queue_id
    assert "skipped_copy:portal" not in records[0]["tags"]  # type: ignore[operator]
    assert "skipped_copy:portal" in records[2]["tags"]  # type: ignore[operator]
    assert "skipped_copy:smime" not in records[2]["tags"]  # type: ignore[operator]
    assert marker not in json.dumps(records)

    with sqlite3.connect(scene.store_path) as connection:
        assert connection.execute("SELECT count(*) FROM copies").fetchone() == (0,)


def test_same_message_after_success_delivered_again(scene: Scene) -> None:
    """Keys are removed once a message is accepted, so the same bytes sent again later
    are a new message and reach every recipient again."""
    recipients = fresh_recipients(scene, "resend")
    marker = "resend-again-91c2"
    message = message_without_date(recipients, marker)

    first = scene.postfix.send(message, SENDER, recipients.envelope)
    assert first.code == 250, first.text
    wait_for_every_copy(scene, recipients, marker, count=1)
    second = scene.postfix.send(message, SENDER, recipients.envelope)
    assert second.code == 250, second.text
    wait_for_every_copy(scene, recipients, marker, count=2)

    assert len(received_by(recipients.domain, recipients.pgp.address)) == 2
    assert len(received_by(recipients.domain, recipients.smime.address)) == 2
    assert len(portal_copies(scene, marker)) == 2
