"""End to end: the private Postfix asks postveil-policyd for TLS policy and delivers to sinks.

Postfix resolves MX hosts through the DNS fixture, fetches nothing itself, and asks
``socketmap:inet:127.0.0.1:<port>:postveil`` for each next-hop domain.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from postveil.harness.daemons import DaemonProcess
from postveil.harness.net import free_port
from postveil.harness.postfix import PrivatePostfix
from postveil.harness.pytest_plugin import postfix_settings, unique_domain
from postveil.harness.smtp import SmtpSink
from postveil.harness.world import TestDomain, World
from postveil.tlsfacts.cache import SqliteFactsCache

pytestmark = pytest.mark.postfix

SENDER = "clinic@sender.test"
TLS_EXCLUSIVE_SENDER = "news@sender.test"


def message(recipient: str, subject: str) -> bytes:
    return (f"From: {SENDER}\r\nTo: {recipient}\r\nSubject: {subject}\r\n\r\n"
            "Appointment reminder.\r\n").encode()


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


class Policyd:
    """postveil-policyd on two free ports, with its own SQLite cache in the world."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.socketmap_port = free_port()
        self.policy_port = free_port()
        self.cache_path = world.base_dir / "policyd-tlsfacts.sqlite3"
        config: dict[str, Any] = world.base_config()
        config["policyd"] = {
            "socketmap_listen": f"inet:127.0.0.1:{self.socketmap_port}",
            "policy_listen": f"inet:127.0.0.1:{self.policy_port}",
            "cache_path": str(self.cache_path),
            "answer_cache_ttl": "0s",
            "mta_sts_ca_file": str(world.pki.ca_path),
            "probe_ca_file": str(world.pki.ca_path),
            "probe_new_domain_delay": "0s",
            "probe_timeout": "10s",
            "lookup_timeout": "15s",
            "tls_exclusive_senders": [TLS_EXCLUSIVE_SENDER],
        }
        self.config_path = world.write_config(config, "policyd.yaml")
        self.daemon: DaemonProcess | None = None

    def start(self) -> None:
        self.daemon = DaemonProcess(
            "postveil.policyd.daemon", self.config_path, self.world.log_dir / "policyd.log",
            ready=lambda: port_open(self.socketmap_port) and port_open(self.policy_port),
        ).start()

    def stop(self) -> None:
        if self.daemon is not None:
            assert self.daemon.terminate() == 0
            self.daemon = None

    @property
    def socketmap(self) -> str:
        return f"socketmap:inet:127.0.0.1:{self.socketmap_port}:postveil"

    def facts(self, domain: str):
        cache = SqliteFactsCache(self.cache_path)
        try:
            return cache.get(domain)
        finally:
            cache.close()


@pytest.fixture(scope="module")
def policyd(world: World) -> Iterator[Policyd]:
    instance = Policyd(world)
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def tls_postfix(postfix: PrivatePostfix, policyd: Policyd) -> Iterator[PrivatePostfix]:
    # The shared Postfix may still name a milter that another test module stopped;
    # these tests are about TLS policy only.
    with postfix_settings(postfix, smtp_tls_policy_maps=policyd.socketmap, smtpd_milters=""):
        yield postfix


def send_and_wait(postfix: PrivatePostfix, domain: TestDomain, subject: str) -> tuple[str, str]:
    """Submit one message to ``domain``; return its delivery status and its maillog lines."""
    recipient = f"patient@{domain.name}"
    result = postfix.send(message(recipient, subject), SENDER, [recipient])
    assert result.code == 250, result.text
    assert result.queue_id is not None
    delivery = postfix.wait_for(result.queue_id, timeout=60)
    return delivery.statuses[recipient], "\n".join(delivery.lines)


def postmap_query(postfix: PrivatePostfix, key: str, table: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["postmap", "-c", str(postfix.config_dir), "-q", key, table],
                          capture_output=True, text=True, timeout=60)


def test_enforce_valid_certificate_delivers_over_tls(
    world: World, tls_postfix: PrivatePostfix, policyd: Policyd,
) -> None:
    domain = world.add_domain(unique_domain("sts-valid"), mta_sts="enforce")
    status, _ = send_and_wait(tls_postfix, domain, "enforce valid")
    assert status == "sent"
    received = domain.sink.wait_for(1)[0]
    assert received.tls_version in ("TLSv1.2", "TLSv1.3")
    assert f"Verified TLS connection established to {domain.mx_host}" in tls_postfix.maillog_text()

    lookup = postmap_query(tls_postfix, domain.name, policyd.socketmap)
    assert lookup.stdout.strip() == (
        f"secure match={domain.mx_host} servername=hostname protocols=>=TLSv1.2")


def test_enforce_wrong_name_certificate_defers(world: World, tls_postfix: PrivatePostfix) -> None:
    domain = world.add_domain(unique_domain("sts-wrong"), tls="wrong-name", mta_sts="enforce")
    status, lines = send_and_wait(tls_postfix, domain, "enforce wrong name")
    assert status == "deferred"
    assert "Server certificate not verified" in lines
    time.sleep(1)
    assert domain.sink.messages == []


