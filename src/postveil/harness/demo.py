"""End-to-end demo: a private Postfix with postveil attached, three invented
recipient domains on loopback, a few sample messages, and a table of what
happened to each recipient.

Run with ``make demo`` (or ``python -m postveil.harness.demo`` inside .venv).
Needs root, like the test suite, because Postfix is started for real.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass
from email import message_from_bytes
from email.policy import compat32

from postveil.harness.postfix import Delivery
from postveil.harness.pytest_plugin import postfix_available
from postveil.harness.smtp import ReceivedMessage
from postveil.harness.world import TestDomain, World

SENDER = "frontdesk@clinic.test"


@dataclass(frozen=True)
class Sample:
    label: str
    subject: str
    body: str
    recipients: tuple[str, ...]


def samples(enforce: TestDomain, starttls: TestDomain, plain: TestDomain) -> list[Sample]:
    everyone = (f"dr.lee@{enforce.name}", f"billing@{starttls.name}", f"patient@{plain.name}")
    return [
        Sample(
            "staff lunch",
            "Lunch on Friday",
            "Hi all,\nlunch is at noon on Friday in room 2.\n",
            everyone,
        ),
        Sample(
            "lab results",
            "Results for your patient",
            "Patient: Jane Example, MRN 00123456, DOB 01/02/1980.\n"
            "HbA1c 9.1%, diagnosis E11.9 (type 2 diabetes). Please review.\n",
            everyone,
        ),
        Sample(
            "tagged [secure]",
            "[secure] Referral letter",
            "Please find the referral details below.\n",
            everyone,
        ),
    ]


def build_message(sample: Sample) -> bytes:
    headers = (
        f"From: Clinic Front Desk <{SENDER}>\r\n"
        f"To: {', '.join(sample.recipients)}\r\n"
        f"Subject: {sample.subject}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    )
    return (headers + sample.body.replace("\n", "\r\n")).encode()


def content_form(message: ReceivedMessage) -> str:
    """Name the form in which the recipient got the content."""
    parsed = message_from_bytes(message.data, policy=compat32)
    content_type = parsed.get_content_type()
    if content_type == "application/pkcs7-mime":
        return "S/MIME encrypted"
    if content_type == "multipart/encrypted":
        return "PGP/MIME encrypted"
    return "readable"


def decision_for(milter_log: str, queue_id: str, recipient: str) -> str:
    """Find the milter's decision for one recipient in its log lines about the queue id."""
    lines = [line for line in milter_log.splitlines() if f"{queue_id}:" in line]
    for line in reversed(lines):
        match = re.search(rf"rcpt=<{re.escape(recipient)}> method=(\S+)", line)
        if match:
            return match.group(1)
    for line in reversed(lines):
        if "accepted" in line:
            return "pass-through"
        if "temporary failure" in line:
            return "tempfail"
    return "-"


def run(keep_running: bool = False) -> int:
    reason = postfix_available()
    if reason is not None:
        print(f"demo: cannot start the private Postfix: {reason}", file=sys.stderr)
        return 1
    started = time.monotonic()
    world = World(keep=True).start()
    try:
        print(f"demo: fixtures and logs in {world.base_dir}")
        enforce = world.add_domain("mta-sts-enforce.test", mta_sts="enforce")
        starttls = world.add_domain("starttls-only.test")
        plain = world.add_domain("no-tls.test", tls="none")
        postfix = world.start_postfix()
        milter = world.start_milter()
        print("demo: private Postfix on 127.0.0.1:%d with postveil-milter attached" % postfix.port)

        rows: list[tuple[str, ...]] = []
        for sample in samples(enforce, starttls, plain):
            result = postfix.send(build_message(sample), SENDER, sample.recipients)
            if result.queue_id is None:
                for recipient in sample.recipients:
                    rows.append((sample.label, "-", recipient, f"{result.code} at submission", "-", "-", "-"))
                continue
            delivery: Delivery = postfix.wait_for(result.queue_id, recipients=len(sample.recipients))
            for recipient in sample.recipients:
                domain = world.domains[recipient.split("@")[1]]
                copies = [m for m in domain.sink.messages if recipient in m.rcpt_tos and result.queue_id.encode() in m.data]
                received = copies[-1] if copies else None
                rows.append(
                    (
                        sample.label,
                        result.queue_id,
                        recipient,
                        decision_for(milter.log_text(), result.queue_id, recipient),
                        delivery.statuses.get(recipient, "?"),
                        (received.tls_version or "plaintext") if received else "not received",
                        content_form(received) if received else "-",
                    )
                )
        print()
        print_table(
            ("message", "queue id", "recipient", "postveil", "postfix", "transport", "content"), rows
        )
        print()
        print("demo: Postfix maillog:        %s" % postfix.maillog)
        print("demo: postveil-milter log:    %s" % milter.log_path)
        print("demo: finished in %.1fs" % (time.monotonic() - started))
        if keep_running:
            print("demo: running until Ctrl-C")
            while True:
                time.sleep(3600)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        world.stop()


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line)
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run postveil end to end on loopback and show what it did.")
    parser.add_argument("--keep-running", action="store_true", help="leave everything running until Ctrl-C")
    args = parser.parse_args(argv)
    return run(args.keep_running)


if __name__ == "__main__":
    sys.exit(main())
