"""``postveil portal``: the built-in portal's mail intake and housekeeping.

``deliver`` is run by Postfix's pipe(8) transport (conf/postfix/master.cf.portal);
``init``, ``status``, ``list``, ``revoke``, ``purge``, ``create-key`` and ``rekey`` are
for the administrator.
"""

from __future__ import annotations

import argparse
import logging
import signal
import stat
import sys
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from postveil.audit import AuditLog
from postveil.audit.errors import AuditError
from postveil.cli.common import (
    add_config_option,
    add_config_option_to_actions,
    add_reason_option,
    load_cli_config,
    owner_problem,
)
from postveil.cli.portal_keys import create_key, print_key_counts, rekey
from postveil.config import Config, default_config_path, load_config
from postveil.errors import ConfigError
from postveil.log import setup_logging
from postveil.portal.housekeeping import purge_expired, revoke
from postveil.portal.intake import EX_TEMPFAIL, Intake, IntakeDeferred, IntakeResult, deferred
from postveil.portal.store import PortalError, PortalStore, WaitingMessage, generate_master_key

DELIVER_PROGRAM = "postveil-portal-deliver"

logger = logging.getLogger("postveil.portal.intake")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "portal",
        help="mail intake and housekeeping of the built-in portal",
        description="Set up, inspect and clean the built-in portal's store, and take in "
        "portal copies from Postfix (docs/portal.md).",
    )
    add_config_option(parser)

    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    deliver = actions.add_parser(
        "deliver",
        help="store the message on standard input and notify its recipients (run by Postfix)",
        description="Run by Postfix's pipe(8) transport. Exit status 0: stored; 75: try "
        "again later; 77: no valid seal on the recipient headers; 65: larger than "
        "portal.max_message_size, or a recipient header or envelope sender that is not "
        "valid.",
    )
    add_deliver_arguments(deliver)

    actions.add_parser(
        "init",
        help="create the store directory, master key and seal key when missing",
        description="Create portal.store_directory (mode 0700), portal.key_file (0600) and "
        "portal.seal_key_file (0640) when they are missing. Existing files are never "
        "changed. Prints what it created and which owners to set.",
    )

    actions.add_parser(
        "status",
        help="count the messages waiting and their pickups",
        description="Print the number of messages waiting for pickup, of pickups (one per "
        "recipient) and of pickups opened, and the number of stored messages by the key id "
        "of the master key that encrypted their key. Run as the owner of "
        "portal.store_directory.",
    )

    actions.add_parser(
        "purge",
        help="delete expired messages",
        description="Delete messages whose portal.retention has ended, with their pickups, "
        "and expired sessions. Run as the owner of portal.store_directory.",
    )

    actions.add_parser(
        "list",
        help="list the messages waiting, with their recipients",
        description="Print one block per message waiting for pickup: its id, when it was "
        "stored and expires (UTC), its sender and Postfix queue id, and each recipient with "
        "the time they first read it. Run as the owner of portal.store_directory.",
    )

    revoke_parser = actions.add_parser(
        "revoke",
        help="delete a message now, so its links stop working",
        description="Delete a waiting message, for example one sent to the wrong person, "
        "after writing a 'revoked' audit record per recipient. Recipients who already read "
        "it keep what they downloaded. Run as the owner of portal.store_directory.",
    )
    revoke_parser.add_argument("message_id", metavar="ID", help="the message id that 'list' prints")
    revoke_parser.add_argument(
        "--reason", default="revoked by an administrator", help="reason kept in the audit records"
    )

    create_key_parser = actions.add_parser(
        "create-key",
        help="write a new master key file, for a rotation of the master key",
        description="Write a new random master key to PATH with mode 0600 and print its key "
        "id. An existing file is never overwritten. The key is not used until "
        'portal.key_file names it (docs/portal.md, "Rotating the master key").',
    )
    create_key_parser.add_argument("path", metavar="PATH", help="the new key file")

    rekey_parser = actions.add_parser(
        "rekey",
        help="encrypt every message's key again with portal.key_file",
        description="Encrypt the key of every stored message again with the master key in "
        "portal.key_file, reading the old keys from portal.previous_key_files, in small "
        "transactions while the intake and postveil-portal keep running. Writes an "
        "admin_override audit record first. Run it again after an interruption. Exit "
        "status 1 when a message's key could not be decrypted (it is left as it is). "
        'Run as the owner of portal.store_directory; see docs/portal.md, "Rotating the '
        'master key".',
    )
    rekey_parser.add_argument(
        "--abandon",
        action="store_true",
        help="give up the last rotation instead: record the key id of the rotation "
        "before it again and make the keys it retired usable again; refused while a "
        "stored message is under that key. Each run gives up one more rotation",
    )
    add_reason_option(rekey_parser)

    add_config_option_to_actions(actions)
    parser.set_defaults(handler=run)


def add_deliver_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--queue-id",
        default="",
        metavar="ID",
        help="Postfix queue id of the message (${queue_id} in master.cf), for the audit trail",
    )
    parser.add_argument(
        "--sender",
        default=None,
        metavar="ADDR",
        help="envelope sender (${sender} in master.cf), named in the notifications",
    )