def test_postmap_domain_without_policy_not_found(
    world: World, tls_postfix: PrivatePostfix, policyd: Policyd,
) -> None:
    domain = world.add_domain(unique_domain("plain-lookup"), tls="none")
    lookup = postmap_query(tls_postfix, domain.name, policyd.socketmap)
    assert lookup.returncode == 1
    assert lookup.stdout == ""


def test_tls_domain_that_drops_starttls_defers(
    world: World, tls_postfix: PrivatePostfix, policyd: Policyd,
) -> None:
    domain = world.add_domain(unique_domain("monitored"))
    # First delivery: no policy yet, Postfix sends opportunistically; policyd sees the
    # domain for the first time and probes it.
    status, _ = send_and_wait(tls_postfix, domain, "first contact")
    assert status == "sent"
    deadline = time.monotonic() + 30
    while True:
        facts = policyd.facts(domain.name)
        if facts is not None and facts.tls_first_seen is not None:
            break
        assert time.monotonic() < deadline, "policyd did not probe the new domain within 30 s"
        time.sleep(0.2)

    # The MX now answers without STARTTLS on the same address.
    domain.sink.stop()
    domain.sink = SmtpSink(domain.sink.address, None, hostname=domain.mx_host, tls="none").start()
    status, lines = send_and_wait(tls_postfix, domain, "after downgrade")
    assert status == "deferred"
    assert "TLS is required, but was not offered" in lines
    time.sleep(1)
    assert domain.sink.messages == []
    lookup = postmap_query(tls_postfix, domain.name, policyd.socketmap)
    assert lookup.stdout.strip() == "encrypt protocols=>=TLSv1.2"

    audit_file = Path(world.base_config()["audit"]["directory"]) / "audit.jsonl"
    changes = [record for record in map(json.loads, audit_file.read_text().splitlines())
               if record["kind"] == "tls_requirement" and record["domain"] == domain.name]
    assert [(change["old"], change["new"], change["source"]) for change in changes] == [
        (None, "encrypt", "probe")]


def test_policyd_stopped_enforce_domain_defers(
    world: World, tls_postfix: PrivatePostfix, policyd: Policyd,
) -> None:
    domain = world.add_domain(unique_domain("sts-down"), mta_sts="enforce")
    policyd.stop()
    try:
        status, _ = send_and_wait(tls_postfix, domain, "policyd stopped")
        assert status == "deferred"
        assert "policy table lookup error" in tls_postfix.maillog_text()
        time.sleep(1)
        assert domain.sink.messages == []
    finally:
        policyd.start()


def test_tls_exclusive_sender_rejected_without_tls(
    world: World, tls_postfix: PrivatePostfix, policyd: Policyd,
) -> None:
    plain = world.add_domain(unique_domain("no-tls"), tls="none")
    secure = world.add_domain(unique_domain("with-tls"))
    restrictions = (f"check_policy_service inet:127.0.0.1:{policyd.policy_port}, "
                    "permit_mynetworks, reject")
    with postfix_settings(tls_postfix, smtpd_recipient_restrictions=restrictions):
        to_plain = f"patient@{plain.name}"
        result = tls_postfix.send(message(to_plain, "bulk"), TLS_EXCLUSIVE_SENDER, [to_plain])
        code, reply = result.rejected[to_plain]
        assert code == 550
        assert reply.startswith("5.7.10")
        assert plain.name in reply
        audit_file = Path(world.base_config()["audit"]["directory"]) / "audit.jsonl"
        rejections = [
            record for record in map(json.loads, audit_file.read_text().splitlines())
            if record["kind"] == "message" and record["recipients"][0]["address"] == to_plain
        ]
        assert len(rejections) == 1
        assert rejections[0]["action"] == "reject"
        assert rejections[0]["recipients"][0]["method"] == "reject"
        assert rejections[0]["sender"] == TLS_EXCLUSIVE_SENDER

        to_secure = f"patient@{secure.name}"
        result = tls_postfix.send(message(to_secure, "bulk"), TLS_EXCLUSIVE_SENDER, [to_secure])
        assert result.code == 250, result.text
        assert result.rejected == {}
        assert result.queue_id is not None
        assert tls_postfix.wait_for(result.queue_id, timeout=60).statuses[to_secure] == "sent"
        assert secure.sink.wait_for(1)[0].tls_version in ("TLSv1.2", "TLSv1.3")

        # Other senders are not affected.
        result = tls_postfix.send(message(to_plain, "clinic"), SENDER, [to_plain])
        assert result.code == 250, result.text


def test_dane_domain_delivers_with_dane_only(
    world: World, tls_postfix: PrivatePostfix, policyd: Policyd,
) -> None:
    domain = world.add_domain(unique_domain("dane-e2e"), dane=True)
    lookup = postmap_query(tls_postfix, domain.name, policyd.socketmap)
    assert lookup.stdout.strip() == "dane-only protocols=>=TLSv1.2"
    status, _ = send_and_wait(tls_postfix, domain, "dane")
    assert status == "sent"
    assert f"Verified TLS connection established to {domain.mx_host}" in tls_postfix.maillog_text()
    assert domain.sink.wait_for(1)[0].tls_version in ("TLSv1.2", "TLSv1.3")
