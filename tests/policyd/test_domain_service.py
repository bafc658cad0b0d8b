"""DomainService against the fixtures: discovery, events, scheduled work, Redis backend,
the live ``postveil domain check`` and unix socket listeners."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml

from postveil.audit import AuditLog, generate_key_file
from postveil.config.audit import AuditSection
from postveil.config.dns import DnsSection
from postveil.config.policyd import PolicydSection
from postveil.harness.pytest_plugin import unique_domain
from postveil.harness.world import World
from postveil.policyd.dns import DnsClient
from postveil.policyd.domains import SCAN_BATCH, DomainService
from postveil.policyd.mtasts_fetch import PolicyFetcher
from postveil.policyd.netstring import NetstringDecoder, encode
from postveil.policyd.probe import Prober
from postveil.policyd.socketmap import SocketmapProtocol, SocketmapResponder
from postveil.tlsfacts.cache import FactsCache, RedisFactsCache, SqliteFactsCache
from postveil.tlsfacts.facts import DaneFacts, DomainFacts


def make_service(world: World, cache: FactsCache, **overrides: object) -> DomainService:
    config = PolicydSection(
        mta_sts_ca_file=str(world.pki.ca_path), probe_ca_file=str(world.pki.ca_path),
        probe_new_domain_delay="1h", probe_timeout="10s", **overrides,
    )
    dns = DnsClient(DnsSection(nameservers=[world.dns.nameserver], timeout="300ms",
                               lifetime="600ms"))
    return DomainService(config, cache, dns, PolicyFetcher(config, dns), Prober(config, dns))


async def test_discovery_records_event(world: World, tmp_path: Path) -> None:
    domain = world.add_domain(unique_domain("svc-sts"), mta_sts="enforce")
    cache = SqliteFactsCache(tmp_path / "facts.sqlite3")
    generate_key_file(tmp_path / "audit.key")
    audit = AuditLog(AuditSection(directory=str(tmp_path / "audit"),
                                  key_file=str(tmp_path / "audit.key")), program="test")
    service = make_service(world, cache)
    service.audit = audit
    try:
        requirement = await service.requirement(domain.name)
        assert requirement.level == "secure"
        assert requirement.match == (domain.mx_host,)
        events = cache.events(domain.name)
        assert [(e.old_level, e.new_level, e.rule) for e in events] == [(None, "secure", "mta-sts")]
    finally:
        await service.close()
        cache.close()
        audit.close()
    lines = (tmp_path / "audit" / "audit.jsonl").read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["kind"] == "tls_requirement"
    assert record["domain"] == domain.name
    assert record["old"] is None
    assert record["new"] == "secure"
    assert record["source"] == "mta-sts"


async def test_scheduler_probes_due_domains(world: World, tmp_path: Path) -> None:
    domain = world.add_domain(unique_domain("svc-probe"))
    cache = SqliteFactsCache(tmp_path / "facts.sqlite3")
    service = make_service(world, cache)
    try:
        await service.requirement(domain.name)
        assert cache.get(domain.name).last_probe_at is None
        assert await service.run_due_work() == 0

        service.clock = lambda: time.time() + 3601  # the new-domain delay has passed
        assert await service.run_due_work() >= 1
        deadline = time.monotonic() + 20
        while cache.get(domain.name).last_probe_at is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        facts = cache.get(domain.name)
        assert facts.tls_first_seen is not None
        assert cache.events(domain.name)[0].new_level == "encrypt"
    finally:
        await service.close()
        cache.close()


async def test_socketmap_over_redis_cache(world: World, redis_url: str) -> None:
    domain = world.add_domain(unique_domain("svc-redis"), mta_sts="enforce")
    cache = RedisFactsCache(redis_url, prefix=f"test:{uuid.uuid4().hex}:")
    service = make_service(world, cache, cache_backend="redis")
    responder = SocketmapResponder(service, (3, 7, 11))
    server = await asyncio.get_running_loop().create_server(
        lambda: SocketmapProtocol(lambda: responder), "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.sockets[0].getsockname()[1])
        writer.write(encode(f"postveil {domain.name}".encode()) * 2)
        decoder = NetstringDecoder(200_000)
        replies: list[bytes] = []
        while len(replies) < 2:
            replies.extend(decoder.feed(await asyncio.wait_for(reader.read(4096), 10)))
        writer.close()
        expected = f"OK secure match={domain.mx_host} servername=hostname protocols=>=TLSv1.2"
        assert [reply.decode() for reply in replies] == [expected, expected]
        assert cache.get(domain.name) is not None
    finally:
        server.close()
        await service.close()
        cache.close()


def test_domain_check_cli(world: World, tmp_path: Path) -> None:
    domain = world.add_domain(unique_domain("cli-check"), mta_sts="enforce")
    config = world.base_config()
    config["policyd"] = {"cache_path": str(tmp_path / "facts.sqlite3"),
                         "mta_sts_ca_file": str(world.pki.ca_path),
                         "probe_ca_file": str(world.pki.ca_path), "postfix_version": "3.7.11"}
    path = tmp_path / "postveil.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "postveil.cli.main", "domain", "-c", str(path), "check",
         domain.name, "--json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["mta_sts_id"] == domain.mta_sts_id
    assert report["mta_sts"]["mode"] == "enforce"
    assert report["probes"][0]["starttls"] is True
    assert report["probes"][0]["cert_valid"] is True
    assert report["socketmap_reply"] == (
        f"OK secure match={domain.mx_host} servername=hostname protocols=>=TLSv1.2")
    assert not (tmp_path / "facts.sqlite3").exists() or SqliteFactsCache(
        tmp_path / "facts.sqlite3").get(domain.name) is None

    text = subprocess.run(
        [sys.executable, "-m", "postveil.cli.main", "domain", "-c", str(path), "check",
         domain.name], capture_output=True, text=True, timeout=60)
    assert "MTA-STS:       mode enforce" in text.stdout
    assert f"probe {domain.mx_host}: STARTTLS" in text.stdout
    assert f"MX:            {domain.mx_host} (10)" in text.stdout


def test_domain_check_cli_nonexistent(world: World, tmp_path: Path) -> None:
    path = tmp_path / "postveil.yaml"
    path.write_text(yaml.safe_dump(world.base_config()))

    # --config after the action is accepted too, as with `postveil audit`.
    result = subprocess.run(
        [sys.executable, "-m", "postveil.cli.main", "domain", "check", "missing-domain.test",
         "--no-probe", "--config", str(path)], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert "MX:            none: the domain does not exist (NXDOMAIN)" in result.stdout
    assert "policy:        NOTFOUND" in result.stdout


async def test_failing_refresh_not_repeated(world: World, tmp_path: Path) -> None:
    domain = world.add_domain(unique_domain("svc-flaky"))
    cache = SqliteFactsCache(tmp_path / "facts.sqlite3")
    service = make_service(world, cache)
    try:
        await service.requirement(domain.name)
        world.dns.set_servfail(f"_25._tcp.{domain.mx_host}")
        world.dns.set_servfail(f"_mta-sts.{domain.name}")
        later = time.time() + 7200
        service.clock = lambda: later
        await service.requirement(domain.name)  # starts one background refresh
        await asyncio.sleep(1.5)
        queries_before = len(world.dns.queries)
        for _ in range(20):
            await service.requirement(domain.name)
        await asyncio.sleep(0.5)
        assert len(world.dns.queries) == queries_before
    finally:
        await service.close()
        cache.close()


async def test_scheduler_scan_yields_to_loop(world: World, tmp_path: Path) -> None:
    cache = SqliteFactsCache(tmp_path / "facts.sqlite3")
    now = time.time()
    for number in range(SCAN_BATCH * 10):
        cache.put(DomainFacts(f"d{number}.scan.example", first_seen=now, last_probe_at=now,
                              dane=DaneFacts(False, False, False, now), sts_checked_at=now))
    service = make_service(world, cache)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticking = asyncio.get_running_loop().create_task(ticker())
    try:
        await asyncio.sleep(0)
        ticks = 0
        started = await service.run_due_work()
    finally:
        ticking.cancel()
        await service.close()
        cache.close()
    assert started == 0
    # Without the yields the scan reads every domain in one loop iteration.
    assert ticks >= 9


async def test_held_domain_without_facts_discovered(world: World, tmp_path: Path) -> None:
    # After "postveil domain purge" only the TLS hold is left: the domain's own
    # requirement must be discovered again, and the hold must still apply.
    enforcing = world.add_domain(unique_domain("svc-held-sts"), mta_sts="enforce")
    unknown = unique_domain("svc-held-nx")
    cache = SqliteFactsCache(tmp_path / "facts.sqlite3")
    until = time.time() + 3600
    cache.hold_tls(enforcing.name, until)
    cache.hold_tls(unknown, until)
    service = make_service(world, cache)
    try:
        enforced = await service.requirement(enforcing.name)
        held = await service.requirement(unknown)
        stored = cache.get(enforcing.name)
    finally:
        await service.close()
        cache.close()

    assert enforced.rule == "mta-sts"
    assert stored is not None
    assert stored.sts is not None
    assert (held.rule, held.level) == ("held", "encrypt")


async def test_rcpt_check_discovers_held_domain(world: World, tmp_path: Path) -> None:
    domain = world.add_domain(unique_domain("svc-held-rcpt"), mta_sts="enforce")
    cache = SqliteFactsCache(tmp_path / "facts.sqlite3")
    cache.hold_tls(domain.name, time.time() + 3600)
    service = make_service(world, cache)
    try:
        await service.ensure_known(domain.name)
        await asyncio.wait_for(asyncio.gather(*service._background), 10)
        stored = cache.get(domain.name)
    finally:
        await service.close()
        cache.close()

    assert stored is not None
    assert stored.sts is not None


async def test_refresh_keeps_concurrent_probe(world: World, tmp_path: Path) -> None:
    """A refresh that started before a probe stored its results must not overwrite them,
    or a domain that has shown STARTTLS would lose its requirement."""
    domain = world.add_domain(unique_domain("svc-race"))
    cache = SqliteFactsCache(tmp_path / "facts.sqlite3")
    service = make_service(world, cache)
    # The refresh's TXT lookup gets no answer and waits for the whole lifetime, long
    # enough for a probe to finish and store its results in between.
    service.dns = DnsClient(DnsSection(nameservers=[world.dns.nameserver], timeout="2s", lifetime="2s"))
    try:
        assert (await service.requirement(domain.name)).level is None
        world.dns.set_silent(f"_mta-sts.{domain.name}")
        later = time.time() + 7200
        service.clock = lambda: later
        await service.requirement(domain.name)  # starts a background refresh
        await asyncio.sleep(0.2)
        probed = await service.probe_now(domain.name)
        assert probed.tls_first_seen is not None
        assert cache.get(domain.name).tls_first_seen is not None

        deadline = time.monotonic() + 10
        while cache.get(domain.name).sts_failed_at is None:
            assert time.monotonic() < deadline, "the refresh did not store its result"
            await asyncio.sleep(0.1)
        facts = cache.get(domain.name)
        assert facts.tls_first_seen is not None
        assert facts.last_probe_at is not None
        assert (await service.requirement(domain.name)).level == "encrypt"
    finally:
        await service.close()
        cache.close()
