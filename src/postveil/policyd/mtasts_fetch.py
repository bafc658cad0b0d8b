"""MTA-STS discovery: TXT lookup, HTTPS policy fetch, and the cache update rules.

The fetch follows RFC 8461 section 3.3: ``https://mta-sts.<domain>/.well-known/mta-sts.txt``
with a certificate valid for that name, no redirects, status 200 only, a
``text/plain`` body of at most ``mta_sts_max_body`` bytes, within
``mta_sts_fetch_timeout``. The policy host's address comes from the configured
resolver, never from the system's.
"""

from __future__ import annotations

import logging
import socket
import ssl
from dataclasses import replace
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from postveil.config.policyd import PolicydSection
from postveil.errors import PostveilError
from postveil.policyd.dns import DnsClient, DnsTemporaryFailure
from postveil.policyd.mtasts import (
    StsParseError,
    keep_cached_policy,
    parse_policy,
    parse_txt_records,
    policy_fetch_needed,
)
from postveil.tlsfacts.facts import DomainFacts, StsPolicy

log = logging.getLogger(__name__)

WELL_KNOWN_PATH = "/.well-known/mta-sts.txt"


class PolicyFetchError(PostveilError):
    """The policy could not be fetched or parsed; ``category`` names the kind of failure."""

    def __init__(self, category: str, detail: str) -> None:
        super().__init__(f"{category}: {detail}")
        self.category = category


class _ConfiguredResolver(AbstractResolver):
    """aiohttp resolver that asks the configured DNS servers instead of the system's."""

    def __init__(self, dns: DnsClient) -> None:
        self._dns = dns

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            addresses = await self._dns.addresses(host)
        except DnsTemporaryFailure as exc:
            raise OSError(f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise OSError(f"{host} has no address records")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None


class PolicyFetcher:
    """Fetches policy files over HTTPS; one instance per daemon, closed on shutdown."""

    def __init__(self, config: PolicydSection, dns: DnsClient) -> None:
        self._config = config
        self._dns = dns
        self._ssl = ssl.create_default_context(cafile=config.mta_sts_ca_file)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=_ConfiguredResolver(self._dns), use_dns_cache=False, limit=50
            )
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=True, trust_env=False
            )
        return self._session

    def policy_url(self, domain: str) -> str:
        port = self._config.mta_sts_https_port
        authority = f"mta-sts.{domain}" + ("" if port == 443 else f":{port}")
        return f"https://{authority}{WELL_KNOWN_PATH}"

    async def fetch(self, domain: str) -> bytes:
        """Return the policy body; raises PolicyFetchError naming the failure category."""
        url = self.policy_url(domain)
        timeout = aiohttp.ClientTimeout(total=self._config.mta_sts_fetch_timeout)
        limit = self._config.mta_sts_max_body
        try:
            async with self._client().get(
                url, ssl=self._ssl, allow_redirects=False, timeout=timeout,
                headers={"Accept": "text/plain"},
            ) as response:
                if 300 <= response.status < 400:
                    raise PolicyFetchError("redirect", f"HTTP {response.status}; redirects are not followed")
                if response.status != 200:
                    raise PolicyFetchError("http-status", f"HTTP {response.status}")
                if response.content_type != "text/plain":
                    raise PolicyFetchError(
                        "content-type", f"{response.content_type[:40]!r} instead of text/plain"
                    )
                if response.content_length is not None and response.content_length > limit:
                    raise PolicyFetchError("too-large", f"body exceeds {limit} bytes")
                body = bytearray()
                while chunk := await response.content.read(limit + 1 - len(body)):
                    body += chunk
                    if len(body) > limit:
                        raise PolicyFetchError("too-large", f"body exceeds {limit} bytes")
                return bytes(body)
        except PolicyFetchError:
            raise
        except aiohttp.ClientConnectorCertificateError as exc:
            raise PolicyFetchError("certificate", str(exc.certificate_error)) from exc
        except aiohttp.ClientSSLError as exc:
            raise PolicyFetchError("tls", str(exc)) from exc
        except TimeoutError as exc:
            raise PolicyFetchError("timeout", f"no complete answer within {timeout.total:g}s") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise PolicyFetchError("connect", str(exc) or type(exc).__name__) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def refresh_sts(
    facts: DomainFacts,
    dns: DnsClient,
    fetcher: PolicyFetcher,
    config: PolicydSection,
    now: float,
) -> DomainFacts:
    """Look up the TXT record, fetch the policy if needed, and return updated facts.

    Raises DnsTemporaryFailure when the TXT lookup fails temporarily and no valid
    policy is cached, because "no policy" would be a guess. With a valid cached
    policy, every failure keeps that policy (RFC 8461 section 5.1).
    """
    domain = facts.domain
    cached = keep_cached_policy(facts.sts, now)
    try:
        records = await dns.txt_strings(f"_mta-sts.{domain}")
    except DnsTemporaryFailure as exc:
        if cached is None:
            raise
        log.warning("domain %s: TXT lookup failed, keeping the cached policy: %s", domain, exc)
        return replace(facts, sts=cached, sts_failed_at=now, sts_error="dns-temporary")

    try:
        txt = parse_txt_records(records or [])
    except StsParseError as exc:
        log.info("domain %s: invalid MTA-STS TXT record: %s", domain, exc)
        txt = None
    if txt is None:
        # The record is gone or invalid: a still valid cached policy stays in force.
        return replace(facts, sts=cached, sts_checked_at=now, sts_error=None)

    if not policy_fetch_needed(cached, txt, config, now):
        return replace(facts, sts=cached, sts_checked_at=now, sts_error=None)

    try:
        body = await fetcher.fetch(domain)
        parsed = parse_policy(body)
    except StsParseError as exc:
        log.warning("domain %s: invalid MTA-STS policy: %s", domain, exc)
        return replace(facts, sts=cached, sts_failed_at=now, sts_error="syntax")
    except PolicyFetchError as exc:
        log.warning("domain %s: MTA-STS policy fetch failed: %s", domain, exc)
        return replace(facts, sts=cached, sts_failed_at=now, sts_error=exc.category)

    policy = StsPolicy(txt.policy_id, parsed.mode, parsed.mx, parsed.max_age, now)
    return replace(facts, sts=policy, sts_checked_at=now, sts_failed_at=None, sts_error=None)


def describe_policy(policy: StsPolicy | None) -> dict[str, Any] | None:
    if policy is None:
        return None
    return {
        "id": policy.policy_id,
        "mode": policy.mode,
        "mx": list(policy.mx),
        "max_age": policy.max_age,
        "fetched_at": policy.fetched_at,
        "expires_at": policy.expires_at,
    }
