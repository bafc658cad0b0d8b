"""``postveil keys``: list, import and remove recipients' PGP public keys."""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from postveil.cli.admin_audit import AdminAuditError, AdminChangeLog
from postveil.cli.common import (
    EXPIRING_FOUND,
    add_config_option,
    add_config_option_to_actions,
    add_expiring_option,
    add_reason_option,
    days_text,
    load_cli_config,
    owner_problem,
)
from postveil.config import Config
from postveil.crypto.errors import PgpFailure
from postveil.crypto.pgp import KeyInfo, PgpKeyring


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "keys",
        help="manage recipients' PGP public keys",
        description="Manage the PGP public keys in postveil's GnuPG home (pgp.gnupg_home). "
        "Every imported key is trusted for the email addresses of its user ids.",
    )
    add_config_option(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    lister = actions.add_parser("list", help="list keys with their addresses and status")
    add_expiring_option(lister, "usable keys")
    importer = actions.add_parser("import", help="import public keys from an OpenPGP file")
    importer.add_argument(
        "file",
        help="ASCII-armored or binary OpenPGP public key file, or a revocation certificate "
        "(gpg's leading ':' is accepted)",
    )
    remover = actions.add_parser("remove", help="remove a key")
    remover.add_argument("id", help="full fingerprint or its last 16 hex digits (key id)")
    add_reason_option(importer)
    add_reason_option(remover)
    add_config_option_to_actions(actions)
    parser.set_defaults(handler=run)


def _format_key(key: KeyInfo, status: str) -> str:
    # A usable key's date is when it stops being usable for encryption, which an
    # encryption subkey that expires before the primary key makes earlier.
    ends = key.usable_until if status.startswith("usable") else key.expires
    expires = datetime.datetime.fromtimestamp(ends, datetime.UTC).strftime("%Y-%m-%d") if ends else "never"
    addresses = ", ".join(a for a in key.addresses if a) or "(no email address)"
    return f"{key.fingerprint}  expires {expires}  {status}  {addresses}"


def run(args: argparse.Namespace) -> int:
    config = load_cli_config(args.config)
    if config is None:
        return 1
    # gpg replaces pubring.kbx on an import and may create trustdb.gpg on any call. Made
    # by root, those files would lock postveil-milter out of its keys.
    problem = owner_problem(config.pgp.gnupg_home, _command_line(args))
    if problem is not None:
        print(f"postveil keys {args.action}: {problem}", file=sys.stderr)
        return 1
    keyring = PgpKeyring(config.pgp.gnupg_home, config.pgp.gpg_binary, timeout=config.pgp.timeout)
    try:
        if args.action == "list":
            return _list(keyring, args.expiring)
        if args.action == "import":
            return _import(keyring, config, args.file, args.reason)
        return _remove(keyring, config, args.id, args.reason)
    except (PgpFailure, AdminAuditError) as exc:
        print(f"postveil keys {args.action}: {exc}", file=sys.stderr)
        return 1


def _command_line(args: argparse.Namespace) -> list[str]:
    """Return the command line that ``args`` came from, for a message that suggests it."""
    command = ["postveil", "keys", args.action]
    if args.action == "list" and args.expiring is not None:
        command += ["--expiring", str(args.expiring)]
    elif args.action == "import":
        command.append(args.file)
    elif args.action == "remove":
        command.append(args.id)
    if getattr(args, "reason", ""):
        command += ["--reason", args.reason]
    if args.config:
        command += ["-c", args.config]
    return command


def _list(keyring: PgpKeyring, expiring_days: int | None) -> int:
    if expiring_days is not None:
        expiring = expiring_keys(keyring, expiring_days)
        for key in expiring:
            # The same form as certs list --expiring, which names the reason it will have.
            primary_ends = key.expires is not None and key.usable_until is not None and key.expires <= key.usable_until
            reason = "PGP key expired" if primary_ends else "its last encryption subkey expired"
            print(_format_key(key, f"usable, but in {days_text(expiring_days)}: {reason}"))
        return EXPIRING_FOUND if expiring else 0
    now = keyring.clock()
    for key in keyring.keys():
        print(_format_key(key, keyring.key_problem(key, now) or "usable"))
    return 0


def expiring_keys(keyring: PgpKeyring, days: int) -> list[KeyInfo]:
    """Return the keys usable now that stop being usable for encryption within ``days``
    days. Raises PgpFailure when gpg cannot list the keyring."""
    now = keyring.clock()
    expiring = []
    for key in keyring.keys():
        ends = key.usable_until
        if keyring.key_problem(key, now) is None and ends is not None and ends <= now + days * 86400:
            expiring.append(key)
    return expiring


def _import(keyring: PgpKeyring, config: Config, file: str, reason: str) -> int:
    try:
        data = Path(file).read_bytes()
    except OSError as exc:
        print(f"postveil keys import: cannot read {file}: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        previews = keyring.preview_import(data)
    except PgpFailure as exc:
        print(f"postveil keys import: {file}: {exc}; nothing was imported", file=sys.stderr)
        return 1
    changes = AdminChangeLog(config.audit, "postveil keys", f"postveil keys import {file}", reason)
    try:
        for preview in previews:
            changes.record(preview.action, preview.addresses, preview.fingerprint)
    except AdminAuditError as exc:
        print(f"postveil keys import: {exc}; nothing was imported", file=sys.stderr)
        return 1
    finally:
        changes.close()

    report = keyring.import_report(data)
    known = {key.fingerprint: key for key in keyring.keys()}

    def describe(fingerprint: str) -> str:
        key = known.get(fingerprint)
        if key is None:
            return f"{fingerprint}  not in the keyring"
        return _format_key(key, keyring.key_problem(key) or "usable")

    for fingerprint, key_changes in report.changes.items():
        if key_changes == ("unchanged",):
            print(f"unchanged, already in the keyring: {describe(fingerprint)}")
        else:
            print(f"imported ({', '.join(key_changes)}): {describe(fingerprint)}")
    if report.revocations:
        print(f"applied {report.revocations} revocation certificate(s)")
        for fingerprint in report.other_keys:
            print(f"  {describe(fingerprint)}")
    return 0


def _remove(keyring: PgpKeyring, config: Config, key_id: str, reason: str) -> int:
    suffix = key_id.upper().removeprefix("0X")
    matches = [key for key in keyring.keys() if len(suffix) >= 16 and key.fingerprint.endswith(suffix)]
    if len(matches) != 1:
        found = "no key matches" if not matches else f"{len(matches)} keys match"
        print(
            f"postveil keys remove: {found} {key_id!r}; give a fingerprint shown by 'postveil keys list', in full or "
            "its last 16 hex digits",
            file=sys.stderr,
        )
        return 1
    key = matches[0]
    changes = AdminChangeLog(config.audit, "postveil keys", f"postveil keys remove {key_id}", reason)
    try:
        changes.record("key-remove", key.addresses, key.fingerprint)
    except AdminAuditError as exc:
        print(f"postveil keys remove: {exc}; nothing was removed", file=sys.stderr)
        return 1
    finally:
        changes.close()
    keyring.remove(key.fingerprint)
    print(f"removed {key.fingerprint}")
    return 0
