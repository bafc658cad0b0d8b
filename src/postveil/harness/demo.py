"""End-to-end demo: a private Postfix with postveil attached, three invented
recipient domains on loopback, a few sample messages, and a table of what
happened to each recipient.

Run with ``make demo`` (or ``python -m postveil.harness.demo`` inside .venv).
Needs root, like the test suite, because Postfix is started for real.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import compat32
from pathlib import Path

from postveil.harness.daemons import DaemonProcess
from postveil.harness.portal import PIPE_USER, BuiltinPortal, PortalHarnessError
from postveil.harness.portal_pickup import (
    CODE_SUBJECT,
    NOTIFICATION_SUBJECT,
    Pickup,
    PickupError,
    link_in,
    pick_up,
    wait_for_mail,
)
from postveil.harness.postfix import SendResult
from postveil.harness.pytest_plugin import postfix_available
from postveil.harness.smtp import ReceivedMessage
from postveil.harness.world import KEEP_ENV, TestDomain, World, keep_requested

SENDER = "frontdesk@clinic.test"
BULK_SENDER = "newsletter@clinic.test"
SENDER_DOMAIN = "clinic.test"
OUTER_SUBJECT = "Encrypted message"
PORTAL_INTAKE = f"portal-intake@{SENDER_DOMAIN}"
PORTAL_NOTIFY_FROM = f"no-reply@{SENDER_DOMAIN}"
ORGANISATION = "Demo Clinic"
PICKUP_SAMPLE = "lab results"
PICKUP_RECIPIENT_LOCAL = "patient"
"""Local part of the recipient (at the no-TLS domain) whose pickup of PICKUP_SAMPLE the
demo scripts."""


@dataclass(frozen=True)
class Sample:
    label: str
    sender: str
    subject: str
    body: str
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class Cast:
    """The invented domains and recipients of the demo."""

    enforce: TestDomain
    starttls: TestDomain
    plain: TestDomain
    pgp_address: str
    smime_address: str

    @property
    def pickup_recipient(self) -> str:
        return f"{PICKUP_RECIPIENT_LOCAL}@{self.plain.name}"


def samples(cast: Cast) -> list[Sample]:
    everyone = (
        f"dr.lee@{cast.enforce.name}",
        f"billing@{cast.starttls.name}",
        cast.pgp_address,
        cast.smime_address,
        cast.pickup_recipient,
    )
    return [
        Sample(
            "staff lunch",
            SENDER,
            "Lunch on Friday",
            "Hi all,\nlunch is at noon on Friday in room 2.\n",
            everyone,
        ),
        Sample(
            PICKUP_SAMPLE,
            SENDER,
            "Results for your patient",
            "Patient: Jane Example, MRN 00123456, DOB 01/02/1980.\n"
            "HbA1c 9.1%, diagnosis E11.9 (type 2 diabetes). Please review.\n",
            everyone,
        ),
        Sample(
            "tagged [secure]",
            SENDER,
            "[secure] Referral letter",
            "Please find the referral details below.\n",
            everyone,
        ),
        Sample(
            "newsletter (bulk)",
            BULK_SENDER,
            "Flu shots are available this week",
            "Flu shots are available at all clinics this week.\n",
            (f"dr.lee@{cast.enforce.name}", cast.pickup_recipient),
        ),
    ]


def message_id_for(number: int) -> str:
    return f"demo-{number}@{SENDER_DOMAIN}"


def build_message(sample: Sample, number: int) -> tuple[bytes, str]:
    message_id = message_id_for(number)
    headers = (
        f"From: Clinic <{sample.sender}>\r\n"
        f"To: {', '.join(sample.recipients)}\r\n"
        f"Subject: {sample.subject}\r\n"
        f"Message-ID: <{message_id}>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    )
    return (headers + sample.body.replace("\n", "\r\n")).encode(), message_id


def content_form(message: ReceivedMessage) -> str:
    """Name the form in which the recipient got the content."""
    parsed = message_from_bytes(message.data, policy=compat32)
    content_type = parsed.get_content_type()
    if content_type == "application/pkcs7-mime":
        return "S/MIME encrypted"
    if content_type == "multipart/encrypted":
        return "PGP/MIME encrypted"
    return "readable"


def decision_for(milter_log: str, recipient: str, queue_id: str | None) -> str:
    """Find the milter's decision for one recipient in its log lines about the queue id."""
    if queue_id is None:
        return "-"
    for line in reversed(milter_log.splitlines()):
        if f"{queue_id}: rcpt=<{recipient}>" in line:
            match = re.search(r"method=(\S+)", line)
            if match:
                return match.group(1)
    return "-"


