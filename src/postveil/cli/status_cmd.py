"""``postveil status``: check that postveil's daemons reply, the audit trail advances
and no key or certificate is about to expire, with a monitoring plugin's exit status.

Every check prints one line: its state, its name and a short detail, which names
addresses, paths and counts only, never message content or a recipient. The requests
sent to the daemons are those of :mod:`postveil.cli.status_probes`, which change nothing.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from postveil.audit.chain import HEAD_NAME
from postveil.cli import status_probes
from postveil.cli.common import add_config_option, parse_day_count, report_config_error
from postveil.cli.status_probes import ProbeAccessDenied, ProbeError
from postveil.config import Config, default_config_path, load_config
from postveil.config.types import parse_duration
from postveil.errors import ConfigError


class State(Enum):
    """A check's outcome. The value is the monitoring plugin exit status (Nagios,
    Icinga); SKIPPED, a daemon the configuration does not enable, counts as OK."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3
    SKIPPED = -1


_SEVERITY = (State.CRITICAL, State.WARNING, State.UNKNOWN)
"""States from worst to least bad, the order of monitoring-plugins' max_state_alt: an
UNKNOWN check does not hide a WARNING one."""

DEFAULT_TIMEOUT = 3.0
DEFAULT_EXPIRING_DAYS = 14
DEFAULT_AUDIT_MAX_AGE = "24h"

_HEAD_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class CheckResult:
    name: str
    state: State
    detail: str

    def line(self) -> str:
        return f"{self.state.name} {self.name}: {self.detail}"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status",
        help="check that the daemons reply, the audit trail advances and keys are valid",
        description="Check postveil's health for an administrator or a monitoring system: "
        "postveil-milter, postveil-policyd, postveil-portal and postveil-classifierd reply on "
        "their configured addresses (daemons the configuration does not enable are skipped), "
        "the audit trail was written recently and its key exists, and no PGP key or S/MIME "
        "certificate stops being usable soon. Prints one line per check. Run it as root or as "
        "the postveil user.",
        epilog="exit status (monitoring plugin convention): 0 OK, 1 WARNING, 2 CRITICAL, "
        "3 UNKNOWN (the configuration cannot be loaded, or a check could not find out)",
    )
    add_config_option(parser)
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of text lines"
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive_seconds,
        default=DEFAULT_TIMEOUT,
        help=f"time a daemon has to reply, in seconds; no reply in time is CRITICAL "
        f"(default: {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--audit-max-age",
        metavar="DURATION",
        type=_duration,
        default=parse_duration(DEFAULT_AUDIT_MAX_AGE),
        help="WARNING when the last audit record is older than this, written with a unit "
        f"(30m, 24h, 2d); 0s turns the check off (default: {DEFAULT_AUDIT_MAX_AGE})",
    )
    parser.add_argument(
        "--expiring",
        metavar="DAYS",
        type=parse_day_count,
        default=DEFAULT_EXPIRING_DAYS,
        help="WARNING when a usable PGP key or S/MIME certificate stops being usable within "
        f"DAYS days (default: {DEFAULT_EXPIRING_DAYS})",
    )
    parser.set_defaults(handler=run)
    exit_unknown_on_usage_error(parser)


def exit_unknown_on_usage_error(parser: argparse.ArgumentParser) -> None:
    """Make ``parser`` exit with UNKNOWN (3) on a usage error instead of argparse's 2,
    which a monitoring system reads as CRITICAL."""
    parser.error = functools.partial(_usage_error, parser)  # type: ignore[method-assign]


