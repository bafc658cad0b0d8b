"""DANE facts and STARTTLS probes against the DNS fixture and SMTP sinks."""

from __future__ import annotations

import time

import pytest

from postveil.config.dns import DnsSection
from postveil.config.policyd import PolicydSection
from postveil.harness.pytest_plugin import unique_domain
from postveil.harness.world import World
from postveil.policyd.dane import lookup_dane
from postveil.policyd.dns import DnsClient, DnsTemporaryFailure
from postveil.policyd.probe import Prober, apply_probe_results
from postveil.tlsfacts.facts import DomainFacts, ProbeResult


def dns_client(world: World) -> DnsClient:
    return DnsClient(DnsSection(nameservers=[world.dns.nameserver], timeout="300ms",
                                lifetime="600ms"))


async def test_dane_validated_usable(world: World) -> None:
    domain = world.add_domain(unique_domain("dane"), dane=True)
    facts = await lookup_dane(dns_client(world), domain.name, 25, time.time())
    assert facts.tlsa_present
    assert facts.validated
    assert facts.usable


async def test_dane_without_ad_not_validated(world: World) -> None:
    domain = world.add_domain(unique_domain("unsigned"))
    world.dns.add(f"_25._tcp.{domain.mx_host}", "TLSA", "3 1 1 " + "ab" * 32)
    facts = await lookup_dane(dns_client(world), domain.name, 25, time.time())
    assert facts.tlsa_present
    assert not facts.validated


async def test_dane_only_unusable_records(world: World) -> None:
    domain = world.add_domain(unique_domain("pkix"))
    world.dns.add(f"_25._tcp.{domain.mx_host}", "TLSA", "1 1 1 " + "ab" * 32)
    world.dns.set_secure(domain.name)
    world.dns.set_secure(domain.mx_host)
    facts = await lookup_dane(dns_client(world), domain.name, 25, time.time())
    assert facts.tlsa_present
    assert facts.validated
    assert not facts.usable


async def test_dane_no_tlsa(world: World) -> None:
    domain = world.add_domain(unique_domain("notlsa"))
    facts = await lookup_dane(dns_client(world), domain.name, 25, time.time())
    assert not facts.tlsa_present


async def test_dane_servfail_is_temporary(world: World) -> None:
    domain = world.add_domain(unique_domain("tlsafail"))
    world.dns.set_servfail(f"_25._tcp.{domain.mx_host}")
    with pytest.raises(DnsTemporaryFailure):
        await lookup_dane(dns_client(world), domain.name, 25, time.time())


@pytest.mark.parametrize(
    ("tls", "starttls", "cert_valid", "error"),
    [("valid", True, True, None), ("wrong-name", True, False, "certificate"),
     ("none", False, False, "no-starttls")],
)
async def test_probe_sink(world: World, tls: str, starttls: bool, cert_valid: bool,
                          error: str | None) -> None:
    domain = world.add_domain(unique_domain("probe"), tls=tls)  # type: ignore[arg-type]
    config = PolicydSection(probe_ca_file=str(world.pki.ca_path), probe_timeout="10s")
    prober = Prober(config, dns_client(world))
    facts = await prober.probe_domain(DomainFacts(domain.name), time.time())
    assert len(facts.probes) == 1
    result = facts.probes[0]
    assert result.mx == domain.mx_host
    assert result.starttls is starttls
    assert result.cert_valid is cert_valid
    assert result.error == error
    if starttls:
        assert result.tls_version in ("TLSv1.2", "TLSv1.3")
        assert facts.tls_first_seen is not None
    else:
        assert facts.tls_first_seen is None
        assert facts.failed_probes == 1


async def test_probe_unreachable_host(world: World) -> None:
    domain = unique_domain("down")
    world.dns.add(domain, "MX", f"10 mx.{domain}.")
    world.dns.add(f"mx.{domain}", "A", "127.0.0.1")
    config = PolicydSection(smtp_port=1, probe_timeout="5s")
    facts = await Prober(config, dns_client(world)).probe_domain(DomainFacts(domain), time.time())
    assert facts.probes[0].error == "connect"
    assert facts.failed_probes == 0


def test_probe_results_keep_tls_seen() -> None:
    seen = DomainFacts("example.org", tls_first_seen=10.0, tls_last_seen=20.0)
    no_tls = (ProbeResult("mx.example.org", 30.0, False, error="no-starttls"),)
    after = apply_probe_results(seen, no_tls, 30.0)
    assert after.tls_first_seen == 10.0
    assert after.failed_probes == 1
    again = apply_probe_results(after, no_tls, 40.0)
    assert again.failed_probes == 2
    tls = (ProbeResult("mx.example.org", 50.0, True, "TLSv1.3", cert_valid=True),)
    recovered = apply_probe_results(again, tls, 50.0)
    assert recovered.failed_probes == 0
    assert recovered.tls_last_seen == 50.0


async def test_dane_ad_check_disabled(world: World) -> None:
    domain = world.add_domain(unique_domain("noad"))
    world.dns.add(f"_25._tcp.{domain.mx_host}", "TLSA", "3 1 1 " + "ab" * 32)
    client = DnsClient(DnsSection(nameservers=[world.dns.nameserver], timeout="300ms",
                                  lifetime="600ms", require_dnssec_ad=False))
    facts = await lookup_dane(client, domain.name, 25, time.time())
    assert facts.tlsa_present
    assert facts.validated
