"""postveil-classifierd replies over its unix socket, rejects malformed requests
without closing the connection, never logs the text, and stops cleanly."""

from __future__ import annotations

import json
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from postveil.classifier.client import ClassifierClient
from postveil.classifier.daemon import open_listener
from postveil.classifier.model import ClassifierError, load_weights
from postveil.classifier.protocol import MAX_FRAME
from postveil.config.classifier import ClassifierSection
from tests.classifier.conftest import (
    RunningClassifier,
    start_classifier,
    stop_classifier,
    write_config,
)
from tests.classifier.texts import MISSED_BY_RULES, ORDINARY, ORDINARY_WITH_HEALTH_WORDS


def exchange(connection: socket.socket, body: bytes) -> dict[str, object]:
    connection.sendall(struct.pack("!I", len(body)) + body)
    length = struct.unpack("!I", receive(connection, 4))[0]
    return json.loads(receive(connection, length))


def receive(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        assert chunk, "the daemon closed the connection"
        data += chunk
    return data


def test_daemon_probabilities(classifierd: RunningClassifier) -> None:
    client = ClassifierClient(classifierd.socket, timeout=10)
    threshold = load_weights().threshold

    sensitive, trained = client.probability(MISSED_BY_RULES)
    assert trained == pytest.approx(threshold)
    assert sensitive >= threshold
    assert client.probability(ORDINARY)[0] < 0.2
    assert client.probability(ORDINARY_WITH_HEALTH_WORDS)[0] < 0.2
    # An empty message is a valid request.
    assert 0 <= client.probability("")[0] < threshold
    # Control characters take 6 bytes each in JSON; the text is cut to fit a frame.
    assert 0 <= client.probability("\x01\x00" * 300_000)[0] <= 1
    assert 0 <= client.probability("caf\udce9 " * 50_000)[0] <= 1


def test_malformed_request_keeps_connection(
    classifierd: RunningClassifier,
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(10)
        connection.connect(classifierd.socket)
        nested = b"[" * 200_000 + b"]" * 200_000
        for body in (b"not json", b"[1, 2]", b'{"txt": "x"}', b'{"text": 42}', b"\xff\xfe", nested):
            reply = exchange(connection, body)
            assert "malformed request" in str(reply["error"])
        reply = exchange(connection, json.dumps({"text": ORDINARY}).encode())
        assert 0 <= float(reply["probability"]) < 0.2  # type: ignore[arg-type]


def test_oversized_request_rejected(classifierd: RunningClassifier) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(10)
        connection.connect(classifierd.socket)
        connection.sendall(struct.pack("!I", MAX_FRAME + 1))
        length = struct.unpack("!I", receive(connection, 4))[0]
        assert "exceeds" in json.loads(receive(connection, length))["error"]
        assert connection.recv(1) == b""
    # The daemon still serves others.
    assert ClassifierClient(classifierd.socket, timeout=10).probability(ORDINARY)[0] < 0.2


def test_request_of_departed_client_skipped(classifierd: RunningClassifier) -> None:
    long_body = json.dumps({"text": " ".join([ORDINARY] * 40)}).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as busy:
        busy.settimeout(30)
        busy.connect(classifierd.socket)
        busy.sendall(struct.pack("!I", len(long_body)) + long_body)
        time.sleep(0.02)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as departed:
            departed.connect(classifierd.socket)
            departed.sendall(struct.pack("!I", len(long_body)) + long_body)
        length = struct.unpack("!I", receive(busy, 4))[0]
        assert "probability" in json.loads(receive(busy, length))
    deadline = time.monotonic() + 10
    while "skipped a request whose client closed" not in classifierd.log.read_text():
        assert time.monotonic() < deadline, "the departed client's request was scored"
        time.sleep(0.1)


def test_sighup_during_load_is_ignored(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    log = tmp_path / "classifierd.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "postveil.classifier.daemon", "--config", str(config)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while "starting with configuration" not in log.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGHUP)
        while "ready on" not in log.read_text():
            assert process.poll() is None, log.read_text()[-1000:]
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert "does not reload" in log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0


def test_log_has_counts_not_text(classifierd: RunningClassifier) -> None:
    ClassifierClient(classifierd.socket, timeout=10).probability(MISSED_BY_RULES)
    log = classifierd.log.read_text()
    assert f"scored {len(MISSED_BY_RULES.split())} words" in log
    for word in ("Liam", "fracture", "shin", "Dana"):
        assert word not in log


def test_sigterm_replies_to_received_requests(tmp_path: Path) -> None:
    running = start_classifier(tmp_path)
    long_text = " ".join([ORDINARY] * 40)
    connections = []
    try:
        for _ in range(6):
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            connection.settimeout(30)
            connection.connect(running.socket)
            body = json.dumps({"text": long_text}).encode()
            connection.sendall(struct.pack("!I", len(body)) + body)
            connections.append(connection)
        idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        idle.settimeout(30)
        idle.connect(running.socket)
        connections.append(idle)
        time.sleep(0.5)  # the daemon has read the requests; one worker reads them in turn
        assert stop_classifier(running) == 0

        for connection in connections[:-1]:
            length = struct.unpack("!I", receive(connection, 4))[0]
            assert "probability" in json.loads(receive(connection, length))
        assert idle.recv(1) == b""
    finally:
        for connection in connections:
            connection.close()
    log = running.log.read_text()
    assert "Traceback" not in log
    assert "stopped" in log


def test_sigterm_removes_socket(tmp_path: Path) -> None:
    running = start_classifier(tmp_path)
    assert stop_classifier(running) == 0
    assert not Path(running.socket).exists()
    assert "stopped" in running.log.read_text()


def test_bad_weights_exit_78(tmp_path: Path) -> None:
    (tmp_path / "weights.json").write_text('{"coefficients": [1, 2]}')
    config = write_config(tmp_path, weights=str(tmp_path / "weights.json"))
    result = subprocess.run(
        [sys.executable, "-m", "postveil.classifier.daemon", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 78
    assert "invalid classifier weights" in result.stderr


def test_listener_replaces_stale_socket(tmp_path: Path) -> None:
    path = tmp_path / "classifier.sock"
    section = ClassifierSection(socket=str(path), socket_mode="0600")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a socket file that no process listens on

    listener = open_listener(section)
    try:
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        with pytest.raises(ClassifierError, match="in use by another process"):
            open_listener(section)
    finally:
        listener.close()
        path.unlink()

    path.write_text("not a socket")
    with pytest.raises(ClassifierError, match="is not a socket"):
        open_listener(section)
    with pytest.raises(ClassifierError, match="does not exist"):
        open_listener(ClassifierSection(socket=str(tmp_path / "missing" / "c.sock")))
    with pytest.raises(ClassifierError, match="group 'no-such-group-here'"):
        open_listener(
            ClassifierSection(socket=str(tmp_path / "g.sock"), socket_group="no-such-group-here")
        )


def test_shipped_weights_exclude_held_out_set() -> None:
    weights = load_weights()
    assert len(weights.coefficients) == 384
    assert 0.5 < weights.threshold < 1
    # reviewer13 was measured once, with these weights, so it must not be in their training.
    assert "reviewer13" not in weights.description["trained_on"]
    assert weights.description["target_precision_of_additions"] == 0.9


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{", "invalid classifier weights"),
        (
            '{"coefficients": ['
            + ", ".join(["0"] * 384)
            + '], "intercept": 1'
            + "0" * 400
            + ', "threshold": 0.5, "piece_words": 1, "max_words": 1}',
            "intercept: expected a number",
        ),
        (
            '{"coefficients": [1, 2], "intercept": 0, "threshold": 0.5, "piece_words": 1, "max_words": 1}',
            "384",
        ),
        (
            json.dumps(
                {
                    "coefficients": [0] * 384,
                    "intercept": 0,
                    "threshold": 1.5,
                    "piece_words": 1,
                    "max_words": 1,
                }
            ),
            "between 0 and 1",
        ),
    ],
)
def test_invalid_weights_are_reported(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "weights.json"
    path.write_text(content)
    with pytest.raises(ClassifierError, match=problem):
        load_weights(path)
    with pytest.raises(ClassifierError, match="cannot read"):
        load_weights(tmp_path / "absent.json")
