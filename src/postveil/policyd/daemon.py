"""``postveil-policyd``: command line, listeners, signals and systemd notification.

SIGTERM and SIGINT stop the listeners, cancel background work, close the cache and
exit 0. With ``Type=notify`` systemd learns READY=1 once both listeners accept
connections and STOPPING=1 when shutdown begins.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import sdnotify

from postveil.audit import AuditLog
from postveil.config import Config, default_config_path, load_config
from postveil.config.policyd import PolicydSection
from postveil.errors import ConfigError, PostveilError
from postveil.log import setup_logging
from postveil.policyd.delegation import PolicyDelegationServer
from postveil.policyd.dns import DnsClient
from postveil.policyd.domains import DomainService
from postveil.policyd.mtasts_fetch import PolicyFetcher
from postveil.policyd.probe import Prober
from postveil.policyd.socketmap import SocketmapProtocol, SocketmapResponder
from postveil.tlsfacts.cache import open_cache

log = logging.getLogger("postveil.policyd")

EXIT_CONFIG = os.EX_CONFIG
"""Exit status for an invalid configuration (78); systemd does not restart on it."""

FALLBACK_POSTFIX_VERSION = (3, 0)
"""Assumed when ``postconf`` cannot be run: no version-gated attributes are sent."""


def parse_version(text: str) -> tuple[int, ...]:
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    if match is None:
        raise ValueError(f"invalid Postfix version {text!r}")
    return tuple(int(part) for part in match.groups() if part is not None)


def detect_postfix_version(section: PolicydSection) -> tuple[int, ...]:
    """Return the configured version, else ask ``postconf -d -h mail_version``."""
    if section.postfix_version:
        return parse_version(section.postfix_version)
    try:
        output = subprocess.run(
            ["postconf", "-d", "-h", "mail_version"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
        return parse_version(output)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        log.warning("cannot read the Postfix version (%s); assuming %s: set "
                    "policyd.postfix_version", exc, ".".join(map(str, FALLBACK_POSTFIX_VERSION)))
        return FALLBACK_POSTFIX_VERSION


def build_service(config: Config) -> DomainService:
    """Open the facts cache and the audit trail; raises PostveilError when either fails."""
    section = config.policyd
    dns = DnsClient(config.dns)
    audit = AuditLog(config.audit, program="postveil-policyd")
    return DomainService(
        section, open_cache(section), dns, PolicyFetcher(section, dns), Prober(section, dns),
        audit=audit,
    )


async def _listen(address: str, factory: object, *, streams: bool) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    if address.startswith("unix:"):
        path = address.removeprefix("unix:")
        if os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if streams:
            server = await asyncio.start_unix_server(factory, path)  # type: ignore[arg-type]
        else:
            server = await loop.create_unix_server(factory, path)  # type: ignore[arg-type]
        # Postfix runs as another user; access is controlled by the directory.
        os.chmod(path, 0o666)
        return server
    host_port = address.removeprefix("inet:")
    host, _, port = host_port.rpartition(":")
    host = host.strip("[]")
    if streams:
        return await asyncio.start_server(factory, host, int(port), reuse_address=True)  # type: ignore[arg-type]
    return await loop.create_server(factory, host, int(port), reuse_address=True)  # type: ignore[arg-type]


class Daemon:
    """Both listeners and the scheduler over one DomainService."""

    def __init__(self, config: Config, postfix_version: tuple[int, ...]) -> None:
        self.config = config
        self.service = build_service(config)
        self.responder = SocketmapResponder(self.service, postfix_version)
        self.delegation = PolicyDelegationServer(self.service)
        self._servers: list[asyncio.AbstractServer] = []
        self._stop = asyncio.Event()

    async def start(self) -> None:
        section = self.config.policyd
        self._servers.append(await _listen(
            section.socketmap_listen, lambda: SocketmapProtocol(self.responder), streams=False
        ))
        self._servers.append(await _listen(
            section.policy_listen, self.delegation.handle, streams=True
        ))
        self.service.spawn(self.service.run_scheduler())
        # A full collection over the imported modules took about 20 ms on the 2-core
        # test machine, a stall every pending request would see. Objects that exist
        # after start-up live until exit, so they are moved out of the collector's reach.
        gc.collect()
        gc.freeze()
        log.info("listening: socketmap on %s, policy delegation on %s",
                 section.socketmap_listen, section.policy_listen)

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        await self.start()
        notifier = sdnotify.SystemdNotifier()
        notifier.notify("READY=1")
        await self._stop.wait()
        notifier.notify("STOPPING=1")
        log.info("stopping")
        await self.close()

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        await self.service.close()
        self.service.cache.close()
        if self.service.audit is not None:
            self.service.audit.close()


async def _main_async(config: Config) -> None:
    daemon = Daemon(config, detect_postfix_version(config.policyd))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, daemon.request_stop)
    await daemon.run()


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="postveil-policyd",
        description="Serve Postfix smtp_tls_policy_maps (socketmap) and check_policy_service "
        "from MTA-STS, DANE and STARTTLS monitoring.",
    )
    parser.add_argument("-c", "--config", default=default_config_path(),
                        help="configuration file (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(config.logging, "postveil-policyd")
    log.info("starting with configuration %s (version %s)", config.source, config.version)
    try:
        with asyncio.Runner(loop_factory=_new_event_loop) as runner:
            runner.run(_main_async(config))
    except PostveilError as exc:
        log.error("cannot start: %s", exc)
        return 1
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
