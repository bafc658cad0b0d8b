"""Socketmap benchmark: postveil-policyd against postfix-mta-sts-resolver on cache hits.

Every server runs as its own process on 127.0.0.1 and answers for DOMAINS domains that
all have a cached MTA-STS enforce policy, so no request needs DNS or HTTPS. The same
client measures each one:

* throughput: CONNECTIONS connections, one outstanding request each (as Postfix's
  smtp processes do), for DURATION seconds, no pacing;
* latency: the same connections paced to RATE requests/s in total; latency counts from
  the moment the request is written to the reply's arrival. The event loop's timers
  have 1 ms resolution under uvloop, so timing from the scheduled send would measure
  the client's timer instead of the server. A request is never sent while the previous
  one on its connection is outstanding, so a stalled server still shows up in the tail.

postfix-mta-sts-resolver fills its cache only through live lookups, which would need
real DNS. ``peer-server`` therefore runs the peer's own responder and cache classes
with the cache filled through the cache's ``set`` method before the listener starts.

Usage (needs ``pip install -e '.[bench]'``)::

    python bench/socketmap_bench.py all --duration 10 --rate 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONNECTIONS = 8
DOMAINS = 1000
MX_PATTERNS = ("mx1.{domain}", "*.{domain}")


def domain_names(count: int) -> list[str]:
    return [f"d{i:05d}.bench.example" for i in range(count)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def encode(payload: bytes) -> bytes:
    return b"%d:%s," % (len(payload), payload)


# Client.


class Connection(asyncio.Protocol):
    """One socketmap connection with at most one request in flight."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[bytes] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        colon = self.buffer.find(b":")
        if colon < 0:
            return
        length = int(self.buffer[:colon])
        end = colon + 1 + length + 1
        if len(self.buffer) >= end:
            reply = bytes(self.buffer[colon + 1 : end - 1])
            del self.buffer[:end]
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(reply)

    async def request(self, payload: bytes) -> bytes:
        self.waiter = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(payload)
        return await self.waiter


async def run_client(port: int, domains: list[str], duration: float, rate: float) -> dict:
    loop = asyncio.get_running_loop()
    connections = []
    for _ in range(CONNECTIONS):
        _, protocol = await loop.create_connection(Connection, "127.0.0.1", port)
        connections.append(protocol)
    requests = [encode(b"postveil " + name.encode()) for name in domains]

    # Every domain must already give a policy: this benchmark measures cache hits.
    for payload in requests[:5]:
        reply = await connections[0].request(payload)
        if not reply.startswith(b"OK secure"):
            raise SystemExit(f"unexpected reply {reply[:80]!r}: the cache is not filled")

    latencies: list[float] = []
    deadline = time.perf_counter() + duration
    interval = CONNECTIONS / rate if rate > 0 else 0.0

    async def worker(index: int, connection: Connection) -> int:
        done = 0
        position = index
        scheduled = time.perf_counter() + (interval * index / CONNECTIONS)
        while True:
            if interval:
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                scheduled += interval
            start = time.perf_counter()
            if start >= deadline:
                return done
            reply = await connection.request(requests[position % len(requests)])
            if not reply.startswith(b"OK"):
                raise SystemExit(f"unexpected reply {reply[:80]!r}")
            if interval:
                latencies.append(time.perf_counter() - start)
            position += CONNECTIONS
            done += 1

    started = time.perf_counter()
    counts = await asyncio.gather(*(worker(i, c) for i, c in enumerate(connections)))
    elapsed = time.perf_counter() - started
    for connection in connections:
        assert connection.transport is not None
        connection.transport.close()
    result = {"requests": sum(counts), "seconds": round(elapsed, 2)}
    if interval:
        latencies.sort()
        result.update(
            rate=rate,
            p50_ms=round(statistics.median(latencies) * 1000, 3),
            p99_ms=round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 3),
            max_ms=round(latencies[-1] * 1000, 3),
        )
    else:
        result["requests_per_s"] = round(sum(counts) / elapsed)
    return result


# Servers.


def seed_postveil(path: Path, domains: list[str]) -> None:
    from postveil.tlsfacts.cache import SqliteFactsCache
    from postveil.tlsfacts.facts import DaneFacts, DomainFacts, StsPolicy

    now = time.time()
    cache = SqliteFactsCache(path)
    for name in domains:
        cache.put(DomainFacts(
            name,
            sts=StsPolicy("bench1", "enforce", tuple(p.format(domain=name) for p in MX_PATTERNS),
                          86400 * 7, now),
            sts_checked_at=now, dane=DaneFacts(False, False, False, now), first_seen=now,
            last_probe_at=now,
        ))
    cache.close()


