"""``postveil audit search``, ``report`` and ``keygen``, and the per-message log line."""

from __future__ import annotations

import csv
import io
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from postveil.audit import (
    AdminOverride,
    AppendResult,
    AuditLog,
    ConfigEvent,
    DaemonEvent,
    MessageDecision,
    RecipientDecision,
    TlsRequirementChange,
)
from postveil.config.audit import AuditSection
from tests.audit.conftest import make_decision

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def trail(make_section: Callable[..., AuditSection]) -> tuple[Path, str]:
    """A directory with a mix of records; returns it and the time of the last message."""
    section = make_section()
    with AuditLog(section, "postveil-milter") as log:
        log.append(DaemonEvent("start", "0.1.0"))
        log.append(ConfigEvent("load", "/etc/postveil/postveil.yaml", "0123456789abcdef"))
        log.append(make_decision(1))
        log.append(
            make_decision(
                2,
                sender="billing@clinic.example",
                recipients=[
                    RecipientDecision(
                        "=sum@patient.example", "portal", "rule:no-tls", portal_ref="P-123"
                    )
                ],
                detections={"card": 1},
                tags=[],
            )
        )
        log.append(
            TlsRequirementChange("lab.example", "may", "verify", "mta-sts", "policy mode enforce")
        )
        log.append(
            AdminOverride(
                "alice",
                "lab.example",
                "set-tls",
                "contract requires TLS",
                command="postveil domain set lab.example --tls secure",
            )
        )
        time.sleep(0.01)
        last = log.append(
            make_decision(
                3,
                recipients=[
                    RecipientDecision(
                        "PAT@Patient.Example", "pgp", "rule:pgp-key", fingerprint="cd" * 20
                    )
                ],
                detections={"ssn": 2},
                tags=[],
            )
        )
        log.append(DaemonEvent("stop", "0.1.0", "SIGTERM"))
    return Path(section.directory), last.time


def search(cli: Cli, directory: Path, *args: str) -> tuple[int, str, str]:
    return cli("audit", "search", str(directory / "audit.jsonl"), *args)


def queue_ids(out: str) -> list[str]:
    return [json.loads(line)["queue_id"] for line in out.splitlines()]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), ["4Fq00000001", "4Fq00000002", "4Fq00000003"]),
        (("--sender", "frontdesk@clinic.example"), ["4Fq00000001", "4Fq00000003"]),
        (("--sender", "BILLING@*"), ["4Fq00000002"]),
        (("--recipient", "@patient.example"), ["4Fq00000001", "4Fq00000002", "4Fq00000003"]),
        (("--recipient", "pat@patient.example"), ["4Fq00000001", "4Fq00000003"]),
        (("--method", "portal"), ["4Fq00000002"]),
        (("--method", "smime", "--recipient", "pat@patient.example"), []),
        (("--queue-id", "4Fq00000003"), ["4Fq00000003"]),
    ],
    ids=[
        "all",
        "sender",
        "sender-glob",
        "recipient-domain",
        "recipient-case",
        "method",
        "method-and-recipient",
        "queue-id",
    ],
)
def test_search_selects_messages(
    cli: Cli, trail: tuple[Path, str], args: tuple[str, ...], expected: list[str]
) -> None:
    status, out, err = search(cli, trail[0], *args)
    assert status == 0, err
    assert queue_ids(out) == expected


def test_search_by_period(cli: Cli, trail: tuple[Path, str]) -> None:
    directory, last_time = trail

    _, since_out, _ = search(cli, directory, "--since", last_time)
    _, until_out, _ = search(cli, directory, "--until", last_time)
    _, future_out, _ = search(cli, directory, "--since", "2999-01-01")

    assert queue_ids(since_out) == ["4Fq00000003"]
    assert queue_ids(until_out) == ["4Fq00000001", "4Fq00000002"]
    assert future_out == ""


def test_search_json_keeps_chain_fields(cli: Cli, trail: tuple[Path, str]) -> None:
    _, out, _ = search(cli, trail[0], "--queue-id", "4Fq00000001")
    record = json.loads(out)
    assert record["seq"] == 3
    assert len(record["hmac"]) == 64
    assert record["recipients"][0]["address"] == "pat@patient.example"


