"""Audit records for the admin commands that change recipient keys and certificates.

Each change is written as an ``admin_override`` record before it is made, the same
order ``postveil domain set`` uses. When the record cannot be written the command
makes no change: a change to how patient mail is protected never goes unrecorded.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Sequence

from postveil.audit import AdminOverride, AuditLog
from postveil.audit.errors import AuditError
from postveil.config.audit import AuditSection


class AdminAuditError(AuditError):
    """The audit trail could not be opened or written, so the change was not made."""


def admin_name() -> str:
    """Login name of the administrator: the sudo caller when run through sudo."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


class AdminChangeLog:
    """Write one ``admin_override`` record for each key or certificate change.

    The audit trail is opened on the first record, so a command that fails its input
    checks needs no audit key. Raises :class:`AdminAuditError` when the trail cannot be
    opened or written.
    """

    def __init__(self, section: AuditSection, program: str, command: str) -> None:
        self._section = section
        self._program = program
        self._command = command
        self._log: AuditLog | None = None

    def record(self, action: str, addresses: Sequence[str], fingerprint: str) -> None:
        """Append the record of ``action`` on ``fingerprint`` for ``addresses``."""
        target = ", ".join(address for address in addresses if address) or "(no email address)"
        try:
            if self._log is None:
                self._log = AuditLog(self._section, program=self._program)
            self._log.append(
                AdminOverride(
                    admin_name(), target, action, "", command=self._command, fingerprint=fingerprint
                )
            )
        except AuditError as exc:
            raise AdminAuditError(f"cannot write the audit record: {exc}") from exc

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
