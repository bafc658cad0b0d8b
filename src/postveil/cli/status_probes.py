"""Side-effect-free requests with which ``postveil status`` checks that a daemon replies.

Each probe connects to one configured address, sends one request to which the daemon
replies without a lookup, a cache change or an audit record, checks the reply's form
and closes the connection. Only postveil-portal logs the request, in its access line:

- postveil-milter: a milter option negotiation (SMFIC_OPTNEG), then SMFIC_QUIT.
- postveil-policyd's socketmap: the key ``[127.0.0.1]``. An IP literal has no TLS
  facts, so the daemon replies ``NOTFOUND`` before it consults its cache or DNS.
- postveil-policyd's policy delegation: ``request=smtpd_access_policy`` without a
  recipient, to which the daemon replies ``action=DUNNO`` without a lookup.
- postveil-portal: ``GET {base path}/healthz``, which replies ``OK``.

Every probe raises ProbeError, or its subclass ProbeTimeout, when the daemon does not
reply as expected within the deadline.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from postveil.config.milter import parse_milter_socket
from postveil.errors import PostveilError
from postveil.policyd.netstring import NetstringDecoder, NetstringError, encode


class ProbeError(PostveilError):
    """A daemon did not reply as expected; the message names what failed."""


class ProbeTimeout(ProbeError):
    """A daemon accepted no connection, or sent no complete reply, within the deadline."""


class ProbeAccessDenied(ProbeError):
    """The operating system denied this user access to a unix socket."""


@dataclass(frozen=True)
class Endpoint:
    """A stream socket address: a unix socket path, or a host and TCP port."""

    path: str | None = None
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.path is not None:
            return self.path
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def milter_endpoint(spec: str) -> Endpoint:
    """Return the address of a libmilter socket specification (``unix:/path``,
    ``inet:PORT@HOST``, ``inet6:PORT@HOST``). Raises ValueError for an invalid one."""
    family, address = parse_milter_socket(spec)
    if family == "unix":
        return Endpoint(path=address)
    port, _, host = address.partition("@")
    return Endpoint(host=host.strip("[]"), port=int(port))


def listen_endpoint(spec: str) -> Endpoint:
    """Return the address of a postveil-policyd listener (``unix:/path``, ``inet:HOST:PORT``)."""
    if spec.startswith("unix:"):
        return Endpoint(path=spec.removeprefix("unix:"))
    host, _, port = spec.removeprefix("inet:").rpartition(":")
    return Endpoint(host=host.strip("[]"), port=int(port))


def connect(endpoint: Endpoint, deadline: float) -> socket.socket:
    """Open a stream connection to ``endpoint`` before ``deadline`` (time.monotonic()).

    Raises ProbeTimeout, ProbeAccessDenied, or ProbeError with the operating system's reason.
    """
    remaining = _remaining(deadline)
    try:
        if endpoint.path is None:
            return socket.create_connection((endpoint.host, endpoint.port), timeout=remaining)
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.settimeout(remaining)
            connection.connect(endpoint.path)
        except BaseException:
            connection.close()
            raise
        return connection
    except TimeoutError:
        raise ProbeTimeout(f"no connection to {endpoint} within the timeout") from None
    except PermissionError:
        raise ProbeAccessDenied(
            f"permission denied on {endpoint}; run as root or as the daemon's user"
        ) from None
    except OSError as exc:
        raise ProbeError(f"cannot connect to {endpoint}: {exc.strerror or exc}") from None


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ProbeTimeout("no complete reply within the timeout")
    return remaining


def _receive(connection: socket.socket, deadline: float, size: int = 4096) -> bytes:
    """Receive up to ``size`` bytes; b"" means the peer closed the connection."""
    connection.settimeout(_remaining(deadline))
    try:
        return connection.recv(size)
    except TimeoutError:
        raise ProbeTimeout("no complete reply within the timeout") from None
    except OSError as exc:
        raise ProbeError(f"connection failed: {exc.strerror or exc}") from None


def _receive_exactly(connection: socket.socket, size: int, deadline: float, what: str) -> bytes:
    data = b""
    while len(data) < size:
        chunk = _receive(connection, deadline, size - len(data))
        if not chunk:
            raise ProbeError(f"connection closed before the end of the {what}")
        data += chunk
    return data


def _send(connection: socket.socket, data: bytes, deadline: float) -> None:
    connection.settimeout(_remaining(deadline))
    try:
        connection.sendall(data)
    except TimeoutError:
        raise ProbeTimeout("the request could not be sent within the timeout") from None
    except OSError as exc:
        raise ProbeError(f"sending the request failed: {exc.strerror or exc}") from None


# -- milter ------------------------------------------------------------------------

SMFIC_OPTNEG = b"O"
SMFIC_QUIT = b"Q"

MILTER_VERSION = 6
"""Milter protocol version offered, the one Postfix 2.6 and later offer."""

OFFERED_ACTIONS = 0x1FF
"""Every milter action (SMFIF_ADDHDRS to SMFIF_SETSYMLIST, pymilter's CURR_ACTS), as
Postfix offers them, so the milter negotiates as it does with Postfix."""

OFFERED_PROTOCOL = 0x1FFFFF
"""Every protocol flag, SMFIP_NOCONNECT (0x1) to SMFIP_HDR_LEADSPC (0x100000)."""

MAX_MILTER_REPLY = 65536
"""Largest option negotiation reply accepted, in bytes: three numbers and the macro
lists a milter requests."""

_OPTIONS = struct.Struct("!III")
_LENGTH = struct.Struct("!I")


@dataclass(frozen=True)
class MilterOptions:
    """The numbers of an SMFIC_OPTNEG packet: protocol version, actions and protocol flags."""

    version: int
    actions: int
    protocol: int


def milter_packet(command: bytes, data: bytes = b"") -> bytes:
    """Frame a milter command: 4-byte big-endian length of command and data, the
    command byte, then the data (libmilter's wire format)."""
    if len(command) != 1:
        raise ValueError(f"a milter command is one byte, not {command!r}")
    return _LENGTH.pack(len(data) + 1) + command + data


def optneg_request() -> bytes:
    """Return the SMFIC_OPTNEG packet that offers what Postfix offers."""
    return milter_packet(
        SMFIC_OPTNEG, _OPTIONS.pack(MILTER_VERSION, OFFERED_ACTIONS, OFFERED_PROTOCOL)
    )


def parse_milter_length(header: bytes) -> int:
    """Return the length of command and data that a 4-byte packet header announces.

    Raises ProbeError for 0, which has no command byte, and for more than MAX_MILTER_REPLY.
    """
    (length,) = _LENGTH.unpack(header)
    if length == 0 or length > MAX_MILTER_REPLY:
        raise ProbeError(f"invalid milter reply length {length}")
    return length


def parse_optneg_reply(packet: bytes) -> MilterOptions:
    """Parse a reply packet's command and data (without the length); raises ProbeError
    unless it is SMFIC_OPTNEG with the three numbers. Macro lists after them are ignored."""
    command, data = packet[:1], packet[1:]
    if command != SMFIC_OPTNEG:
        raise ProbeError(f"expected an option negotiation reply ('O'), got command {command!r}")
    if len(data) < _OPTIONS.size:
        raise ProbeError(
            f"option negotiation reply has {len(data)} bytes of data, expected at least {_OPTIONS.size}"
        )
    return MilterOptions(*_OPTIONS.unpack_from(data))


def probe_milter(endpoint: Endpoint, timeout: float) -> MilterOptions:
    """Negotiate options with the milter at ``endpoint`` and end the session.

    libmilter creates the session's PostveilMilter on the negotiation and closes it on
    SMFIC_QUIT. Neither step writes an audit record or logs above DEBUG.
    """
    deadline = time.monotonic() + timeout
    with connect(endpoint, deadline) as connection:
        _send(connection, optneg_request(), deadline)
        header = _receive_exactly(connection, _LENGTH.size, deadline, "option negotiation reply")
        length = parse_milter_length(header)
        options = parse_optneg_reply(
            _receive_exactly(connection, length, deadline, "option negotiation reply")
        )
        # SMFIC_QUIT ends the session as Postfix ends one, not with a bare disconnect.
        _send(connection, milter_packet(SMFIC_QUIT), deadline)
    return options


_Reply = TypeVar("_Reply")

# -- policyd -----------------------------------------------------------------------

SOCKETMAP_REQUEST = encode(b"postveil [127.0.0.1]")
"""The socketmap probe: postveil-policyd ignores the map name, and replies NOTFOUND to
an IP literal key before it reads its cache or queries DNS."""

SOCKETMAP_REPLY = b"NOTFOUND "

MAX_SOCKETMAP_REPLY = 100_000
"""Largest socketmap reply accepted, in bytes (Postfix's limit, socketmap_table(5))."""

POLICY_REQUEST = b"request=smtpd_access_policy\n\n"
"""The policy delegation probe: without a recipient, postveil-policyd replies DUNNO
without a lookup."""

MAX_POLICY_REPLY = 8192


def parse_socketmap_reply(data: bytes) -> bytes:
    """Return the payload of the first netstring in ``data``.

    Raises ProbeError for bytes that are no netstring, and returns b"" for an incomplete one.
    """
    try:
        payloads = NetstringDecoder(MAX_SOCKETMAP_REPLY).feed(data)
    except NetstringError as exc:
        raise ProbeError(f"invalid socketmap reply: {exc}") from None
    return payloads[0] if payloads else b""


def probe_socketmap(endpoint: Endpoint, timeout: float) -> None:
    """Send SOCKETMAP_REQUEST and expect SOCKETMAP_REPLY; raises ProbeError otherwise."""
    # The decoder rejects a reply longer than MAX_SOCKETMAP_REPLY, so no byte limit here.
    payload = _exchange(
        endpoint,
        SOCKETMAP_REQUEST,
        timeout,
        lambda data: parse_socketmap_reply(data) or None,
        "socketmap reply",
    )
    if payload != SOCKETMAP_REPLY:
        raise ProbeError(f"expected the reply {SOCKETMAP_REPLY!r}, got {payload[:60]!r}")


def parse_policy_reply(data: bytes) -> str | None:
    """Return the action of a complete policy delegation reply, or None while ``data``
    lacks the empty line that ends it. Raises ProbeError when the reply has no action."""
    end = data.find(b"\n\n")
    if end < 0:
        return None
    for line in data[:end].split(b"\n"):
        name, equals, value = line.partition(b"=")
        if equals and name == b"action":
            return value.decode("utf-8", errors="replace")
    raise ProbeError("policy reply has no action= line")


def probe_policy(endpoint: Endpoint, timeout: float) -> str:
    """Send POLICY_REQUEST and return the reply's action; raises ProbeError."""
    return _exchange(
        endpoint, POLICY_REQUEST, timeout, parse_policy_reply, "policy reply", MAX_POLICY_REPLY
    )


def _exchange(
    endpoint: Endpoint,
    request: bytes,
    timeout: float,
    parse: Callable[[bytes], _Reply | None],
    what: str,
    max_bytes: int | None = None,
) -> _Reply:
    """Send ``request`` and read until ``parse`` returns the reply, which it does not do
    while the bytes read so far are incomplete. Raises ProbeError."""
    deadline = time.monotonic() + timeout
    with connect(endpoint, deadline) as connection:
        _send(connection, request, deadline)
        data = b""
        while True:
            chunk = _receive(connection, deadline)
            if not chunk:
                raise ProbeError(f"connection closed before a complete {what}")
            data += chunk
            if max_bytes is not None and len(data) > max_bytes:
                raise ProbeError(f"{what} exceeds {max_bytes} bytes")
            reply = parse(data)
            if reply is not None:
                return reply


# -- portal ------------------------------------------------------------------------

HEALTH_REPLY = b"OK\n"


def probe_http(host: str, port: int, path: str, *, https: bool, timeout: float) -> None:
    """Send ``GET path`` and expect status 200 with HEALTH_REPLY; raises ProbeError.

    HTTPS is spoken without certificate checks, because the certificate names the
    public host, not the listen address. The request carries no secret.
    """
    connection: http.client.HTTPConnection
    if https:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    where = str(Endpoint(host=host, port=port))
    try:
        connection.request("GET", path, headers={"User-Agent": "postveil-status"})
        response = connection.getresponse()
        body = response.read(len(HEALTH_REPLY) + 1)
    except TimeoutError:
        raise ProbeTimeout(f"no reply from {where} within the timeout") from None
    except PermissionError:
        raise ProbeAccessDenied(f"permission denied on {where}") from None
    except (OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ProbeError(f"HTTP request to {where} failed: {reason}") from None
    finally:
        connection.close()
    if response.status != 200 or body != HEALTH_REPLY:
        raise ProbeError(
            f"GET {path} on {where} returned status {response.status}, expected 200 and OK"
        )
