"""Helpers shared by the ``postveil`` subcommands."""

from __future__ import annotations

import argparse
import os
import pwd
import shlex
import sys
from collections.abc import Sequence

from postveil.config import DEFAULT_CONFIG_PATH, Config, default_config_path, load_config
from postveil.errors import ConfigError

CONFIG_HELP = f"configuration file (default: $POSTVEIL_CONFIG, else {DEFAULT_CONFIG_PATH})"


def add_config_option(parser: argparse.ArgumentParser, **kwargs: object) -> None:
    """Add ``-c/--config PATH``, by default with the help text every subcommand uses."""
    kwargs.setdefault("help", CONFIG_HELP)
    parser.add_argument("-c", "--config", metavar="PATH", **kwargs)  # type: ignore[arg-type]


def add_config_option_to_actions(actions: argparse._SubParsersAction) -> None:
    """Also accept ``-c/--config`` after the action (``postveil keys list --config X``).

    The default is suppressed so that a ``--config`` given before the action is kept.
    """
    for action_parser in actions.choices.values():
        add_config_option(action_parser, default=argparse.SUPPRESS)


def add_reason_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--reason TEXT``, stored in the reason field of the admin_override record."""
    parser.add_argument(
        "--reason", metavar="TEXT", default="",
        help="reason for the change, stored in the reason field of the audit record "
        "(one line, at most 998 characters)",
    )


EXPIRING_FOUND = 3
"""Exit status of ``list --expiring`` when it lists at least one entry, so that a
monitoring check can tell "some expire soon" (3) from an error (1) and from none (0)."""


def parse_day_count(text: str) -> int:
    """Parse a ``--expiring DAYS`` value: a whole number, 0 or more."""
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of days: {text!r}") from None
    if days < 0:
        raise argparse.ArgumentTypeError(f"number of days must be 0 or more, not {days}")
    return days


def days_text(days: int) -> str:
    """Return ``days`` with its unit, as ``list --expiring`` prints it: "1 day", "30 days"."""
    return "1 day" if days == 1 else f"{days} days"


def add_expiring_option(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``--expiring DAYS`` to a ``list`` action."""
    parser.add_argument(
        "--expiring", metavar="DAYS", type=parse_day_count,
        help=f"list only {what} that stop being usable within DAYS days, and exit with status "
        f"{EXPIRING_FOUND} when there is at least one (for cron or a monitoring check)",
    )


def load_cli_config(path: str | None) -> Config | None:
    """Load the configuration, or print one line per problem on stderr and return None."""
    source = path or default_config_path()
    try:
        return load_config(source)
    except ConfigError as exc:
        report_config_error(source, exc)
        return None


def report_config_error(source: str, error: ConfigError) -> None:
    """Print a configuration error on stderr: one line for a file that cannot be read,
    or a header and one line per problem for an invalid one."""
    if error.unreadable:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return
    print(f"{source}: invalid configuration, {len(error.problems)} error(s):", file=sys.stderr)
    for problem in error.problems:
        print(f"  {problem}", file=sys.stderr)


def owner_problem(directory: str, command: Sequence[str], *, only_owner: bool = False) -> str | None:
    """Return why this user must not change files in ``directory``, or None.

    Root must not, unless root owns it, because the files that root creates or replaces
    there would be root's and the daemon that owns the directory could no longer use
    them. With ``only_owner``, no other user may either. The message ends with
    ``command`` run as the owner, quoted for the shell.
    """
    euid = os.geteuid()
    if euid != 0 and not only_owner:
        return None
    try:
        owner = os.stat(directory).st_uid
    except OSError:
        return None
    if owner == euid:
        return None
    try:
        name = pwd.getpwuid(owner).pw_name
    except KeyError:
        name = str(owner)
    running_as = "not as root" if euid == 0 else f"not as user id {euid}"
    return f"run this as the owner of {directory}, {running_as}: runuser -u {name} -- {shlex.join(command)}"
