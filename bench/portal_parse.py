"""Time the parsing processes behind postveil-portal's message pages.

Each page view and attachment download parses the message in a child process
(src/postveil/portal/parsing.py). This script calls the parser as the daemon does, one
parse at a time. It prints the wall time per parse (median and 95th percentile) for two
messages: a short one, and one with a text body of about 1 MB and a PDF attachment.
The time covers starting the child, its parse and the transfer of the result. The
first parse, which starts the fork server, is timed on its own. (The children are the
fork server's, not this process's, so their CPU time cannot be read here.)

    .venv/bin/python bench/portal_parse.py [--parses 200]
"""

from __future__ import annotations

import argparse
import statistics
import time
from email.message import EmailMessage

from postveil.portal.parsing import Parser


def short_message() -> bytes:
    return b"From: clinic@example.org\r\nSubject: x\r\n\r\nhi\r\n"


def large_message() -> bytes:
    message = EmailMessage()
    message["From"] = "clinic@example.org"
    message["Subject"] = "Results"
    message.set_content("The results are attached.\n" * 40_000)
    message.add_attachment(b"%PDF-1.4 " * 20_000, maintype="application", subtype="pdf")
    return message.as_bytes()


def measure(parser: Parser, raw: bytes, parses: int) -> tuple[float, float]:
    """Return the median and 95th percentile of wall ms per view."""
    walls = []
    for _ in range(parses):
        started = time.perf_counter()
        parser.view(raw)
        walls.append((time.perf_counter() - started) * 1000)
    walls.sort()
    return statistics.median(walls), walls[int(len(walls) * 0.95) - 1]


def main() -> None:
    parser_ = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser_.add_argument("--parses", type=int, default=200)
    args = parser_.parse_args()

    parser = Parser(time_limit=10)
    started = time.perf_counter()
    parser.view(short_message())
    print(f"first parse, starting the fork server: {(time.perf_counter() - started) * 1000:.0f} ms")
    print("| message | bytes | ms per view, median | 95th percentile |")
    print("|---|---|---|---|")
    for name, raw in (("short", short_message()), ("1 MB text + PDF", large_message())):
        median, p95 = measure(parser, raw, args.parses)
        print(f"| {name} | {len(raw):,} | {median:.1f} | {p95:.1f} |")


if __name__ == "__main__":
    main()
