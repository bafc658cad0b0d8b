"""Start-up steps shared by postveil's daemons: parse the command line, read the
configuration, set up logging.

Both report problems on stderr, one line per problem (journald and syslog keep lines,
not multi-line records), and the caller then exits with EX_CONFIG (78), which the
systemd units list in RestartPreventExitStatus.
"""

from __future__ import annotations

import argparse
import sys

from postveil import __version__
from postveil.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    Config,
    default_config_path,
    load_config,
)
from postveil.errors import ConfigError
from postveil.log import setup_logging

EX_CONFIG = 78
"""sysexits.h: configuration error. systemd does not restart a unit that exits with it."""


def parse_daemon_args(
    program: str, description: str, epilog: str, argv: list[str] | None
) -> argparse.Namespace:
    """Parse a daemon's command line: ``-c``/``--config PATH`` and ``--version``.
    ``epilog`` is printed as written under ``--help``."""
    parser = argparse.ArgumentParser(
        prog=program,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-c",
        "--config",
        metavar="PATH",
        help=f"configuration file (YAML; default: ${CONFIG_ENV}, else {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument("--version", action="version", version=f"{program} {__version__}")
    return parser.parse_args(argv)


def load_daemon_config(program: str, path: str | None) -> Config | None:
    """Read and validate the configuration, or print every problem and return None."""
    try:
        return load_config(path or default_config_path())
    except ConfigError as exc:
        print(f"{program}: {len(exc.problems)} error(s) in {exc.path}; not starting", file=sys.stderr)
        for problem in exc.problems:
            print(f"{program}: {problem}", file=sys.stderr)
        return None


def start_logging(program: str, config: Config) -> bool:
    """Set up logging from ``config``; print why and return False when that fails."""
    try:
        setup_logging(config.logging, program)
    except OSError as exc:
        print(
            f"{program}: cannot set up logging to {config.logging.target}: {exc}; not starting",
            file=sys.stderr,
        )
        return False
    return True
