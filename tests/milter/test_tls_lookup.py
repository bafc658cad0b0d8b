"""The milter asks postveil-policyd about domains the facts cache does not know yet."""

from __future__ import annotations

import time

import pytest

from postveil.harness.postfix import PrivatePostfix
from postveil.harness.pytest_plugin import attached_milter, unique_domain
from postveil.harness.world import World
from tests import planted

pytestmark = pytest.mark.postfix

SENDER = "doctor@clinic.test"


def sensitive_message(recipient: str) -> bytes:
    return (
        f"From: <{SENDER}>\r\nTo: <{recipient}>\r\nSubject: Results\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Patient {planted.PATIENT_NAME}, {planted.MRN}, SSN {planted.SSN}.\r\n"
    ).encode()


def clean_message(recipient: str) -> bytes:
    return f"From: <{SENDER}>\r\nTo: <{recipient}>\r\nSubject: Lunch\r\n\r\nLunch at noon.\r\n".encode()


def test_unknown_enforce_domain_looked_up_live(world: World, postfix: PrivatePostfix) -> None:
    domain = world.add_domain(unique_domain("fresh"), mta_sts="enforce")
    recipient = f"ann@{domain.name}"
    config = world.base_config()
    config["policyd"]["cache_path"] = str(world.state_dir / "fresh-cache.sqlite3")
    config_path = world.write_config(config, "fresh.yaml")
    # Not attached at RCPT, so nothing but the milter's own query discovers the domain.
    # Postfix's smtp client still asks it, or the milter would not route by tls.
    world.start_policyd(config_path, attach=False)
    postfix.configure(smtp_tls_policy_maps=world.socketmap_table)
    try:
        with attached_milter(world, postfix, config_path) as milter:
            result = postfix.send(sensitive_message(recipient), SENDER, [recipient])
            received = domain.sink.wait_for(1)[0]
            log = milter.log_text()
    finally:
        world.stop_daemon("policyd")

    assert result.code == 250, result.text
    assert f"rcpt=<{recipient}> method=tls" in log
    assert received.rcpt_tos == (recipient,)


def test_policyd_down_defers_sensitive_mail(world: World, postfix: PrivatePostfix) -> None:
    domain = world.add_domain(unique_domain("dark"), mta_sts="enforce")
    recipient = f"ben@{domain.name}"
    config = world.base_config()
    config["policyd"]["cache_path"] = str(world.state_dir / "dark-cache.sqlite3")
    config["milter"]["tls_lookup_timeout"] = "2s"
    config_path = world.write_config(config, "dark.yaml")

    with attached_milter(world, postfix, config_path) as milter:
        sensitive = postfix.send(sensitive_message(recipient), SENDER, [recipient])
        clean = postfix.send(clean_message(recipient), SENDER, [recipient])
        domain.sink.wait_for(1)
        time.sleep(0.5)
        log = milter.log_text()

    assert sensitive.code == 451
    assert "TLS facts" in log
    assert clean.code == 250
    assert len(domain.sink.messages) == 1
    assert b"Lunch at noon." in domain.sink.messages[0].data