def run(args: argparse.Namespace) -> int:
    if args.action == "deliver":
        return deliver(args.config, args.queue_id, args.sender)
    if args.action == "create-key":
        return create_key(args.path)
    config = load_cli_config(args.config)
    if config is None:
        return 1
    if args.action == "init":
        return init(config)
    if args.action == "revoke":
        return housekeeping(config, "revoke", args.message_id, args.reason, args.config)
    if args.action == "rekey":
        problem = _owner_problem(
            config.portal.store_directory,
            "rekey",
            args.config,
            (["--abandon"] if args.abandon else []) + _reason_arguments(args.reason),
            only_owner=True,
        )
        if problem is not None:
            print(f"postveil portal rekey: {problem}", file=sys.stderr)
            return 1
        return rekey(config, args.reason, args.config, abandon=args.abandon)
    return housekeeping(config, args.action, config_path=args.config)


# -- deliver -----------------------------------------------------------------------


class _DeliverArgumentError(Exception):
    pass


class _DeliverParser(argparse.ArgumentParser):
    """Raises instead of exiting with status 2, which pipe(8) would read as a
    permanent failure and bounce the message for a typo in master.cf."""

    def error(self, message: str) -> NoReturn:
        raise _DeliverArgumentError(message)


def deliver_main(argv: Sequence[str]) -> int:
    """Parse the arguments after ``portal deliver`` and run it; errors exit 75."""
    parser = _DeliverParser(prog="postveil portal deliver", add_help=True)
    add_config_option(parser)
    add_deliver_arguments(parser)
    try:
        args = parser.parse_args(list(argv))
    except _DeliverArgumentError as exc:
        print(deferred(f"invalid arguments in master.cf: {exc}", "4.3.5").line, file=sys.stderr)
        return EX_TEMPFAIL
    return deliver(args.config, args.queue_id, args.sender)


DELIVERY_TIME_LIMIT = 600
"""Seconds after which ``deliver`` stops and exits 75. It must stay below the pipe
service's time limit in Postfix (``portal_time_limit``, which defaults to
``command_time_limit``, 1000s), because pipe(8) bounces a message whose command
runs longer than that."""


class DeliveryTimeout(PortalError):
    """``deliver`` ran longer than DELIVERY_TIME_LIMIT."""


def _raise_timeout(signum: int, frame: object) -> None:
    raise DeliveryTimeout(f"delivery took longer than {DELIVERY_TIME_LIMIT} seconds")


def deliver(config_path: str | None, queue_id: str, sender: str | None) -> int:
    """Run the intake on standard input and print its one line for Postfix.

    Every failure that is not a rejection, including an unexpected exception, exits
    75: pipe(8) bounces on any exit status it does not know, and a bounce returns
    the message to its sender for good.
    """
    previous = signal.signal(signal.SIGALRM, _raise_timeout)
    signal.alarm(DELIVERY_TIME_LIMIT)
    try:
        return _finish(_deliver(config_path, queue_id, sender))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _deliver(config_path: str | None, queue_id: str, sender: str | None) -> IntakeResult:
    source = config_path or default_config_path()
    try:
        config = load_config(source)
    except ConfigError as exc:
        problems = "; ".join(exc.problems)
        return deferred(f"cannot load the configuration {source}: {problems}", "4.3.5")
    _setup_deliver_logging(config)
    if sender is None:
        return deferred("no envelope sender: run it with --sender=${sender} in master.cf", "4.3.5")
    store_problem = _owner_problem(config.portal.store_directory, "deliver", config_path)
    if store_problem is not None:
        return deferred(store_problem, "4.3.5")
    try:
        intake = Intake(config)
    except IntakeDeferred as exc:
        return deferred(exc.reason, exc.dsn)
    try:
        return intake.deliver(sys.stdin.buffer, sender=sender, queue_id=queue_id)
    except DeliveryTimeout as exc:
        logger.error("%s: deferred: %s", queue_id or "-", exc)
        return deferred(str(exc))
    except Exception as exc:
        # Only the type and the place are logged, because the exception's text could
        # quote the message.
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "unknown"
        logger.error(
            "%s: deferred after an unexpected %s at %s", queue_id or "-", type(exc).__name__, where
        )
        return deferred(f"internal error ({type(exc).__name__} at {where})")
    finally:
        intake.audit.close()


def _finish(result: IntakeResult) -> int:
    stream = sys.stdout if result.status == 0 else sys.stderr
    print(result.line, file=stream)
    return result.status


def _setup_deliver_logging(config: Config) -> None:
    """Log to syslog when ``logging.target`` is syslog. Standard error belongs to
    Postfix, which reads a status code from its start, so no other target is used."""
    if config.logging.target == "syslog":
        try:
            setup_logging(config.logging, DELIVER_PROGRAM)
            return
        except OSError:
            pass
    # Without a handler, Python would print warnings to standard error.
    logging.getLogger().addHandler(logging.NullHandler())


