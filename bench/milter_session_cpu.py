"""CPU time of postveil-milter's Python side per clean 10 KB message, without Postfix.

Drives :class:`postveil.milter.session.PostveilMilter` through one SMTP connection per
message (connect, HELO, MAIL, RCPT, DATA, headers, body, end of message, close), in one
thread, with pymilter's ``TestCtx`` in place of libmilter. Then it times the parts of
end of message on their own: detection scan, facts lookup, routing and rendering, and
the audit record. State (keys, facts cache, audit log) lives in a temporary
directory; log lines go to /dev/null.

    .venv/bin/python bench/milter_session_cpu.py --messages 2000 --fsync never

Timings on a shared virtual machine vary by a quarter from run to run. Instructions
do not: ``--sessions-only`` runs just the connections, so two runs under valgrind's
callgrind with different ``--messages`` give the instructions per message from the
difference of their totals (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from Milter.testctx import TestCtx
from milter_world import clean_message

from postveil.audit import generate_key_file
from postveil.config import load_config
from postveil.crypto.pipeline import process_message
from postveil.log import setup_logging
from postveil.milter.processor import MessageProcessor
from postveil.milter.session import InFlight, PostveilMilter

SENDER = "rota@clinic.test"
RECIPIENT = "staff@bench-dest.test"
MAX_MESSAGES = 20_000


def make_processor(root: Path, fsync: str) -> MessageProcessor:
    for name in ("audit", "smime"):
        (root / name).mkdir()
    (root / "gnupg").mkdir(mode=0o700)
    generate_key_file(root / "audit.key")
    config = {
        "milter": {"socket": f"unix:{root / 'milter.sock'}"},
        "policyd": {"cache_path": str(root / "tlsfacts.sqlite3")},
        "pgp": {"gnupg_home": str(root / "gnupg")},
        "smime": {"certificate_dir": str(root / "smime")},
        "audit": {"directory": str(root / "audit"), "key_file": str(root / "audit.key"), "fsync": fsync},
        "logging": {"level": "INFO"},
    }
    path = root / "postveil.yaml"
    path.write_text(yaml.safe_dump(config))
    loaded = load_config(str(path))
    setup_logging(loaded.logging, "postveil-milter")
    return MessageProcessor(loaded)


def split_message(raw: bytes) -> tuple[list[tuple[str, bytes]], bytes]:
    head, body = raw.split(b"\r\n\r\n", 1)
    headers = []
    for line in head.split(b"\r\n"):
        name, value = line.split(b":", 1)
        headers.append((name.decode(), value))
    return headers, body


def per_message_ms(count: int, step: Callable[[int], object]) -> tuple[float, float]:
    """Run ``step`` ``count`` times; return wall and CPU milliseconds per call."""
    wall = time.perf_counter()
    cpu = time.process_time()
    for index in range(count):
        step(index)
    return 1000 * (time.perf_counter() - wall) / count, 1000 * (time.process_time() - cpu) / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help=f"messages per measurement (at most {MAX_MESSAGES})")
    parser.add_argument("--fsync", choices=("always", "batch", "never"), default="never", help="audit.fsync")
    parser.add_argument(
        "--sessions-only",
        action="store_true",
        help="run only the whole-connection step, untimed, for counting instructions under valgrind",
    )
    args = parser.parse_args()
    if not 0 < args.messages <= MAX_MESSAGES:
        parser.error(f"--messages must be 1-{MAX_MESSAGES}")

    raw = clean_message(10_240, SENDER, RECIPIENT).replace(b"\n", b"\r\n")
    headers, body = split_message(raw)
    with tempfile.TemporaryDirectory(prefix="postveil-bench-") as directory:
        sys.stderr = open(os.devnull, "w")  # the milter's log lines
        processor = make_processor(Path(directory), args.fsync)
        in_flight = InFlight()

        def session(index: int) -> None:
            milter = PostveilMilter(lambda: processor, in_flight)
            context = TestCtx()
            context._stage = -1  # every macro is visible at every stage
            context._macros = {"i": f"B{index:010d}"}
            milter._setctx(context)
            milter.connect("localhost", 2, "127.0.0.1")
            milter.hello("client.test")
            milter.envfrom(f"<{SENDER}>")
            milter.envrcpt(f"<{RECIPIENT}>")
            milter.data()
            for name, value in headers:
                milter.header(name, value)
            milter.body(body)
            milter.eom()
            milter.close()

        def decide(index: int) -> object:
            return processor.decide(raw, queue_id=f"D{index}", sender=SENDER, recipients=[RECIPIENT])

        if args.sessions_only:
            for index in range(args.messages):
                session(index)
            processor.close()
            sys.stderr = sys.__stderr__
            return 0

        outcome = decide(0)
        verdict = processor.detector.scan_message(raw)
        requirements = processor.tls_requirements([RECIPIENT])
        steps: list[tuple[str, Callable[[int], object]]] = [
            ("whole SMTP connection (all callbacks)", session),
            ("detection scan", lambda _: processor.detector.scan_message(raw)),
            ("facts cache lookup", lambda _: processor.tls_requirements([RECIPIENT])),
            (
                "routing and rendering (process_message)",
                lambda index: process_message(
                    raw, queue_id=f"P{index}", sender=SENDER, recipients=[RECIPIENT], verdict=verdict,
                    tls=requirements, context=processor.context,
                ),
            ),
            (f"audit record (fsync {args.fsync})", lambda _: processor.record(outcome, "accept")),
        ]
        for _name, step in steps:
            per_message_ms(50, step)  # warm-up
        results = [(name, per_message_ms(args.messages, step)) for name, step in steps]
        processor.close()
        sys.stderr = sys.__stderr__

    print(f"{args.messages} messages of {len(raw)} bytes, one thread, audit.fsync {args.fsync}")
    print("| step | wall ms/message | CPU ms/message |")
    print("|---|---|---|")
    for name, (wall, cpu) in results:
        print(f"| {name} | {wall:.3f} | {cpu:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
