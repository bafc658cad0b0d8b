"""A message routed by TLS stays TLS-only while it waits in Postfix's queue, even when the
domain's requirement lapses meanwhile (here: the admin removes a TLS override)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from postveil.harness.daemons import DaemonProcess
from postveil.harness.postfix import PrivatePostfix
from postveil.harness.pytest_plugin import unique_domain
from postveil.harness.world import World
from tests import planted
from tests.policyd.conftest import redis_url  # noqa: F401 - a fixture shared with these tests

pytestmark = pytest.mark.postfix

SENDER = "doctor@clinic.test"


def domain_command_result(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postveil.cli.main", "domain", "-c", str(config_path), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )


def domain_command(config_path: Path, *args: str) -> str:
    result = domain_command_result(config_path, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def sensitive_message(recipient: str) -> bytes:
    return (
        f"From: <{SENDER}>\r\nTo: <{recipient}>\r\nSubject: Results\r\n\r\n"
        f"Patient {planted.PATIENT_NAME}, {planted.MRN}, SSN {planted.SSN}.\r\n"
    ).encode()


def start_daemons(world: World, config: dict[str, Any], name: str) -> tuple[Path, DaemonProcess]:
    """Write ``config`` as ``name`` and start postveil-policyd and postveil-milter on it."""
    config_path = world.write_config(config, name)
    world.start_policyd(config_path)
    return config_path, world.start_milter(config_path)


def remove_from_queue(postfix: PrivatePostfix, queue_id: str) -> None:
    """Delete a test's message, so the shared Postfix's queue stays as other tests expect."""
    if queue_id:
        subprocess.run(["postsuper", "-c", str(postfix.config_dir), "-d", queue_id],
                       capture_output=True, timeout=30, check=False)


def wait_for_deferrals(postfix: PrivatePostfix, queue_id: str, count: int, timeout: float = 30) -> None:
    pattern = re.compile(rf"{queue_id}: to=<[^>]+>.*status=deferred")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(pattern.findall(postfix.maillog_text())) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"{queue_id} was not deferred {count} time(s) within {timeout:g}s")


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_lapsed_override_keeps_mail_queued(
    world: World, postfix: PrivatePostfix, backend: str, request: pytest.FixtureRequest
) -> None:
    domain = world.add_domain(unique_domain("lapse"), tls="none")
    recipient = f"patient@{domain.name}"
    config = world.base_config()
    config["policyd"]["answer_cache_ttl"] = "0s"
    if backend == "redis":
        config["policyd"]["cache_backend"] = "redis"
        config["policyd"]["redis_url"] = request.getfixturevalue("redis_url")
        config["policyd"]["redis_prefix"] = f"test:{domain.name}:"
    config_path, milter = start_daemons(world, config, f"tls-hold-{backend}.yaml")
    queue_id = ""
    try:
        domain_command(config_path, "set", domain.name, "--tls", "encrypt")
        message = sensitive_message(recipient)
        result = postfix.send(message, SENDER, [recipient])
        assert result.code == 250, result.text
        queue_id = result.queue_id
        # The sink offers no STARTTLS, so Postfix keeps the message queued.
        wait_for_deferrals(postfix, queue_id, 1)

        unset = domain_command(config_path, "unset", domain.name)
        assert "TLS stays required" in unset
        postfix.flush()
        wait_for_deferrals(postfix, queue_id, 2)
        shown = domain_command(config_path, "show", domain.name)
        still_queued = queue_id in postfix.queue_ids()
        milter_log = milter.log_text()
    finally:
        world.stop_daemon("milter")
        world.stop_daemon("policyd")
        remove_from_queue(postfix, queue_id)

    assert f"rcpt=<{recipient}> method=tls" in milter_log
    assert domain.sink.messages == []
    assert still_queued
    assert "rule:          held" in shown
    assert "TLS hold:" in shown


def test_release_waits_for_queued_mail(world: World, postfix: PrivatePostfix) -> None:
    """A hold can be ended early with ``postveil domain release``, but only once Postfix's
    queue contains no mail for the domain. Clean mail then goes out in plaintext again."""
    domain = world.add_domain(unique_domain("release"), tls="none")
    recipient = f"patient@{domain.name}"
    config = world.base_config()
    config["policyd"]["answer_cache_ttl"] = "0s"
    config_path, _ = start_daemons(world, config, "tls-hold-release.yaml")
    queue_id = ""
    try:
        domain_command(config_path, "set", domain.name, "--tls", "encrypt")
        message = sensitive_message(recipient)
        result = postfix.send(message, SENDER, [recipient])
        assert result.code == 250, result.text
        queue_id = result.queue_id
        wait_for_deferrals(postfix, queue_id, 1)
        domain_command(config_path, "unset", domain.name)

        refused = domain_command_result(
            config_path, "release", domain.name, "--postfix-config", str(postfix.config_dir)
        )
        subprocess.run(["postsuper", "-c", str(postfix.config_dir), "-d", queue_id],
                       capture_output=True, timeout=30, check=True)
        queue_id = ""
        released = domain_command_result(
            config_path, "release", domain.name, "--postfix-config", str(postfix.config_dir),
            "--reason", "override set by mistake",
        )
        shown = domain_command(config_path, "show", domain.name)
        clean = (f"From: <{SENDER}>\r\nTo: <{recipient}>\r\nSubject: Lunch\r\n\r\n"
                 "Lunch at noon?\r\n").encode()
        sent = postfix.send(clean, SENDER, [recipient])
        delivery = postfix.wait_for(sent.queue_id)
    finally:
        world.stop_daemon("milter")
        world.stop_daemon("policyd")
        remove_from_queue(postfix, queue_id)

    assert refused.returncode == 1
    assert "1 queued message(s)" in refused.stderr
    assert released.returncode == 0, released.stderr
    assert "TLS hold released" in released.stdout
    assert "TLS hold:" not in shown
    assert delivery.statuses[recipient] == "sent"
    records = [line for line in (world.state_dir / "audit" / "audit.jsonl").read_text().splitlines()
               if '"release-tls-hold"' in line]
    assert len(records) == 1
    assert "override set by mistake" in records[0]


def test_reused_notfound_after_set_encrypt(world: World, postfix: PrivatePostfix) -> None:
    """postveil-policyd returned NOTFOUND for a clean message. The admin then requires
    TLS, the milter routes sensitive mail by ``tls`` at once, and Postfix must not be
    sent that earlier NOTFOUND again."""
    domain = world.add_domain(unique_domain("reuse"), tls="none")
    recipient = f"patient@{domain.name}"
    config = world.base_config()
    # Long enough that the second delivery falls inside the reuse window.
    config["policyd"]["answer_cache_ttl"] = "120s"
    config_path, milter = start_daemons(world, config, "tls-hold-reuse.yaml")
    queue_id = ""
    try:
        clean = (f"From: <{SENDER}>\r\nTo: <{recipient}>\r\nSubject: Hello\r\n\r\n"
                 "See you on Monday.\r\n").encode()
        result = postfix.send(clean, SENDER, [recipient])
        assert result.code == 250, result.text
        assert postfix.wait_for(result.queue_id).statuses[recipient] == "sent"
        domain.sink.wait_for(1)

        domain_command(config_path, "set", domain.name, "--tls", "encrypt")
        message = sensitive_message(recipient)
        result = postfix.send(message, SENDER, [recipient])
        assert result.code == 250, result.text
        queue_id = result.queue_id
        delivery = postfix.wait_for(queue_id)
        milter_log = milter.log_text()
    finally:
        world.stop_daemon("milter")
        world.stop_daemon("policyd")
        remove_from_queue(postfix, queue_id)

    assert f"rcpt=<{recipient}> method=tls" in milter_log
    assert delivery.statuses[recipient] == "deferred"
    assert len(domain.sink.messages) == 1


def test_unicode_domain_tls_mail_not_plaintext(world: World, postfix: PrivatePostfix) -> None:
    """A recipient domain written in Unicode (U-label) with SMTPUTF8: the milter keys
    the domain's facts and hold by its A-label, and Postfix must still get a policy that requires TLS."""
    unicode_name = unique_domain("bücher")
    ascii_name = unicode_name.encode("idna").decode("ascii")
    domain = world.add_domain(ascii_name, tls="none")
    recipient = f"patient@{unicode_name}"
    config = world.base_config()
    config["policyd"]["answer_cache_ttl"] = "0s"
    config_path, milter = start_daemons(world, config, "tls-hold-idna.yaml")
    queue_id = ""
    try:
        domain_command(config_path, "set", domain.name, "--tls", "encrypt")
        message = sensitive_message(recipient)
        result = postfix.send(message, SENDER, [recipient], smtputf8=True)
        assert result.code == 250, result.text
        queue_id = result.queue_id
        delivery = postfix.wait_for(queue_id)
        milter_log = milter.log_text()
    finally:
        world.stop_daemon("milter")
        world.stop_daemon("policyd")
        remove_from_queue(postfix, queue_id)

    assert "method=tls" in milter_log
    assert list(delivery.statuses.values()) == ["deferred"]
    assert domain.sink.messages == []