def demo_config(world: World, portal: BuiltinPortal) -> dict[str, object]:
    """Return the configuration of postveil-milter and postveil-policyd."""
    assert world.postfix is not None and world.postfix.reinject_port is not None
    config = world.base_config()
    config["portal"] = portal.portal_settings(
        world.postfix.reinject_port, organisation=ORGANISATION
    )
    config["routing"] = {"outer_subject": OUTER_SUBJECT, "bulk_senders": [BULK_SENDER]}
    config["policyd"]["tls_exclusive_senders"] = [BULK_SENDER]  # type: ignore[index]
    config["logging"] = {"level": "INFO"}
    return config


def portal_config(config: dict[str, object], portal: BuiltinPortal) -> dict[str, object]:
    """Return the configuration of the portal's intake and postveil-portal: the demo's
    own, with the portal's audit trail (see :mod:`postveil.harness.portal`)."""
    return {**config, "audit": portal.audit_settings()}


@dataclass
class PortalRun:
    """The built-in portal of a demo run and the notifications seen so far."""

    portal: BuiltinPortal
    config_path: Path
    notifications: dict[tuple[str, str], ReceivedMessage] = field(default_factory=dict)
    """(sample label, recipient) to the notification that announced that sample."""

    def claimed(self, message: ReceivedMessage) -> bool:
        return any(message is seen for seen in self.notifications.values())


def start_portal(world: World, config: dict[str, object], portal: BuiltinPortal) -> PortalRun:
    """Set up the portal's store and keys, wire its intake into Postfix, start
    postveil-portal; call it after start_policyd, whose RCPT restrictions it extends."""
    assert world.postfix is not None
    portal_path = world.write_config(portal_config(config, portal), "portal.yaml")
    portal.setup(portal_path)
    portal.wire(world.postfix)
    world.daemons["portal"] = portal.start_daemon(world.log_dir / "portal.log")
    return PortalRun(portal, portal_path)


