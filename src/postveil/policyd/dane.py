"""DANE facts (RFC 7672): TLSA records of each MX host, trusted only with the AD bit."""

from __future__ import annotations

import dns.rdtypes.ANY.TLSA

from postveil.policyd.dns import DnsClient
from postveil.tlsfacts.facts import DaneFacts

USABLE_USAGES = frozenset({2, 3})
"""DANE-TA(2) and DANE-EE(3); PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP (RFC 7672 3.1.3)."""
USABLE_SELECTORS = frozenset({0, 1})
USABLE_MATCHING_TYPES = frozenset({0, 1, 2})


def tlsa_usable(record: dns.rdtypes.ANY.TLSA.TLSA) -> bool:
    return (
        record.usage in USABLE_USAGES
        and record.selector in USABLE_SELECTORS
        and record.mtype in USABLE_MATCHING_TYPES
    )


async def mx_hosts(dns_client: DnsClient, domain: str) -> tuple[list[str], bool]:
    """Return (MX host names by preference, whether the answer was authenticated).

    A domain without MX records is its own MX (RFC 5321 section 5.1); a null MX
    (RFC 7505) gives no hosts. Raises DnsTemporaryFailure.
    """
    answer = await dns_client.query(domain, "MX")
    if not answer.records:
        if answer.nxdomain:
            return [], answer.authenticated
        return [domain], answer.authenticated
    ordered = sorted(answer.records, key=lambda record: record.preference)
    hosts = [record.exchange.to_text(omit_final_dot=True).lower() for record in ordered]
    hosts = [host for host in hosts if host not in ("", ".")]
    return list(dict.fromkeys(hosts)), answer.authenticated


async def lookup_dane(
    dns_client: DnsClient, domain: str, port: int, now: float
) -> DaneFacts:
    """Look up TLSA records ``_<port>._tcp.<mx>`` for every MX host of ``domain``.

    ``validated`` holds only when the MX answer and every TLSA answer carried the AD
    bit, unless ``dns.require_dnssec_ad`` is off. Raises DnsTemporaryFailure on SERVFAIL
    or timeout: a failed lookup is not "no TLSA".
    """
    hosts, mx_authenticated = await mx_hosts(dns_client, domain)
    present = False
    usable = False
    validated = mx_authenticated
    for host in hosts:
        answer = await dns_client.query(f"_{port}._tcp.{host}", "TLSA")
        if not answer.records:
            continue
        present = True
        validated = validated and answer.authenticated
        usable = usable or any(tlsa_usable(record) for record in answer.records)
    if not dns_client.require_dnssec_ad:
        # NOTE: with the AD check off, unsigned TLSA records also give dane-only, and
        # Postfix then defers unless its own resolver validates them.
        validated = True
    return DaneFacts(
        tlsa_present=present, validated=present and validated, usable=usable, checked_at=now
    )
