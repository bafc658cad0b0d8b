"""How the classifier's reply, or its silence, changes a verdict, the milter's
decision and ``postveil scan``."""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from postveil.classifier.client import ClassifierClient, ClassifierUnavailable, SecondOpinion
from postveil.cli.main import main as cli_main
from postveil.config import load_config
from postveil.config.classifier import ClassifierSection
from postveil.config.detection import DetectionSection
from postveil.detection import Detector
from postveil.errors import TemporaryFailure
from postveil.milter.processor import MessageProcessor
from tests import planted
from tests.classifier.conftest import RunningClassifier
from tests.classifier.texts import MISSED_BY_RULES, ORDINARY, ORDINARY_WITH_HEALTH_WORDS
from tests.milter.processor_config import write_processor_config

SENDER = "coach@club.test"
RECIPIENT = "parent@family.test"


def message(body: str) -> bytes:
    return (
        f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: This week\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
    ).encode()


def frame(body: bytes) -> bytes:
    return struct.pack("!I", len(body)) + body


DETECTOR = Detector(DetectionSection())


def rules_verdict(text: str):  # type: ignore[no-untyped-def]
    return DETECTOR.scan_message_texts(message(text))


@pytest.fixture
def silent_server(tmp_path: Path) -> Iterator[str]:
    """A unix socket peer that accepts connections and never replies."""
    path = str(tmp_path / "silent.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield path
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


def test_review_reports_what_rules_miss(classifierd: RunningClassifier) -> None:
    verdict, texts = rules_verdict(MISSED_BY_RULES)
    assert not verdict.sensitive
    section = ClassifierSection(enabled=True, socket=classifierd.socket)

    reviewed = SecondOpinion(section, DETECTOR).review(verdict, texts)

    assert reviewed.sensitive
    assert reviewed.rule == "classifier"
    assert reviewed.score >= 1
    assert reviewed.classifier is not None
    assert reviewed.categories == verdict.categories


def test_review_with_higher_threshold(classifierd: RunningClassifier) -> None:
    verdict, texts = rules_verdict(MISSED_BY_RULES)
    section = ClassifierSection(enabled=True, socket=classifierd.socket, threshold=0.9999)

    reviewed = SecondOpinion(section, DETECTOR).review(verdict, texts)

    assert not reviewed.sensitive
    assert reviewed.rule == "none"
    assert reviewed.classifier is not None
    assert reviewed.classifier < 0.9999


def test_review_sends_only_asked_messages(tmp_path: Path) -> None:
    # The socket does not exist, so a message that is sent raises.
    absent = str(tmp_path / "absent.sock")
    health = SecondOpinion(ClassifierSection(enabled=True, socket=absent), DETECTOR)
    every = SecondOpinion(ClassifierSection(enabled=True, socket=absent, ask="always"), DETECTOR)
    sensitive_text = f"Patient {planted.PATIENT_NAME}, MRN {planted.MRN}, diabetes follow-up."

    directory_update = (
        "Dr. Smith joined Riverside Family Medicine. Accepting referrals from Monday."
    )
    vet_note = "Barney is out of surgery; antibiotics for 5 days. Hannah, veterinary nurse"
    for text in (sensitive_text, ORDINARY, directory_update, vet_note):
        # Sensitive by the rules, no condition, drug, procedure or test with ask:
        # health, or veterinary mail: not sent.
        verdict, texts = rules_verdict(text)
        assert health.review(verdict, texts) == verdict
    verdict, texts = rules_verdict(ORDINARY_WITH_HEALTH_WORDS)
    with pytest.raises(ClassifierUnavailable):
        health.review(verdict, texts)
    verdict, texts = rules_verdict(ORDINARY)
    with pytest.raises(ClassifierUnavailable, match="absent.sock"):
        every.review(verdict, texts)


def test_on_failure_rules_keeps_verdict(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    section = ClassifierSection(
        enabled=True, socket=str(tmp_path / "absent.sock"), on_failure="rules"
    )
    verdict, texts = rules_verdict(MISSED_BY_RULES)

    with caplog.at_level(logging.WARNING, logger="postveil.classifier"):
        reviewed = SecondOpinion(section, DETECTOR).review(verdict, texts, queue_id="Q9")
    assert reviewed.sensitive is verdict.sensitive
    assert reviewed.rule == verdict.rule
    assert reviewed.classifier_error is not None
    assert "cannot reach postveil-classifierd" in reviewed.classifier_error
    assert "Q9: cannot reach postveil-classifierd" in caplog.text
    assert "keeping the rules' verdict" in caplog.text
    assert "Liam" not in caplog.text


def test_client_times_out_on_silence(silent_server: str) -> None:
    client = ClassifierClient(silent_server, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(
        ClassifierUnavailable, match="no reply from postveil-classifierd within 0.5s"
    ):
        client.probability(ORDINARY)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (frame(b"[1,2]"), "invalid reply"),
        (b"\x00\x00\x00\x10{}", "connection closed"),
        (frame(b'{"error": "gpu"}'), "postveil-classifierd failed: gpu"),
        (frame(b'{"probability": 2, "threshold": 0.5}'), "out of range"),
        (frame(b'{"probability": 1' + b"0" * 400 + b', "threshold": 0.5}'), "no probability"),
        (frame(b'{"probability": true, "threshold": 0.5}'), "no probability"),
        (frame(b'{"probability": "0.99", "threshold": 0.5}'), "no probability"),
        (frame(b"[" * 100_000 + b"]" * 100_000), "nested too deeply"),
        (b"\xff\xff\xff\xff", "exceeds"),
    ],
)
def test_client_rejects_invalid_replies(tmp_path: Path, reply: bytes, problem: str) -> None:
    path = str(tmp_path / "odd.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def answer() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(reply)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        with pytest.raises(ClassifierUnavailable, match=problem):
            ClassifierClient(path, timeout=5).probability(ORDINARY)
    finally:
        thread.join(5)
        listener.close()


def processor_config(tmp_path: Path, classifier_socket: str) -> Path:
    return write_processor_config(
        tmp_path,
        portal={"intake_address": "intake@portal.test"},
        # No keys or certificates here: sensitive mail goes by TLS or to the portal.
        routing={"methods": {"sensitive": ["tls", "portal"]}},
        classifier={"enabled": True, "socket": classifier_socket, "timeout": "2s"},
    )


def test_milter_routes_classifier_finding_sensitive(
    classifierd: RunningClassifier, tmp_path: Path
) -> None:
    processor = MessageProcessor(load_config(processor_config(tmp_path, classifierd.socket)))
    try:
        outcome = processor.decide(
            message(MISSED_BY_RULES), queue_id="Q1", sender=SENDER, recipients=[RECIPIENT]
        )
        assert outcome.record.message_class == "sensitive"
        assert outcome.record.detection_rule == "classifier"
        # No TLS facts, key or certificate: the portal takes it, never plain delivery.
        assert [decision.method.value for decision in outcome.decisions] == ["portal"]
        processor.record(outcome, "accept")
        trail = (tmp_path / "audit").glob("*.jsonl")
        records = [json.loads(line) for path in trail for line in path.read_text().splitlines()]
        assert "rule:classifier" in records[-1]["tags"]
        assert "Liam" not in json.dumps(records)

        clean = processor.decide(
            message(ORDINARY), queue_id="Q2", sender=SENDER, recipients=[RECIPIENT]
        )
        assert clean.record.message_class == "clean"
    finally:
        processor.close()


def test_milter_on_failure_rules_marks_audit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = processor_config(tmp_path, str(tmp_path / "absent.sock"))
    settings = yaml.safe_load(config.read_text())
    settings["classifier"]["on_failure"] = "rules"
    config.write_text(yaml.safe_dump(settings))
    processor = MessageProcessor(load_config(config))
    try:
        with caplog.at_level(logging.WARNING, logger="postveil.classifier"):
            outcome = processor.decide(
                message(MISSED_BY_RULES), queue_id="Q7", sender=SENDER, recipients=[RECIPIENT]
            )
        assert outcome.record.message_class == "clean"
        assert outcome.record.classifier_failed
        assert "Q7: cannot reach postveil-classifierd" in caplog.text
        processor.record(outcome, "accept")
        trail = (tmp_path / "audit").glob("*.jsonl")
        records = [json.loads(line) for path in trail for line in path.read_text().splitlines()]
        assert "classifier:unavailable" in records[-1]["tags"]
    finally:
        processor.close()


def test_milter_defers_when_classifier_down(tmp_path: Path) -> None:
    processor = MessageProcessor(
        load_config(processor_config(tmp_path, str(tmp_path / "absent.sock")))
    )
    try:
        with pytest.raises(TemporaryFailure, match="cannot reach postveil-classifierd"):
            processor.decide(
                message(MISSED_BY_RULES), queue_id="Q1", sender=SENDER, recipients=[RECIPIENT]
            )
        # Clean mail without health words is not sent, so it still passes.
        clean = processor.decide(
            message(ORDINARY), queue_id="Q2", sender=SENDER, recipients=[RECIPIENT]
        )
        assert clean.record.message_class == "clean"
    finally:
        processor.close()


def test_scan_prints_probability(
    classifierd: RunningClassifier, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "note.eml"
    path.write_bytes(message(MISSED_BY_RULES))

    assert cli_main(["scan", "--json", "--config", str(classifierd.config), str(path)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["sensitive"] is True
    assert record["rule"] == "classifier"
    assert 0.9 < record["classifier"] <= 1

    assert (
        cli_main(
            ["scan", "--json", "--no-classifier", "--config", str(classifierd.config), str(path)]
        )
        == 0
    )
    record = json.loads(capsys.readouterr().out)
    assert record["sensitive"] is False
    assert "classifier" not in record


def test_scan_reports_classifier_down(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "postveil.yaml"
    config.write_text(
        yaml.safe_dump({"classifier": {"enabled": True, "socket": str(tmp_path / "absent.sock")}})
    )
    path = tmp_path / "note.eml"
    path.write_bytes(message(MISSED_BY_RULES))

    assert cli_main(["scan", "--config", str(config), str(path)]) == 1
    captured = capsys.readouterr()
    assert "the rules' verdict only: cannot reach postveil-classifierd" in captured.err
    assert "or pass --no-classifier" in captured.err
    assert "not sensitive" in captured.out

    assert cli_main(["scan", "--json", "--config", str(config), str(path)]) == 1
    record = json.loads(capsys.readouterr().out)
    assert record["classifier"] is None
    assert "cannot reach postveil-classifierd" in record["classifier_error"]
