"""Domain facts cache backends: SQLite (WAL) and Redis against a real redis-server."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from postveil.config.policyd import PolicydSection
from postveil.tlsfacts.cache import CacheError, FactsCache, RedisFactsCache, SqliteFactsCache
from postveil.tlsfacts.facts import (
    DaneFacts,
    DomainFacts,
    ProbeResult,
    RequirementEvent,
    StsPolicy,
)
from postveil.tlsfacts.requirement import enforced_requirement

FULL = DomainFacts(
    "example.org",
    sts=StsPolicy("id1", "enforce", ("mx.example.org", "*.example.net"), 86400, 1000.0),
    sts_checked_at=1000.0,
    sts_failed_at=900.0,
    sts_error="timeout",
    dane=DaneFacts(True, True, False, 1000.0),
    probes=(ProbeResult("mx.example.org", 1000.0, True, "TLSv1.3", "TLS_AES_256_GCM_SHA384", True),
            ProbeResult("mx2.example.org", 1000.0, False, error="no-starttls")),
    tls_first_seen=500.0,
    tls_last_seen=1000.0,
    failed_probes=2,
    override="secure",
    first_seen=400.0,
    last_probe_at=1000.0,
)


@pytest.fixture(params=["sqlite", "redis"])
def cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FactsCache]:
    if request.param == "sqlite":
        backend: FactsCache = SqliteFactsCache(tmp_path / "facts.sqlite3")
    else:
        url = request.getfixturevalue("redis_url")
        backend = RedisFactsCache(url, prefix=f"test:{uuid.uuid4().hex}:")
    yield backend
    backend.close()


def test_cache_roundtrip(cache: FactsCache) -> None:
    assert cache.get("example.org") is None
    cache.put(FULL)
    assert cache.get("example.org") == FULL


def test_cache_overwrite_and_delete(cache: FactsCache) -> None:
    cache.put(DomainFacts("b.example"))
    cache.put(DomainFacts("a.example", override="encrypt"))
    cache.put(DomainFacts("a.example", override="secure"))
    assert cache.domains() == ["a.example", "b.example"]
    stored = cache.get("a.example")
    assert stored is not None
    assert stored.override == "secure"
    assert cache.delete("a.example") is True
    assert cache.delete("a.example") is False
    assert cache.domains() == ["b.example"]


def test_cache_events_newest_first(cache: FactsCache) -> None:
    cache.add_event(RequirementEvent("a.example", None, "encrypt", "monitoring", "seen", 1.0))
    cache.add_event(RequirementEvent("b.example", None, "secure", "mta-sts", "policy", 2.0))
    cache.add_event(RequirementEvent("a.example", "encrypt", None, "none", "downgraded", 3.0))
    assert [event.at for event in cache.events()] == [3.0, 2.0, 1.0]
    assert [event.new_level for event in cache.events("a.example")] == [None, "encrypt"]
    assert len(cache.events(limit=1)) == 1


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    cache = SqliteFactsCache(tmp_path / "facts.sqlite3")
    cache.put(FULL)
    mode = sqlite3.connect(tmp_path / "facts.sqlite3").execute("PRAGMA journal_mode").fetchone()
    assert mode[0] == "wal"
    cache.close()


def test_sqlite_second_process_view(tmp_path: Path) -> None:
    writer = SqliteFactsCache(tmp_path / "facts.sqlite3")
    reader = SqliteFactsCache(tmp_path / "facts.sqlite3")
    writer.put(FULL)
    assert reader.get("example.org") == FULL
    writer.close()
    reader.close()


def test_sqlite_threads_share_cache(tmp_path: Path) -> None:
    cache = SqliteFactsCache(tmp_path / "facts.sqlite3")
    cache.put(FULL)
    results: list[DomainFacts | None] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("example.org")))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [FULL] * 4
    cache.close()


def test_sqlite_connections_do_not_grow_with_threads(tmp_path: Path) -> None:
    """pymilter runs every SMTP connection in a new thread. The cache must not keep one
    SQLite connection (two descriptors) for each thread that ever read from it."""
    cache = SqliteFactsCache(tmp_path / "facts.sqlite3")
    cache.put(FULL)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        thread = threading.Thread(target=lambda: cache.get("example.org"))
        thread.start()
        thread.join()
    assert len(os.listdir("/proc/self/fd")) - before <= 2
    cache.close()
    assert cache.get("example.org") == FULL  # a call after close still works, and leaks nothing
    assert len(os.listdir("/proc/self/fd")) < before


def test_sqlite_damaged_record_is_unknown(tmp_path: Path) -> None:
    cache = SqliteFactsCache(tmp_path / "facts.sqlite3")
    connection = sqlite3.connect(tmp_path / "facts.sqlite3")
    connection.execute("INSERT INTO domains VALUES ('bad.example', '{not json', 0)")
    connection.commit()
    assert cache.get("bad.example") is None
    cache.close()


def test_record_with_unknown_fields_keeps_facts(tmp_path: Path) -> None:
    # A record written by a later version (before a downgrade) has fields this version
    # does not know. Reading it as damaged would drop the STARTTLS history with it.
    cache = SqliteFactsCache(tmp_path / "facts.sqlite3")
    record = json.loads(FULL.to_json())
    record["field_of_a_later_version"] = 1
    record["sts"]["field_of_a_later_version"] = 1
    record["dane"]["field_of_a_later_version"] = 1
    record["probes"][0]["field_of_a_later_version"] = 1
    connection = sqlite3.connect(tmp_path / "facts.sqlite3")
    connection.execute("INSERT INTO domains VALUES (?, ?, 0)", (FULL.domain, json.dumps(record)))
    connection.commit()
    connection.close()

    assert cache.get(FULL.domain) == FULL
    cache.close()


def test_sqlite_unreadable_path_raises(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite3").mkdir()
    with pytest.raises(CacheError):
        SqliteFactsCache(tmp_path / "dir.sqlite3")


def test_redis_unreachable_raises() -> None:
    from postveil.harness.net import free_port

    cache = RedisFactsCache(f"redis://127.0.0.1:{free_port()}/0", timeout=1.0)
    with pytest.raises(CacheError):
        cache.get("example.org")
    cache.close()


def test_tls_hold_only_grows(cache: FactsCache) -> None:
    cache.put(DomainFacts("held.example"))
    cache.hold_tls("held.example", 2000.0)
    cache.hold_tls("held.example", 1500.0)

    assert cache.get("held.example") == DomainFacts("held.example", tls_held_until=2000.0)

    cache.hold_tls("held.example", 2500.0)
    assert cache.get("held.example").tls_held_until == 2500.0  # type: ignore[union-attr]


def test_tls_hold_survives_put_and_delete(cache: FactsCache) -> None:
    cache.put(DomainFacts("held.example", override="encrypt"))
    cache.hold_tls("held.example", 2000.0)
    # A refresh that read the facts before the hold was written stores them again.
    cache.put(DomainFacts("held.example", override=None))
    assert cache.get("held.example") == DomainFacts("held.example", tls_held_until=2000.0)

    assert cache.delete("held.example")
    assert cache.get("held.example") == DomainFacts("held.example", tls_held_until=2000.0)
    assert cache.domains() == ["held.example"]


def test_tls_hold_for_unknown_domain(cache: FactsCache) -> None:
    cache.hold_tls("new.example", 2000.0)

    assert cache.get("new.example") == DomainFacts("new.example", tls_held_until=2000.0)
    assert [facts.domain for facts in cache.all_facts()] == ["new.example"]


def damage_hold(cache: FactsCache, domain: str, value: str) -> None:
    """Store ``value`` as the domain's hold, bypassing ``hold_tls``."""
    if isinstance(cache, SqliteFactsCache):
        with sqlite3.connect(cache.path) as connection:
            connection.execute("INSERT INTO tls_holds (domain, until) VALUES (?, ?)", (domain, value))
    else:
        assert isinstance(cache, RedisFactsCache)
        cache._client.hset(cache._holds_key, domain, value)