def run(keep_running: bool = False, keep_files: bool = False) -> int:
    """Run the demo and return the exit status.

    The runtime directory is removed when the demo ends normally (Ctrl-C and SIGTERM
    included) unless ``keep_files`` or ``$POSTVEIL_KEEP_HARNESS`` requests keeping it. A
    demo that fails keeps it, so that its logs can be read.
    """
    reason = postfix_available()
    if reason is not None:
        print(f"demo: cannot start the private Postfix: {reason}", file=sys.stderr)
        return 1
    started = time.monotonic()
    world = World(keep=keep_files or keep_requested(), save_mail=True).start()
    finished = False
    try:
        print(f"demo: fixtures and logs in {world.base_dir}")
        enforce = world.add_domain("mta-sts-enforce.test", mta_sts="enforce")
        starttls = world.add_domain("starttls-only.test")
        plain = world.add_domain("no-tls.test", tls="none")
        # The senders' own domain gets a sink too, so that postveil's notices to the
        # sender (and Postfix's bounces, also those of the portal's notifications) land
        # in the mail folder instead of bouncing.
        world.add_domain(SENDER_DOMAIN)
        pgp = world.add_pgp_recipient(f"bob@{plain.name}")
        smime = world.add_smime_recipient(f"carol@{plain.name}")
        cast = Cast(enforce, starttls, plain, pgp.address, smime.address)
        postfix = world.start_postfix()
        portal = BuiltinPortal.prepare(world.base_dir / "portal", PORTAL_INTAKE)
        config = demo_config(world, portal)
        config_path = world.write_config(config)
        policyd = world.start_policyd(config_path)
        # The milter reads the seal key that the portal's set-up creates.
        portal_run = start_portal(world, config, portal)
        milter = world.start_milter(config_path)
        print(
            f"demo: private Postfix on 127.0.0.1:{postfix.port} with postveil-milter and postveil-policyd attached"
        )
        print(
            f"demo: postveil-portal on {portal.base_url}, its intake {PORTAL_INTAKE} piped to postveil portal deliver"
        )
        print(f"demo: {pgp.address} has a PGP key, {smime.address} an S/MIME certificate;")
        print(f"demo: {starttls.name} offers STARTTLS without MTA-STS, {plain.name} offers no TLS")
        print()

        rows: list[tuple[str, ...]] = []
        for number, sample in enumerate(samples(cast), start=1):
            raw, message_id = build_message(sample, number)
            result = postfix.send(raw, sample.sender, sample.recipients)
            time.sleep(0.5)
            for recipient in sample.recipients:
                rows.append(
                    row_for(
                        world, portal_run, sample, recipient, result, message_id, milter.log_text()
                    )
                )
            # The policy daemon probes newly seen domains one second after first sight.
            time.sleep(1.5)

        print_table(("message", "recipient", "postveil", "transport", "content"), rows)
        print()
        show_pickup(world, cast, portal_run)
        print()
        if keep_running or world.keep:
            print(f"demo: Postfix maillog:       {postfix.maillog}")
            print(f"demo: postveil-milter log:   {milter.log_path}")
            print(f"demo: postveil-policyd log:  {policyd.log_path}")
            print(f"demo: postveil-portal log:   {world.daemons['portal'].log_path}")
            print(f"demo: audit trail:           {world.state_dir / 'audit'}")
            print(f"demo: portal audit trail:    {portal.audit_directory}")
            print(f"demo: received messages:     {world.spool.directory if world.spool else '-'}")
            print(f"demo: try  .venv/bin/postveil audit verify --config {config_path}")
            print(f"      and  .venv/bin/postveil audit search --config {config_path} --method pgp")
            print(
                f"      and  .venv/bin/postveil audit search --config {portal_run.config_path} --kind portal"
            )
        else:
            print(
                "demo: logs, audit trail and received mail are removed at exit; run with --keep-files"
            )
            print(
                "      (or --keep-running) to try  postveil audit verify  and  postveil audit search  on them"
            )
        print(f"demo: finished in {time.monotonic() - started:.1f}s")
        if keep_running:
            print()
            print_running_details(world, cast, config_path, portal_run)
            watch_daemons(world)
        finished = True
    except KeyboardInterrupt:
        finished = True
    finally:
        if not finished:
            world.keep = True
        # A second Ctrl-C must not interrupt the clean-up half way.
        with stop_signals_ignored():
            try:
                world.stop()
            finally:
                if world.keep:
                    print(f"demo: kept {world.base_dir}; remove it with  rm -r {world.base_dir}")
                else:
                    print(f"demo: removed {world.base_dir}")
    return 0


