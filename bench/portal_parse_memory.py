"""Measure the memory that postveil-portal's parsing processes need for large messages.

For each message, a child forked from this process (which has imported the daemon's
modules, as the fork server has) records its address space (VmSize) after it holds
the message, parses it as the daemon's parsing process does, pickles the result as the
pipe would, and reports its peak address space (VmPeak) and peak resident memory
(VmHWM). The growth of VmSize is what RLIMIT_AS in src/postveil/portal/parsing.py
bounds. No memory limit is set here.

    .venv/bin/python bench/portal_parse_memory.py [--size-mb 50]
"""

from __future__ import annotations

import argparse
import multiprocessing
import pickle
from email.message import EmailMessage
from multiprocessing.connection import Connection

import postveil.portal.daemon  # noqa: F401 - loaded like the fork server's preload
from postveil.portal.parsing import parse_task


def _status() -> dict[str, int]:
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmSize", "VmPeak", "VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0]) * 1024
    return values


def _headers(message: EmailMessage) -> None:
    message["From"] = "clinic@example.org"
    message["To"] = "jordan.lee@example.org"
    message["Subject"] = "Results"


def large_text(size: int, *, wide: bool) -> bytes:
    """One text/plain part of about ``size`` bytes, 8bit. ``wide`` adds one character
    outside the Basic Multilingual Plane, so Python stores the text with 4 bytes a
    character."""
    line = "The results of the laboratory tests are attached below, page 1.\n"
    text = line * (size // len(line))
    if wide:
        text = "\U0001f600" + text
    message = EmailMessage()
    _headers(message)
    message.set_content(text, cte="8bit")
    return message.as_bytes()


def many_attachments(size: int, count: int = 990) -> bytes:
    """``count`` base64 attachments that together make about ``size`` bytes."""
    message = EmailMessage()
    _headers(message)
    message.set_content("See the attachments.\n")
    chunk = size * 3 // 4 // count
    for number in range(count):
        message.add_attachment(
            bytes([number % 256]) * chunk,
            maintype="application",
            subtype="pdf",
            filename=f"report-{number}.pdf",
        )
    return message.as_bytes()


def nested_html(size: int) -> bytes:
    """An HTML part of about ``size`` bytes of elements nested inside each other."""
    unit = "<div><span>x "
    depth = size // (len(unit) + len("</span></div>"))
    html = unit * depth + "</span></div>" * depth
    message = EmailMessage()
    _headers(message)
    message.set_content(html, subtype="html", cte="8bit")
    return message.as_bytes()


def _measure(sender: Connection, task: str, raw: bytes, number: int) -> None:
    before = _status()
    result = parse_task(task, raw, number)
    pickled = pickle.dumps(("ok", result))
    after = _status()
    del pickled
    sender.send((before, after))
    sender.close()


def measure(raw: bytes, task: str, number: int) -> tuple[dict[str, int], dict[str, int]]:
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_measure, args=(sender, task, raw, number))
    child.start()
    sender.close()
    before, after = receiver.recv()
    child.join()
    return before, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=float, default=50.0, help="message size in MB")
    args = parser.parse_args()
    size = int(args.size_mb * 1_000_000)
    cases = [
        ("large text part, ASCII", large_text(size, wide=False), "view", 0),
        ("large text part, one emoji", large_text(size, wide=True), "view", 0),
        ("990 attachments", many_attachments(size), "view", 0),
        ("990 attachments, download of part 500", many_attachments(size), "part", 500),
        ("nested HTML", nested_html(size), "view", 0),
    ]
    print("| message | size | VmSize growth | growth / size | VmHWM growth |")
    print("|---|---|---|---|---|")
    for name, raw, task, number in cases:
        before, after = measure(raw, task, number)
        growth = after["VmPeak"] - before["VmSize"]
        resident = after["VmHWM"] - before["VmRSS"]
        print(
            f"| {name} ({task}) | {len(raw) / 1e6:.1f} MB | {growth / 1e6:.0f} MB "
            f"| {growth / len(raw):.2f} | {resident / 1e6:.0f} MB |"
        )


if __name__ == "__main__":
    main()
