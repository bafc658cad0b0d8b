"""Measure the memory that postveil-portal's parsing processes need for large messages.

For each message, a child forked from this process (which has imported the daemon's
modules, as the fork server has) records its address space (VmSize) after it holds
the message, parses it as the daemon's parsing process does, pickles the result as the
pipe would, and reports its peak address space (VmPeak) and peak resident memory
(VmHWM). The growth of VmSize is what RLIMIT_AS in src/postveil/portal/parsing.py
bounds. No memory limit is set here.

With ``--daemon``, it measures the daemon's side instead: tracemalloc's peak, as a
multiple of the message's size, while a real store in a temporary directory decrypts
the message, while the parser sends it to a parsing process for the page, and while
it returns the largest part. READ_COPIES in src/postveil/portal/budget.py comes from
these figures.

    .venv/bin/python bench/portal_parse_memory.py [--size-mb 50] [--daemon]
"""

from __future__ import annotations

import argparse
import multiprocessing
import pickle
import tempfile
import tracemalloc
from email.message import EmailMessage
from multiprocessing.connection import Connection
from pathlib import Path

import postveil.portal.daemon  # noqa: F401 - loaded like the fork server's preload
from postveil.portal.parsing import Parser, parse_task
from postveil.portal.store import PortalStore, generate_master_key


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
    """Build a message of one text/plain part of about ``size`` bytes, 8bit. ``wide`` adds one character
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
    """Build a message of ``count`` base64 attachments that together make about ``size`` bytes."""
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
    """Build a message of one HTML part of about ``size`` bytes of elements nested inside each other."""
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


def _traced_peak(function: object, *args: object) -> float:
    """Return the peak of traced memory in bytes while ``function(*args)`` runs."""
    assert callable(function)
    tracemalloc.start()
    try:
        function(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure_daemon(size: int) -> None:
    cases = [
        ("one text part", large_text(size, wide=False), 0),
        ("990 attachments", many_attachments(size), 500),
    ]
    with tempfile.TemporaryDirectory() as directory:
        key = Path(directory) / "portal.key"
        generate_master_key(key)
        store = PortalStore.open(str(Path(directory) / "store"), str(key))
        parser = Parser(600)
        parser.start()
        print("| message | size | decrypt | page view | part download |")
        print("|---|---|---|---|---|")
        for name, raw, part in cases:
            deposit = store.deposit(
                raw,
                sender="a@example.org",
                recipients=["b@example.org"],
                retention=3600,
                queue_id="Q",
            )
            token = deposit.tokens[0][1]
            code = store.issue_code(token, lifetime=600, per_hour=5).code
            assert code is not None
            session = store.check_code(token, code, attempts=5, session_lifetime=900).session
            assert session is not None
            length = len(raw)
            del raw
            decrypt = _traced_peak(store.read_message, token, session)
            plaintext = store.read_message(token, session)
            assert plaintext is not None
            # The plaintext is allocated before tracing starts, so these peaks leave it
            # out: add 1 for the copy a handler holds meanwhile.
            view = 1 + _traced_peak(parser.view, plaintext) / length
            download = 1 + _traced_peak(parser.part, plaintext, part) / length
            print(
                f"| {name} | {length / 1e6:.1f} MB | {decrypt / length:.2f} "
                f"| {view:.2f} | {download:.2f} |"
            )
        parser.close()
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=float, default=50.0, help="message size in MB")
    parser.add_argument("--daemon", action="store_true", help="measure the daemon's side")
    args = parser.parse_args()
    size = int(args.size_mb * 1_000_000)
    if args.daemon:
        measure_daemon(size)
        return
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
