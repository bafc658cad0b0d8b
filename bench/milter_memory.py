"""Peak resident memory of postveil-milter while it handles one large message.

Starts the harness's private Postfix, an ``smtp-sink`` MX on a loopback address and a
fresh postveil-milter on a unix socket. The milter's ``VmHWM`` (peak resident set, from
/proc/PID/status) is read after start-up and again after each message of ``--size``
bytes has passed through Postfix to the sink. The body is plain
English text with nothing to detect, so the message is accepted unchanged.

    .venv/bin/python bench/milter_memory.py --size 25MB
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time

from milter_world import BenchError, BenchWorld, clean_message, machine_summary, require_tools

SENDER = "scans@clinic.test"
MAX_SIZE = 60_000_000


def parse_size(text: str) -> int:
    units = {"KB": 1000, "MB": 1000_000, "KIB": 1024, "MIB": 1024 * 1024}
    upper = text.strip().upper()
    for suffix, factor in units.items():
        if upper.endswith(suffix):
            return int(float(upper[: -len(suffix)]) * factor)
    return int(upper)


def large_message(size: int, recipient: str) -> bytes:
    return clean_message(size, SENDER, recipient, subject="Minutes of the year").replace(b"\n", b"\r\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="25MB", help="message size, for example 25MB (at most 60MB)")
    parser.add_argument("--messages", type=int, default=1, help="messages to send one after the other (at most 5)")
    args = parser.parse_args()
    size = parse_size(args.size)
    if not 0 < size <= MAX_SIZE or not 0 < args.messages <= 5:
        parser.error(f"--size must be 1-{MAX_SIZE} bytes and --messages 1-5")

    require_tools()
    print(f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"host: {machine_summary()}")
    print(" ".join(sys.argv))
    with BenchWorld() as bench:
        recipient = f"archive@{bench.domain}"
        raw = large_message(size, recipient)
        # The whole body is scanned: by default a text part over 10 MB is left unscanned,
        # counts as sensitive and, with no key for the recipient, is rejected.
        limits = {"milter": {"max_message_size": "60MB"}, "detection": {"max_part_size": "60MB"}}
        milter = bench.start_milter("unix", extra=limits)
        bench.attach(milter)
        idle_kib = milter.status_kib("VmHWM")
        print(f"message: {len(raw)} bytes; milter VmHWM after start-up: {idle_kib} kB")
        for number in range(1, args.messages + 1):
            bench.mark_maillog()
            started = time.monotonic()
            result = bench.postfix.send(raw, SENDER, [recipient])
            if result.code >= 400:
                raise BenchError(f"Postfix replied {result.code} {result.text}")
            bench.wait_delivered(1, 120)
            elapsed = time.monotonic() - started
            peak = milter.status_kib("VmHWM")
            print(
                f"message {number}: accepted and delivered in {elapsed:.2f} s; milter VmHWM {peak} kB "
                f"(+{peak - idle_kib} kB over start-up, {1024 * (peak - idle_kib) / len(raw):.2f}x the message), "
                f"VmRSS now {milter.status_kib('VmRSS')} kB"
            )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"milter_memory: {exc}", file=sys.stderr)
        sys.exit(1)
