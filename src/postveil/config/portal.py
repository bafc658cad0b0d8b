"""The ``portal`` section: where messages for portal recipients go, and postveil-portal.

The first two keys serve the milter, which sends the copy for portal recipients to
``intake_address``. The others serve the built-in portal (docs/portal.md): its mail
intake (``postveil portal deliver``, run by Postfix's pipe transport) and its web
daemon (``postveil-portal``). An installation with a portal of its own sets only the
first two.
"""

from __future__ import annotations

import ipaddress
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from postveil.config.routing import _HEADER_NAME_RE
from postveil.config.types import PositiveDuration, PositiveSize, Section, parse_host_port
from postveil.portal.budget import DEFAULT_BUDGET_READS, read_cost

_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
"""The IPv4-mapped IPv6 addresses, ``::ffff:a.b.c.d``."""


class PortalSection(Section):
    intake_address: str | None = None
    """Address of the portal's mail intake. Null: no portal, so the ``portal`` method is
    never available."""

    recipient_header: str = "X-Postveil-Portal-Recipient"
    """Header added once per original recipient to the copy sent to the portal."""

    seal_key_file: str | None = None
    """Key with which the milter seals the recipient headers of each portal copy, and
    with which ``postveil portal deliver`` checks them. Without a valid seal the
    built-in portal rejects a message, so no one can make it notify an address by
    mailing the intake address directly. Null: no seal is added (a portal of your own),
    and the built-in portal cannot be used. ``postveil portal init`` writes it."""

    seal_max_age: PositiveDuration = 7 * 86400.0
    """Oldest seal the intake accepts. At least Postfix's ``maximal_queue_lifetime``
    (5d by default), so a copy that waited in the queue is still taken."""

    store_directory: str = "/var/lib/postveil/portal"
    """Directory of the built-in portal's database and encrypted messages."""

    key_file: str = "/etc/postveil/portal.key"
    """Master key of the built-in portal (64 hex digits, mode 0600). Each message is
    encrypted with a key of its own, which is kept encrypted with this one."""

    previous_key_files: tuple[str, ...] = ()
    """Earlier master keys, read only to decrypt the keys of messages stored before
    ``key_file`` was replaced. ``postveil portal rekey`` encrypts those keys again with
    ``key_file``; after that, remove the old files from this list (docs/portal.md,
    "Rotating the master key")."""

    base_url: str | None = None
    """Address of the portal's web pages as recipients reach them, for example
    ``https://secure.example.org``; the links in notifications start with it. Required
    by the built-in portal, and it must be https unless the host is a loopback
    address."""

    listen: str = "127.0.0.1:8480"
    """``host:port`` on which ``postveil-portal`` serves its pages. Without
    ``tls_certificate`` it speaks plain HTTP and must listen on a loopback address,
    behind a reverse proxy that terminates TLS."""

    tls_certificate: str | None = None
    """PEM certificate chain for serving HTTPS directly; needs ``tls_key``."""

    tls_key: str | None = None
    """PEM private key of ``tls_certificate``."""

    organisation: str = "postveil"
    """Name shown to recipients in notifications and on the pages."""

    notify_from: str | None = None
    """Sender address of notifications and verification codes. Null: ``no-reply@``
    followed by the domain of ``intake_address``."""

    notify_relay: str = "127.0.0.1:10026"
    """``host:port`` of the SMTP server that sends notifications and codes, on a
    loopback address because the portal speaks plain SMTP to it. The default is
    Postfix's re-injection listener (conf/postfix/master.cf.reinject), which runs
    without milters: a notification carries no health information."""

    retention: PositiveDuration = 30 * 86400.0
    """How long a message waits for pickup before it is deleted."""

    code_lifetime: PositiveDuration = 600.0
    """How long a verification code is valid."""

    code_attempts: int = Field(default=5, ge=1, le=20)
    """Wrong entries after which a code is void and a new one must be requested."""

    codes_per_hour: int = Field(default=5, ge=1, le=60)
    """Codes sent to one recipient of one message per hour, at most."""

    client_codes_per_hour: int = Field(default=20, ge=1, le=1000)
    """Code requests from one client address per hour, at most, across all messages.
    An IPv6 client is counted per /64 network."""

    client_wrong_codes_per_hour: int = Field(default=20, ge=1, le=1000)
    """Wrong code entries from one client address per hour, at most, across all
    messages. Past it, every code entry from that client is rejected until the oldest
    wrong entry is an hour old."""

    max_tracked_clients: int = Field(default=10_000, ge=100, le=1_000_000)
    """Client addresses whose code requests and wrong entries postveil-portal keeps
    in memory. When a new client would exceed it, the least recently seen client's
    counts are dropped. Each client takes about 350 bytes plus 35 bytes per counted
    event (docs/portal.md)."""

    trusted_proxies: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    """Addresses or networks (``127.0.0.1``, ``10.0.0.0/8``) of reverse proxies whose
    X-Forwarded-For header names the client. The default trusts loopback, where the
    documented reverse proxy connects from. A request from a trusted proxy without the
    header counts under the proxy's own address."""

    notify_sender: Literal["never", "first_open"] = "never"
    """``first_open``: mail the envelope sender a notice the first time each recipient
    opens the message. The notice names the recipient and the original's Message-ID
    and Date, never its subject."""

    session_lifetime: PositiveDuration = 900.0
    """How long a recipient stays signed in after entering the code."""

    view_time_limit: PositiveDuration = 10.0
    """Maximum time the portal spends parsing a message for its page or for one
    attachment. A message that takes longer is offered only as a whole download."""

    write_timeout: PositiveDuration = 60.0
    """Maximum time postveil-portal waits for a client to take the next part of a
    response: the whole of a page, or the next 256 KB chunk of a download. A client
    that takes nothing for that long loses its connection, so a client that stops
    reading does not hold memory of the read budget."""

    max_message_size: PositiveSize = 50_000_000
    """Largest message the intake stores; a larger one is returned to Postfix as a
    permanent failure, so the sender gets a bounce."""

    read_memory_budget: PositiveSize | None = None
    """Bytes that postveil-portal keeps in memory at once for decrypted messages of page views,
    downloads and attachment downloads. Each read reserves 3.25 times the message's
    size plus 16 MiB (:func:`postveil.portal.budget.read_cost`), so the budget must be
    at least that for a message of ``max_message_size``. Null: enough for two such
    reads. A read that finds no room waits, and after a while gets status 503."""

    @field_validator("intake_address", "notify_from")
    @classmethod
    def _check_address(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and (value.count("@") != 1 or " " in value or value.startswith("@")):
            raise ValueError(f"invalid {info.field_name} {value!r}: expected 'user@example.org'")
        return value

    @field_validator("recipient_header")
    @classmethod
    def _check_header(cls, value: str) -> str:
        if not _HEADER_NAME_RE.match(value):
            raise ValueError(
                f"invalid header name {value!r}: expected printable ASCII without ':' or spaces"
            )
        return value

    @field_validator("listen", "notify_relay")
    @classmethod
    def _check_host_port(cls, value: str) -> str:
        host, port = parse_host_port(value, 0)
        if not host or port == 0:
            raise ValueError(
                f"invalid address {value!r}: expected 'host:port', for example '127.0.0.1:8480'"
            )
        return value

    @field_validator("notify_relay")
    @classmethod
    def _check_relay_is_local(cls, value: str) -> str:
        # Codes travel in these messages, and mailer.send speaks plain SMTP.
        host, _ = parse_host_port(value, 0)
        if not _is_loopback(host):
            raise ValueError(
                f"invalid notify_relay {value!r}: the portal sends verification codes over "
                "plain SMTP, so the relay must be on this host (a loopback address such as "
                "127.0.0.1:10026); let Postfix carry the mail on with TLS"
            )
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _require_proxy_list(cls, value: object) -> object:
        if isinstance(value, str):
            raise ValueError(
                f"invalid trusted_proxies {value!r}: expected a list, for example [{value}]"
            )
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        normalised = []
        for entry in value:
            try:
                network = ipaddress.ip_network(entry.strip(), strict=True)
            except ValueError as exc:
                raise ValueError(
                    f"invalid trusted_proxies entry {entry!r}: expected an IP address or a "
                    f"network such as '10.0.0.0/8' ({exc})"
                ) from None
            if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_IPV4_MAPPED):
                # postveil-portal reads a peer or X-Forwarded-For entry of the form
                # ::ffff:a.b.c.d as the IPv4 address, which no IPv6 network contains.
                offset = int(network.network_address) - int(_IPV4_MAPPED.network_address)
                ipv4 = ipaddress.IPv4Network((offset, network.prefixlen - 96))
                raise ValueError(
                    f"invalid trusted_proxies entry {entry!r}: an IPv4-mapped address never "
                    "matches, because postveil-portal reads IPv4 clients of a dual-stack "
                    f"listener as IPv4 addresses; write {ipv4}"
                )
            normalised.append(str(network))
        return tuple(normalised)

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if (
            parts.scheme not in ("https", "http")
            or not parts.hostname
            or parts.query
            or parts.fragment
        ):
            raise ValueError(
                f"invalid base_url {value!r}: expected an address such as 'https://secure.example.org'"
            )
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ValueError(
                f"invalid base_url {value!r}: links to the portal must use https "
                "(http is allowed only for a loopback host, for tests)"
            )
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_tls_pair(self) -> PortalSection:
        if (self.tls_certificate is None) != (self.tls_key is None):
            raise ValueError("set both tls_certificate and tls_key, or neither")
        host, _ = parse_host_port(self.listen, 0)
        if self.tls_certificate is None and not _is_loopback(host):
            raise ValueError(
                f"listen {self.listen!r} is not a loopback address, and without "
                "tls_certificate the portal would serve plain HTTP to the network; "
                "set tls_certificate and tls_key, or listen on 127.0.0.1 behind a TLS proxy"
            )
        return self

    @model_validator(mode="after")
    def _check_read_budget(self) -> PortalSection:
        needed = read_cost(self.max_message_size)
        if self.read_memory_budget is not None and self.read_memory_budget < needed:
            raise ValueError(
                f"read_memory_budget {self.read_memory_budget} is too small: one read of a "
                f"message of max_message_size ({self.max_message_size} bytes) reserves "
                f"{needed} bytes (3.25 times the size plus 16 MiB); set at least {needed} "
                "or lower max_message_size"
            )
        return self

    @property
    def read_budget(self) -> int:
        """``read_memory_budget``, or the default for ``max_message_size``."""
        if self.read_memory_budget is not None:
            return self.read_memory_budget
        return DEFAULT_BUDGET_READS * read_cost(self.max_message_size)

    @property
    def listen_address(self) -> tuple[str, int]:
        return parse_host_port(self.listen, 0)

    @property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(entry) for entry in self.trusted_proxies)

    @property
    def relay_address(self) -> tuple[str, int]:
        return parse_host_port(self.notify_relay, 0)

    @property
    def sender_address(self) -> str:
        """``notify_from``, or no-reply at the intake address's domain."""
        if self.notify_from is not None:
            return self.notify_from
        if self.intake_address is not None:
            return "no-reply@" + self.intake_address.rpartition("@")[2]
        return "no-reply@localhost"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
