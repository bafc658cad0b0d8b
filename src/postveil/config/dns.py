"""The ``dns`` section: which resolvers the daemons ask, and how long they wait."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import AfterValidator, model_validator

from postveil.config.types import PositiveDuration, Section, parse_host_port


def _check_nameserver(entry: str) -> str:
    host, _ = parse_host_port(entry, 53)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"invalid nameserver {entry!r}: expected an IP address, optionally with a port, "
            "for example '127.0.0.1', '127.0.0.1:5353' or '[::1]:5353' "
            "(a host name would need a resolver to find the resolver)"
        ) from None
    return entry


class DnsSection(Section):
    nameservers: list[Annotated[str, AfterValidator(_check_nameserver)]] = []
    """``address`` or ``address:port`` entries (``[v6]:port`` for IPv6). Empty: /etc/resolv.conf."""

    timeout: PositiveDuration = 5.0
    """Per-server timeout of one query."""

    lifetime: PositiveDuration = 10.0
    """Total time for one lookup across servers and retries; then a temporary failure.
    At least ``timeout``, or not even one query could finish."""

    require_dnssec_ad: bool = True
    """Trust DANE records only when the resolver sets the AD (authenticated data) bit."""

    @model_validator(mode="after")
    def _check_lifetime(self) -> DnsSection:
        # After validation, so that a default lifetime is compared with a configured timeout.
        if self.lifetime < self.timeout:
            raise ValueError(
                f"dns.lifetime ({self.lifetime:g}s) is shorter than dns.timeout ({self.timeout:g}s): "
                "set lifetime to at least timeout, because one lookup includes at least one query"
            )
        return self

    @property
    def nameserver_addresses(self) -> list[tuple[str, int]]:
        return [parse_host_port(entry, 53) for entry in self.nameservers]
