"""The ``dns`` section: which resolvers the daemons ask, and how long they wait."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from postveil.config.types import Duration, Section, parse_host_port


def _check_nameserver(entry: str) -> str:
    parse_host_port(entry, 53)
    return entry


class DnsSection(Section):
    nameservers: list[Annotated[str, AfterValidator(_check_nameserver)]] = []
    """``host`` or ``host:port`` entries (``[v6]:port`` for IPv6). Empty: /etc/resolv.conf."""

    timeout: Duration = 5.0
    """Per-server timeout of one query."""

    lifetime: Duration = 10.0
    """Total time for one lookup across servers and retries; then a temporary failure."""

    require_dnssec_ad: bool = True
    """Trust DANE records only when the resolver sets the AD (authenticated data) bit."""

    @property
    def nameserver_addresses(self) -> list[tuple[str, int]]:
        return [parse_host_port(entry, 53) for entry in self.nameservers]
