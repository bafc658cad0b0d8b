"""``postveil check-config``: validate a configuration file and list every error."""

from __future__ import annotations

import argparse
import os
import grp
import sys

from postveil.config import CONFIG_ENV, DEFAULT_CONFIG_PATH, Config, default_config_path, load_config
from postveil.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check-config",
        help="validate a configuration file",
        description="Validate a postveil configuration file. Exits 0 when valid, "
        "1 listing every error otherwise.",
    )
    parser.add_argument(
        "path",
        nargs="?",
        help=f"configuration file (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG_PATH})",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    path = args.path or default_config_path()
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"{path}: invalid configuration, {len(exc.problems)} error(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    if config.uses_only_defaults:
        print(f"{path}: warning: the file sets no key, so every default applies", file=sys.stderr)
    for warning in host_warnings(config):
        print(f"{path}: warning: {warning}", file=sys.stderr)
    print(f"{path}: ok (config version {config.version})")
    return 0


def host_warnings(config: Config) -> list[str]:
    """List settings that are valid but would fail on this host.

    They are warnings, not errors, because the file may be checked on another machine.
    """
    warnings = []
    section = config.milter
    if section.unix_socket_path is not None and section.socket_group is not None:
        try:
            grp.getgrnam(section.socket_group)
        except KeyError:
            warnings.append(
                f"milter.socket_group {section.socket_group!r} does not exist on this host, "
                "so postveil-milter would exit with status 78 here"
            )
    if not os.path.exists(config.audit.key_file):
        warnings.append(
            f"audit.key_file {config.audit.key_file} does not exist on this host, so the daemons "
            f"would not start here; create it with 'postveil audit keygen {config.audit.key_file}'"
        )
    for name, path in (("smime.trust_store", config.smime.trust_store), ("pgp.gnupg_home", config.pgp.gnupg_home)):
        if not os.path.exists(path):
            warnings.append(
                f"{name} {path} does not exist on this host, so messages that need it would be "
                "deferred here; see docs/install.md"
            )
    return warnings