def test_virtual_alias_to_other_domain(world: World, postfix: PrivatePostfix) -> None:
    """Postfix rewrites the recipient to another domain (virtual_alias_maps) after the
    milter saw it. Sensitive mail must not reach that domain in plaintext, so the
    milter, which reads the map added after its start, does not route it by tls."""
    seen = world.add_domain(unique_domain("alias-from"), tls="none")
    target = world.add_domain(unique_domain("alias-to"), tls="none")
    recipient = f"patient@{seen.name}"
    config = world.base_config()
    config["policyd"]["answer_cache_ttl"] = "0s"
    config_path, milter = start_daemons(world, config, "tls-hold-alias.yaml")
    postfix.configure(virtual_alias_maps=f"inline:{{{recipient}=patient@{target.name}}}")
    queue_id = ""
    try:
        domain_command(config_path, "set", seen.name, "--tls", "encrypt")
        message = sensitive_message(recipient)
        result = postfix.send(message, SENDER, [recipient])
        queue_id = result.queue_id or ""
        if queue_id:
            postfix.wait_for(queue_id)
        milter_log = milter.log_text()
    finally:
        postfix.configure(virtual_alias_maps=None)
        world.stop_daemon("milter")
        world.stop_daemon("policyd")
        remove_from_queue(postfix, queue_id)

    assert f"rcpt=<{recipient}> method=tls" not in milter_log
    assert f"rcpt=<{recipient}> method=none" in milter_log
    assert "Postfix's virtual_alias_maps may move the recipient to another domain" in milter_log
    plaintext = [m for m in target.sink.messages if planted.SSN.encode() in m.data]
    assert plaintext == []


