"""Socketmap server over a seeded SQLite cache: replayed pairs, pipelining, framing errors.

Unknown domains trigger a live lookup. The configured DNS server here is a closed
127.0.0.1 port, so those lookups fail and the reply must be TEMP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from postveil.config.dns import DnsSection
from postveil.config.policyd import PolicydSection
from postveil.harness.net import free_port
from postveil.policyd import socketmap as socketmap_module
from postveil.policyd.dns import DnsClient
from postveil.policyd.domains import DomainService
from postveil.policyd.mtasts_fetch import PolicyFetcher
from postveil.policyd.netstring import NetstringDecoder, encode
from postveil.policyd.probe import Prober
from postveil.policyd.socketmap import SocketmapProtocol, SocketmapResponder, domain_from_key
from postveil.tlsfacts.cache import SqliteFactsCache
from postveil.tlsfacts.facts import DaneFacts, DomainFacts, StsPolicy

PAIRS = yaml.safe_load((Path(__file__).parent / "data" / "socketmap_replay.yaml").read_text())
READ_SIZES = [4096, 1024, 100, 7, 1]


def seed(cache: SqliteFactsCache, now: float) -> None:
    fresh = {"sts_checked_at": now, "first_seen": now, "last_probe_at": now,
             "dane": DaneFacts(False, False, False, now)}
    cache.put(DomainFacts("enforce.example", sts=StsPolicy(
        "id1", "enforce", ("mx.enforce.example", "*.enforce.example"), 86400 * 30, now), **fresh))
    cache.put(DomainFacts("seen.example", tls_first_seen=now, tls_last_seen=now, **fresh))
    cache.put(DomainFacts("plain.example", **fresh))
    cache.put(DomainFacts("admin.example", override="verify", **fresh))
    cache.put(DomainFacts("dane.example", **{**fresh, "dane": DaneFacts(True, True, True, now)}))


@pytest.fixture
async def socketmap(tmp_path: Path) -> AsyncIterator[tuple[int, SocketmapResponder]]:
    config = PolicydSection(cache_path=str(tmp_path / "facts.sqlite3"), lookup_timeout="3s",
                            probe_new_domain_delay="1h")
    dns = DnsClient(DnsSection(nameservers=[f"127.0.0.1:{free_port()}"], timeout="200ms",
                               lifetime="500ms"))
    cache = SqliteFactsCache(config.cache_path)
    seed(cache, time.time())
    service = DomainService(config, cache, dns, PolicyFetcher(config, dns), Prober(config, dns))
    responder = SocketmapResponder(service, (3, 7, 11))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SocketmapProtocol(lambda: responder), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield port, responder
    server.close()
    await server.wait_closed()
    await service.close()
    cache.close()


async def _exchange(port: int, stream: bytes, size: int, count: int) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for start in range(0, len(stream), size):
        writer.write(stream[start : start + size])
        await writer.drain()
    decoder = NetstringDecoder(200_000)
    replies: list[bytes] = []
    while len(replies) < count:
        data = await asyncio.wait_for(reader.read(4096), 10)
        assert data, "server closed the connection early"
        replies.extend(decoder.feed(data))
    writer.close()
    return replies


@pytest.mark.parametrize("size", READ_SIZES)
async def test_replay_pipelined(socketmap: tuple[int, SocketmapResponder], size: int) -> None:
    port, _ = socketmap
    stream = b"".join(encode(pair["request"].encode()) for pair in PAIRS)
    # Twice: the second round gets reused replies, which must be identical.
    for _ in range(2):
        replies = await _exchange(port, stream, size, len(PAIRS))
        assert [reply.decode() for reply in replies] == [pair["response"] for pair in PAIRS]


async def test_framing_error_closes_only_that_connection(
    socketmap: tuple[int, SocketmapResponder],
) -> None:
    port, _ = socketmap
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"10:postveil x;")
    assert await asyncio.wait_for(reader.read(100), 5) == b""
    replies = await _exchange(port, encode(b"postveil seen.example"), 4096, 1)
    assert replies == [b"OK encrypt protocols=>=TLSv1.2"]


async def test_quick_reconnects(socketmap: tuple[int, SocketmapResponder]) -> None:
    port, _ = socketmap
    for _ in range(50):
        replies = await _exchange(port, encode(b"postveil enforce.example"), 4096, 1)
        assert replies[0].startswith(b"OK secure")


async def test_oversize_request_closes_connection(
    socketmap: tuple[int, SocketmapResponder],
) -> None:
    port, _ = socketmap
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"5000:")
    assert await asyncio.wait_for(reader.read(100), 5) == b""


async def test_reply_over_cap_is_temp(socketmap: tuple[int, SocketmapResponder]) -> None:
    port, responder = socketmap
    huge = tuple(f"mx{i:05d}.{'a' * 50}.huge.example" for i in range(2000))
    now = time.time()
    responder.service.cache.put(DomainFacts(
        "huge.example", sts=StsPolicy("id1", "enforce", huge, 86400, now), sts_checked_at=now,
        dane=DaneFacts(False, False, False, now), first_seen=now, last_probe_at=now))
    replies = await _exchange(port, encode(b"postveil huge.example"), 4096, 1)
    assert replies == [b"TEMP policy too long"]


async def test_cache_failure_is_temp(socketmap: tuple[int, SocketmapResponder]) -> None:
    port, responder = socketmap
    responder.service.cache.close()
    Path(responder.service.cache.path).unlink()
    Path(responder.service.cache.path).mkdir()
    replies = await _exchange(port, encode(b"postveil fresh.example"), 4096, 1)
    assert replies[0].startswith(b"TEMP ")


@pytest.mark.parametrize(
    ("key", "domain"),
    [("Example.ORG.", "example.org"), ("[mx.example.org]:2525", "mx.example.org"),
     ("mx.example.org:25", "mx.example.org"), (".example.org", None), ("[10.0.0.1]", None),
     ("2001:db8::1", None), ("", None), ("a" * 64 + ".org", None),
     ("Bücher.Example.", "xn--bcher-kva.example"), ("[bücher.example]:25", "xn--bcher-kva.example"),
     ("xn--bcher-kva.example", "xn--bcher-kva.example"), ("[example.org]:smtp", "example.org"),
     ("example.org:submission", "example.org"), ("[ipv6:2001:db8::1]:25", None), ("[example.org]:", None)],
)
def test_domain_from_key(key: str, domain: str | None) -> None:
    assert domain_from_key(key) == domain


async def test_notfound_not_reused_after_hold(socketmap: tuple[int, SocketmapResponder]) -> None:
    # The milter writes TLS holds and the admin writes overrides straight into the
    # shared cache, and postveil-policyd gets no notice of it. A reused NOTFOUND would send
    # mail that was routed by tls in plaintext.
    port, responder = socketmap
    request = encode(b"tls_policy plain.example")
    assert await _exchange(port, request, 4096, 1) == [b"NOTFOUND "]

    responder.service.cache.hold_tls("plain.example", time.time() + 3600)
    [reply] = await _exchange(port, request, 4096, 1)

    assert reply.startswith(b"OK encrypt")


async def test_tls_answer_reused(socketmap: tuple[int, SocketmapResponder]) -> None:
    port, responder = socketmap
    request = encode(b"tls_policy seen.example")
    [first] = await _exchange(port, request, 4096, 1)

    responder.service.cache.put(DomainFacts("seen.example", override="may"))
    [second] = await _exchange(port, request, 4096, 1)

    assert first.startswith(b"OK encrypt")
    assert second == first


async def test_held_domain_answered_when_lookup_fails(socketmap: tuple[int, SocketmapResponder]) -> None:
    # Only the hold is stored, and discovery fails here (closed DNS port): Postfix
    # must get the hold's answer, not TEMP.
    port, responder = socketmap
    responder.service.cache.hold_tls("purged.example", time.time() + 3600)

    [reply] = await _exchange(port, encode(b"tls_policy purged.example"), 4096, 1)

    assert reply.startswith(b"OK encrypt")


async def test_idle_connections_closed(
    socketmap: tuple[int, SocketmapResponder], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socketmap_module, "IDLE_TIMEOUT", 0.3)
    port, _ = socketmap
    silent_reader, _silent = await asyncio.open_connection("127.0.0.1", port)
    trickle_reader, trickle_writer = await asyncio.open_connection("127.0.0.1", port)
    # A request sent a few bytes at a time, never finished, counts as idle too.
    for chunk in (b"40:", b"post", b"veil"):
        trickle_writer.write(chunk)
        await asyncio.sleep(0.08)

    assert await asyncio.wait_for(silent_reader.read(100), 5) == b""
    assert await asyncio.wait_for(trickle_reader.read(100), 5) == b""


async def test_busy_connection_kept_open(
    socketmap: tuple[int, SocketmapResponder], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socketmap_module, "IDLE_TIMEOUT", 0.3)
    port, _ = socketmap
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    decoder = NetstringDecoder(200_000)
    for _ in range(4):
        writer.write(encode(b"postveil enforce.example"))
        data = await asyncio.wait_for(reader.read(4096), 5)
        assert decoder.feed(data)[0].startswith(b"OK secure")
        await asyncio.sleep(0.2)
    writer.close()
