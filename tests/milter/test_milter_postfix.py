"""postveil-milter attached to a real private Postfix: pass-through, failure and shutdown."""

from __future__ import annotations

import smtplib
import stat
import time

import pytest

from postveil.harness.daemons import DaemonProcess
from postveil.harness.net import free_port, port_open
from postveil.harness.postfix import PrivatePostfix, SendResult
from postveil.harness.pytest_plugin import attached_milter, postfix_settings, unique_domain
from postveil.harness.world import World

pytestmark = pytest.mark.postfix


def sample_message(recipient: str, subject: str = "harness check") -> bytes:
    return (
        f"From: sender@org.test\r\nTo: {recipient}\r\nSubject: {subject}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\nHello from the harness, caf\xc3\xa9.\r\n"
    ).encode("latin-1")


def test_message_passes_through_to_sink(world: World, postfix: PrivatePostfix, milter: DaemonProcess) -> None:
    domain = world.add_domain(unique_domain("pass"))
    recipient = f"alice@{domain.name}"

    result = postfix.send(sample_message(recipient), "sender@org.test", [recipient])
    delivery = postfix.wait_for(result.queue_id)
    received = domain.sink.wait_for(1)[0]

    assert result.code == 250
    assert delivery.statuses == {recipient: "sent"}
    assert received.rcpt_tos == (recipient,)
    assert received.data.endswith(b"Hello from the harness, caf\xc3\xa9.\r\n")
    assert received.tls_version in ("TLSv1.2", "TLSv1.3")
    assert f"{result.queue_id}: rcpt=<{recipient}> method=plain" in milter.log_text()


def test_tcp_socket_routes_like_unix(world: World, postfix: PrivatePostfix) -> None:
    """On a TCP socket the milter replies to every step (see QUIET_STEPS) and decides
    as it does on a unix socket."""
    port = free_port()
    config = world.base_config()
    config["milter"]["socket"] = f"inet:{port}@127.0.0.1"
    domain = world.add_domain(unique_domain("tcp"))
    recipient = f"amy@{domain.name}"
    daemon = DaemonProcess(
        "postveil.milter.daemon",
        world.write_config(config, "milter-tcp.yaml"),
        world.log_dir / "milter-tcp.log",
        ready=lambda: port_open("127.0.0.1", port),
    ).start()
    try:
        with postfix_settings(postfix, smtpd_milters=f"inet:127.0.0.1:{port}"):
            result = postfix.send(sample_message(recipient), "sender@org.test", [recipient])
            delivery = postfix.wait_for(result.queue_id)
    finally:
        daemon.terminate()

    assert result.code == 250
    assert delivery.statuses == {recipient: "sent"}
    assert len(domain.sink.wait_for(1)) == 1
    assert f"{result.queue_id}: rcpt=<{recipient}> method=plain" in daemon.log_text()


def test_milter_down_gives_temporary_failure(world: World, postfix: PrivatePostfix, milter: DaemonProcess) -> None:
    domain = world.add_domain(unique_domain("down"))
    recipient = f"bob@{domain.name}"
    milter.terminate()

    result = postfix.send(sample_message(recipient), "sender@org.test", [recipient])

    assert result.code == 451
    assert result.queue_id is None
    assert postfix.main_cf()["milter_default_action"] == "tempfail"
    assert domain.sink.messages == []


def test_sigterm_with_message_in_flight(world: World, postfix: PrivatePostfix, milter: DaemonProcess) -> None:
    domain = world.add_domain(unique_domain("inflight"))
    recipient = f"carol@{domain.name}"
    assert milter.process is not None

    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as client:
        client.ehlo("client.test")
        assert client.mail("sender@org.test")[0] == 250
        assert client.rcpt(recipient)[0] == 250
        started = time.monotonic()
        milter.process.send_signal(15)
        time.sleep(1.0)
        code, reply = client.data(sample_message(recipient))
    exit_code = milter.process.wait(15)
    elapsed = time.monotonic() - started

    assert elapsed < 10.0
    assert exit_code == 0
    if code == 250:
        queue_id = reply.decode().rsplit(" ", 1)[-1]
        assert postfix.wait_for(queue_id).statuses == {recipient: "sent"}
        assert len(domain.sink.wait_for(1)) == 1
    else:
        assert 400 <= code < 500, f"expected delivery or a temporary failure, got {code} {reply!r}"
        assert domain.sink.messages == []


def test_new_message_after_sigterm_is_deferred(world: World, postfix: PrivatePostfix, milter: DaemonProcess) -> None:
    domain = world.add_domain(unique_domain("late"))
    recipient = f"dave@{domain.name}"
    assert milter.process is not None

    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as client:
        client.ehlo("client.test")
        assert client.mail("sender@org.test")[0] == 250
        assert client.rcpt(recipient)[0] == 250
        milter.process.send_signal(15)
        time.sleep(0.5)
        client.data(sample_message(recipient))
        code, _ = client.mail("sender@org.test")

    assert 400 <= code < 500
    milter.process.wait(15)