@contextlib.contextmanager
def stop_signals_ignored() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM inside the block, then restore their handlers."""
    previous = {
        signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def print_running_details(
    world: World, cast: Cast, config_path: Path, portal_run: PortalRun
) -> None:
    """Print what an admin needs to use the running demo: addresses, PIDs, files."""
    postfix = world.postfix
    assert postfix is not None and world.spool is not None
    notes = {
        cast.plain.name: f"{cast.pgp_address} has a PGP key, {cast.smime_address} an S/MIME certificate",
        SENDER_DOMAIN: f"the senders' domain: notices to {SENDER} and bounces arrive here",
    }
    print("demo: running until Ctrl-C (or SIGTERM)")
    print(f"  config file      {config_path}")

    print(
        f"  Postfix SMTP     127.0.0.1:{postfix.port} (relays for 127.0.0.0/8), master pid {postfix.master_pid}"
    )
    print(f"                   reload: postfix -c {postfix.config_dir} reload")
    print(f"                   maillog: {postfix.maillog}")
    for name, daemon in world.daemons.items():
        label = f"postveil-{name}"
        if name == "portal":
            print(
                f"  {label:<17}pid {daemon.pid} (user {PIPE_USER}), does not reload: stop the demo to change it"
            )
        else:
            print(f"  {label:<17}pid {daemon.pid}, reload: kill -HUP {daemon.pid}")
        print(f"                   log: {daemon.log_path}")

    print(
        f"  DNS server       {world.dns.address}:53, MTA-STS HTTPS server {world.https.address}:443"
    )
    print(f"  received mail    {world.spool.directory}/NNNNNN-<MX host>.eml, envelope in .envelope")

    print("  domains (each has one MX host with its SMTP sink on port 25):")
    sinks = {
        name: f"{domain.mx_host} {domain.sink.address}:{domain.sink.port}"
        for name, domain in world.domains.items()
    }
    name_width = max(len(name) for name in sinks)
    sink_width = max(len(sink) for sink in sinks.values())
    for name, domain in world.domains.items():
        line = f"    {name:<{name_width}}  {sinks[name]:<{sink_width}}  {offers(domain)}"
        print(line + (f"; {notes[name]}" if name in notes else ""))

    if world.keep:
        print(f"  files            {world.base_dir} (kept at exit)")
    else:
        print(f"  files            {world.base_dir} (removed at exit; --keep-files keeps them)")
    print(
        f"  TLS policy       postmap -c {postfix.config_dir} -q {cast.enforce.name} {world.socketmap_table}"
    )
    print("  send a test message:")
    print(
        f"    swaks --server 127.0.0.1 --port {postfix.port} --from {SENDER} "
        f"--to dr.lee@{cast.enforce.name} --header 'Subject: [secure] swaks test'"
    )
    print_portal_details(world, cast, portal_run)
    sys.stdout.flush()


def print_portal_details(world: World, cast: Cast, portal_run: PortalRun) -> None:
    """Print the portal's address and how to pick up a message by hand."""
    assert world.spool is not None
    portal = portal_run.portal
    mail = world.spool.directory
    recipient = cast.pickup_recipient
    sink_host = cast.plain.mx_host
    print(
        f"  portal pages     {portal.base_url} (plain HTTP on loopback: open it on this host only)"
    )
    print(
        f"  portal intake    {PORTAL_INTAKE} -> pipe service 'portal' -> postveil portal deliver, as {PIPE_USER}"
    )
    print(
        f"  portal files     store {portal.store_directory}, audit trail {portal.audit_directory}"
    )
    print(f"                   config {portal_run.config_path}")

    print(f"  pick up a portal message, for example as {recipient}:")
    print(
        f"    1. Each portal recipient gets a notification from {PORTAL_NOTIFY_FROM} at its MX sink."
    )
    print(
        "       Print the links in the notifications to that recipient (the files have CRLF line ends):"
    )
    print(
        f"         grep -l '^To: {recipient}' {mail}/*-{sink_host}.eml "
        f"| xargs grep -h '{portal.base_url}/m/' | tr -d '\\r'"
    )
    print("    2. Open a link in a browser on this host and press 'Send me a code', or with curl:")
    print("         curl -i -X POST LINK/code")
    print(
        f"    3. The code mail (subject '{CODE_SUBJECT}') lands beside the notification, usually as"
    )
    print(f"       the newest {mail}/NNNNNN-{sink_host}.eml; the code is the 'NNNN NNNN' line:")
    print(f"         tail -n 8 $(ls {mail}/*-{sink_host}.eml | tail -n 1)")
    cookies = world.base_dir / "portal-cookies"
    print(
        "    4. Enter the code in the browser, or with curl, which keeps the session cookie in a file:"
    )
    print(f"         curl -i -c {cookies} -d code=NNNNNNNN LINK/verify")
    print(f"         curl -b {cookies} LINK/message")

    print(
        f"    The store belongs to user {PIPE_USER}, so run  postveil portal status  as that user:"
    )
    print(
        f"      runuser -u {PIPE_USER} -- env PYTHONPATH={portal.pythonpath} "
        f"{portal.python} -P -m postveil.cli.main portal status -c {portal_run.config_path}"
    )