@pytest.mark.parametrize("value", ["garbage", "nan", "inf", "1e300", ""])
def test_damaged_tls_hold_keeps_tls_required(cache: FactsCache, value: str) -> None:
    damage_hold(cache, "damaged.example", value)

    facts = cache.get("damaged.example")
    assert facts is not None
    requirement = enforced_requirement(facts, PolicydSection(), now=time.time())

    assert requirement.rule == "held"
    assert requirement.level == "encrypt"


@pytest.mark.parametrize("value", ["garbage", "nan", "inf"])
def test_damaged_tls_hold_repaired_by_write(cache: FactsCache, value: str) -> None:
    damage_hold(cache, "damaged.example", value)
    until = time.time() + 3600

    cache.hold_tls("damaged.example", until)

    facts = cache.get("damaged.example")
    assert facts is not None
    assert facts.tls_held_until is not None
    assert until <= facts.tls_held_until < math.inf


def test_sqlite_infinite_tls_hold_replaced(tmp_path: Path) -> None:
    cache = SqliteFactsCache(tmp_path / "facts.sqlite3")
    with sqlite3.connect(cache.path) as connection:
        connection.execute("INSERT INTO tls_holds (domain, until) VALUES (?, ?)",
                           ("damaged.example", math.inf))
    until = time.time() + 3600

    cache.hold_tls("damaged.example", until)

    facts = cache.get("damaged.example")
    cache.close()
    assert facts is not None
    assert facts.tls_held_until == until