@pytest.mark.parametrize(
    ("action", "code", "method", "delivered"),
    [("reject", 552, "reject", 0), ("tempfail", 452, "tempfail", 0), ("accept", 250, "uninspected", 1)],
)
def test_oversize_message_gets_configured_reply_and_record(
    world: World, postfix: PrivatePostfix, action: str, code: int, method: str, delivered: int
) -> None:
    import json

    config = world.base_config()
    config["milter"]["max_message_size"] = "1KB"
    config["milter"]["oversize_action"] = action
    audit_directory = world.state_dir / f"audit-oversize-{action}"
    config["audit"]["directory"] = str(audit_directory)
    domain = world.add_domain(unique_domain("big"))
    recipient = f"erin@{domain.name}"
    with attached_milter(world, postfix, world.write_config(config, f"oversize-{action}.yaml")):
        result = postfix.send(sample_message(recipient) + b"x" * 4000 + b"\r\n", "sender@org.test", [recipient])
        if delivered:
            domain.sink.wait_for(delivered)

    records = [json.loads(line) for line in (audit_directory / "audit.jsonl").read_text().splitlines()]
    messages = [record for record in records if record["kind"] == "message"]
    assert result.code == code
    assert len(domain.sink.messages) == delivered
    assert len(messages) == 1
    assert messages[0]["action"] == action
    assert messages[0]["tags"] == ["size:over_limit"]
    assert [item["method"] for item in messages[0]["recipients"]] == [method]
    assert "exceeds milter.max_message_size" in messages[0]["recipients"][0]["reason"]


@pytest.mark.parametrize(("setting", "code"), [("tempfail", 451), ("reject", 550)])
def test_audit_write_failure_gets_configured_reply(
    world: World, postfix: PrivatePostfix, setting: str, code: int
) -> None:
    config = world.base_config()
    audit_directory = world.state_dir / f"audit-unwritable-{setting}"
    config["audit"]["directory"] = str(audit_directory)
    config["audit"]["on_write_failure"] = setting
    domain = world.add_domain(unique_domain("unrecorded"))
    recipient = f"hana@{domain.name}"
    with attached_milter(world, postfix, world.write_config(config, f"unwritable-{setting}.yaml")):
        # A directory in place of the active file: every later append fails, as on a
        # full or read-only disk, even for root.
        active = audit_directory / "audit.jsonl"
        active.rename(audit_directory / "audit.moved")
        active.mkdir()
        result = postfix.send(sample_message(recipient), "sender@org.test", [recipient])
        time.sleep(1)

    assert result.code == code
    assert domain.sink.messages == []


def test_attached_milter_restores_smtpd_milters(world: World, postfix: PrivatePostfix) -> None:
    before = postfix.main_cf().get("smtpd_milters")

    with attached_milter(world, postfix) as daemon:
        assert postfix.main_cf()["smtpd_milters"] == f"unix:{world.milter_socket}"
        assert stat.S_IMODE(world.milter_socket.stat().st_mode) == 0o666

    assert not daemon.running
    assert postfix.main_cf().get("smtpd_milters") == before


def test_message_passes_without_milter_after_teardown(world: World, postfix: PrivatePostfix) -> None:
    with attached_milter(world, postfix):
        pass
    domain = world.add_domain(unique_domain("after"))
    recipient = f"frank@{domain.name}"

    result = postfix.send(sample_message(recipient), "sender@org.test", [recipient])

    assert result.code == 250


def test_start_stop_and_decision_are_audited(world: World, postfix: PrivatePostfix) -> None:
    import json
    import subprocess
    import sys

    config = world.base_config()
    config["audit"]["directory"] = str(world.state_dir / "audit-lifecycle")
    config_path = world.write_config(config, "lifecycle.yaml")
    domain = world.add_domain(unique_domain("audited"))
    recipient = f"frank@{domain.name}"
    with attached_milter(world, postfix, config_path):
        result = postfix.send(sample_message(recipient), "sender@org.test", [recipient])
        domain.sink.wait_for(1)

    lines = (world.state_dir / "audit-lifecycle" / "audit.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    kinds = [(r["kind"], r.get("event") or r.get("action")) for r in records]
    verify = subprocess.run(
        [sys.executable, "-m", "postveil.cli.main", "audit", "verify", "--config", str(config_path)],
        capture_output=True,
        text=True,
    )

    assert kinds == [("config", "load"), ("daemon", "start"), ("message", "accept"), ("daemon", "stop")]
    assert records[2]["queue_id"] == result.queue_id
    assert records[3]["reason"] == "SIGTERM"
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.startswith("ok: 4 records")


def test_sigterm_during_end_of_message(world: World, postfix: PrivatePostfix, milter: DaemonProcess) -> None:
    import threading

    domain = world.add_domain(unique_domain("eom"))
    recipient = f"gina@{domain.name}"
    # Dense order and tracking numbers keep the detector busy for about a second or
    # more, so SIGTERM arrives while the milter is still working on end of message.
    line = b"Order 48392017 shipped 2026-11-03, tracking 1Z999AA10123456784, ref 55512345678.\r\n"
    message = sample_message(recipient) + line * 120_000
    results: list[SendResult] = []
    sender = threading.Thread(target=lambda: results.append(postfix.send(message, "sender@org.test", [recipient])))
    assert milter.process is not None

    sender.start()
    milter.wait_for_log("end of message:", timeout=60)
    started = time.monotonic()
    milter.process.send_signal(15)
    exit_code = milter.process.wait(15)
    elapsed = time.monotonic() - started
    sender.join(60)

    assert elapsed < 10.0
    assert exit_code == 0
    assert len(results) == 1
    result = results[0]
    if result.code == 250:
        assert "no message in flight; exiting" in milter.log_text()
        assert postfix.wait_for(result.queue_id, timeout=60).statuses == {recipient: "sent"}
        assert len(domain.sink.wait_for(1, timeout=60)) == 1
    else:
        assert 400 <= result.code < 500, f"expected delivery or a temporary failure, got {result.code}"
        assert domain.sink.messages == []