def offers(domain: TestDomain) -> str:
    """Describe what ``domain``'s MX sink and DNS records offer a sending MTA."""
    tls = {
        "valid": "STARTTLS (certificate from the demo CA)",
        "wrong-name": "STARTTLS (certificate for another name)",
        "none": "no STARTTLS",
    }[domain.sink.tls]
    parts = [tls, f"MTA-STS {domain.mta_sts_mode}" if domain.mta_sts_mode else "no MTA-STS"]
    if domain.dane:
        parts.append("DANE TLSA")
    return ", ".join(parts)


def watch_daemons(world: World, interval: float = 1.0) -> None:
    """Reap and report daemons that exit, until KeyboardInterrupt.

    Without this, a daemon that the admin stops stays a zombie until the demo ends.
    """
    reported: set[str] = set()
    while True:
        time.sleep(interval)
        for line in report_exited(world.daemons, reported):
            print(line, flush=True)


def report_exited(daemons: Mapping[str, DaemonProcess], reported: set[str]) -> list[str]:
    """Reap every daemon not yet in ``reported`` that has exited; return one line about each.

    Adds the name of each reaped daemon to ``reported``.
    """
    lines = []
    for name, daemon in daemons.items():
        if name in reported:
            continue
        status = daemon.poll()
        if status is None:
            continue
        reported.add(name)
        outcome = (
            f"was killed by {signal.Signals(-status).name}"
            if status < 0
            else f"exited with status {status}"
        )
        line = f"demo: postveil-{name} (pid {daemon.pid}) {outcome}; log: {daemon.log_path}"
        if name == "milter":
            line += "; Postfix defers new mail while it is down (milter_default_action = tempfail)"
        lines.append(line)
    return lines


def row_for(
    world: World,
    portal_run: PortalRun,
    sample: Sample,
    recipient: str,
    result: SendResult,
    message_id: str,
    milter_log: str,
) -> tuple[str, ...]:
    """Build one table row: what postveil decided for ``recipient`` and what arrived where."""
    if recipient in result.rejected:
        code, text = result.rejected[recipient]
        return (sample.label, recipient, f"rejected at RCPT ({text.split()[0]})", "-", "not sent")
    if result.queue_id is None:
        return (sample.label, recipient, f"{result.code} {result.text.split()[0]}", "-", "not sent")
    method = decision_for(milter_log, recipient, result.queue_id)
    domain = world.domains[recipient.split("@")[1]]
    if method == "portal":
        # The message stays in the portal; the recipient's MX gets a notification with
        # a link. Each sample is sent after the previous one was announced, so the oldest
        # notification not yet claimed by an earlier row is this sample's.
        notice = wait_for_mail(
            domain.sink,
            PORTAL_NOTIFY_FROM,
            recipient,
            NOTIFICATION_SUBJECT,
            skip=portal_run.claimed,
        )
        if notice is None:
            return (sample.label, recipient, method, "-", "no portal notification")
        portal_run.notifications[(sample.label, recipient)] = notice
        return (
            sample.label,
            recipient,
            method,
            notice.tls_version or "plaintext",
            "stored in portal, link sent",
        )
    copy = wait_for_copy(
        domain, recipient, message_id, timeout=0.2 if method in ("drop", "-") else 15
    )
    if copy is None:
        return (sample.label, recipient, method, "-", "not delivered")
    return (sample.label, recipient, method, copy.tls_version or "plaintext", content_form(copy))


