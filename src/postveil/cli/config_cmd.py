"""``postveil check-config``: validate a configuration file and list every error."""

from __future__ import annotations

import argparse
import sys

from postveil.cli.host_checks import host_warnings
from postveil.config import CONFIG_ENV, DEFAULT_CONFIG_PATH, default_config_path, load_config
from postveil.errors import ConfigError
from postveil.postfix_nexthops import NextHopRoutes
from postveil.postfix_rewrites import PostconfError, RecipientRewrites, RewriteLookupError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check-config",
        help="validate a configuration file",
        description="Validate a postveil configuration file, then check that the files, "
        "directories and group it names exist on this host. Exits 0 when the file is "
        "valid, even when host checks print warnings; 1 listing every error otherwise.",
    )
    parser.add_argument(
        "path",
        nargs="?",
        help=f"configuration file (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="also exit 1 when a host check warns, so that exit 0 also means that every "
        "path the daemons need exists on this host (permissions are not checked)",
    )
    parser.add_argument(
        "--postfix-config",
        metavar="DIR",
        help="Postfix configuration directory whose recipient rewrite maps postmap must "
        "be able to read (default: milter.postfix_config_directory, else postconf's own; "
        "when neither is set, a host where postconf fails is not checked)",
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
    postfix_config = args.postfix_config or config.milter.postfix_config_directory
    warnings = host_warnings(config) + _rewrite_warnings(postfix_config, config.policyd.socketmap_listen)
    for warning in warnings:
        print(f"{path}: warning: {warning}", file=sys.stderr)
    if warnings and args.strict:
        print(
            f"{path}: valid (config version {config.version}), but not ready on this host: "
            f"{len(warnings)} host warning(s) (--strict)",
            file=sys.stderr,
        )
        return 1
    readiness = f", {len(warnings)} host warning(s)" if warnings else ", no host warning"
    print(f"{path}: ok (config version {config.version}){readiness}")
    return 0


def _rewrite_warnings(config_directory: str | None, socketmap_listen: str) -> list[str]:
    """Check that postmap can read Postfix's recipient rewrite maps and transport maps,
    as the milter must for every recipient it would route by tls, and that Postfix's
    smtp_tls_policy_maps queries postveil-policyd."""
    try:
        rewrites = RecipientRewrites.from_postfix(config_directory)
        rewrites.moved(["postveil-check@example.invalid"])
        routes = NextHopRoutes.from_postfix(config_directory, socketmap_listen=socketmap_listen)
        routes.rerouted(["postveil-check@example.invalid"])
        if routes.policy_problem is not None:
            table = f"socketmap:{socketmap_listen}:postveil"
            return [
                f"{routes.policy_problem}, so postveil-milter routes no message by tls. "
                f"Put {table} first in smtp_tls_policy_maps (conf/postfix/main.cf.policyd)"
            ]
    except PostconfError as exc:
        if config_directory is None:
            return []
        return [f"cannot read Postfix's configuration in {config_directory}: {exc}"]
    except RewriteLookupError as exc:
        consequence = "postveil-milter would defer (451) every message it routes by tls"
        return [f"{exc}; {consequence}. Check that the daemons' user can read the maps"]
    return []