def _usage_error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    parser.print_usage(sys.stderr)
    parser.exit(State.UNKNOWN.value, f"{parser.prog}: error: {message}\n")


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r}") from None
    if not 0 < seconds <= 300:
        raise argparse.ArgumentTypeError(
            f"timeout must be more than 0 and at most 300 seconds, not {text}"
        )
    return seconds


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    source = args.config or default_config_path()
    try:
        config = load_config(source)
    except ConfigError as exc:
        report_config_error(source, exc)
        results = [CheckResult("config", State.UNKNOWN, f"cannot load {source}")]
    else:
        results = run_checks(config, args.timeout, args.audit_max_age, args.expiring)
    overall = overall_state(results)
    if args.json:
        print(json.dumps(_json_report(overall, results), indent=2))
    else:
        print(_summary(overall, results))
        for result in results:
            print(result.line())
    return overall.value


def overall_state(results: list[CheckResult]) -> State:
    states = {result.state for result in results}
    for state in _SEVERITY:
        if state in states:
            return state
    return State.OK


def _summary(overall: State, results: list[CheckResult]) -> str:
    counts = [
        f"{sum(result.state is state for result in results)} {state.name}"
        for state in (State.CRITICAL, State.WARNING, State.UNKNOWN, State.OK, State.SKIPPED)
        if any(result.state is state for result in results)
    ]
    return f"postveil status {overall.name}: {', '.join(counts)}"


def _json_report(overall: State, results: list[CheckResult]) -> dict[str, object]:
    return {
        "state": overall.name,
        "exit_status": overall.value,
        "checks": [{"name": r.name, "state": r.state.name, "detail": r.detail} for r in results],
    }


def run_checks(
    config: Config, timeout: float, audit_max_age: float, expiring_days: int
) -> list[CheckResult]:
    """Run every check in a fixed order. A check that fails unexpectedly is UNKNOWN,
    so that one broken check does not hide the results of the others."""
    checks: list[tuple[str, Callable[[], CheckResult]]] = [
        ("milter", lambda: check_milter(config, timeout)),
        ("policyd-socketmap", lambda: check_socketmap(config, timeout)),
        ("policyd-policy", lambda: check_policy(config, timeout)),
        ("portal", lambda: check_portal(config, timeout)),
        ("classifier", lambda: check_classifier(config, timeout)),
        ("audit-head", lambda: check_audit_head(config, audit_max_age)),
        ("audit-key", lambda: check_audit_key(config)),
        ("pgp-keys", lambda: check_pgp_keys(config, expiring_days)),
        ("smime-certificates", lambda: check_smime_certificates(config, expiring_days)),
    ]
    results = []
    for name, check in checks:
        try:
            results.append(check())
        except Exception as exc:  # noqa: BLE001 - reported as this check's result
            # The class only: an exception's text may quote a file's content.
            results.append(CheckResult(name, State.UNKNOWN, f"check failed: {type(exc).__name__}"))
    return results


# -- daemons -----------------------------------------------------------------------


def _probe(name: str, address: str, probe: Callable[[], str]) -> CheckResult:
    """Run ``probe``, which returns the detail of a reply, and time it."""
    started = time.monotonic()
    try:
        detail = probe()
    except ProbeAccessDenied as exc:
        return CheckResult(name, State.UNKNOWN, f"{address}: {exc}")
    except ProbeError as exc:
        return CheckResult(name, State.CRITICAL, f"{address}: {exc}")
    milliseconds = (time.monotonic() - started) * 1000
    return CheckResult(name, State.OK, f"{address}: {detail} in {milliseconds:.0f} ms")


def check_milter(config: Config, timeout: float) -> CheckResult:
    spec = config.milter.socket

    def probe() -> str:
        options = status_probes.probe_milter(status_probes.milter_endpoint(spec), timeout)
        return f"option negotiation answered (milter protocol version {options.version})"

    return _probe("milter", spec, probe)


def check_socketmap(config: Config, timeout: float) -> CheckResult:
    spec = config.policyd.socketmap_listen

    def probe() -> str:
        status_probes.probe_socketmap(status_probes.listen_endpoint(spec), timeout)
        return "socketmap request answered"

    return _probe("policyd-socketmap", spec, probe)


