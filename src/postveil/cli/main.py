"""Entry point of the ``postveil`` command: one subcommand per admin task.

Each subcommand lives in its own module exposing ``register(subparsers)``, which
adds a parser whose ``handler`` default is a function ``(args) -> int`` exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from postveil import __version__

SUBCOMMAND_MODULES = [
    "postveil.cli.config_cmd",
    "postveil.cli.keys_cmd",
    "postveil.cli.certs_cmd",
    "postveil.cli.scan_cmd",
    "postveil.cli.domain_cmd",
    "postveil.cli.audit_cmd",
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())
