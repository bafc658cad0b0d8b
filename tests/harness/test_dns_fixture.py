"""The DNS fixture answers the records a test defines, and fails on demand."""

from __future__ import annotations

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import dns.resolver
import pytest

from postveil.harness.dns import DnsFixture
from postveil.harness.net import allocate_address


@pytest.fixture
def fixture() -> DnsFixture:
    server = DnsFixture(allocate_address(), port=0).start()
    yield server
    server.stop()


def resolver_for(server: DnsFixture, *, tcp: bool = False) -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [server.address]
    resolver.port = server.port
    resolver.lifetime = 2.0
    resolver.timeout = 1.0
    return resolver


def test_mx_and_a_records(fixture: DnsFixture) -> None:
    fixture.add("example.test", "MX", "10 mx.example.test.")
    fixture.add("mx.example.test", "A", "127.0.0.99")
    resolver = resolver_for(fixture)

    mx = resolver.resolve("example.test", "MX")
    address = resolver.resolve("mx.example.test", "A")

    assert [str(r.exchange) for r in mx] == ["mx.example.test."]
    assert [r.address for r in address] == ["127.0.0.99"]


def test_txt_keeps_character_strings(fixture: DnsFixture) -> None:
    fixture.add("_mta-sts.example.test", "TXT", ["v=STSv1; ", "id=20261204;"])

    answer = resolver_for(fixture).resolve("_mta-sts.example.test", "TXT")

    assert [r.strings for r in answer] == [(b"v=STSv1; ", b"id=20261204;")]


def test_tlsa_over_tcp(fixture: DnsFixture) -> None:
    digest = "ab" * 32
    fixture.add("_25._tcp.mx.example.test", "TLSA", f"3 1 1 {digest}")

    answer = resolver_for(fixture).resolve("_25._tcp.mx.example.test", "TLSA", tcp=True)

    record = answer[0]
    assert (record.usage, record.selector, record.mtype) == (3, 1, 1)
    assert record.cert.hex() == digest


def test_ad_bit_only_for_secure_zones(fixture: DnsFixture) -> None:
    fixture.add("secure.test", "MX", "10 mx.secure.test.")
    fixture.add("insecure.test", "MX", "10 mx.insecure.test.")
    fixture.set_secure("secure.test")
    resolver = resolver_for(fixture)

    secure = resolver.resolve("secure.test", "MX")
    insecure = resolver.resolve("insecure.test", "MX")

    assert secure.response.flags & dns.flags.AD
    assert not insecure.response.flags & dns.flags.AD


def test_ad_in_query_not_echoed(fixture: DnsFixture) -> None:
    fixture.add("insecure.test", "MX", "10 mx.insecure.test.")
    query = dns.message.make_query("insecure.test", "MX")
    query.flags |= dns.flags.AD

    response = dns.query.udp(query, fixture.address, port=fixture.port, timeout=2)

    assert not response.flags & dns.flags.AD


def test_nxdomain_versus_nodata(fixture: DnsFixture) -> None:
    fixture.add("example.test", "MX", "10 mx.example.test.")
    resolver = resolver_for(fixture)

    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("missing.example.test", "A")
    with pytest.raises(dns.resolver.NoAnswer):
        resolver.resolve("example.test", "A")


def test_servfail_on_demand(fixture: DnsFixture) -> None:
    fixture.add("broken.test", "MX", "10 mx.broken.test.")
    fixture.set_servfail("broken.test")

    with pytest.raises(dns.resolver.NoNameservers) as error:
        resolver_for(fixture).resolve("broken.test", "MX")

    assert "SERVFAIL" in str(error.value)


def test_silence_times_out(fixture: DnsFixture) -> None:
    fixture.add("slow.test", "MX", "10 mx.slow.test.")
    fixture.set_silent("slow.test")
    resolver = resolver_for(fixture)
    resolver.lifetime = 0.5

    with pytest.raises(dns.exception.Timeout):
        resolver.resolve("slow.test", "MX")


def test_queries_are_recorded(fixture: DnsFixture) -> None:
    fixture.add("example.test", "MX", "10 mx.example.test.")

    resolver_for(fixture).resolve("example.test", "MX")

    assert ("example.test", "MX") in fixture.queries


def test_garbage_packet_is_ignored(fixture: DnsFixture) -> None:
    assert fixture.answer(b"\x00\x01garbage") is None


def test_rejects_non_loopback_address() -> None:
    with pytest.raises(ValueError, match="loopback"):
        DnsFixture("192.0.2.1")
