"""RFC 8461 discovery, fetch failures and caching rules against the DNS and HTTPS fixtures.

Cases come from data/mtasts_fetch_cases.yaml; each runs :func:`refresh_sts` once.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from postveil.config.dns import DnsSection
from postveil.config.policyd import PolicydSection
from postveil.harness.pytest_plugin import unique_domain
from postveil.harness.world import World
from postveil.policyd.dns import DnsClient, DnsTemporaryFailure
from postveil.policyd.mtasts_fetch import PolicyFetcher, refresh_sts
from postveil.tlsfacts.facts import DomainFacts, StsPolicy

CASES = yaml.safe_load((Path(__file__).parent / "data" / "mtasts_fetch_cases.yaml").read_text())
DEFAULT_POLICY = "version: STSv1\nmode: enforce\nmx: mx.{domain}\nmax_age: 86400\n"


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
async def test_fetch_case(world: World, case: dict) -> None:
    domain = unique_domain("sts")
    dns = world.dns
    records = case.get("txt", [])
    for record in [records] if isinstance(records, str) else records:
        dns.add(f"_mta-sts.{domain}", "TXT", record)
    if case.get("txt_dns") == "servfail":
        dns.set_servfail(f"_mta-sts.{domain}")
    if case.get("txt_dns") == "silent":
        dns.set_silent(f"_mta-sts.{domain}")
    dns.add(f"mta-sts.{domain}", "A", world.https.address)
    body = case.get("policy", DEFAULT_POLICY).format(domain=domain)
    if case.get("oversize"):
        body += "x-padding: " + "a" * 70_000 + "\n"
    world.https.set_policy(
        domain,
        body,
        status=case.get("status", 200),
        content_type=case.get("content_type", "text/plain"),
        location=case.get("location"),
        certificate_names=tuple(case["certificate_names"]) if "certificate_names" in case else None,
    )

    now = time.time()
    facts = DomainFacts(domain)
    if "cached" in case:
        cached = StsPolicy(case["cached"], "enforce", (f"mx.{domain}",), 86400 * 7, now - 3600)
        facts = DomainFacts(domain, sts=cached, sts_checked_at=now - 7200)
    config = PolicydSection(mta_sts_ca_file=str(world.pki.ca_path), mta_sts_fetch_timeout="5s")
    client = DnsClient(DnsSection(nameservers=[dns.nameserver], timeout="300ms", lifetime="600ms"))
    fetcher = PolicyFetcher(config, client)
    requests_before = sum(1 for host, _ in world.https.requests if host == f"mta-sts.{domain}")
    try:
        if case["expect"] == "temp":
            with pytest.raises(DnsTemporaryFailure):
                await refresh_sts(facts, client, fetcher, config, now)
            result = None
        else:
            result = await refresh_sts(facts, client, fetcher, config, now)
    finally:
        await fetcher.close()
    requests = sum(1 for host, _ in world.https.requests if host == f"mta-sts.{domain}")

    assert (requests > requests_before) is case["fetched"]
    if result is None:
        return
    if case["expect"] == "none":
        assert result.sts is None
    else:
        assert result.sts is not None
        assert result.sts.mode == case["expect"]
        if "expect_id" in case:
            assert result.sts.policy_id == case["expect_id"]
    assert result.sts_error == case.get("error")
    if case.get("error"):
        assert result.sts_failed_at == now