def check_policy(config: Config, timeout: float) -> CheckResult:
    spec = config.policyd.policy_listen

    def probe() -> str:
        action = status_probes.probe_policy(status_probes.listen_endpoint(spec), timeout)
        return f"policy request answered ({action[:40]})"

    return _probe("policyd-policy", spec, probe)


def check_portal(config: Config, timeout: float) -> CheckResult:
    section = config.portal
    if section.base_url is None:
        return CheckResult(
            "portal", State.SKIPPED, "built-in portal not enabled (portal.base_url is not set)"
        )
    # Imported here, because the portal's web module loads aiohttp.
    from postveil.portal.web import HEALTH_PATH

    host, port = section.listen_address
    path = urlsplit(section.base_url).path.rstrip("/") + HEALTH_PATH
    https = section.tls_certificate is not None

    def probe() -> str:
        status_probes.probe_http(host, port, path, https=https, timeout=timeout)
        return f"GET {path} answered"

    return _probe(
        "portal",
        f"{'https' if https else 'http'}://{status_probes.Endpoint(host=host, port=port)}",
        probe,
    )


def check_classifier(config: Config, timeout: float) -> CheckResult:
    section = config.classifier
    if not section.enabled:
        return CheckResult("classifier", State.SKIPPED, "not enabled (classifier.enabled is false)")
    # Imported here, because the client module loads the detection rules.
    from postveil.classifier.client import ClassifierClient, ClassifierUnavailable

    def probe() -> str:
        # An empty text is a valid request: the daemon scores it and logs at DEBUG only.
        try:
            ClassifierClient(section.socket, timeout).probability("")
        except ClassifierUnavailable as exc:
            if isinstance(exc.__cause__, PermissionError):
                raise ProbeAccessDenied(
                    "permission denied; run as root or as the daemon's user"
                ) from None
            raise ProbeError(str(exc)) from None
        return "empty text scored"

    return _probe("classifier", section.socket, probe)


# -- audit trail -------------------------------------------------------------------


def check_audit_head(config: Config, max_age: float, now: float | None = None) -> CheckResult:
    """Check that ``audit.head`` is readable and names a record younger than ``max_age``
    seconds (0 turns the age check off).

    The head's HMAC is not checked here; ``postveil audit verify`` does, along with
    the whole chain.
    """
    name = "audit-head"
    path = Path(config.audit.directory) / HEAD_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return CheckResult(
            name, State.CRITICAL, f"{path} does not exist: no audit record was written"
        )
    except PermissionError:
        return CheckResult(
            name, State.UNKNOWN, f"{path}: permission denied; run as root or as the postveil user"
        )
    except OSError as exc:
        return CheckResult(name, State.CRITICAL, f"cannot read {path}: {exc.strerror}")
    try:
        fields = json.loads(raw)
        written = datetime.datetime.strptime(fields["time"], _HEAD_TIME_FORMAT).replace(
            tzinfo=datetime.UTC
        )
        sequence = int(fields["seq"])
    except (ValueError, TypeError, KeyError):
        return CheckResult(name, State.CRITICAL, f"{path} is not a valid head record")
    age = (time.time() if now is None else now) - written.timestamp()
    detail = f"last record #{sequence} written {_age_text(age)} ago"
    if max_age > 0 and age > max_age:
        return CheckResult(name, State.WARNING, f"{detail}, more than {_age_text(max_age)}")
    return CheckResult(name, State.OK, detail)


