"""Summary of a period for auditors: messages by method and reason, detections, changes."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from postveil.audit.search import Query, ReadStats, search
from postveil.audit.writer import format_time, parse_time

_HEX_RUN_RE = re.compile(r"\b[0-9A-Fa-f]{16,}\b")
"""Key ids and fingerprints as reasons quote them (``PGP key 0123456789ABCDEF valid``)."""


def reason_kind(reason: str, address: str) -> str:
    """Return ``reason`` with the recipient's domain and any key id or fingerprint
    replaced by ``<domain>`` and ``<fingerprint>``, so that equal rules count together.

    ``example.org publishes an MTA-STS policy in enforce mode`` for pat@example.org
    becomes ``<domain> publishes an MTA-STS policy in enforce mode``. Other domain
    names in the text are kept.
    """
    domain = address.rpartition("@")[2]
    if domain:
        reason = re.sub(re.escape(domain), "<domain>", reason, flags=re.IGNORECASE)
    return _HEX_RUN_RE.sub("<fingerprint>", reason)


@dataclass
class Report:
    since: str | None
    """``--since`` as given on the command line."""

    until: str | None
    since_time: float | None = None
    """``since`` in epoch seconds."""

    until_time: float | None = None
    records: int = 0
    """Records of every kind in the period."""

    first_time: float | None = None
    """Epoch seconds of the earliest record in the period."""

    last_time: float | None = None
    messages: int = 0
    recipients: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    """Messages by the milter's reply (accept, tempfail, reject, discard)."""

    methods: Counter[str] = field(default_factory=Counter)
    """Recipients by protection method."""

    reasons: Counter[str] = field(default_factory=Counter)
    """Recipients by the rule that decided, grouped by :func:`reason_kind`."""

    detection_messages: Counter[str] = field(default_factory=Counter)
    """Messages in which each detection category matched at least once."""

    detection_counts: Counter[str] = field(default_factory=Counter)
    """Matches of each detection category, summed over messages."""

    tags: Counter[str] = field(default_factory=Counter)
    tls_changes: list[dict[str, Any]] = field(default_factory=list)
    admin_overrides: list[dict[str, Any]] = field(default_factory=list)
    config_events: Counter[str] = field(default_factory=Counter)
    daemon_events: Counter[str] = field(default_factory=Counter)
    """Keyed by ``program event``, for example ``postveil-milter start``."""

    unreadable_lines: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "period_start": _iso_utc(self.period_start),
            "period_end": _iso_utc(self.period_end),
            "records": self.records,
            "first_record_time": _iso_utc(self.first_time),
            "last_record_time": _iso_utc(self.last_time),
            "messages": self.messages,
            "recipients": self.recipients,
            "actions": dict(self.actions),
            "methods": dict(self.methods),
            "reasons": dict(self.reasons),
            "detections": {
                category: {
                    "messages": self.detection_messages[category],
                    "matches": self.detection_counts[category],
                }
                for category in sorted(self.detection_messages)
            },
            "tags": dict(self.tags),
            "tls_requirement_changes": self.tls_changes,
            "admin_overrides": self.admin_overrides,
            "config_events": dict(self.config_events),
            "daemon_events": dict(self.daemon_events),
            "unreadable_lines": self.unreadable_lines,
        }

    @property
    def period_start(self) -> float | None:
        """``--since``, else the time of the first record; None without either."""
        return self.since_time if self.since_time is not None else self.first_time

    @property
    def period_end(self) -> float | None:
        """``--until`` (excluded), else the time of the last record; None without either."""
        return self.until_time if self.until_time is not None else self.last_time


