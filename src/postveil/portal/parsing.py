"""Parsing a message for the portal's pages in a child process, with a time limit.

Python's email package can take seconds of CPU on a crafted message (a Content-Type
with thousands of parameters, a part of many megabytes of HTML), and a thread cannot
be stopped. Each parse therefore runs in a new Python process (``python -m
postveil.portal.parsing view|part N``, the message on standard input), which is
killed when it takes longer than ``portal.view_time_limit``. The page then offers the
message as an ``.eml`` download only. Starting the process costs about 0.3 s of CPU
per page view or attachment download on a 2-core virtual machine (Python 3.11), most
of it importing postveil's modules (docs/benchmarks.md).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from dataclasses import asdict
from typing import Any

from postveil.portal.reading import (
    Attachment,
    MessageView,
    download_filename,
    leaf_parts,
    parse_message,
    part_bytes,
    view_message,
)


class ParseTimeout(Exception):
    """The message took longer than the time limit to parse."""


class ParseFailed(Exception):
    """The parsing process failed; the message names the exception class only,
    because an exception's text may quote the message."""


class Parser:
    """Parser that runs each parse in a child process, killed after ``time_limit`` seconds."""

    def __init__(self, time_limit: float) -> None:
        self.time_limit = time_limit

    def view(self, raw: bytes) -> MessageView:
        result = self._run(["view"], raw)
        if result is None:
            raise ParseFailed("the parsing process returned no view")
        return MessageView(
            headers=tuple((name, value) for name, value in result["headers"]),
            texts=tuple(result["texts"]),
            attachments=tuple(Attachment(**item) for item in result["attachments"]),
        )

    def part(self, raw: bytes, number: int) -> tuple[bytes, str] | None:
        """Return the content and file name of part ``number``, or None when the
        message has no such part."""
        result = self._run(["part", str(number)], raw)
        if result is None:
            return None
        return base64.b64decode(result["data"]), result["filename"]

    def _run(self, arguments: list[str], raw: bytes) -> dict[str, Any] | None:
        try:
            finished = subprocess.run(
                [sys.executable, "-m", "postveil.portal.parsing", *arguments],
                input=raw,
                capture_output=True,
                timeout=self.time_limit,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ParseTimeout(f"parsing took longer than {self.time_limit:g}s") from None
        if finished.returncode != 0:
            cause = finished.stderr.decode("ascii", "replace").strip().splitlines()
            raise ParseFailed(cause[-1] if cause else f"exit status {finished.returncode}")
        result: dict[str, Any] | None = json.loads(finished.stdout)
        return result

    def close(self) -> None:
        """Nothing to release: each parse has its own process."""


def _worker(arguments: list[str]) -> int:
    """Parse the message on standard input and print the result as JSON."""
    raw = sys.stdin.buffer.read()
    try:
        message = parse_message(raw)
        if arguments[0] == "view":
            result: object = asdict(view_message(message))
        else:
            number = int(arguments[1])
            parts = leaf_parts(message)
            result = None
            if number < len(parts):
                part = parts[number]
                result = {
                    "data": base64.b64encode(part_bytes(part)).decode("ascii"),
                    "filename": download_filename(part, number),
                }
    except Exception as exc:  # noqa: BLE001 - reported by class; the text may quote the message
        print(type(exc).__name__, file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