def _age_text(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def check_audit_key(config: Config) -> CheckResult:
    """Check that the audit key file exists with a mode the writers accept (no group
    or other access). The key itself is not read."""
    name = "audit-key"
    path = config.audit.key_file
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return CheckResult(
            name,
            State.CRITICAL,
            f"{path} does not exist, so no record can be written; "
            "create it with 'postveil audit keygen'",
        )
    except PermissionError:
        return CheckResult(
            name, State.UNKNOWN, f"{path}: permission denied; run as root or as the postveil user"
        )
    except OSError as exc:
        return CheckResult(name, State.CRITICAL, f"cannot inspect {path}: {exc.strerror}")
    if not stat.S_ISREG(mode):
        return CheckResult(name, State.CRITICAL, f"{path} is not a regular file")
    if mode & 0o077:
        return CheckResult(
            name,
            State.CRITICAL,
            f"{path} has mode {stat.S_IMODE(mode):04o}, which the writers reject; "
            f"run 'chmod 600 {path}'",
        )
    return CheckResult(name, State.OK, f"{path} exists, mode {stat.S_IMODE(mode):04o}")


# -- keys and certificates ---------------------------------------------------------


def check_pgp_keys(config: Config, days: int) -> CheckResult:
    name = "pgp-keys"
    home = config.pgp.gnupg_home
    if not os.path.isdir(home):
        return CheckResult(name, State.SKIPPED, f"{home} (pgp.gnupg_home) does not exist")
    from postveil.cli.keys_cmd import expiring_keys
    from postveil.crypto.errors import PgpFailure
    from postveil.crypto.pgp import PgpKeyring

    keyring = PgpKeyring(home, config.pgp.gpg_binary, timeout=config.pgp.timeout)
    try:
        keyring.open()
        count = _count_as_owner(home, lambda: len(expiring_keys(keyring, days)), PgpFailure)
    except PgpFailure as exc:
        return CheckResult(name, State.CRITICAL, f"cannot list the keys in {home}: {exc}")
    if count:
        return CheckResult(
            name,
            State.WARNING,
            f"{count} key(s) stop being usable within {days} days; "
            f"see 'postveil keys list --expiring {days}'",
        )
    return CheckResult(name, State.OK, f"no usable key stops being usable within {days} days")


def _count_as_owner(path: str, count: Callable[[], int], error: type[Exception]) -> int:
    """Return ``count()``, run as the user and group that own ``path`` when this process
    runs as root and another user owns it.

    gpg creates pubring.kbx and trustdb.gpg in a home that lacks them. Created by root,
    they would lock the milter's user out of its own keyring. The child process sends
    back the count, or the message of an ``error`` that it raised, which is raised here.
    """
    owner = os.stat(path)
    if os.geteuid() != 0 or owner.st_uid == 0:
        return count()
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(reader)
        try:
            os.setgroups([])
            os.setgid(owner.st_gid)
            os.setuid(owner.st_uid)
            reply = f"count {count()}"
        except error as exc:
            reply = f"error {exc}"
        except BaseException as exc:  # noqa: BLE001 - the child must reach os._exit
            reply = f"error {type(exc).__name__} as user id {owner.st_uid}"
        os.write(writer, reply.encode("utf-8", "replace"))
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        reply = pipe.read().decode("utf-8", "replace")
    os.waitpid(child, 0)
    kind, _, value = reply.partition(" ")
    if kind == "count" and value.isdigit():
        return int(value)
    raise error(
        value or f"the check's child process as user id {owner.st_uid} ended without a result"
    )


def check_smime_certificates(config: Config, days: int) -> CheckResult:
    name = "smime-certificates"
    directory = config.smime.certificate_dir
    if not os.path.isdir(directory):
        return CheckResult(
            name, State.SKIPPED, f"{directory} (smime.certificate_dir) does not exist"
        )
    from postveil.cli.certs_cmd import expiring_certificates
    from postveil.crypto.errors import SmimeFailure
    from postveil.crypto.smime import CertificateStore

    try:
        store = CertificateStore(directory, config.smime.trust_store, log_problems=False)
        count = len(expiring_certificates(store, days))
    except SmimeFailure as exc:
        return CheckResult(
            name, State.CRITICAL, f"cannot read the certificates in {directory}: {exc}"
        )
    if count:
        return CheckResult(
            name,
            State.WARNING,
            f"{count} certificate(s) stop being usable within {days} days; "
            f"see 'postveil certs list --expiring {days}'",
        )
    return CheckResult(
        name, State.OK, f"no usable certificate stops being usable within {days} days"
    )