# -- init --------------------------------------------------------------------------


def init(config: Config) -> int:
    section = config.portal
    if section.seal_key_file is None:
        print(
            f"postveil portal init: portal.seal_key_file is not set in {config.source}; set it, "
            "for example to /etc/postveil/portal-seal.key, and run this again",
            file=sys.stderr,
        )
        return 1
    created: list[str] = []
    kept: list[str] = []
    try:
        store = Path(section.store_directory)
        if store.exists():
            kept.append(f"{store} (store directory)")
            mode = stat.S_IMODE(store.stat().st_mode)
            if mode & 0o077:
                print(
                    f"warning: {store} has mode {mode:04o}; group and others should have no "
                    f"access: run 'chmod 700 {store}'",
                    file=sys.stderr,
                )
        else:
            store.mkdir(mode=0o700)
            store.chmod(0o700)
            created.append(f"{store} (store directory, mode 0700)")
        for path, mode, what in (
            (section.key_file, 0o600, "master key"),
            (section.seal_key_file, 0o640, "seal key"),
        ):
            try:
                generate_master_key(path, mode)
                created.append(f"{path} ({what}, mode {mode:04o})")
            except FileExistsError:
                kept.append(f"{path} ({what})")
    except OSError as exc:
        print(
            f"postveil portal init: cannot create {exc.filename}: {exc.strerror}", file=sys.stderr
        )
        for line in created:
            print(f"created {line}")
        return 1

    for line in created:
        print(f"created {line}")
    for line in kept:
        print(f"exists, left unchanged: {line}")
    print(
        "Set the owners. The user below is the one of docs/install.md; use the users\n"
        "that run the pipe transport (user= in master.cf), postveil-portal and\n"
        "postveil-milter on this host:\n"
        f"  chown postveil:postveil {section.store_directory} {section.key_file}\n"
        "      (the pipe transport's user and postveil-portal's user own the store and\n"
        "      read the master key)\n"
        f"  chown postveil:postveil {section.seal_key_file}\n"
        "      (postveil-milter's user and the pipe transport's user read the seal key,\n"
        "      as owner or through the group)"
    )
    return 0


# -- status and purge --------------------------------------------------------------


def housekeeping(
    config: Config,
    action: str,
    message_id: str = "",
    reason: str = "",
    config_path: str | None = None,
) -> int:
    section = config.portal
    arguments = [message_id, *_reason_arguments(reason)] if action == "revoke" else []
    problem = _owner_problem(section.store_directory, action, config_path, arguments)
    if problem is not None:
        print(f"postveil portal {action}: {problem}", file=sys.stderr)
        return 1
    try:
        store = PortalStore.open(
            section.store_directory, section.key_file, section.previous_key_files
        )
    except PortalError as exc:
        print(f"postveil portal {action}: {exc}", file=sys.stderr)
        return 1
    try:
        if action == "status":
            counts = store.counts()
            print(f"messages waiting: {counts['messages']}")
            print(f"pickups: {counts['pickups']}")
            print(f"pickups opened: {counts['opened']}")
            print_key_counts(store)
        elif action == "list":
            _print_waiting(store.waiting())
        elif action == "revoke":
            audit = AuditLog(config.audit, program="postveil portal revoke")
            recipients = revoke(store, audit, message_id, reason)
            if recipients is None:
                print(f"postveil portal revoke: no message with id {message_id!r}", file=sys.stderr)
                return 1
            print(f"revoked portal message {message_id} for {', '.join(recipients)}")
        else:
            deleted = purge_expired(store, AuditLog(config.audit, program="postveil portal purge"))
            print(f"deleted {deleted} expired message(s)")
    except (PortalError, AuditError) as exc:
        print(f"postveil portal {action}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


def _print_waiting(messages: Sequence[WaitingMessage]) -> None:
    if not messages:
        print("no messages waiting")
        return
    for message in messages:
        print(message.message_id)
        print(f"  stored   {_utc(message.created)}, expires {_utc(message.expires)}")
        print(f"  sender   {message.sender or '<>'} (queue id {message.queue_id or '-'})")
        for recipient, opened in message.recipients:
            state = f"read {_utc(opened)}" if opened is not None else "not read"
            print(f"  to       {recipient} ({state})")


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _reason_arguments(reason: str) -> list[str]:
    return ["--reason", reason] if reason else []


def _owner_problem(
    directory: str,
    action: str,
    config_path: str | None = None,
    arguments: Sequence[str] = (),
    *,
    only_owner: bool = False,
) -> str | None:
    """Return why this user must not open the store, or None.

    Root must not, unless root owns the store: files that root creates there (the
    database on first use, the messages directory, the lock file of ``rekey``) would be
    root's, and the intake could no longer write them. With ``only_owner``, no other
    user may either. ``arguments`` (such as the message id of ``revoke``) follow the
    action in the command that the message suggests.
    """
    command = ["postveil", "portal", action, *arguments]
    if config_path:
        command += ["-c", config_path]
    return owner_problem(directory, command, only_owner=only_owner)
