"""``postveil audit``: verify, search, report on and key the audit trail."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from postveil.audit.chain import AuditKey, generate_key_file, is_trail_file_name, list_log_files
from postveil.audit.errors import AuditKeyError
from postveil.audit.records import RECORD_TYPES
from postveil.audit.report import build_report, format_report
from postveil.audit.search import Query, ReadStats, parse_when, search, write_csv, write_json_lines
from postveil.audit.verify import default_head_for, verify_chain
from postveil.cli.common import add_config_option
from postveil.config import default_config_path, load_config
from postveil.config.audit import AuditSection
from postveil.errors import ConfigError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class _UsageError(Exception):
    """A problem with the arguments, configuration or key; printed and exit status 2."""


AUDIT_METHODS = (
    "plain", "tls", "pgp", "smime", "portal", "pre_encrypted", "drop", "none", "reject", "tempfail",
    "uninspected",
)
"""Recipient methods the audit trail records: the routing methods, ``none`` for a recipient
removed for lack of one, ``reject`` for every recipient of a rejected message,
``tempfail`` for every recipient of a message deferred at end of message and
``uninspected`` for every recipient of a message accepted over the size limit."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="verify, search and summarise the audit trail",
        description="Work with the hash-chained audit trail. Without FILES, each command reads "
        "the files of audit.directory from the configuration file.",
    )
    # --config is accepted before the action and after it, as in every subcommand.
    add_config_option(parser)
    commands = parser.add_subparsers(dest="audit_command", metavar="ACTION", required=True)

    verify = commands.add_parser(
        "verify",
        help="check that no record was edited, deleted, reordered or truncated",
        description="Check every record's HMAC, sequence number and link to the record before it. "
        "Prints 'ok' with the record count and exits 0, or names the file and line of the first "
        "broken link and exits 1.",
    )
    _add_source_arguments(verify)
    verify.add_argument(
        "--key-file",
        action="append",
        metavar="PATH",
        help="HMAC key; repeat for records signed with older keys (default: audit.key_file)",
    )
    verify.add_argument(
        "--head",
        metavar="PATH",
        help="audit.head to compare the end of the chain with (default: the one next to "
        "audit.jsonl when the files end with it)",
    )
    verify.add_argument(
        "--no-head", action="store_true", help="do not compare the end of the chain with audit.head"
    )
    verify.add_argument(
        "--partial",
        action="store_true",
        help="accept a chain that starts after seq 1 because older files were archived",
    )
    verify.add_argument(
        "--selection",
        action="store_true",
        help="the files are an 'audit search' export, so records may be missing between "
        "them: check each record's HMAC and order, and links only between records that "
        "follow each other",
    )
    verify.set_defaults(handler=run_verify)

    search_parser = commands.add_parser(
        "search",
        help="select records and export them as JSON Lines or CSV",
        description="Print the selected records. Address patterns match case-insensitively: "
        "a full address, @domain, or a glob with * and ?. Times are ISO 8601 (UTC unless a zone "
        "is given); a date alone means midnight at the start of that day. Run 'verify' first: "
        "search does not check the chain.",
    )
    _add_source_arguments(search_parser)
    _add_period_arguments(search_parser)
    search_parser.add_argument("--sender", help="envelope sender pattern")
    search_parser.add_argument(
        "--recipient", help="recipient pattern; CSV rows show only matching recipients"
    )
    search_parser.add_argument(
        "--method",
        choices=AUDIT_METHODS,
        help="what a recipient got: " + ", ".join(AUDIT_METHODS),
    )
    search_parser.add_argument("--queue-id", help="Postfix queue id")
    search_parser.add_argument(
        "--kind",
        default="message",
        choices=[*RECORD_TYPES, "all"],
        help="record kind (default: message); 'all' works with --format json only",
    )
    search_parser.add_argument(
        "--format",
        default="json",
        choices=["json", "csv"],
        help="json: each record's stored line, byte for byte, so 'verify' can check the "
        "export; csv: a header row, then one row per recipient (message records) or per record",
    )
    search_parser.set_defaults(handler=run_search)

    report = commands.add_parser(
        "report",
        help="summarise a period: methods, reasons, detections, TLS requirement changes",
        description="Print the period covered (UTC), count messages by action, recipients by "
        "method and by kind of reason (the recipient's domain and key fingerprints replaced by "
        "<domain> and <fingerprint>), detection categories and tags, and list TLS requirement "
        "changes and admin overrides.",
    )
    _add_source_arguments(report)
    _add_period_arguments(report)
    report.add_argument("--format", default="text", choices=["text", "json"])
    report.set_defaults(handler=run_report)

    keygen = commands.add_parser(
        "keygen",
        help="create a new HMAC key file with mode 0600",
        description="Write 32 random bytes as hex to PATH with mode 0600. An existing file is "
        "never overwritten. Keep the key outside the audit directory.",
    )
    keygen.add_argument("path", nargs="?", help="key file (default: audit.key_file)")
    add_config_option(
        keygen, default=argparse.SUPPRESS,
        help=f"configuration file (default: $POSTVEIL_CONFIG or {default_config_path()})",
    )
    keygen.set_defaults(handler=run_keygen)


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", metavar="FILE", help="audit files, oldest first")
    add_config_option(
        parser, default=argparse.SUPPRESS,
        help=f"configuration file, read for audit.directory and audit.key_file "
        f"(default: $POSTVEIL_CONFIG or {default_config_path()})",
    )


def _add_period_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", help="first time included, for example 2026-12-01")
    parser.add_argument("--until", help="first time excluded, for example 2026-12-02T00:00Z")


