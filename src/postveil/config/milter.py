"""The ``milter`` section: how postveil-milter listens and fails."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from postveil.config.types import Duration, Section, Size


class MilterSection(Section):
    socket: str = "unix:/var/spool/postfix/postveil/milter.sock"
    """libmilter socket: ``unix:/path`` or ``inet:PORT@HOST`` (``inet6:`` for IPv6)."""

    socket_mode: str = "0660"
    """Permissions of a unix socket, octal. Postfix's smtpd must be able to connect."""

    socket_group: str | None = "postfix"
    """Group that owns a unix socket; null keeps the daemon's own group."""

    timeout: Duration = 600.0
    """How long libmilter waits for the MTA between commands."""

    shutdown_timeout: Duration = 8.0
    """After SIGTERM, how long messages in flight may take before the daemon exits."""

    max_message_size: Size = 50_000_000
    """Messages larger than this get ``oversize_action``."""

    oversize_action: Literal["tempfail", "reject", "accept"] = "tempfail"

    reinject: str = "127.0.0.1:10026"
    """``host:port`` of Postfix's re-injection smtpd, which must run without milters.
    Recipient groups other than the first get their version of the message through it."""

    reinject_timeout: Duration = 60.0
    """Time limit of one re-injection SMTP transaction; past it the message is deferred."""

    @field_validator("socket")
    @classmethod
    def _check_socket(cls, value: str) -> str:
        if not value.startswith(("unix:", "local:", "inet:", "inet6:")):
            raise ValueError(
                f"invalid milter socket {value!r}: expected 'unix:/path', "
                "'inet:PORT@HOST' or 'inet6:PORT@HOST'"
            )
        return value

    @field_validator("reinject")
    @classmethod
    def _check_reinject(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"invalid reinject address {value!r}: expected 'host:port', for example '127.0.0.1:10026'")
        return value

    @property
    def reinject_address(self) -> tuple[str, int]:
        host, _, port = self.reinject.rpartition(":")
        return host.strip("[]"), int(port)

    @field_validator("socket_mode")
    @classmethod
    def _check_mode(cls, value: str) -> str:
        try:
            mode = int(value, 8)
        except (TypeError, ValueError):
            raise ValueError(f"invalid socket_mode {value!r}: expected an octal string like '0660'")
        if not 0 <= mode <= 0o777:
            raise ValueError(f"invalid socket_mode {value!r}: expected 0000-0777")
        return value

    @property
    def socket_mode_bits(self) -> int:
        return int(self.socket_mode, 8)
