"""Entry point of the ``postveil`` command: one subcommand per admin task.

Each subcommand lives in its own module exposing ``register(subparsers)``, which
adds a parser whose ``handler`` default is a function ``(args) -> int`` exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from postveil import __version__

SUBCOMMAND_MODULES = [
    "postveil.cli.config_cmd",
    "postveil.cli.keys_cmd",
    "postveil.cli.certs_cmd",
    "postveil.cli.scan_cmd",
    "postveil.cli.domain_cmd",
    "postveil.cli.audit_cmd",
    "postveil.cli.portal_cmd",
    "postveil.cli.status_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="postveil",
        description="Administer postveil: check configuration, inspect decisions and domains.",
    )
    parser.add_argument("--version", action="version", version=f"postveil {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
"""Exit status when the reader of stdout went away, as a shell reports a command that
SIGPIPE killed (141 on Linux)."""


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand and return its exit status.

    A closed stdout (``postveil domain show example.org | head -4``) ends the command
    quietly with EXIT_BROKEN_PIPE instead of a traceback.
    """
    try:
        status = _run(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        # Point stdout at /dev/null so that the interpreter's final flush of the data
        # still buffered does not fail a second time and print "Exception ignored".
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    return status


def _run(argv: list[str] | None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:2] == ["portal", "deliver"]:
        # pipe(8) reads exit status 2, argparse's usage error, as a permanent failure,
        # so this command parses its own arguments and defers on a mistake instead.
        from postveil.cli.portal_cmd import deliver_main

        return deliver_main(arguments[2:])
    parser = build_parser()
    if arguments[:1] == ["status"]:
        # The top-level parser reports unrecognized arguments, and ``status`` wants
        # its monitoring exit status for those too.
        from postveil.cli.status_cmd import exit_unknown_on_usage_error

        exit_unknown_on_usage_error(parser)
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())