def _section(args: argparse.Namespace) -> AuditSection:
    path = args.config or default_config_path()
    try:
        return load_config(path).audit
    except ConfigError as exc:
        raise _UsageError(str(exc)) from exc


def _files(args: argparse.Namespace) -> list[Path]:
    if args.files:
        return [Path(name) for name in args.files]
    directory = _section(args).directory
    try:
        files = list_log_files(directory)
    except OSError as exc:
        raise _UsageError(f"cannot list audit directory {directory}: {exc.strerror}") from exc
    if not files:
        raise _UsageError(f"no audit files in {directory}")
    return files


def _period(args: argparse.Namespace) -> tuple[float | None, float | None]:
    try:
        since = parse_when(args.since) if args.since else None
        until = parse_when(args.until) if args.until else None
    except ValueError as exc:
        raise _UsageError(str(exc)) from exc
    return since, until


def _guarded(function: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn _UsageError into a message on stderr and exit status 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return int(function(args))
        except _UsageError as exc:
            print(f"postveil audit: {exc}", file=sys.stderr)
            return EXIT_USAGE

    return run


def _check_selection_arguments(args: argparse.Namespace, head: Path | None) -> None:
    """Reject --selection where the files are the trail itself, not a search export.

    On the trail, --selection would accept records deleted from the middle.
    """
    if not args.files:
        raise _UsageError(
            "--selection requires the export FILE(s). To verify the audit directory, "
            "run verify without --selection"
        )
    trail_files = [name for name in args.files if is_trail_file_name(Path(name).name)]
    if trail_files:
        raise _UsageError(
            f"--selection takes search exports, not the audit trail's own files "
            f"({trail_files[0]}), where a gap means deleted records. Run verify without "
            "--selection, or export with 'postveil audit search' first"
        )
    if head is not None:
        raise _UsageError(
            f"--selection cannot be combined with a head file ({head}), because with a head "
            "verify checks the trail itself, where a gap means deleted records. Run verify "
            "without --selection, or add --no-head if the files are a search export"
        )


@_guarded
def run_verify(args: argparse.Namespace) -> int:
    files = _files(args)
    key_paths = args.key_file or [_section(args).key_file]
    keys: dict[str, AuditKey] = {}
    for path in key_paths:
        try:
            key = AuditKey.load(path, check_mode=False)
        except AuditKeyError as exc:
            raise _UsageError(str(exc)) from exc
        keys[key.key_id] = key
    head = None
    if not args.no_head:
        head = Path(args.head) if args.head else default_head_for(files)
    if args.selection:
        _check_selection_arguments(args, head)

    result = verify_chain(files, keys, head=head, partial=args.partial, selection=args.selection)
    if result.broken is not None:
        print(f"FAILED: {result.broken}")
        print(f"{result.records} record(s) before it verified")
        return EXIT_FAILED
    if result.records == 0:
        if args.selection:
            print("ok: 0 records; the selection is empty, so it proves nothing")
        else:
            print("ok: 0 records")
        return EXIT_OK
    head_note = (
        f"; end matches {head}" if result.head_checked else "; end not compared with a head file"
    )
    selection_note = ""
    if args.selection:
        selection_note = (
            f"; a selection with {result.gaps} gap(s): each record is signed by a given key "
            "and in order, but records left out of it cannot be detected (verify the full "
            "trail for that)"
        )
    print(
        f"ok: {result.records} records (seq {result.first_seq}-{result.last_seq}) "
        f"in {len(result.files)} file(s){head_note}{selection_note}"
    )
    return EXIT_OK


@_guarded
def run_search(args: argparse.Namespace) -> int:
    since, until = _period(args)
    kind = None if args.kind == "all" else args.kind
    if kind is None and args.format == "csv":
        raise _UsageError(
            "--format csv needs a single --kind, because each kind has its own columns"
        )

    query = Query(
        since=since,
        until=until,
        kind=kind,
        sender=args.sender,
        recipient=args.recipient,
        method=args.method,
        queue_id=args.queue_id,
    )
    if query.filters_messages and kind != "message":
        raise _UsageError(
            "--sender, --recipient, --method and --queue-id select message records only"
        )

    files = _files(args)
    stats = ReadStats()
    records = search(files, query, stats)
    if args.format == "csv":
        write_csv(records, kind or "message", query, sys.stdout)
        sys.stdout.flush()
    else:
        # The stored bytes go out unchanged, bypassing the text layer's encoding.
        sys.stdout.flush()
        write_json_lines(records, sys.stdout.buffer)
        sys.stdout.buffer.flush()

    if stats.unreadable_lines:
        print(
            f"postveil audit: warning: {stats.unreadable_lines} line(s) could not be read; "
            "run 'postveil audit verify'",
            file=sys.stderr,
        )
    return EXIT_OK


@_guarded
def run_report(args: argparse.Namespace) -> int:
    since, until = _period(args)
    report = build_report(_files(args), since, until, args.since, args.until)
    if args.format == "json":
        print(json.dumps(report.as_dict(), indent=2, sort_keys=True))
    else:
        sys.stdout.write(format_report(report))
    return EXIT_OK


@_guarded
def run_keygen(args: argparse.Namespace) -> int:
    path = args.path or _section(args).key_file
    try:
        key = generate_key_file(path)
    except FileExistsError:
        raise _UsageError(f"{path} already exists; move it away first to replace the key") from None
    except OSError as exc:
        raise _UsageError(f"cannot create {path}: {exc.strerror}") from exc
    print(f"created {path} (mode 0600, key id {key.key_id})")
    return EXIT_OK
