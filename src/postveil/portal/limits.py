"""Limits per client address on code requests and wrong code entries.

The store limits codes per recipient of one message (``portal.codes_per_hour``,
``portal.code_attempts``). These limits count per client across all messages, so one
client cannot spread its guesses over many links. Nothing here does I/O: the web
handlers pass the client and the time, and log and audit what this module decides.

The counts live in the daemon's memory and start empty at each start. One table
contains at most ``max_clients`` clients. When a new client would exceed that, the least
recently seen client is dropped with its counts, so a flood of addresses costs
bounded memory, and a client that comes back after being dropped starts from zero.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

WINDOW = 3600.0
"""Length in seconds of the sliding window that the limits count in."""

IPv4or6Address = ipaddress.IPv4Address | ipaddress.IPv6Address
IPv4or6Network = ipaddress.IPv4Network | ipaddress.IPv6Network

UNKNOWN_CLIENT = "unknown"
"""Key of requests whose peer has no IP address (not expected on a TCP listener).
All such requests share one set of counts."""


def _parse_address(text: str) -> IPv4or6Address | None:
    """Parse one address as proxies write it: bare, ``[v6]``, ``[v6]:port`` or
    ``v4:port``. Return None for anything else (such as ``unknown``)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            # A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d.
            return address.ipv4_mapped
        if address.scope_id is not None:
            # A zone id ("fe80::1%eth0") is free text from the header: dropped, so
            # that only the address reaches the logs.
            return ipaddress.IPv6Address(address.packed)
    return address


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPv4or6Network]
) -> IPv4or6Address | None:
    """Return the address of the client behind a request.

    That is the peer, unless the peer is one of the ``trusted`` proxies. Then it is the
    right-most address of the X-Forwarded-For values (``forwarded_for``, in header
    order) that is not a trusted proxy. Each proxy appends the address it received the
    request from, so only the entries right of the first untrusted one were written by
    trusted proxies. When a trusted hop wrote an entry that does not parse, or every
    entry is trusted, the last trusted address seen is the client.
    Returns None when the peer is not an IP address.
    """
    current = _parse_address(peer) if peer else None
    if current is None:
        return None
    entries = [entry for value in forwarded_for for entry in value.split(",")]
    for entry in reversed(entries):
        if not _is_trusted(current, trusted):
            return current
        address = _parse_address(entry)
        if address is None:
            return current
        current = address
    return current


def _is_trusted(address: IPv4or6Address, trusted: Sequence[IPv4or6Network]) -> bool:
    return any(address in network for network in trusted)


def client_key(address: IPv4or6Address | None) -> str:
    """Return the key the limits count under: the IPv4 address, or the /64 network of
    an IPv6 address, because one IPv6 host usually has a whole /64 to choose from."""
    if address is None:
        return UNKNOWN_CLIENT
    if isinstance(address, ipaddress.IPv6Address):
        prefix = int(address) >> 64 << 64
        return str(ipaddress.IPv6Network((prefix, 64)))
    return str(address)


@dataclass(frozen=True)
class Rejection:
    """A request rejected because its client is over a limit."""

    retry_after: float
    """Seconds until the oldest counted event leaves the window."""

    first: bool
    """True for the first rejection of this limit since the client last got through, so
    the caller logs and audits one rejection per blocked period, not every request."""


class _Window:
    """Times of one kind of event of one client within the last WINDOW seconds."""

    __slots__ = ("times", "rejected")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.rejected = False
        """True while the client is over the limit, so that only the first rejection
        of a blocked period is marked ``first``."""

    def count(self, now: float, limit: int) -> Rejection | None:
        """Add an event at ``now``, or return the rejection when ``limit`` events are
        already in the window."""
        start = now - WINDOW
        while self.times and self.times[0] <= start:
            del self.times[0]
        if len(self.times) >= limit:
            first = not self.rejected
            self.rejected = True
            return Rejection(self.times[0] + WINDOW - now, first)
        self.rejected = False
        self.times.append(now)
        return None


class _Counts:
    """Recent code requests and wrong entries of one client."""

    __slots__ = ("requests", "wrong")

    def __init__(self) -> None:
        self.requests = _Window()
        self.wrong = _Window()

    def newest(self) -> float:
        return max(self.requests.times[-1:] + self.wrong.times[-1:], default=float("-inf"))


class ClientLimiter:
    """Counts of code requests and wrong entries per client key, at most
    ``max_clients`` keys (see the module text). Not thread-safe: the portal uses it
    from the event loop only.

    Each list of times contains at most its limit's number of entries, because a
    rejected request adds nothing. ``now`` is a monotonic time in seconds.
    """

    def __init__(self, *, codes_per_hour: int, wrong_codes_per_hour: int, max_clients: int) -> None:
        if min(codes_per_hour, wrong_codes_per_hour, max_clients) < 1:
            raise ValueError("client limits and max_clients must be at least 1")
        self.codes_per_hour = codes_per_hour
        self.wrong_codes_per_hour = wrong_codes_per_hour
        self.max_clients = max_clients
        self.dropped = 0
        """Clients dropped so far because the table was full."""
        self._clients: OrderedDict[str, _Counts] = OrderedDict()

    def __len__(self) -> int:
        return len(self._clients)

    def request_code(self, client: str, now: float) -> Rejection | None:
        """Count a code request, or return the rejection when the client has made
        ``codes_per_hour`` requests in the last hour."""
        return self._counts(client, now).requests.count(now, self.codes_per_hour)

    def begin_entry(self, client: str, now: float) -> Rejection | None:
        """Count a code entry as wrong until :meth:`end_entry` is called with
        ``wrong=False``, or return the rejection when the client has
        ``wrong_codes_per_hour`` wrong entries in the last hour.

        Counting before the code is checked keeps concurrent entries from one client
        from all passing the check while none of them is counted yet.
        """
        return self._counts(client, now).wrong.count(now, self.wrong_codes_per_hour)

    def end_entry(self, client: str, started: float, *, wrong: bool) -> None:
        """Keep the entry begun at ``started`` counted when the code was wrong, and
        remove it otherwise."""
        if wrong:
            return
        counts = self._clients.get(client)
        if counts is not None and started in counts.wrong.times:
            counts.wrong.times.remove(started)

    def _counts(self, client: str, now: float) -> _Counts:
        counts = self._clients.get(client)
        if counts is not None:
            self._clients.move_to_end(client)
            return counts
        self._drop_idle(now)
        if len(self._clients) >= self.max_clients:
            self._clients.popitem(last=False)
            self.dropped += 1
        counts = self._clients[client] = _Counts()
        return counts

    def _drop_idle(self, now: float) -> None:
        """Drop clients from the least recently seen end whose events all left the
        window. Stops at the first client with a recent event, so each call costs
        little, and idle clients go before the table is full."""
        while self._clients:
            oldest = next(iter(self._clients.values()))
            if oldest.newest() > now - WINDOW:
                return
            self._clients.popitem(last=False)
