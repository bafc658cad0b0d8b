"""Where postveil-policyd's socketmap latency tail comes from, measured inside the daemon.

Runs the real daemon in a child process with timing hooks, seeds the same 1,000-domain
cache as ``socketmap_bench.py`` and drives it with that script's paced client. The
child prints at exit:

* time spent in ``SocketmapProtocol.data_received`` per call (server-side handling);
* time of ``SocketmapResponder.reply_now``, the path that reads the SQLite facts cache
  when no reused answer is valid;
* every garbage collection's pause, by generation;
* event loop lag: how late a 1 ms sleep wakes up.

Usage (from the repository root)::

    python bench/policyd_tail.py --duration 10 --scheduler-interval 1s --scan-batch 8
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import gc
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import socketmap_bench  # noqa: E402


def percentile_ms(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000


def summary(name: str, values: list[float]) -> str:
    return (f"{name}: {len(values)} calls, p50 {percentile_ms(values, 0.5):.3f} ms, "
            f"p99 {percentile_ms(values, 0.99):.3f} ms, max {percentile_ms(values, 1.0):.3f} ms")


def serve(config_path: str, scan_batch: int | None) -> int:
    """Run the daemon in this process with the timing hooks installed."""
    from postveil.policyd import daemon, domains, socketmap

    if scan_batch is not None:
        domains.SCAN_BATCH = scan_batch
    handling: list[float] = []
    facts_reads: list[float] = []
    lags: list[float] = []
    pauses: dict[int, list[float]] = {}
    collection_started = [0.0]

    def on_collection(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collection_started[0] = time.perf_counter()
        else:
            pause = time.perf_counter() - collection_started[0]
            pauses.setdefault(info["generation"], []).append(pause)

    gc.callbacks.append(on_collection)

    data_received = socketmap.SocketmapProtocol.data_received
    reply_now = socketmap.SocketmapResponder.reply_now

    def timed_data_received(self: socketmap.SocketmapProtocol, data: bytes) -> None:
        started = time.perf_counter()
        data_received(self, data)
        handling.append(time.perf_counter() - started)

    def timed_reply_now(
        self: socketmap.SocketmapResponder, payload: bytes, connection: str
    ) -> bytes | None:
        started = time.perf_counter()
        answer = reply_now(self, payload, connection)
        facts_reads.append(time.perf_counter() - started)
        return answer

    socketmap.SocketmapProtocol.data_received = timed_data_received  # type: ignore[method-assign]
    socketmap.SocketmapResponder.reply_now = timed_reply_now  # type: ignore[method-assign]
    start = daemon.PolicyDaemon.start

    async def start_with_lag_monitor(self: daemon.PolicyDaemon) -> None:
        await start(self)

        async def monitor() -> None:
            while True:
                before = time.perf_counter()
                await asyncio.sleep(0.001)
                lags.append(time.perf_counter() - before - 0.001)

        self.runtime.service.spawn(monitor())

    daemon.PolicyDaemon.start = start_with_lag_monitor  # type: ignore[method-assign]

    @atexit.register
    def report() -> None:
        print(summary("data_received", handling), file=sys.stderr)
        print(summary("reply_now (facts cache read)", facts_reads), file=sys.stderr)
        for generation, values in sorted(pauses.items()):
            print(summary(f"gc generation {generation}", values), file=sys.stderr)
        print(summary("loop lag of a 1 ms sleep", lags), file=sys.stderr)

    return daemon.main(["--config", config_path])


def measure(args: argparse.Namespace) -> None:
    import uvloop

    domains = socketmap_bench.domain_names(socketmap_bench.DOMAINS)
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        # Reuse the benchmark's seeding and configuration, then restart under the hooks.
        seeded, port = socketmap_bench.start_postveil(workdir, domains, args.answer_ttl)
        seeded.send_signal(signal.SIGTERM)
        seeded.wait(timeout=30)
        config = workdir / f"postveil-{args.answer_ttl}.yaml"
        config.write_text(config.read_text().replace(
            "scheduler_interval: 1h", f"scheduler_interval: {args.scheduler_interval}"))
        command = [sys.executable, __file__, "serve", str(config)]
        if args.scan_batch is not None:
            command += ["--scan-batch", str(args.scan_batch)]
        server = subprocess.Popen(command)
        try:
            socketmap_bench.wait_for_port(port)
            paced = uvloop.run(socketmap_bench.run_client(port, domains, args.duration, args.rate))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    print(f"client: {paced}; load average {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command")
    child = commands.add_parser("serve", help="(internal) run the daemon with timing hooks")
    child.add_argument("config")
    child.add_argument("--scan-batch", type=int)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of paced requests")
    parser.add_argument("--rate", type=float, default=1000.0, help="paced requests/s in total")
    parser.add_argument("--answer-ttl", default="5s", help="policyd.answer_cache_ttl")
    parser.add_argument("--scheduler-interval", default="1h", help="policyd.scheduler_interval")
    parser.add_argument("--scan-batch", type=int,
                        help="domains per scheduler batch (default: SCAN_BATCH in the code)")
    args = parser.parse_args()
    if args.command == "serve":
        sys.exit(serve(args.config, args.scan_batch))
    measure(args)


if __name__ == "__main__":
    main()
