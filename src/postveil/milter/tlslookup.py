"""Ask postveil-policyd about a domain the shared cache does not know yet.

postveil-policyd starts discovering a new domain when Postfix queries it at RCPT TO.
It replies to Postfix at once, so the facts may not be in the cache by end of message. A
socketmap query makes postveil-policyd look the domain up live (MTA-STS and DANE,
within ``policyd.lookup_timeout``) and store the facts before it replies, exactly as
it does for Postfix's smtp client.
"""

from __future__ import annotations

import socket

from postveil.errors import TemporaryFailure
from postveil.policyd.netstring import NetstringDecoder, NetstringError, encode

MAP_NAME = b"postveil"
MAX_REPLY = 100_000


class TlsLookupFailure(TemporaryFailure):
    """postveil-policyd sent no reply, or replied TEMP, within the time budget."""


def query_policy(listen: str, domain: str, timeout: float) -> str:
    """Send one socketmap request for ``domain`` to ``listen`` and return the reply text.

    ``listen`` uses postveil-policyd's syntax (``inet:HOST:PORT`` or ``unix:/path``).
    The reply is ``OK <policy>``, ``NOTFOUND `` or ``PERM <reason>``; ``TEMP`` and
    every connection problem raise TlsLookupFailure.
    """
    family, address = _address(listen)
    try:
        with socket.socket(family, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout)
            connection.connect(address)
            connection.sendall(encode(MAP_NAME + b" " + domain.encode("ascii", "replace")))
            decoder = NetstringDecoder(MAX_REPLY)
            while True:
                chunk = connection.recv(65536)
                if not chunk:
                    raise TlsLookupFailure(f"postveil-policyd at {listen} closed the connection")
                replies = decoder.feed(chunk)
                if replies:
                    break
    except (OSError, NetstringError) as exc:
        raise TlsLookupFailure(f"socketmap query to {listen} for {domain} failed: {exc}") from exc
    reply = replies[0].decode("utf-8", "replace")
    if reply.startswith("TEMP"):
        raise TlsLookupFailure(f"postveil-policyd could not look {domain} up now: {reply[5:]}")
    return reply


def _address(listen: str) -> tuple[socket.AddressFamily, str | tuple[str, int]]:
    kind, _, rest = listen.partition(":")
    if kind == "unix":
        return socket.AF_UNIX, rest
    host, _, port = rest.rpartition(":")
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    return family, (host.strip("[]"), int(port))
