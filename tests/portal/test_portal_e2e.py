"""The built-in portal's intake end to end: a private Postfix with postveil-milter,
the pipe(8) transport running ``postveil portal deliver`` as an unprivileged user, and
the notifications going out through the re-injection listener to an SMTP sink."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from postveil.audit import generate_key_file
from postveil.cli.main import main
from postveil.crypto.mime import RawMessage
from postveil.harness.portal import (
    PIPE_GROUP,
    PIPE_SERVICE,
    PIPE_USER,
    own,
    pipe_python,
    pipe_pythonpath,
)
from postveil.harness.postfix import PrivatePostfix
from postveil.harness.pytest_plugin import attached_milter, postfix_settings, unique_domain
from postveil.harness.smtp import ReceivedMessage
from postveil.harness.world import TestDomain, World
from postveil.portal.store import PortalStore
from tests import planted

pytestmark = pytest.mark.postfix

BASE_URL = "https://portal.test"
LINK_RE = re.compile(re.escape(BASE_URL) + r"/m/([A-Za-z0-9_-]+)")


@dataclass
class Scene:
    postfix: PrivatePostfix
    clinic: TestDomain
    patients: TestDomain
    intake: str
    store_directory: Path
    key_file: Path
    audit_directory: Path

    @property
    def sender(self) -> str:
        return f"doctor@{self.clinic.name}"

    def open_store(self) -> PortalStore:
        return PortalStore.open(self.store_directory, self.key_file)

    def stored_messages(self) -> int:
        store = self.open_store()
        try:
            return store.counts()["messages"]
        finally:
            store.close()


@pytest.fixture(scope="module")
def scene(world: World, postfix: PrivatePostfix) -> Iterator[Scene]:
    clinic = world.add_domain(unique_domain("clinic"))
    patients = world.add_domain(unique_domain("patients"))
    intake = f"intake@{unique_domain('portal')}"
    state = world.base_dir / "portal-e2e"
    state.mkdir(mode=0o755)
    keys = state / "keys"
    keys.mkdir(mode=0o755)
    audit_directory = state / "intake-audit"
    audit_directory.mkdir()
    own(audit_directory, 0o750)
    generate_key_file(keys / "intake-audit.key")
    own(keys / "intake-audit.key", 0o600)

    config = world.base_config()
    config["portal"] = {
        "intake_address": intake,
        "seal_key_file": str(keys / "seal.key"),
        "key_file": str(keys / "portal.key"),
        "store_directory": str(state / "store"),
        "base_url": BASE_URL,
        "notify_relay": f"127.0.0.1:{postfix.reinject_port}",
        "organisation": "Test Clinic",
    }
    milter_config = world.write_config(config, "portal-e2e-milter.yaml")
    intake_config_data: dict[str, Any] = json.loads(json.dumps(config))
    intake_config_data["audit"] = {
        "directory": str(audit_directory),
        "key_file": str(keys / "intake-audit.key"),
    }
    intake_config = world.write_config(intake_config_data, "portal-e2e-intake.yaml")

    assert main(["portal", "init", "-c", str(intake_config)]) == 0
    own(state / "store", 0o700)
    own(keys / "portal.key", 0o600)
    own(keys / "seal.key", 0o640)

    pythonpath = pipe_pythonpath()
    python = pipe_python(pythonpath)
    postfix.set_service(
        "portal",
        PIPE_SERVICE.format(
            user=PIPE_USER,
            group=PIPE_GROUP,
            pythonpath=pythonpath,
            python=python,
            config=intake_config,
        ),
    )
    settings = {
        "transport_maps": f"inline:{{{intake}=portal:}}",
        "portal_destination_recipient_limit": "1",
        "smtpd_recipient_restrictions": (
            f"check_recipient_access inline:{{{intake}=REJECT}}, permit_mynetworks, reject"
        ),
    }
    try:
        with postfix_settings(postfix, **settings), attached_milter(world, postfix, milter_config):
            yield Scene(
                postfix,
                clinic,
                patients,
                intake,
                state / "store",
                keys / "portal.key",
                audit_directory,
            )
    finally:
        postfix.set_service("portal", None)


def portal_message(scene: Scene, to: list[str], message_id: str) -> bytes:
    head = (
        f"From: Dr. Who <{scene.sender}>\r\nTo: {', '.join(to)}\r\n"
        "Subject: [portal] Lab results\r\n"
        "Date: Sat, 05 Dec 2026 10:15:03 +0100\r\n"
        f"Message-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    body = (
        f"Patient {planted.PATIENT_NAME}, {planted.MRN}.\r\n"
        f"Diagnosis {planted.DIAGNOSIS_CODE}, SSN {planted.SSN}.\r\n"
    )
    return (head + body).encode()


def notifications_for(
    domain: TestDomain, recipient: str, sender: str, count: int = 1, timeout: float = 60
) -> list[ReceivedMessage]:
    """Wait for ``count`` messages from ``sender`` to ``recipient`` at ``domain``'s sink."""
    deadline = time.monotonic() + timeout
    while True:
        found = [
            m for m in domain.sink.messages if m.rcpt_tos == (recipient,) and m.mail_from == sender
        ]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def wait_for_maillog(scene: Scene, text: str, timeout: float = 30) -> str:
    """Wait for a maillog line containing ``text`` and return it."""
    deadline = time.monotonic() + timeout
    while True:
        for line in scene.postfix.maillog_text().splitlines():
            if text in line:
                return line
        assert time.monotonic() < deadline, f"no maillog line with {text!r} within {timeout:g}s"
        time.sleep(0.1)


