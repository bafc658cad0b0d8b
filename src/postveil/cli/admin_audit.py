"""Audit records for the admin commands that change recipient keys and certificates.

Each change is written as an ``admin_override`` record before it is made, the same
order ``postveil domain set`` uses. When the record cannot be written the command
makes no change: a change to how patient mail is protected never goes unrecorded.
"""

from __future__ import annotations

import getpass
import os
import pwd
from collections.abc import Sequence
from pathlib import Path

from postveil.audit import AdminOverride, AuditLog
from postveil.audit.errors import AuditError
from postveil.config.audit import AuditSection


class AdminAuditError(AuditError):
    """The audit trail could not be opened or written, so the change was not made."""


# The kernel's value of /proc/self/loginuid for a process outside any login session.
UNSET_LOGINUID = 2**32 - 1


def admin_name() -> str:
    """Return the name of the person who runs the command, as far as the system can tell.

    In order: ``$SUDO_USER`` (the caller of sudo), the login name of the session (the user
    logged in on the controlling terminal, then the audit login uid of the session mapped
    to a name), else the effective user. So ``runuser -u postveil`` or ``su -`` run by a
    person logged in as ``alice`` records ``alice``, not ``postveil`` or ``root``.
    ``$SUDO_USER`` is an environment variable and so only as trustworthy as the caller.
    """
    return os.environ.get("SUDO_USER") or _session_login_name() or getpass.getuser()


def _session_login_name() -> str | None:
    """Return the login name of the session, or None outside a login session."""
    try:
        return os.getlogin()
    except OSError:
        # No controlling terminal (cron, systemd, a pipe from ssh without a tty).
        pass
    try:
        loginuid = int(Path("/proc/self/loginuid").read_text().strip())
    except (OSError, ValueError):
        return None
    if loginuid == UNSET_LOGINUID:
        return None
    try:
        return pwd.getpwuid(loginuid).pw_name
    except KeyError:
        return str(loginuid)


class AdminChangeLog:
    """Write one ``admin_override`` record for each key or certificate change.

    The audit trail is opened on the first record, so a command that fails its input
    checks needs no audit key. Raises :class:`AdminAuditError` when the trail cannot be
    opened or written.
    """

    def __init__(self, section: AuditSection, program: str, command: str, reason: str = "") -> None:
        self._section = section
        self._program = program
        self._command = command
        self._reason = reason
        self._log: AuditLog | None = None

    def record(self, action: str, addresses: Sequence[str], fingerprint: str) -> None:
        """Append the record of ``action`` on ``fingerprint`` for ``addresses``."""
        target = ", ".join(address for address in addresses if address) or "(no email address)"
        try:
            if self._log is None:
                self._log = AuditLog(self._section, program=self._program)
            self._log.append(
                AdminOverride(
                    admin_name(), target, action, self._reason, command=self._command,
                    fingerprint=fingerprint,
                )
            )
        except AuditError as exc:
            raise AdminAuditError(f"cannot write the audit record: {exc}") from exc

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
