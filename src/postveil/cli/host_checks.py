"""Host readiness checks of ``postveil check-config``.

A configuration file can be valid and still name paths that do not exist on the
machine where it is checked. These checks look only at this host (files,
directories, groups, executables) and return warnings, because the file may be
meant for another machine. ``check-config --strict`` turns them into a failure.

The checks run as the user of ``check-config``, usually root, so they test
existence and type only. Whether the daemons' own user may read or write a path
is not checked.
"""

from __future__ import annotations

import grp
import os
import shutil
import socket
import stat

from postveil.config import Config
from postveil.config.milter import MilterSection

_NOT_STARTING = "the daemons would not start here (exit status 78)"
_POLICYD_NOT_STARTING = "postveil-policyd would not start here (exit status 78)"


def host_warnings(config: Config) -> list[str]:
    """List every path or name the daemons need that is missing or of the wrong type here."""
    warnings: list[str] = []
    warnings += _milter_warnings(config.milter)
    warnings += _audit_warnings(config)
    warnings += _policyd_warnings(config)
    warnings += _pgp_warnings(config)
    warnings += _smime_warnings(config)
    warnings += _classifier_warnings(config)
    warnings += _portal_warnings(config)
    if config.logging.target == "syslog":
        warnings += _file_warnings("logging.syslog_socket", config.logging.syslog_socket, _NOT_STARTING)
    return warnings


def _milter_warnings(section: MilterSection) -> list[str]:
    warnings = _reinject_store_warnings(section)
    socket_path = section.unix_socket_path
    if socket_path is None:
        return warnings
    warnings += _group_warnings(
        "milter.socket_group", section.socket_group, "postveil-milter would exit with status 78 here"
    )
    warnings += _created_directory_warnings(
        "milter.socket",
        os.path.dirname(socket_path),
        "postveil-milter creates it at start",
        "postveil-milter would exit with status 78 here",
    )
    return warnings


def _reinject_store_warnings(section: MilterSection) -> list[str]:
    store = section.reinject_store
    if store is None:
        return []
    deferred = "every message with copies to re-inject (PGP, S/MIME, portal, notices) would be deferred (451)"
    if os.path.isdir(store):
        return [f"milter.reinject_store {store} is a directory, not a file, so {deferred}"]
    return _created_directory_warnings(
        "milter.reinject_store",
        os.path.dirname(store) or ".",
        "postveil-milter creates it with the file for the first message with copies to re-inject",
        deferred,
    )


def _audit_warnings(config: Config) -> list[str]:
    section = config.audit
    key_fix = f"create it with 'postveil audit keygen {section.key_file}'"
    warnings = _file_warnings("audit.key_file", section.key_file, f"{_NOT_STARTING}; {key_fix}")
    warnings += _created_directory_warnings(
        "audit.directory",
        section.directory,
        "the daemons create it with mode 0750 when they write their first audit record",
        "every audit record would fail and each message would get the reply that "
        "audit.on_write_failure sets",
    )
    return warnings


def _policyd_warnings(config: Config) -> list[str]:
    section = config.policyd
    warnings: list[str] = []
    if section.cache_backend == "sqlite":
        if os.path.isdir(section.cache_path):
            warnings.append(
                f"policyd.cache_path {section.cache_path} is a directory, not a file, so "
                f"{_POLICYD_NOT_STARTING}"
            )
        warnings += _created_directory_warnings(
            "policyd.cache_path",
            os.path.dirname(section.cache_path) or ".",
            "postveil-policyd creates it at start",
            _POLICYD_NOT_STARTING,
        )
    for key in ("mta_sts_ca_file", "probe_ca_file"):
        path = getattr(section, key)
        if path is not None:
            warnings += _file_warnings(f"policyd.{key}", path, _POLICYD_NOT_STARTING)
    return warnings


def _deferred_method(config: Config, method: str, lookup: str) -> str:
    """Describe the mail that a broken ``method`` defers: every route that reaches it.

    The milter looks the recipient up for each method of the class's list in turn, and a
    lookup that fails defers the message (451) before the later methods are tried.
    """
    classes = [name for name, methods in config.routing.methods.model_dump().items() if method in methods]
    return (
        f"every message whose route reaches {method} would be deferred (451) here because "
        f"the {lookup} fails, even one that a later method such as the portal would take "
        f"(classes that list {method} in routing.methods: {', '.join(classes) or 'none'})"
    )


def _pgp_warnings(config: Config) -> list[str]:
    section = config.pgp
    deferred = _deferred_method(config, "pgp", "PGP key lookup")
    warnings = _directory_warnings(
        "pgp.gnupg_home", section.gnupg_home, f"{deferred}; create it with mode 0700, see docs/install.md"
    )
    if shutil.which(section.gpg_binary) is None:
        warnings.append(
            f"pgp.gpg_binary {section.gpg_binary!r} is not an executable found on this host "
            f"(PATH is searched for a bare name), so {deferred}"
        )
    return warnings


def _smime_warnings(config: Config) -> list[str]:
    section = config.smime
    deferred = _deferred_method(config, "smime", "certificate lookup") + "; see docs/install.md"
    warnings = _directory_warnings("smime.certificate_dir", section.certificate_dir, deferred)
    if not os.path.exists(section.trust_store):
        warnings.append(f"smime.trust_store {section.trust_store} does not exist on this host, so {deferred}")
    if section.sign:
        for key in ("signing_certificate", "signing_key"):
            path = getattr(section, key)
            if path is not None:
                warnings += _file_warnings(
                    f"smime.{key}", path, "every S/MIME message would be deferred here (smime.sign is true)"
                )
    return warnings