@pytest.mark.parametrize("setting", ["relayhost", "transport_maps", "smtp_fallback_relay"])
def test_other_next_hop_not_tls(world: World, postfix: PrivatePostfix, setting: str) -> None:
    """Postfix sends the recipient through another next hop (a relay without STARTTLS),
    whose TLS policy postveil-policyd looks up under that host, not under the
    recipient's domain. The milter must not route sensitive mail by tls there.

    With smtp_fallback_relay, Postfix tries the relay after the domain's own server
    failed with a temporary error, which includes "TLS is required, but was not offered"."""
    seen = world.add_domain(unique_domain("nexthop-from"), tls="none")
    relay = world.add_domain(unique_domain("nexthop-relay"), tls="none")
    recipient = f"patient@{seen.name}"
    config = world.base_config()
    config["policyd"]["answer_cache_ttl"] = "0s"
    config_path, milter = start_daemons(world, config, f"tls-hold-{setting}.yaml")
    if setting in ("relayhost", "smtp_fallback_relay"):
        postfix.configure(**{setting: f"[{relay.mx_host}]"})
    else:
        postfix.configure(transport_maps=f"inline:{{{seen.name}=smtp:[{relay.mx_host}]}}")
    queue_id = ""
    try:
        domain_command(config_path, "set", seen.name, "--tls", "encrypt")
        result = postfix.send(sensitive_message(recipient), SENDER, [recipient])
        queue_id = result.queue_id or ""
        if queue_id:
            postfix.wait_for(queue_id)
        milter_log = milter.log_text()
    finally:
        postfix.configure(**{setting: None})
        world.stop_daemon("milter")
        world.stop_daemon("policyd")
        remove_from_queue(postfix, queue_id)

    assert f"rcpt=<{recipient}> method=tls" not in milter_log
    assert f"Postfix's {setting}" in milter_log or f"through {setting}" in milter_log
    plaintext = [m for m in relay.sink.messages if planted.SSN.encode() in m.data]
    assert plaintext == []


def test_policy_map_missing_not_tls(world: World, postfix: PrivatePostfix) -> None:
    """postveil-policyd runs, but Postfix's smtp_tls_policy_maps does not ask it, so
    Postfix delivers with smtp_tls_security_level (may). The milter must not route
    sensitive mail by tls."""
    domain = world.add_domain(unique_domain("no-policy-map"), tls="none")
    recipient = f"patient@{domain.name}"
    config = world.base_config()
    config_path = world.write_config(config, "tls-hold-no-map.yaml")
    world.start_policyd(config_path, attach=False)
    milter = world.start_milter(config_path)
    queue_id = ""
    try:
        domain_command(config_path, "set", domain.name, "--tls", "encrypt")
        result = postfix.send(sensitive_message(recipient), SENDER, [recipient])
        queue_id = result.queue_id or ""
        if queue_id:
            postfix.wait_for(queue_id)
        milter_log = milter.log_text()
    finally:
        world.stop_daemon("milter")
        world.stop_daemon("policyd")
        remove_from_queue(postfix, queue_id)

    assert f"rcpt=<{recipient}> method=tls" not in milter_log
    assert "smtp_tls_policy_maps" in milter_log
    plaintext = [m for m in domain.sink.messages if planted.SSN.encode() in m.data]
    assert plaintext == []