def open_pickup(store: PortalStore, token: str) -> bytes | None:
    issued = store.issue_code(token, lifetime=600, per_hour=5)
    assert issued.code is not None
    checked = store.check_code(token, issued.code, attempts=5, session_lifetime=900)
    assert checked.session is not None
    return store.read_message(token, checked.session)


def headers_without(raw: bytes, names: set[str]) -> list[bytes]:
    return [h.raw for h in RawMessage.parse(raw).headers if h.lower_name not in names]


def test_portal_copy_stored_and_announced(scene: Scene) -> None:
    recipients = [f"pat@{scene.patients.name}", f"kim@{scene.patients.name}"]
    message_id = "portal-e2e@clinic.test"
    sent = portal_message(scene, recipients, message_id)
    notify_from = "no-reply@" + scene.intake.rpartition("@")[2]

    result = scene.postfix.send(sent, scene.sender, recipients)
    assert result.code == 250, result.text

    notices = {r: notifications_for(scene.patients, r, notify_from) for r in recipients}
    maillog = scene.postfix.maillog_text()
    for recipient, found in notices.items():
        assert len(found) == 1, f"no notification for {recipient}; maillog:\n{maillog[-4000:]}"
    # The intake sends the notifications before it exits, so Postfix may log the
    # delivery to the pipe service only after they arrive.
    intake_line = wait_for_maillog(scene, "relay=portal")
    assert "status=sent" in intake_line
    assert "stored as portal message" in intake_line

    store = scene.open_store()
    try:
        for recipient, (notice,) in notices.items():
            text = notice.data.decode()
            assert planted.SSN not in text
            assert planted.PATIENT_NAME not in text
            assert "Lab results" not in text
            tokens = LINK_RE.findall(text)
            assert len(tokens) == 1
            pickup = store.pickup(tokens[0])
            assert pickup is not None
            assert pickup.recipient == recipient
            assert pickup.sender == scene.sender

            stored = open_pickup(store, tokens[0])
            assert stored is not None
            original = RawMessage.parse(sent)
            copy = RawMessage.parse(stored)
            assert copy.body == original.body
            # By design: Postfix adds Received headers, and the milter removes the
            # tag from the Subject. The recipient and seal headers are gone.
            assert copy.first_value("Subject") == "Lab results"
            assert copy.get_all("X-Postveil-Portal-Recipient") == []
            assert copy.get_all("X-Postveil-Portal-Seal") == []
            assert headers_without(stored, {"received", "subject"}) == headers_without(
                sent, {"received", "subject"}
            )
    finally:
        store.close()

    audit = (scene.audit_directory / "audit.jsonl").read_text()
    events = [(r["event"], r["recipient"]) for r in map(json.loads, audit.splitlines())]
    assert sorted(events) == sorted(
        [("stored", r) for r in recipients] + [("notified", r) for r in recipients]
    )
    assert planted.SSN not in audit


def test_direct_mail_to_intake_rejected(scene: Scene) -> None:
    victim = f"victim@{scene.patients.name}"
    forged = (
        f"From: <{scene.sender}>\r\nTo: <{scene.intake}>\r\nSubject: Hello\r\n"
        "Date: Sat, 05 Dec 2026 10:15:03 +0100\r\nMessage-ID: <forged@clinic.test>\r\n"
        f"X-Postveil-Portal-Recipient: {victim}\r\n"
        f"X-Postveil-Portal-Seal: v1 t={int(time.time())} m={'0' * 64}\r\n\r\n"
        "Please log in.\r\n"
    ).encode()
    before = scene.stored_messages()

    outside = scene.postfix.send(forged, scene.sender, [scene.intake])
    inside = scene.postfix.send(
        forged, scene.sender, [scene.intake], port=scene.postfix.reinject_port
    )

    assert outside.queue_id is None
    assert scene.intake in outside.rejected
    assert outside.rejected[scene.intake][0] == 554
    assert inside.code == 250, inside.text
    assert inside.queue_id is not None
    delivery = scene.postfix.wait_for(inside.queue_id, statuses=("bounced", "sent"), timeout=60)
    assert delivery.statuses == {scene.intake: "bounced"}, delivery.lines
    assert any("5.7.1" in line and "seal does not match" in line for line in delivery.lines)
    bounce = notifications_for(scene.clinic, scene.sender, "<>")
    assert bounce
    time.sleep(2.0)
    assert [m for m in scene.patients.sink.messages if victim in m.rcpt_tos] == []
    assert scene.stored_messages() == before
    audit = (scene.audit_directory / "audit.jsonl").read_text().splitlines()
    last = json.loads(audit[-1])
    assert (last["event"], last["queue_id"]) == ("refused", inside.queue_id)
    assert os.stat(scene.store_directory).st_uid != 0