_CLASSIFIER_NOT_STARTING = "postveil-classifierd would exit with status 78 here"


def _classifier_warnings(config: Config) -> list[str]:
    """When the classifier is enabled: what would stop its daemon, and whether it is
    listening on its socket now."""
    section = config.classifier
    if not section.enabled:
        return []
    warnings: list[str] = []

    if section.weights is not None:
        warnings += _file_warnings("classifier.weights", section.weights, _CLASSIFIER_NOT_STARTING)
    warnings += _group_warnings(
        "classifier.socket_group", section.socket_group, _CLASSIFIER_NOT_STARTING
    )

    directory = os.path.dirname(section.socket)
    if not os.path.isdir(directory):
        warnings.append(
            f"classifier.socket: directory {directory} does not exist on this host, so "
            f"{_CLASSIFIER_NOT_STARTING} (the systemd unit creates /run/postveil-classifier)"
        )

    if section.on_failure == "tempfail":
        consequence = "defers (451) every message that the rules pass and that has health information"
    else:
        consequence = "uses the rules' verdict alone, with a warning per message"
    problem = _socket_problem(section.socket)
    if problem is not None:
        warnings.append(
            f"classifier.socket {section.socket} {problem}; until postveil-classifierd "
            f"listens on it, postveil-milter {consequence}"
        )
    return warnings


def _portal_warnings(config: Config) -> list[str]:
    """Warn about the built-in portal's files when the configuration uses the portal
    (a seal key or a base_url is set)."""
    section = config.portal
    warnings: list[str] = []
    init_fix = "create it with 'postveil portal init'"
    if section.intake_address is not None and section.seal_key_file is not None:
        warnings += _file_warnings(
            "portal.seal_key_file", section.seal_key_file, f"postveil-milter would not start here; {init_fix}"
        )
    if section.base_url is None and section.seal_key_file is None:
        return warnings
    if section.base_url is None:
        warnings.append(
            "portal.base_url is not set, so postveil-portal would not start and the intake would defer every copy"
        )
    if section.seal_key_file is None:
        warnings.append(
            "portal.seal_key_file is not set, so the intake ('postveil portal deliver') would defer every copy"
        )
    portal_fails = f"postveil-portal and the intake would fail here; {init_fix}"
    warnings += _file_warnings("portal.key_file", section.key_file, portal_fails)
    warnings += _mode_warnings("portal.key_file", section.key_file, 0o077, "600")
    previous_fails = (
        "postveil-portal and the intake would fail here; restore the old key file, or remove "
        "it from the list once 'postveil portal status' shows that no message needs it"
    )
    for path in section.previous_key_files:
        warnings += _file_warnings("portal.previous_key_files", path, previous_fails)
        warnings += _mode_warnings("portal.previous_key_files", path, 0o077, "600")
    if section.seal_key_file is not None:
        warnings += _mode_warnings("portal.seal_key_file", section.seal_key_file, 0o007, "640")
    warnings += _directory_warnings("portal.store_directory", section.store_directory, portal_fails)
    return warnings


def _mode_warnings(key: str, path: str, forbidden: int, fix: str) -> list[str]:
    """Warn about a key file whose mode the daemons reject at start."""
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        return []
    if mode & forbidden:
        return [
            f"{key} {path} has mode {mode:04o}, which the daemons reject as too open; "
            f"run 'chmod {fix} {path}'"
        ]
    return []


def _socket_problem(path: str) -> str | None:
    """Return why no daemon would accept connections on the unix socket at ``path``, or None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "does not exist on this host (postveil-classifierd is not running)"
    if not stat.S_ISSOCK(mode):
        return "is not a socket"
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2)
        probe.connect(path)
    except OSError as exc:
        return (
            f"exists, but no process accepts connections on it ({exc.strerror or exc}), "
            "as after a daemon was stopped with SIGKILL"
        )
    finally:
        probe.close()
    return None


def _group_warnings(key: str, group: str | None, consequence: str) -> list[str]:
    if group is None:
        return []
    try:
        grp.getgrnam(group)
    except KeyError:
        return [f"{key} {group!r} does not exist on this host, so {consequence}"]
    return []


def _file_warnings(key: str, path: str, consequence: str) -> list[str]:
    if not os.path.exists(path):
        return [f"{key} {path} does not exist on this host, so {consequence}"]
    if os.path.isdir(path):
        return [f"{key} {path} is a directory, not a file, so {consequence}"]
    return []


def _directory_warnings(key: str, path: str, consequence: str) -> list[str]:
    if not os.path.exists(path):
        return [f"{key} {path} does not exist on this host, so {consequence}"]
    if not os.path.isdir(path):
        return [f"{key} {path} is not a directory, so {consequence}"]
    return []


def _created_directory_warnings(key: str, path: str, creator: str, consequence: str) -> list[str]:
    """Warn about a directory the daemons create themselves when it is missing.

    Creating it needs write access to its nearest existing parent, which this check
    cannot judge for the daemons' user, so a missing directory is still a warning.
    """
    if os.path.isdir(path):
        return []
    if os.path.exists(path):
        return [f"{key}: {path} is not a directory, so {consequence}"]
    parent = _nearest_existing_parent(path)
    return [
        f"{key}: directory {path} does not exist on this host; {creator}, "
        f"which needs write access to {parent} for the daemons' user"
    ]


def _nearest_existing_parent(path: str) -> str:
    current = os.path.abspath(path)
    while not os.path.exists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current
