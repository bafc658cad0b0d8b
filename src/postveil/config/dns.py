"""The ``dns`` section: which resolvers the daemons ask, and how long they wait."""

from __future__ import annotations

from pydantic import field_validator

from postveil.config.types import Duration, Section, parse_host_port


class DnsSection(Section):
    nameservers: list[str] = []
    """``host`` or ``host:port`` entries (``[v6]:port`` for IPv6). Empty: /etc/resolv.conf."""

    timeout: Duration = 5.0
    """Per-server timeout of one query."""

    lifetime: Duration = 10.0
    """Total time for one lookup across servers and retries; then a temporary failure."""

    require_dnssec_ad: bool = True
    """Trust DANE records only when the resolver sets the AD (authenticated data) bit."""

    @field_validator("nameservers")
    @classmethod
    def _check_nameservers(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_host_port(entry, 53)
        return value

    @property
    def nameserver_addresses(self) -> list[tuple[str, int]]:
        return [parse_host_port(entry, 53) for entry in self.nameservers]