def postveil_shell(command: str, cwd: Path, config: Path) -> subprocess.CompletedProcess[str]:
    """Run a shell command line in which ``postveil`` is this environment's command."""
    bin_dir = Path(sys.executable).parent
    return subprocess.run(
        ["bash", "-c", f"set -o pipefail; {command}"],
        cwd=cwd,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "POSTVEIL_CONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write_audit_config(trail: tuple[Path, str], key_file: Path, tmp_path: Path) -> Path:
    """Write a configuration file whose audit section names ``trail`` and ``key_file``."""
    config = tmp_path / "postveil.yaml"
    config.write_text(f"audit:\n  directory: {trail[0]}\n  key_file: {key_file}\n")
    return config


@pytest.mark.parametrize(
    ("search_args", "stored_lines", "expected"),
    [
        ("--queue-id 4Fq00000002", slice(3, 4), "ok: 1 records (seq 4-4) in 1 file(s)"),
        ("--kind all", slice(0, 8), "ok: 8 records (seq 1-8) in 1 file(s)"),
    ],
    ids=["one-message", "every-record"],
)
def test_search_export_verifies(
    trail: tuple[Path, str],
    key_file: Path,
    tmp_path: Path,
    search_args: str,
    stored_lines: slice,
    expected: str,
) -> None:
    config = write_audit_config(trail, key_file, tmp_path)

    exported = postveil_shell(f"postveil audit search {search_args} > export.jsonl", tmp_path, config)
    verified = postveil_shell(
        "postveil audit verify --partial --no-head export.jsonl", tmp_path, config
    )

    assert exported.returncode == 0, exported.stderr
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout == expected + "; end not compared with a head file\n"
    stored = (trail[0] / "audit.jsonl").read_bytes().splitlines(keepends=True)
    assert (tmp_path / "export.jsonl").read_bytes() == b"".join(stored[stored_lines])


def export_and_verify(
    trail: tuple[Path, str], key_file: Path, tmp_path: Path, search_args: str, verify_args: str
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    config = write_audit_config(trail, key_file, tmp_path)
    exported = postveil_shell(f"postveil audit search {search_args} > export.jsonl", tmp_path, config)
    verified = postveil_shell(f"postveil audit verify {verify_args} export.jsonl", tmp_path, config)
    return exported, verified


def test_selection_export_verifies_with_gaps(
    trail: tuple[Path, str], key_file: Path, tmp_path: Path
) -> None:
    exported, verified = export_and_verify(
        trail, key_file, tmp_path, "--recipient pat@patient.example", "--selection --no-head"
    )

    assert exported.returncode == 0, exported.stderr
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("ok: 2 records (seq 3-7) in 1 file(s)")
    assert "a selection with 1 gap(s)" in verified.stdout
    assert "records left out of it cannot be detected" in verified.stdout


def test_selection_export_fails_without_flag(
    trail: tuple[Path, str], key_file: Path, tmp_path: Path
) -> None:
    _, verified = export_and_verify(
        trail, key_file, tmp_path, "--recipient pat@patient.example", "--partial --no-head"
    )

    assert verified.returncode == 1
    assert "are missing here" in verified.stdout
    assert "verifies with --selection" in verified.stdout


def test_selection_still_finds_edits_and_reordering(
    trail: tuple[Path, str], key_file: Path, tmp_path: Path
) -> None:
    export_and_verify(trail, key_file, tmp_path, "--recipient pat@patient.example", "--selection")
    export = tmp_path / "export.jsonl"
    first, second = export.read_bytes().splitlines(keepends=True)
    config = write_audit_config(trail, key_file, tmp_path)

    export.write_bytes(first.replace(b"pat@patient.example", b"pam@patient.example", 1) + second)
    edited = postveil_shell("postveil audit verify --selection --no-head export.jsonl", tmp_path, config)
    export.write_bytes(second + first)
    reordered = postveil_shell("postveil audit verify --selection --no-head export.jsonl", tmp_path, config)

    assert edited.returncode == 1
    assert "HMAC does not match" in edited.stdout
    assert reordered.returncode == 1
    assert "out of order" in reordered.stdout


def test_selection_rejected_on_trail_itself(
    trail: tuple[Path, str], key_file: Path, tmp_path: Path
) -> None:
    config = write_audit_config(trail, key_file, tmp_path)
    active = trail[0] / "audit.jsonl"
    lines = active.read_bytes().splitlines(keepends=True)
    active.write_bytes(b"".join(lines[:3] + lines[4:]))

    directory = postveil_shell("postveil audit verify --selection", tmp_path, config)
    active_file = postveil_shell(f"postveil audit verify --selection {active}", tmp_path, config)
    explicit_head = postveil_shell(
        f"postveil audit verify --selection --head {trail[0] / 'audit.head'} {active}",
        tmp_path,
        config,
    )
    without_head = postveil_shell(
        f"postveil audit verify --selection --no-head {active}", tmp_path, config
    )

    assert directory.returncode == 2
    assert "--selection requires the export FILE(s)" in directory.stderr
    assert active_file.returncode == 2
    assert "not the audit trail's own files" in active_file.stderr
    assert explicit_head.returncode == 2
    assert "not the audit trail's own files" in explicit_head.stderr
    # Without a head the trail's own file would pass with the deleted record as a gap.
    assert without_head.returncode == 2
    assert "not the audit trail's own files" in without_head.stderr


def test_selection_rejects_head_for_export(
    trail: tuple[Path, str], key_file: Path, tmp_path: Path
) -> None:
    _, verified = export_and_verify(
        trail,
        key_file,
        tmp_path,
        "--recipient pat@patient.example",
        f"--selection --head {trail[0] / 'audit.head'}",
    )

    assert verified.returncode == 2
    assert "cannot be combined with a head file" in verified.stderr


def test_selection_empty_export_says_so(
    trail: tuple[Path, str], key_file: Path, tmp_path: Path
) -> None:
    exported, verified = export_and_verify(
        trail, key_file, tmp_path, "--recipient nobody@patient.example", "--selection --no-head"
    )

    assert exported.returncode == 0, exported.stderr
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout == "ok: 0 records; the selection is empty, so it proves nothing\n"


def test_search_csv_one_row_per_recipient(cli: Cli, trail: tuple[Path, str]) -> None:
    status, out, _ = search(cli, trail[0], "--format", "csv", "--recipient", "pat@patient.example")
    rows = list(csv.DictReader(io.StringIO(out)))

    assert status == 0
    assert [row["queue_id"] for row in rows] == ["4Fq00000001", "4Fq00000003"]
    assert [row["recipient"] for row in rows] == ["pat@patient.example", "PAT@Patient.Example"]
    assert rows[0]["method"] == "tls"
    assert rows[0]["detections"] == "mrn=2;ssn=1"
    assert rows[0]["tags"] == "subject:secure"
    assert rows[1]["fingerprint"] == "cd" * 20
    assert rows[1]["line"] == "7"


def test_search_csv_all_recipients_without_filter(cli: Cli, trail: tuple[Path, str]) -> None:
    _, out, _ = search(cli, trail[0], "--format", "csv", "--queue-id", "4Fq00000001")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [row["recipient"] for row in rows] == ["pat@patient.example", "lab@lab.example"]


def test_search_csv_defuses_formulas(cli: Cli, trail: tuple[Path, str]) -> None:
    _, out, _ = search(cli, trail[0], "--format", "csv", "--method", "portal")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows[0]["recipient"] == "'=sum@patient.example"
    assert rows[0]["portal_ref"] == "P-123"


def test_search_other_kind_as_csv(cli: Cli, trail: tuple[Path, str]) -> None:
    status, out, _ = search(cli, trail[0], "--kind", "tls_requirement", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert status == 0
    assert [(row["domain"], row["old"], row["new"], row["source"]) for row in rows] == [
        ("lab.example", "may", "verify", "mta-sts")
    ]


def test_search_all_kinds_as_json(cli: Cli, trail: tuple[Path, str]) -> None:
    _, out, _ = search(cli, trail[0], "--kind", "all")
    kinds = [json.loads(line)["kind"] for line in out.splitlines()]
    assert kinds == [
        "daemon",
        "config",
        "message",
        "message",
        "tls_requirement",
        "admin_override",
        "message",
        "daemon",
    ]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--kind", "all", "--format", "csv"), "--format csv needs a single --kind"),
        (("--kind", "daemon", "--sender", "a@b"), "select message records only"),
        (("--since", "yesterday"), "invalid time 'yesterday'"),
    ],
    ids=["csv-all-kinds", "filter-wrong-kind", "bad-time"],
)
def test_search_usage_errors(
    cli: Cli, trail: tuple[Path, str], args: tuple[str, ...], expected: str
) -> None:
    status, out, err = search(cli, trail[0], *args)
    assert status == 2
    assert out == ""
    assert expected in err


def test_search_warns_about_unreadable_lines(cli: Cli, trail: tuple[Path, str]) -> None:
    active = trail[0] / "audit.jsonl"
    with open(active, "ab") as handle:
        handle.write(b"garbage\n")

    status, out, err = search(cli, trail[0])

    assert status == 0
    assert len(out.splitlines()) == 3
    assert "1 line(s) could not be read; run 'postveil audit verify'" in err


def test_report_text(cli: Cli, trail: tuple[Path, str]) -> None:
    status, out, _ = cli("audit", "report", str(trail[0] / "audit.jsonl"))

    assert status == 0
    assert "Messages: 3 (4 recipients)" in out
    assert "Recipients by method:\n  pgp: 1\n  portal: 1\n  smime: 1\n  tls: 1\n" in out
    assert "  rule:tls-verified: 1\n" in out
    assert (
        "Detection categories (messages, matches):\n  card: 1, 1\n  mrn: 1, 2\n  ssn: 2, 3\n" in out
    )
    assert "TLS requirement changes: 1\n" in out
    assert "lab.example: may -> verify by mta-sts: policy mode enforce" in out
    assert "alice set-tls lab.example: contract requires TLS" in out
    assert "  postveil-milter start: 1\n" in out


def readable(stored_time: str) -> str:
    """Return a record's ``time`` as the text report shows it."""
    return stored_time[:19].replace("T", " ") + " UTC"


def test_report_header_shows_utc_range(cli: Cli, trail: tuple[Path, str]) -> None:
    lines = (trail[0] / "audit.jsonl").read_text().splitlines()
    first_time = json.loads(lines[0])["time"]
    last_time = json.loads(lines[-1])["time"]

    _, whole, _ = cli("audit", "report", str(trail[0] / "audit.jsonl"))
    _, period, _ = cli(
        "audit", "report", str(trail[0] / "audit.jsonl"),
        "--since", "2026-01-01T01:00+01:00", "--until", "2999-01-01",
    )
    _, empty, _ = cli("audit", "report", str(trail[0] / "audit.jsonl"), "--since", "2999-01-01")

    records_line = f"Records: 8, written {readable(first_time)} to {readable(last_time)}"
    assert whole.startswith(
        f"Audit report, {readable(first_time)} to {readable(last_time)}\n{records_line}\n\n"
    )
    assert period.startswith(
        f"Audit report, 2026-01-01 00:00:00 UTC to 2999-01-01 00:00:00 UTC\n{records_line}\n"
    )
    assert empty.startswith(
        "Audit report, 2999-01-01 00:00:00 UTC to the last record\nRecords: none in this period\n"
    )


def test_report_groups_reasons_by_kind(
    cli: Cli, make_section: Callable[..., AuditSection]
) -> None:
    section = make_section()
    with AuditLog(section, "postveil-milter") as log:
        for number, domain in enumerate(["a.example", "B.Example", "c.example"], start=1):
            log.append(
                make_decision(
                    number,
                    recipients=[
                        RecipientDecision(
                            f"pat@{domain}",
                            "tls",
                            f"{domain.lower()} publishes an MTA-STS policy in enforce mode",
                        ),
                        RecipientDecision(
                            f"lab@{domain}",
                            "pgp",
                            f"PGP key {number:016X} valid",
                            fingerprint=f"{number:040X}",
                        ),
                    ],
                )
            )

    status, out, _ = cli("audit", "report", str(Path(section.directory) / "audit.jsonl"))
    _, json_out, _ = cli(
        "audit", "report", str(Path(section.directory) / "audit.jsonl"), "--format", "json"
    )

    assert status == 0
    assert (
        "Recipients by reason:\n"
        "  <domain> publishes an MTA-STS policy in enforce mode: 3\n"
        "  PGP key <fingerprint> valid: 3\n\n"
    ) in out
    assert json.loads(json_out)["reasons"] == {
        "<domain> publishes an MTA-STS policy in enforce mode": 3,
        "PGP key <fingerprint> valid": 3,
    }


def test_report_json_for_period(cli: Cli, trail: tuple[Path, str]) -> None:
    directory, last_time = trail
    status, out, _ = cli(
        "audit", "report", str(directory / "audit.jsonl"), "--since", last_time, "--format", "json"
    )

    report = json.loads(out)
    assert status == 0
    assert report["since"] == last_time
    assert report["messages"] == 1
    assert report["methods"] == {"pgp": 1}
    assert report["detections"] == {"ssn": {"messages": 1, "matches": 2}}
    assert report["tls_requirement_changes"] == []
    assert report["daemon_events"] == {"postveil-milter stop": 1}


def test_keygen_creates_private_key(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "new.key"

    status, out, _ = cli("audit", "keygen", str(path))
    second_status, _, second_err = cli("audit", "keygen", str(path))

    assert status == 0
    assert f"created {path} (mode 0600, key id " in out
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(bytes.fromhex(path.read_text().strip())) == 32
    assert second_status == 2
    assert "already exists" in second_err


def test_verify_as_separate_process(trail: tuple[Path, str], key_file: Path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "postveil.cli.main",
            "audit",
            "verify",
            "--key-file",
            str(key_file),
            str(trail[0] / "audit.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("ok: 8 records (seq 1-8) in 1 file(s); end matches")


def test_missing_key_is_usage_error(cli: Cli, trail: tuple[Path, str], tmp_path: Path) -> None:
    status, _, err = cli(
        "audit", "verify", "--key-file", str(tmp_path / "absent.key"), str(trail[0] / "audit.jsonl")
    )
    assert status == 2
    assert "cannot read audit HMAC key" in err


def test_record_message_logs_summary_with_queue_id(
    make_section: Callable[..., AuditSection], caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.INFO, logger="postveil.audit"),
        AuditLog(make_section(), "test") as log,
    ):
        result = log.record_message(make_decision(7))

    [record] = [entry for entry in caplog.records if entry.name == "postveil.audit"]
    assert record.getMessage() == (
        f"4Fq00000007: audit seq=1 hash={result.hash[:16]} action=accept recipients=2 "
        "methods=smime:1,tls:1 detections=mrn:2,ssn:1 tags=subject:secure config=0123456789abcdef"
    )
    assert "@" not in record.getMessage()


def test_summary_counts_repeated_methods() -> None:
    from postveil.audit.summary import summary_text

    decision = MessageDecision(
        queue_id="4Fq00000008",
        sender="",
        recipients=[
            RecipientDecision("a@one.test", "tls", "rule:tls-verified"),
            RecipientDecision("b@two.test", "pgp", "rule:pgp-key"),
            RecipientDecision("c@one.test", "tls", "rule:tls-verified"),
        ],
        config_version="v1",
    )
    result = AppendResult(seq=3, hash="ab" * 32, path="audit.jsonl", time="2026-01-01T00:00:00.000000Z")

    assert summary_text(decision, result) == (
        "audit seq=3 hash=abababababababab action=accept recipients=3 "
        "methods=pgp:1,tls:2 detections=- tags=- config=v1"
    )


def test_method_choices_match_written_methods() -> None:
    # The milter writes only these methods: a routing method, "none" for a removed
    # recipient, "reject" for a rejected message (audit_decision) and "tempfail" for a
    # deferred one (PostveilMilter._record_tempfail).
    from postveil.cli.audit_cmd import AUDIT_METHODS
    from postveil.routing.decide import Method

    assert set(AUDIT_METHODS) == {method.value for method in Method} | {"none", "reject", "tempfail", "uninspected"}
    assert len(AUDIT_METHODS) == len(set(AUDIT_METHODS))