def start_postveil(workdir: Path, domains: list[str], answer_ttl: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cache = workdir / f"postveil-{answer_ttl}.sqlite3"
    seed_postveil(cache, domains)
    config = workdir / f"postveil-{answer_ttl}.yaml"
    key = workdir / "audit.key"
    if not key.exists():
        from postveil.audit import generate_key_file

        generate_key_file(key)
    config.write_text(
        f"audit:\n  directory: {workdir / 'audit'}\n  key_file: {key}\n"
        "policyd:\n"
        f"  socketmap_listen: inet:127.0.0.1:{port}\n"
        f"  policy_listen: inet:127.0.0.1:{free_port()}\n"
        f"  cache_path: {cache}\n"
        f"  answer_cache_ttl: {answer_ttl}\n"
        "  postfix_version: '3.7.11'\n"
        "  scheduler_interval: 1h\n"
        "dns:\n"
        "  nameservers: ['127.0.0.1:9']\n"
        "logging:\n"
        "  level: WARNING\n"
    )
    process = subprocess.Popen([sys.executable, "-m", "postveil.policyd.daemon", "-c", str(config)])
    return process, port


async def peer_server(port: int, cache_kind: str, db_path: str, domains: list[str]) -> None:
    from postfix_mta_sts_resolver import utils
    from postfix_mta_sts_resolver.base_cache import CacheEntry
    from postfix_mta_sts_resolver.responder import STSSocketmapResponder

    options = {"filename": db_path} if cache_kind == "sqlite" else {}
    cfg = utils.populate_cfg_defaults(
        {"host": "127.0.0.1", "port": port, "cache": {"type": cache_kind, "options": options}}
    )
    if cache_kind == "internal":
        cfg["cache"]["options"]["cache_size"] = max(10000, len(domains))
    cache = utils.create_cache(cfg["cache"]["type"], cfg["cache"]["options"])
    await cache.setup()
    now = time.time()
    for name in domains:
        body = {"version": "STSv1", "mode": "enforce", "max_age": 86400 * 7,
                "mx": [p.format(domain=name) for p in MX_PATTERNS]}
        await cache.set(name, CacheEntry(now, "bench1", body))
    responder = STSSocketmapResponder(cfg, asyncio.get_running_loop(), cache)
    await responder.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await responder.stop()
    await cache.teardown()


def start_peer(workdir: Path, cache_kind: str, domains: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "peer-server", "--port", str(port), "--cache", cache_kind,
         "--db", str(workdir / "peer.sqlite3"), "--domains", str(domains)],
        stdout=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        raise SystemExit("postfix-mta-sts-resolver did not start")
    return process, port


def wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"no server on port {port}")


def run_all(args: argparse.Namespace) -> None:
    import uvloop

    domains = domain_names(args.domains)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        targets = [
            ("postveil-policyd, SQLite cache, answers reused 5s (default)",
             lambda: start_postveil(workdir, domains, "5s")),
            ("postveil-policyd, SQLite cache read on every request",
             lambda: start_postveil(workdir, domains, "0s")),
            ("postfix-mta-sts-resolver, internal cache, uvloop",
             lambda: start_peer(workdir, "internal", args.domains)),
            ("postfix-mta-sts-resolver, SQLite cache, uvloop",
             lambda: start_peer(workdir, "sqlite", args.domains)),
        ]
        for name, start in targets:
            process, port = start()
            try:
                wait_for_port(port)
                throughput = uvloop.run(run_client(port, domains, args.duration, 0))
                paced = uvloop.run(run_client(port, domains, args.duration, args.rate))
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
            rows.append({"server": name, **throughput, **{f"paced_{k}": v for k, v in paced.items()}})
            print(json.dumps(rows[-1]), file=sys.stderr)
    rate = f"{args.rate:g}/s"
    print(f"| server | requests/s (8 connections) | p50 ms at {rate} | p99 ms at {rate} | max ms |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['server']} | {row['requests_per_s']} | {row['paced_p50_ms']} | "
              f"{row['paced_p99_ms']} | {row['paced_max_ms']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    everything = commands.add_parser("all", help="benchmark every server and print a table")
    everything.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    everything.add_argument("--rate", type=float, default=1000.0, help="paced requests/s in total")
    everything.add_argument("--domains", type=int, default=DOMAINS)
    peer = commands.add_parser("peer-server", help="(internal) run the seeded peer responder")
    peer.add_argument("--port", type=int, required=True)
    peer.add_argument("--cache", choices=["internal", "sqlite"], required=True)
    peer.add_argument("--db", required=True)
    peer.add_argument("--domains", type=int, default=DOMAINS)
    args = parser.parse_args()
    if args.command == "peer-server":
        import uvloop

        uvloop.run(peer_server(args.port, args.cache, args.db, domain_names(args.domains)))
    else:
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        run_all(args)


if __name__ == "__main__":
    main()
