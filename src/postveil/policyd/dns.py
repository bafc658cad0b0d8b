"""DNS lookups for MTA-STS and DANE through dnspython, configured by the ``dns`` section.

Each lookup returns the records, or an empty result for NXDOMAIN and NODATA (the
name has no such record). SERVFAIL, timeouts and unreachable servers raise
:class:`DnsTemporaryFailure`: callers must never read those as "no record".
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.nameserver
import dns.rdatatype
import dns.resolver

from postveil.config.dns import DnsSection
from postveil.errors import TemporaryFailure


class DnsTemporaryFailure(TemporaryFailure):
    """A lookup timed out or the server answered SERVFAIL/REFUSED; retry later."""


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    records: tuple[dns.rdata.Rdata, ...]
    authenticated: bool
    """The response carried the AD bit (DNSSEC validated by the resolver)."""
    nxdomain: bool = False


class DnsClient:
    """Async resolver that asks the configured nameservers with the DO bit set."""

    def __init__(self, section: DnsSection) -> None:
        if section.nameservers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(host, port)
                for host, port in section.nameserver_addresses
            ]
        else:
            resolver = dns.asyncresolver.Resolver()
        resolver.timeout = section.timeout
        resolver.lifetime = section.lifetime
        # The DO bit asks a validating resolver to report validation in the AD bit
        # (RFC 4035 section 3.2.3), so the query itself does not need AD set.
        resolver.use_edns(0, dns.flags.DO, 1232)
        resolver.flags = dns.flags.RD
        resolver.cache = None
        self._resolver = resolver
        self.require_dnssec_ad = section.require_dnssec_ad

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        """Look up ``name``/``rdtype``; raises DnsTemporaryFailure on SERVFAIL or timeout."""
        try:
            answer = await self._resolver.resolve(
                name, rdtype, raise_on_no_answer=False, search=False
            )
        except dns.resolver.NXDOMAIN:
            return DnsAnswer((), False, nxdomain=True)
        except dns.resolver.NoNameservers as exc:
            raise DnsTemporaryFailure(f"{rdtype} lookup of {name} failed: SERVFAIL") from exc
        except dns.exception.Timeout as exc:
            raise DnsTemporaryFailure(f"{rdtype} lookup of {name} timed out") from exc
        except dns.exception.DNSException as exc:
            raise DnsTemporaryFailure(f"{rdtype} lookup of {name} failed: {exc}") from exc
        records = tuple(answer.rrset) if answer.rrset is not None else ()
        authenticated = bool(answer.response.flags & dns.flags.AD)
        return DnsAnswer(records, authenticated)

    async def txt_strings(self, name: str) -> list[bytes] | None:
        """Return each TXT record's strings joined, or None when the name has no TXT record."""
        answer = await self.query(name, "TXT")
        if not answer.records:
            return None
        return [b"".join(record.strings) for record in answer.records]

    async def addresses(self, name: str) -> list[str]:
        """Return IPv4 then IPv6 addresses of ``name``; raises DnsTemporaryFailure."""
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            answer = await self.query(name, rdtype)
            found.extend(record.address for record in answer.records)
        return found
