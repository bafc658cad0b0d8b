"""The ``milter`` section: how postveil-milter listens and fails."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from postveil.config.types import (
    Duration,
    PositiveDuration,
    PositiveSize,
    Section,
    check_socket_mode,
)


class MilterSection(Section):
    socket: str = "unix:/var/spool/postfix/postveil/milter.sock"
    """libmilter socket: ``unix:/path`` or ``inet:PORT@HOST`` (``inet6:`` for IPv6)."""

    socket_mode: str = "0660"
    """Permissions of a unix socket, octal. Postfix's smtpd must be able to connect."""

    socket_group: str | None = "postfix"
    """Group that owns a unix socket; null keeps the daemon's own group."""

    timeout: PositiveDuration = 600.0
    """How long libmilter waits for the MTA between commands. libmilter counts whole
    seconds in a C int, so at least 1s; fractions are rounded down."""

    shutdown_timeout: PositiveDuration = 8.0
    """After SIGTERM, how long messages in flight may take before the daemon exits."""

    max_message_size: PositiveSize = 50_000_000
    """Messages larger than this get ``oversize_action``."""

    oversize_action: Literal["tempfail", "reject", "accept"] = "tempfail"

    reinject: str = "127.0.0.1:10026"
    """``host:port`` of Postfix's re-injection smtpd, which must run without milters.
    Recipient groups other than the first get their version of the message through it."""

    tls_lookup_timeout: Duration = 15.0
    """Time budget for asking postveil-policyd (over its socketmap, ``policyd.
    socketmap_listen``) about a recipient domain the facts cache does not know yet.
    The milter asks only when routing would otherwise pass over TLS for the domain, and
    defers the message when the query fails or runs out of time. 0s skips the query,
    so unknown domains count as not requiring TLS."""

    tls_hold: PositiveDuration = 5 * 86400.0
    """When the milter routes a recipient by ``tls``, the message relies on Postfix
    requiring TLS for that domain at every delivery attempt. For this long afterwards
    postveil-policyd keeps returning at least ``encrypt`` for the domain, even if its
    requirement lapses meanwhile (an override removed, an MTA-STS policy expired).
    Set it to at least Postfix's ``maximal_queue_lifetime`` (5d by default)."""

    reinject_timeout: Duration = 60.0
    """Time limit of each step (connect, command, reply) of a re-injection SMTP
    transaction; past it the message is deferred."""

    reinject_deadline: PositiveDuration = 270.0
    """Time from the start of end-of-message work after which no copy is re-injected
    and the message is not accepted but deferred. A re-injection still running then is
    cut off. Keep it below Postfix's ``milter_content_timeout`` (300s by default), which
    bounds Postfix's wait for the milter's reply (docs/milter.md)."""

    reinject_store: str | None = "/var/lib/postveil/reinjected.sqlite3"
    """SQLite file of the copies already re-injected for messages not yet accepted, so a
    retry does not queue them again. null: no store, and such retries deliver duplicates."""

    reinject_store_expiry: PositiveDuration = 6 * 86400.0
    """How long a stored copy is skipped on retries: a little over Postfix's
    ``maximal_queue_lifetime`` (5d), the longest a sending Postfix retries a message."""

    reinject_store_max_entries: int = Field(default=100_000, ge=100, le=100_000_000)
    """Most copies stored; beyond it the oldest are dropped (their retries get duplicates)."""

    check_recipient_rewrites: bool = True
    """Look recipients routed by tls up in Postfix's rewrite maps and next-hop settings
    (relayhost, transport_maps; docs/milter.md). Turn it off only for a milter on another
    host than Postfix, which cannot read them."""

    postfix_config_directory: str | None = None
    """Postfix's configuration directory, read with ``postconf -c`` for the maps that
    rewrite recipients after routing. Unset: postconf's default (``MAIL_CONFIG``, else
    the directory Postfix was built with)."""

    @field_validator("socket")
    @classmethod
    def _check_socket(cls, value: str) -> str:
        parse_milter_socket(value)
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

    @field_validator("timeout")
    @classmethod
    def _check_timeout(cls, value: float) -> float:
        if value < 1:
            raise ValueError(f"invalid milter timeout {value:g}s: libmilter counts whole seconds, use at least 1s")
        return value

    _check_mode = field_validator("socket_mode", mode="before")(check_socket_mode)

    @property
    def socket_mode_bits(self) -> int:
        return int(self.socket_mode, 8)

    @property
    def unix_socket_path(self) -> str | None:
        """Path of a ``unix:``/``local:`` socket; None for an inet socket."""
        family, address = parse_milter_socket(self.socket)
        return address if family == "unix" else None


# sun_path in struct sockaddr_un has room for 108 bytes on Linux, the terminating NUL included.
_MAX_UNIX_PATH_BYTES = 107

_SOCKET_FORMS = "expected 'unix:/absolute/path', 'inet:PORT@HOST' or 'inet6:PORT@HOST'"


def parse_milter_socket(value: str) -> tuple[Literal["unix", "inet", "inet6"], str]:
    """Split a libmilter socket specification into (family, address).

    The address is the absolute path for ``unix:`` and ``local:``, and ``PORT@HOST``
    for ``inet:`` and ``inet6:``. Raises ValueError naming the value and the expected form.
    """
    prefix, colon, address = value.partition(":")
    if not colon or prefix not in ("unix", "local", "inet", "inet6"):
        raise ValueError(f"invalid milter socket {value!r}: {_SOCKET_FORMS}")
    if prefix in ("unix", "local"):
        if not address.startswith("/") or address.endswith("/"):
            raise ValueError(
                f"invalid milter socket {value!r}: expected an absolute file path after '{prefix}:', "
                "for example 'unix:/var/spool/postfix/postveil/milter.sock'"
            )
        if len(address.encode()) > _MAX_UNIX_PATH_BYTES:
            raise ValueError(
                f"invalid milter socket {value!r}: a unix socket path may have at most "
                f"{_MAX_UNIX_PATH_BYTES} bytes"
            )
        return "unix", address
    port, at, host = address.partition("@")
    if not at or not host or any(char.isspace() for char in host):
        raise ValueError(
            f"invalid milter socket {value!r}: expected PORT@HOST after '{prefix}:', "
            f"for example '{prefix}:8899@{'127.0.0.1' if prefix == 'inet' else '::1'}'"
        )
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid port in milter socket {value!r}: expected PORT@HOST with PORT 1-65535")
    return prefix, address  # type: ignore[return-value]
