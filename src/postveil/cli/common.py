"""Helpers shared by the ``postveil`` subcommands."""

from __future__ import annotations

import argparse
import sys

from postveil.config import DEFAULT_CONFIG_PATH, Config, default_config_path, load_config
from postveil.errors import ConfigError

CONFIG_HELP = f"configuration file (default: $POSTVEIL_CONFIG, else {DEFAULT_CONFIG_PATH})"


def add_config_option(parser: argparse.ArgumentParser, **kwargs: object) -> None:
    """Add ``-c/--config PATH`` with the help text every subcommand uses."""
    parser.add_argument("-c", "--config", metavar="PATH", help=CONFIG_HELP, **kwargs)  # type: ignore[arg-type]


def load_cli_config(path: str | None) -> Config | None:
    """Load the configuration, or print one line per problem on stderr and return None."""
    source = path or default_config_path()
    try:
        return load_config(source)
    except ConfigError as exc:
        print(f"{source}: invalid configuration, {len(exc.problems)} error(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None