def show_pickup(world: World, cast: Cast, portal_run: PortalRun) -> None:
    """Print the portal's side of the PHI sample for one recipient: the intake's
    maillog line, the notification, the scripted pickup and ``postveil portal status``."""
    label, recipient = PICKUP_SAMPLE, cast.pickup_recipient
    number = next(n for n, sample in enumerate(samples(cast), start=1) if sample.label == label)
    message_id = message_id_for(number)
    portal = portal_run.portal
    assert world.postfix is not None and world.spool is not None
    print(f"demo: built-in portal at {portal.base_url}, {label!r} for {recipient}:")
    # The intake mails the notifications before it exits, so Postfix may log its
    # delivery to the pipe service a moment after they arrive.
    deadline = time.monotonic() + 15
    while (intake := intake_line(world.postfix.maillog_text(), message_id)) is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    print(f"  intake        {intake or 'no delivery to the intake in the maillog'}")
    notice = portal_run.notifications.get((label, recipient))
    if notice is None:
        print("  notification  none arrived; see the maillog and the postveil-portal log")
        return
    where = spool_name(world, notice)
    print(f"  notification  {where} from {PORTAL_NOTIFY_FROM}: the link, no message text")

    def code_mail() -> ReceivedMessage | None:
        return wait_for_mail(
            cast.plain.sink, PORTAL_NOTIFY_FROM, recipient, CODE_SUBJECT, timeout=30
        )

    failure = None
    try:
        pickup = pick_up(link_in(notice, portal.base_url), code_mail)
    except PickupError as exc:
        pickup = exc.pickup or Pickup()
        failure = str(exc)
    except OSError as exc:
        pickup = Pickup()
        failure = f"cannot reach postveil-portal at {portal.base_url}: {exc}"
    print_steps(world, pickup)
    if failure is not None:
        print(f"  pickup failed: {failure}; see {world.daemons['portal'].log_path}")

    try:
        status = portal.status().splitlines()
    except PortalHarnessError as exc:
        status = [str(exc)]
    print("  postveil portal status:")
    for line in status:
        print(f"    {line}")


def print_steps(world: World, pickup: Pickup) -> None:
    """Print one line for each request of ``pickup``, naming the code mail after the
    code request."""
    if not pickup.steps:
        return
    width = max(len(step.path) for step in pickup.steps)
    for step in pickup.steps:
        note = step.note
        if step.path.endswith("/code") and pickup.code_mail is not None:
            note += f"; code mail: {spool_name(world, pickup.code_mail)}"
        print(f"  {step.method:<4} {step.path:<{width}}  {step.status}  {note}")


def intake_line(maillog: str, message_id: str) -> str | None:
    """Return Postfix's delivery line for the portal copy of ``message_id``, shortened to
    ``queue id: to=<intake> status=... (reply)``, or None when the maillog has none."""
    queue_ids = re.findall(rf" ([0-9A-Za-z]+): message-id=<{re.escape(message_id)}>", maillog)
    for line in maillog.splitlines():
        match = re.search(
            r" ([0-9A-Za-z]+): to=<([^>]+)>,.* relay=portal,.* (status=\S+ \(.*\))$", line
        )
        if match and match.group(1) in queue_ids:
            return f"{match.group(1)}: to=<{match.group(2)}> {match.group(3)}"
    return None


def spool_name(world: World, message: ReceivedMessage) -> str:
    """Return the path, relative to the world's directory, of the spool file that contains
    ``message``, or "-"."""
    assert world.spool is not None
    for path in sorted(world.spool.directory.glob("*.eml")):
        if path.read_bytes() == message.data:
            return str(path.relative_to(world.base_dir))
    return "-"


def wait_for_copy(
    domain: TestDomain, recipient: str, message_id: str, timeout: float = 15
) -> ReceivedMessage | None:
    deadline = time.monotonic() + timeout
    while True:
        for message in domain.sink.messages:
            if recipient in message.rcpt_tos and message_id.encode() in message.data:
                return message
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    # SIGTERM stops the demo as Ctrl-C does, so every process it started is stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    parser = argparse.ArgumentParser(
        description="Run postveil end to end on loopback and show what it did."
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="leave everything running until Ctrl-C and print the addresses, PIDs and files to use",
    )
    parser.add_argument(
        "--keep-files",
        action="store_true",
        help=f"keep the runtime directory (Postfix queue, logs, received mail) after the demo "
        f"ends; setting ${KEEP_ENV}=1 does the same",
    )
    args = parser.parse_args(argv)
    return run(args.keep_running, args.keep_files)


if __name__ == "__main__":
    sys.exit(main())