def build_report(
    files: Iterable[str | os.PathLike[str]],
    since: float | None,
    until: float | None,
    since_text: str | None = None,
    until_text: str | None = None,
) -> Report:
    report = Report(since=since_text, until=until_text, since_time=since, until_time=until)
    stats = ReadStats()
    query = Query(since=since, until=until, kind=None)
    for record in search(files, query, stats):
        fields = record.fields
        moment = parse_time(fields["time"])
        report.records += 1
        # The wall clock can step back (NTP, an administrator), so a later record may
        # carry an earlier time.
        report.first_time = moment if report.first_time is None else min(report.first_time, moment)
        report.last_time = moment if report.last_time is None else max(report.last_time, moment)
        if record.kind == "message":
            report.messages += 1
            report.actions[str(fields.get("action"))] += 1
            for recipient in fields.get("recipients", []):
                report.recipients += 1
                report.methods[str(recipient.get("method"))] += 1
                reason = reason_kind(str(recipient.get("reason")), str(recipient.get("address", "")))
                report.reasons[reason] += 1
            for category, count in fields.get("detections", {}).items():
                report.detection_messages[category] += 1
                report.detection_counts[category] += int(count)
            report.tags.update(fields.get("tags", []))
        elif record.kind == "tls_requirement":
            report.tls_changes.append(
                {
                    key: fields.get(key)
                    for key in ("time", "seq", "domain", "old", "new", "source", "reason")
                }
            )
        elif record.kind == "admin_override":
            report.admin_overrides.append(
                {
                    key: fields.get(key)
                    for key in ("time", "seq", "actor", "target", "action", "reason", "command", "fingerprint")
                }
            )
        elif record.kind == "config":
            report.config_events[str(fields.get("event"))] += 1
        elif record.kind == "daemon":
            report.daemon_events[f"{fields.get('program')} {fields.get('event')}"] += 1
    report.unreadable_lines = stats.unreadable_lines
    return report


def format_report(report: Report) -> str:
    """Render the report as plain text, one section per heading."""
    start = _readable_utc(report.period_start) or "the first record"
    end = _readable_utc(report.period_end) or "the last record"
    lines = [f"Audit report, {start} to {end}"]
    if report.records:
        lines.append(
            f"Records: {report.records}, written {_readable_utc(report.first_time)} "
            f"to {_readable_utc(report.last_time)}"
        )
    else:
        lines.append("Records: none in this period")
    lines.append("")
    lines.append(f"Messages: {report.messages} ({report.recipients} recipients)")

    lines += _counter_section("Messages by action", report.actions)
    lines += _counter_section("Recipients by method", report.methods)
    lines += _counter_section("Recipients by reason", report.reasons)

    lines.append("")
    lines.append("Detection categories (messages, matches):")
    if not report.detection_messages:
        lines.append("  none")
    for category in sorted(report.detection_messages):
        lines.append(
            f"  {category}: {report.detection_messages[category]}, "
            f"{report.detection_counts[category]}"
        )

    lines += _counter_section("Tags", report.tags)

    lines.append("")
    lines.append(f"TLS requirement changes: {len(report.tls_changes)}")
    for change in report.tls_changes:
        lines.append(
            f"  {change['time']} {change['domain']}: "
            f"{change['old'] or '(none)'} -> {change['new']} "
            f"by {change['source']}: {change['reason']}"
        )

    lines.append("")
    lines.append(f"Admin overrides: {len(report.admin_overrides)}")
    for override in report.admin_overrides:
        fingerprint = ""
        if override.get("fingerprint"):
            fingerprint = f" (fingerprint {override['fingerprint']})"
        command = f" [{override['command']}]" if override.get("command") else ""
        lines.append(
            f"  {override['time']} {override['actor']} {override['action']} {override['target']}"
            f"{fingerprint}: {override['reason'] or '(no reason given)'}{command}"
        )

    lines += _counter_section("Configuration loads", report.config_events)
    lines += _counter_section("Daemon starts and stops", report.daemon_events)

    if report.unreadable_lines:
        lines.append("")
        lines.append(
            f"WARNING: {report.unreadable_lines} line(s) could not be read; "
            "run 'postveil audit verify'"
        )
    return "\n".join(lines) + "\n"


def _counter_section(title: str, counter: Counter[str]) -> list[str]:
    lines = ["", f"{title}:"]
    if not counter:
        lines.append("  none")
    for name, count in sorted(counter.items(), key=lambda item: (-item[1], item[0])):
        lines.append(f"  {name}: {count}")
    return lines


def _readable_utc(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso_utc(epoch: float | None) -> str | None:
    return None if epoch is None else format_time(epoch)
