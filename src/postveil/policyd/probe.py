"""STARTTLS probe of one MX host: does it offer TLS, which version and cipher, is the
certificate valid for the MX name.

A probe never sends mail: it stops after the TLS handshake with QUIT.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import replace

from postveil.config.policyd import PolicydSection
from postveil.policyd.dane import mx_hosts
from postveil.policyd.dns import DnsClient
from postveil.tlsfacts.facts import DomainFacts, ProbeResult

MAX_REPLY_LINES = 100
MAX_LINE_BYTES = 2048


class _ProbeFailed(Exception):
    def __init__(self, category: str) -> None:
        super().__init__(category)
        self.category = category


async def _read_reply(reader: asyncio.StreamReader) -> tuple[int, list[str]]:
    lines: list[str] = []
    for _ in range(MAX_REPLY_LINES):
        raw = await reader.readline()
        if not raw:
            raise _ProbeFailed("connection-closed")
        line = raw[:MAX_LINE_BYTES].decode("ascii", errors="replace").rstrip("\r\n")
        if len(line) < 3 or not line[:3].isdigit():
            raise _ProbeFailed("protocol")
        lines.append(line[4:])
        if line[3:4] != "-":
            return int(line[:3]), lines
    raise _ProbeFailed("protocol")


async def _starttls_handshake(
    address: str, port: int, mx: str, context: ssl.SSLContext, helo: str
) -> tuple[str | None, str | None]:
    """Run EHLO and STARTTLS; return (TLS version, cipher) read before the connection closes."""
    reader, writer = await asyncio.open_connection(address, port)
    try:
        code, _ = await _read_reply(reader)
        if code != 220:
            raise _ProbeFailed("greeting")
        writer.write(f"EHLO {helo}\r\n".encode("ascii"))
        code, lines = await _read_reply(reader)
        if code != 250:
            raise _ProbeFailed("ehlo")
        if not any(line.upper().split(" ")[0] == "STARTTLS" for line in lines[1:]):
            raise _ProbeFailed("no-starttls")
        writer.write(b"STARTTLS\r\n")
        code, _ = await _read_reply(reader)
        if code != 220:
            raise _ProbeFailed("starttls-rejected")
        try:
            await writer.start_tls(context, server_hostname=mx)
        except ssl.SSLCertVerificationError:
            raise
        except (ssl.SSLError, ConnectionError) as exc:
            raise _ProbeFailed("handshake") from exc
        tls = writer.get_extra_info("ssl_object")
        cipher = tls.cipher() if tls is not None else None
        version = tls.version() if tls is not None else None
        writer.write(b"QUIT\r\n")
        return version, cipher[0] if cipher else None
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass


class Prober:
    """Runs probes with the configured port, CA bundle, timeout and concurrency limit."""

    def __init__(self, config: PolicydSection, dns: DnsClient) -> None:
        self._config = config
        self._dns = dns
        self._semaphore = asyncio.Semaphore(config.probe_concurrency)
        self._verifying = ssl.create_default_context(cafile=config.probe_ca_file)
        self._lenient = ssl.create_default_context()
        self._lenient.check_hostname = False
        self._lenient.verify_mode = ssl.CERT_NONE

    async def probe_host(self, mx: str, now: float) -> ProbeResult:
        """Probe one MX host; failures become a result with ``error`` set, never an exception.

        A certificate that fails validation is retried without validation, so the
        result still records whether STARTTLS works and with which protocol.
        """
        async with self._semaphore:
            try:
                async with asyncio.timeout(self._config.probe_timeout):
                    return await self._probe(mx, now)
            except TimeoutError:
                return ProbeResult(mx, now, starttls=False, error="timeout")

    async def _probe(self, mx: str, now: float) -> ProbeResult:
        try:
            addresses = await self._dns.addresses(mx)
        except Exception:  # noqa: BLE001 - any DNS problem means the host cannot be probed
            return ProbeResult(mx, now, starttls=False, error="dns")
        if not addresses:
            return ProbeResult(mx, now, starttls=False, error="no-address")
        address = addresses[0]
        port = self._config.smtp_port
        helo = self._config.probe_helo_name
        cert_valid = True
        try:
            try:
                version, cipher = await _starttls_handshake(
                    address, port, mx, self._verifying, helo
                )
            except ssl.SSLCertVerificationError:
                cert_valid = False
                version, cipher = await _starttls_handshake(address, port, mx, self._lenient, helo)
        except _ProbeFailed as exc:
            return ProbeResult(mx, now, starttls=False, error=exc.category)
        except ssl.SSLCertVerificationError:
            return ProbeResult(mx, now, starttls=False, error="handshake")
        except OSError:
            return ProbeResult(mx, now, starttls=False, error="connect")
        return ProbeResult(
            mx,
            now,
            starttls=True,
            tls_version=version,
            cipher=cipher,
            cert_valid=cert_valid,
            error=None if cert_valid else "certificate",
        )

    async def probe_domain(self, facts: DomainFacts, now: float) -> DomainFacts:
        """Probe every MX of the domain and fold the results into its facts.

        Raises DnsTemporaryFailure when the MX lookup fails; then nothing changes.
        """
        hosts, _ = await mx_hosts(self._dns, facts.domain)
        results = await asyncio.gather(*(self.probe_host(host, now) for host in hosts))
        return apply_probe_results(facts, tuple(results), now)


def apply_probe_results(
    facts: DomainFacts, results: tuple[ProbeResult, ...], now: float
) -> DomainFacts:
    """Record probe results and update when TLS was first and last seen.

    A probe that reached a server and found no STARTTLS on any MX counts as failed.
    Results that never reached a server (DNS, connect, timeout) leave the counter
    alone, because they tell nothing about TLS support.
    """
    tls_seen = any(result.starttls for result in results)
    reached = any(result.error not in ("dns", "no-address", "connect", "timeout") for result in results)
    if tls_seen:
        return replace(
            facts,
            probes=results,
            last_probe_at=now,
            tls_first_seen=facts.tls_first_seen or now,
            tls_last_seen=now,
            failed_probes=0,
        )
    return replace(
        facts,
        probes=results,
        last_probe_at=now,
        failed_probes=facts.failed_probes + 1 if reached else facts.failed_probes,
    )
