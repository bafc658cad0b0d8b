"""Recipients that Postfix moves to another domain after postveil-milter has routed
them, in forms that a first version of the milter's postmap check missed.

Most cases are map lookups under other keys or spellings. The percent hack and the
quoted at sign use no map: Postfix's resolver strips a local domain and routes by
what is left. Each case must keep sensitive mail from reaching the other domain in
plaintext."""

from __future__ import annotations

import smtplib
import subprocess
from pathlib import Path

import pytest

from postveil.harness.postfix import PrivatePostfix
from postveil.harness.pytest_plugin import unique_domain
from postveil.harness.world import World
from tests import planted
from tests.milter.test_tls_hold import SENDER, domain_command, remove_from_queue, start_daemons

pytestmark = pytest.mark.postfix


def phi_message(recipient: str) -> bytes:
    """Return a message to ``recipient`` whose planted SSN must never reach a sink."""
    return (
        f"From: <{SENDER}>\r\nTo: <{recipient}>\r\nSubject: Results\r\n\r\n"
        f"Patient {planted.PATIENT_NAME}, {planted.MRN}, SSN {planted.SSN}.\r\n"
    ).encode()


def send_raw(postfix: PrivatePostfix, message: bytes, rcpt_argument: str) -> tuple[int, str]:
    """Send ``message`` with ``RCPT TO:<rcpt_argument>`` exactly as written, because
    smtplib's own quoting would normalize the address. Returns the reply to DATA."""
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=60) as client:
        client.ehlo("client.postveil-harness.test")
        client.mail(SENDER)
        code, reply = client.docmd(f"RCPT TO:<{rcpt_argument}>")
        assert code == 250, reply
        code, reply = client.data(message)
        return code, reply.decode(errors="replace")


# (case, RCPT TO address, main.cf settings) with {seen}, {target} and {dir} filled in.
CASES = [
    (
        "bare user key for myorigin",
        "patient@{seen}",
        {"myorigin": "{seen}", "virtual_alias_maps": "inline:{{patient=patient@{target}}}"},
    ),
    (
        "case-sensitive regexp",
        "Patient@{seen}",
        {"virtual_alias_maps": "regexp:{dir}/escape.regexp"},
    ),
    (
        "quoted local part",
        '"patient"@{seen}',
        {"virtual_alias_maps": "inline:{{patient@{seen}=patient@{target}}}"},
    ),
    (
        "trailing dot",
        "patient@{seen}.",
        {"virtual_alias_maps": "inline:{{patient@{seen}=patient@{target}}}"},
    ),
    (
        "extension kept on same-domain alias",
        "patient+lab@{seen}",
        {
            "recipient_delimiter": "+",
            "virtual_alias_maps": "inline:{{patient@{seen}=desk@{seen}, desk+lab@{seen}=desk@{target}}}",
        },
    ),
    (
        "source route",
        "@relay.test:patient@{seen}",
        {"virtual_alias_maps": "inline:{{patient@{seen}=patient@{target}}}"},
    ),
    (
        "backslash in local part",
        "pat\\ient@{seen}",
        {"virtual_alias_maps": "inline:{{patient@{seen}=patient@{target}}}"},
    ),
    (
        "percent hack in local domain",
        "patient%{target}@{seen}",
        {"mydestination": "{seen}"},
    ),
    (
        "quoted at sign in local domain",
        '"patient@{target}"@{seen}',
        {"mydestination": "{seen}"},
    ),
    (
        "tab in quoted local part",
        '"pat\tient"@{seen}',
        {"virtual_alias_maps": "regexp:{dir}/tab.regexp"},
    ),
]


@pytest.mark.parametrize(("case", "address", "settings"), CASES, ids=[c[0] for c in CASES])
def test_rewrite_escape(
    world: World, postfix: PrivatePostfix, tmp_path: Path, case: str, address: str, settings: dict[str, str]
) -> None:
    seen = world.add_domain(unique_domain("escape-from"), tls="none")
    target = world.add_domain(unique_domain("escape-to"), tls="none")

    def fill(text: str) -> str:
        return text.format(seen=seen.name, target=target.name, dir=tmp_path)

    (tmp_path / "escape.regexp").write_text(f"/^Patient@{seen.name}$/i patient@{target.name}\n")
    (tmp_path / "tab.regexp").write_text(f'/^"?pat.ient"?@{seen.name}$/ patient@{target.name}\n')
    tmp_path.chmod(0o755)
    rcpt = fill(address)
    config = world.base_config()
    config["policyd"]["answer_cache_ttl"] = "0s"
    config_path, milter = start_daemons(world, config, "rewrite-escape.yaml")
    postfix.configure(**{key: fill(value) for key, value in settings.items()})
    queue_id = ""
    try:
        domain_command(config_path, "set", seen.name, "--tls", "encrypt")
        message = phi_message(f"patient@{seen.name}")
        code, reply = send_raw(postfix, message, rcpt)
        # A temporary failure keeps the mail in the client's hands, which is safe.
        if code == 250:
            queue_id = reply.rsplit(" ", 1)[-1]
            delivery_lines = postfix.wait_for(queue_id).lines
        else:
            delivery_lines = [f"{code} {reply}"]
        milter_log = milter.log_text()
    finally:
        postfix.configure(**{key: None for key in settings})
        world.stop_daemon("milter")
        world.stop_daemon("policyd")
        remove_from_queue(postfix, queue_id)

    plaintext = [m for m in target.sink.messages if planted.SSN.encode() in m.data]
    assert plaintext == [], f"{case}: {delivery_lines}\n{milter_log}"


def test_cleanup_override_in_master_cf(world: World, postfix: PrivatePostfix) -> None:
    """A ``-o virtual_alias_maps=...`` on the cleanup service in master.cf applies in
    cleanup, so the milter reads master.cf overrides too (``postconf -P``)."""
    seen = world.add_domain(unique_domain("master-from"), tls="none")
    target = world.add_domain(unique_domain("master-to"), tls="none")
    recipient = f"patient@{seen.name}"
    config = world.base_config()
    config["policyd"]["answer_cache_ttl"] = "0s"
    config_path, milter = start_daemons(world, config, "rewrite-master.yaml")
    master_cf = postfix.config_dir / "master.cf"
    original = master_cf.read_text()
    override = f"  -o virtual_alias_maps=inline:{{{recipient}=patient@{target.name}}}\n"
    lines = original.splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if line.startswith("cleanup "))
    lines.insert(index + 1, override)
    master_cf.write_text("".join(lines))
    subprocess.run(["postfix", "-c", str(postfix.config_dir), "reload"], capture_output=True, check=True, timeout=60)
    queue_id = ""
    try:
        domain_command(config_path, "set", seen.name, "--tls", "encrypt")
        message = phi_message(recipient)
        result = postfix.send(message, SENDER, [recipient])
        queue_id = result.queue_id or ""
        # The milter rejects the message when no method but tls could take it.
        delivery_lines = postfix.wait_for(queue_id).lines if queue_id else ["rejected"]
        milter_log = milter.log_text()
    finally:
        master_cf.write_text(original)
        subprocess.run(["postfix", "-c", str(postfix.config_dir), "reload"], capture_output=True, timeout=60)
        world.stop_daemon("milter")
        world.stop_daemon("policyd")
        remove_from_queue(postfix, queue_id)

    plaintext = [m for m in target.sink.messages if planted.SSN.encode() in m.data]
    assert plaintext == [], f"{delivery_lines}\n{milter_log}"
    assert f"rcpt=<{recipient}> method=tls" not in milter_log
