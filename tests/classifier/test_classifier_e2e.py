"""The classifier through a private Postfix: a message the rules pass but the model
reports goes to the portal, never plain, and while postveil-classifierd is down such a
message is deferred with nothing delivered."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from postveil.harness.postfix import PrivatePostfix
from postveil.harness.pytest_plugin import unique_domain
from postveil.harness.smtp import ReceivedMessage
from postveil.harness.world import TestDomain, World
from tests.classifier.conftest import RunningClassifier, start_classifier, stop_classifier
from tests.classifier.texts import MISSED_BY_RULES, ORDINARY

pytestmark = pytest.mark.postfix

SENDER = "coach@clinic.test"


@dataclass
class Scene:
    world: World
    postfix: PrivatePostfix
    plain: TestDomain
    portal: TestDomain
    classifier: RunningClassifier


@pytest.fixture(scope="module")
def scene(world: World, postfix: PrivatePostfix) -> Iterator[Scene]:
    plain = world.add_domain(unique_domain("notls"), tls="none")
    portal = world.add_domain(unique_domain("portal"))
    classifier_dir = world.base_dir / "classifier"
    classifier_dir.mkdir()
    classifier = start_classifier(classifier_dir)
    config = world.base_config()
    config["portal"] = {"intake_address": f"intake@{portal.name}"}
    config["classifier"] = {"enabled": True, "socket": classifier.socket, "timeout": "10s"}
    config_path = world.write_config(config, "classifier-e2e.yaml")
    world.start_policyd(config_path)
    world.start_milter(config_path)
    try:
        yield Scene(world, postfix, plain, portal, classifier)
    finally:
        world.stop_daemon("milter")
        world.stop_daemon("policyd")
        stop_classifier(classifier)


def message(to: str, body: str, message_id: str) -> bytes:
    return (
        f"From: <{SENDER}>\r\nTo: <{to}>\r\nSubject: This week\r\nMessage-ID: <{message_id}>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
    ).encode()


def copies(domain: TestDomain, message_id: str, timeout: float) -> list[ReceivedMessage]:
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in domain.sink.messages if message_id.encode() in m.data]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_classifier_finding_goes_to_portal(scene: Scene) -> None:
    recipient = f"parent@{scene.plain.name}"
    message_id = "classifier-portal@clinic.test"

    result = scene.postfix.send(
        message(recipient, MISSED_BY_RULES, message_id), SENDER, [recipient]
    )

    assert result.code == 250
    assert len(copies(scene.portal, message_id, timeout=30)) == 1
    assert copies(scene.plain, message_id, timeout=2) == []


def test_ordinary_mail_goes_plain(scene: Scene) -> None:
    recipient = f"staff@{scene.plain.name}"
    message_id = "classifier-plain@clinic.test"

    result = scene.postfix.send(message(recipient, ORDINARY, message_id), SENDER, [recipient])

    assert result.code == 250
    assert len(copies(scene.plain, message_id, timeout=30)) == 1


def test_classifier_down_defers(scene: Scene) -> None:
    stop_classifier(scene.classifier)
    recipient = f"parent@{scene.plain.name}"
    message_id = "classifier-down@clinic.test"

    result = scene.postfix.send(
        message(recipient, MISSED_BY_RULES, message_id), SENDER, [recipient]
    )

    assert result.code == 451
    assert copies(scene.plain, message_id, timeout=2) == []
    assert copies(scene.portal, message_id, timeout=0) == []
    log = scene.world.log_dir / "milter.log"
    assert "cannot reach postveil-classifierd" in log.read_text()
