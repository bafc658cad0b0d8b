"""Read audit records back, select them, and export them as JSON Lines or CSV.

Reading does not verify the chain; run ``verify`` on the same files first when the
result must be trustworthy.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any, BinaryIO, TextIO

from postveil.audit.records import RECORD_TYPES, MessageDecision
from postveil.audit.writer import parse_time


@dataclass(frozen=True)
class StoredRecord:
    file: str
    line: int
    fields: dict[str, Any]
    raw: bytes
    """The record's line exactly as stored, without its newline."""

    @property
    def kind(self) -> str:
        return str(self.fields.get("kind", ""))


@dataclass
class ReadStats:
    unreadable_lines: int = 0
    """Lines skipped because they are not JSON objects with a ``time`` (see verify)."""


def parse_when(text: str) -> float:
    """Parse ``2026-12-01`` or ``2026-12-01T08:30[:00][Z|+01:00]`` to epoch seconds.

    A date alone means midnight at the start of that day; no zone means UTC.
    Raises ValueError naming the text.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS] with an "
            "optional zone such as Z or +01:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def read_records(
    files: Iterable[str | os.PathLike[str]], stats: ReadStats | None = None
) -> Iterator[StoredRecord]:
    """Yield the records of ``files`` in order, skipping lines that cannot be parsed."""
    for path in files:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    fields = json.loads(raw)
                    parse_time(fields["time"])
                except (ValueError, KeyError, TypeError):
                    if stats is not None:
                        stats.unreadable_lines += 1
                    continue
                yield StoredRecord(str(path), number, fields, raw.removesuffix(b"\n"))


@dataclass(frozen=True)
class Query:
    """Selection of records. Address patterns match case-insensitively: a full address,
    ``@domain`` for every address of a domain, or a glob with ``*`` and ``?``."""

    since: float | None = None
    """Epoch seconds, inclusive."""

    until: float | None = None
    """Epoch seconds, exclusive."""

    kind: str | None = "message"
    """Record kind to select; None selects every kind."""

    sender: str | None = None
    recipient: str | None = None
    method: str | None = None
    queue_id: str | None = None

    @property
    def filters_messages(self) -> bool:
        return any(
            value is not None for value in (self.sender, self.recipient, self.method, self.queue_id)
        )

    def matches(self, record: StoredRecord) -> bool:
        if self.kind is not None and record.kind != self.kind:
            return False
        moment = parse_time(record.fields["time"])
        if self.since is not None and moment < self.since:
            return False
        if self.until is not None and moment >= self.until:
            return False
        if not self.filters_messages:
            return True
        if record.kind != MessageDecision.kind:
            return False
        if self.queue_id is not None and record.fields.get("queue_id") != self.queue_id:
            return False
        if self.sender is not None and not address_matches(
            self.sender, str(record.fields.get("sender", ""))
        ):
            return False
        return bool(self.matching_recipients(record))

    def matching_recipients(self, record: StoredRecord) -> list[dict[str, Any]]:
        """Return the recipients of a message record selected by ``recipient`` and ``method``."""
        selected = []
        for recipient in record.fields.get("recipients", []):
            if self.recipient is not None and not address_matches(
                self.recipient, str(recipient.get("address", ""))
            ):
                continue
            if self.method is not None and recipient.get("method") != self.method:
                continue
            selected.append(recipient)
        return selected


def address_matches(pattern: str, address: str) -> bool:
    pattern = pattern.lower()
    if pattern.startswith("@"):
        pattern = "*" + pattern
    return fnmatchcase(address.lower(), pattern)


def search(
    files: Iterable[str | os.PathLike[str]], query: Query, stats: ReadStats | None = None
) -> Iterator[StoredRecord]:
    for record in read_records(files, stats):
        if query.matches(record):
            yield record


def write_json_lines(records: Iterable[StoredRecord], out: BinaryIO) -> int:
    """Write each record's stored line byte for byte, each followed by a newline.

    Re-serialising the parsed fields would change the bytes (spacing, escapes), and
    ``verify`` rejects a record whose bytes differ from the writer's form. An export of
    consecutive records verifies with ``verify --partial --no-head``, and any other
    with ``verify --selection --no-head``.
    """
    count = 0
    for record in records:
        out.write(record.raw + b"\n")
        count += 1
    return count


MESSAGE_CSV_COLUMNS = (
    "time",
    "seq",
    "queue_id",
    "message_id",
    "sender",
    "recipient",
    "method",
    "reason",
    "fingerprint",
    "portal_ref",
    "detections",
    "tags",
    "action",
    "config_version",
    "host",
    "program",
    "file",
    "line",
)


def csv_columns(kind: str) -> tuple[str, ...]:
    if kind == MessageDecision.kind:
        return MESSAGE_CSV_COLUMNS
    return (
        "time",
        "seq",
        "kind",
        *RECORD_TYPES[kind].CSV_FIELDS,
        "host",
        "program",
        "file",
        "line",
    )


def write_csv(records: Iterable[StoredRecord], kind: str, query: Query, out: TextIO) -> int:
    """Write one row per record; message records get one row per selected recipient.

    Cells that start with ``=``, ``+``, ``-``, ``@``, tab or carriage return get a
    leading ``'`` so that spreadsheet programs show them as text instead of running
    them as formulas. Returns the number of rows.
    """
    writer = csv.writer(out, lineterminator="\n")
    columns = csv_columns(kind)
    writer.writerow(columns)
    rows = 0
    for record in records:
        base = {**record.fields, "file": record.file, "line": record.line}
        if kind == MessageDecision.kind:
            base["detections"] = ";".join(
                f"{k}={v}" for k, v in sorted(record.fields.get("detections", {}).items())
            )
            base["tags"] = ";".join(record.fields.get("tags", []))
            for recipient in query.matching_recipients(record):
                row = {**base, **recipient, "recipient": recipient.get("address")}
                writer.writerow([_csv_cell(row.get(column)) for column in columns])
                rows += 1
        else:
            writer.writerow([_csv_cell(base.get(column)) for column in columns])
            rows += 1
    return rows


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text
