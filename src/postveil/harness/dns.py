"""An authoritative DNS server on loopback whose records each test defines.

It answers UDP and TCP on one address (port 53 by default, on an address from
:func:`postveil.harness.net.allocate_address`). Per name it can also answer
SERVFAIL or stay silent, and it sets the AD bit for names under zones marked
secure, which stands in for a validating resolver in DANE tests.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import struct
import threading
from collections import defaultdict
from dataclasses import dataclass, field

from dnslib import QTYPE, RCODE, RR, DNSRecord

from postveil.harness.net import assert_loopback

log = logging.getLogger(__name__)


@dataclass
class _Zone:
    records: dict[tuple[str, str], list[RR]] = field(default_factory=lambda: defaultdict(list))
    servfail: set[str] = field(default_factory=set)
    silent: set[str] = field(default_factory=set)
    secure_suffixes: set[str] = field(default_factory=set)


def _norm(name: str) -> str:
    return name.rstrip(".").lower()


class DnsFixture:
    """Authoritative test DNS server. Use as a context manager or call start/stop."""

    def __init__(self, address: str, port: int = 53) -> None:
        assert_loopback(address)
        self.address = address
        self.port = port
        self.queries: list[tuple[str, str]] = []
        self._zone = _Zone()
        self._lock = threading.Lock()
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []

    # -- records ---------------------------------------------------------------

    def add(self, name: str, rtype: str, value: str | list[str], ttl: int = 300) -> None:
        """Add a record. TXT takes a list of character-strings (joined by the reader)."""
        rtype = rtype.upper()
        if rtype == "TXT":
            parts = [value] if isinstance(value, str) else list(value)
            quoted = " ".join('"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in parts)
            zone_line = f"{_norm(name)}. {ttl} IN TXT {quoted}"
        else:
            zone_line = f"{_norm(name)}. {ttl} IN {rtype} {value}"
        records = RR.fromZone(zone_line)
        with self._lock:
            self._zone.records[(_norm(name), rtype)].extend(records)

    def remove(self, name: str, rtype: str | None = None) -> None:
        with self._lock:
            for key in list(self._zone.records):
                if key[0] == _norm(name) and (rtype is None or key[1] == rtype.upper()):
                    del self._zone.records[key]

    def set_servfail(self, name: str, enabled: bool = True) -> None:
        with self._lock:
            (self._zone.servfail.add if enabled else self._zone.servfail.discard)(_norm(name))

    def set_silent(self, name: str, enabled: bool = True) -> None:
        """Drop queries for ``name`` so the client times out."""
        with self._lock:
            (self._zone.silent.add if enabled else self._zone.silent.discard)(_norm(name))

    def set_secure(self, zone: str, enabled: bool = True) -> None:
        """Mark answers for names at or under ``zone`` as DNSSEC-validated (AD bit)."""
        with self._lock:
            suffixes = self._zone.secure_suffixes
            (suffixes.add if enabled else suffixes.discard)(_norm(zone))

    # -- replies ---------------------------------------------------------------

    def answer(self, packet: bytes) -> bytes | None:
        """Build the response to one query packet, or None to stay silent."""
        try:
            request = DNSRecord.parse(packet)
        except Exception:  # dnslib raises several types for garbage input
            log.warning("dns fixture: dropped an unparsable packet of %d bytes", len(packet))
            return None
        reply = request.reply()
        reply.header.aa = 1
        if not request.questions:
            reply.header.rcode = RCODE.FORMERR
            return reply.pack()

        question = request.q
        name = _norm(str(question.qname))
        rtype = QTYPE.get(question.qtype, str(question.qtype))
        with self._lock:
            self.queries.append((name, rtype))
            if name in self._zone.silent:
                return None
            if name in self._zone.servfail:
                reply.header.rcode = RCODE.SERVFAIL
                reply.header.aa = 0
                return reply.pack()
            answers = list(self._zone.records.get((name, rtype), []))
            if not answers and rtype != "CNAME":
                answers = list(self._zone.records.get((name, "CNAME"), []))
            exists = any(key[0] == name or key[0].endswith("." + name) for key in self._zone.records)
            secure = any(name == s or name.endswith("." + s) for s in self._zone.secure_suffixes)

        for record in answers:
            reply.add_answer(record)
        if not answers and not exists:
            reply.header.rcode = RCODE.NXDOMAIN
        # request.reply() copies the query's flags; AD in a reply must mean "validated".
        reply.header.ad = 1 if secure else 0
        return reply.pack()

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> DnsFixture:
        fixture = self

        class UdpHandler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                response = fixture.answer(data)
                if response is not None:
                    sock.sendto(response, self.client_address)

        class TcpHandler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn: socket.socket = self.request
                conn.settimeout(5)
                try:
                    while True:
                        header = _recv_exact(conn, 2)
                        if header is None:
                            return
                        data = _recv_exact(conn, struct.unpack("!H", header)[0])
                        if data is None:
                            return
                        response = fixture.answer(data)
                        if response is None:
                            return
                        conn.sendall(struct.pack("!H", len(response)) + response)
                except OSError:
                    return

        class Udp(socketserver.ThreadingUDPServer):
            allow_reuse_address = True
            daemon_threads = True

        class Tcp(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        udp = Udp((self.address, self.port), UdpHandler)
        if self.port == 0:
            self.port = udp.server_address[1]
        tcp = Tcp((self.address, self.port), TcpHandler)
        self._servers = [udp, tcp]
        for server in self._servers:
            thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True, name="dns-fixture")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers = []

    def __enter__(self) -> DnsFixture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def nameserver(self) -> str:
        """The ``host:port`` string for the ``dns.nameservers`` config key."""
        return f"{self.address}:{self.port}"


def _recv_exact(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data
