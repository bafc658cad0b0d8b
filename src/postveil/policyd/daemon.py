"""``postveil-policyd``: command line, listeners, signals, reload and systemd notification.

SIGTERM and SIGINT stop the listeners, cancel background work, close the cache and
exit 0. SIGHUP re-reads the configuration file, builds a new :class:`Runtime` from it
and swaps it in; an invalid file leaves the running one in place. With
``Type=notify`` systemd learns READY=1 once both listeners accept connections and
STOPPING=1 when shutdown begins. Start, stop, load and reload are recorded in the
audit trail through the same :class:`AuditLog` as the TLS requirement changes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import re
import signal
import subprocess
import sys
from dataclasses import dataclass

import sdnotify

from postveil import __version__
from postveil.audit import AuditError, AuditLog, ConfigEvent, DaemonEvent
from postveil.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    Config,
    load_config,
)
from postveil.config.policyd import PolicydSection
from postveil.errors import ConfigError, PostveilError
from postveil.log import setup_logging
from postveil.policyd.delegation import PolicyDelegationServer
from postveil.policyd.dns import DnsClient
from postveil.policyd.domains import DomainService
from postveil.policyd.listeners import ListenerError, open_listener, remove_unix_socket
from postveil.policyd.mtasts_fetch import PolicyFetcher
from postveil.policyd.probe import Prober
from postveil.policyd.socketmap import SocketmapProtocol, SocketmapResponder
from postveil.startup import EX_CONFIG, load_daemon_config, parse_daemon_args, start_logging
from postveil.tlsfacts.cache import FactsCache, open_cache

log = logging.getLogger("postveil.policyd")

PROGRAM = "postveil-policyd"

EXIT_CONFIG = EX_CONFIG
"""Exit status for a configuration the daemon cannot run with: invalid file, logging
or audit key unusable, or a listener that cannot be opened."""

READY_MESSAGE = "listening: socketmap on"
"""Start of the line logged once both listeners accept connections."""

RESTART_KEYS = ("socketmap_listen", "policy_listen", "cache_backend", "cache_path", "redis_url",
                "redis_prefix")
"""policyd keys that a reload cannot apply: the listeners and the facts cache stay open."""

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


class CaFileError(PostveilError):
    """A CA bundle named in the ``policyd`` section cannot be loaded."""

    def __init__(self, key: str, path: str | None, error: OSError) -> None:
        where = path or "the system's default CA bundle"
        super().__init__(f"policyd.{key}: cannot load {where}: {error.strerror or error}")


@dataclass(frozen=True)
class Runtime:
    """Everything built from one configuration; a reload builds a new one and swaps it in."""

    config: Config
    service: DomainService
    responder: SocketmapResponder


def build_runtime(
    config: Config,
    postfix_version: tuple[int, ...],
    *,
    cache: FactsCache | None = None,
    audit: AuditLog | None = None,
) -> Runtime:
    """Build the domain service and socketmap responder for ``config``.

    ``cache`` and ``audit`` are reused when given, else opened from the configuration.
    Raises PostveilError (AuditKeyError, CacheError, CaFileError) or OSError (for
    example a cache directory that cannot be created) when something cannot be
    opened. Whatever this call opened is closed again before it raises.
    """
    section = config.policyd
    opened_audit = audit is None
    audit = audit if audit is not None else AuditLog(config.audit, program=PROGRAM)
    opened_cache = cache is None
    try:
        cache = cache if cache is not None else open_cache(section)
        try:
            dns = DnsClient(config.dns)
            try:
                fetcher = PolicyFetcher(section, dns)
            except OSError as exc:
                raise CaFileError("mta_sts_ca_file", section.mta_sts_ca_file, exc) from exc
            try:
                prober = Prober(section, dns)
            except OSError as exc:
                raise CaFileError("probe_ca_file", section.probe_ca_file, exc) from exc
            service = DomainService(section, cache, dns, fetcher, prober, audit=audit,
                                    config_version=config.version or "-")
        except BaseException:
            if opened_cache:
                cache.close()
            raise
    except BaseException:
        if opened_audit:
            audit.close()
        raise
    return Runtime(config, service, SocketmapResponder(service, postfix_version))


class PolicyDaemon:
    """Both listeners over the current :class:`Runtime`, with reload and shutdown."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._servers: list[asyncio.AbstractServer] = []
        self._listen_addresses: list[str] = []
        """Addresses of the open listeners; a reload may change the configured ones."""
        self._stop = asyncio.Event()
        self._stop_signal: str | None = None
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        """Reloads in progress and replaced runtimes that are still draining."""
        self._applied_logging = runtime.config.logging
        """The logging section in effect; a reload that failed to apply one retries it."""
        self._notifier = sdnotify.SystemdNotifier()
        self.delegation = PolicyDelegationServer(lambda: self._runtime.service)

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    @property
    def config(self) -> Config:
        return self._runtime.config

    # -- audit -------------------------------------------------------------------

    async def _audit_event(self, record: ConfigEvent | DaemonEvent) -> None:
        """Append a daemon or configuration event; a failure is logged, not raised,
        because replies to Postfix matter more than a record that the daemon runs."""
        audit = self._runtime.service.audit
        if audit is None:
            return
        try:
            await asyncio.to_thread(audit.append, record)
        except AuditError as exc:
            log.error("audit: cannot record the %s %s event: %s", record.kind, record.event, exc)

    async def _reload_failed(self, path: str, error: str) -> None:
        version = self.config.version or "-"
        await self._audit_event(ConfigEvent("reload_failed", path, version, error))

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Open both listeners and start the scheduler; raises ListenerError."""
        section = self.config.policyd
        try:
            self._servers.append(await open_listener(
                "socketmap_listen", section.socketmap_listen,
                lambda: SocketmapProtocol(lambda: self._runtime.responder), streams=False,
            ))
            self._listen_addresses.append(section.socketmap_listen)
            self._servers.append(await open_listener(
                "policy_listen", section.policy_listen, self.delegation.handle, streams=True
            ))
            self._listen_addresses.append(section.policy_listen)
        except ListenerError:
            await self._close_servers()
            raise
        self._runtime.service.spawn(self._runtime.service.run_scheduler())
        # A full collection over the imported modules took about 20 ms on the 2-core
        # test machine, a stall every pending request would see. Objects that exist
        # after start-up live until exit, so they are moved out of the collector's reach.
        gc.collect()
        gc.freeze()
        if self.config.uses_only_defaults:
            log.warning("%s sets no key; every default applies", self.config.source)
        await self._audit_event(ConfigEvent("load", self.config.source, self.config.version or "-"))
        await self._audit_event(DaemonEvent("start", __version__))
        log.info("%s %s, policy delegation on %s", READY_MESSAGE, section.socketmap_listen,
                 section.policy_listen)

    def request_stop(self, signum: int) -> None:
        if self._stop_signal is None:
            self._stop_signal = signal.Signals(signum).name
            log.info("received %s: stopping", self._stop_signal)
        self._stop.set()

    def request_reload(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> int:
        """Serve until SIGTERM or SIGINT; return the exit status (0, or 78 when a
        listener cannot be opened)."""
        try:
            await self.start()
        except ListenerError as exc:
            log.critical("%s", exc)
            await self._runtime.service.close()
            self._close_stores()
            return EXIT_CONFIG
        self._notifier.notify("READY=1")
        await self._stop.wait()
        self._notifier.notify("STOPPING=1")
        await self.close()
        return 0

    async def close(self) -> None:
        await self._close_servers()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._runtime.service.close()
        await self._audit_event(DaemonEvent("stop", __version__, self._stop_signal or "stopped"))
        self._close_stores()
        log.info("stopped")

    async def _close_servers(self) -> None:
        """Close the listeners and remove the unix sockets this process created."""
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        for address in self._listen_addresses:
            remove_unix_socket(address)
        self._listen_addresses.clear()

    def _close_stores(self) -> None:
        service = self._runtime.service
        service.cache.close()
        if service.audit is not None:
            service.audit.close()

    # -- reload ------------------------------------------------------------------

    async def reload(self) -> None:
        """Build a new Runtime from the same file and swap it in; keep the old on error.

        Logging follows the new file. Changed listener or cache keys are logged as
        needing a restart, because the listeners and the open cache stay. Each
        problem is logged as its own line, because syslog drops continuation lines.
        """
        async with self._reload_lock:
            await self._reload()

    async def _reload(self) -> None:
        old = self._runtime
        path = old.config.source
        try:
            new_config = load_config(path)
        except ConfigError as exc:
            log.error("reload of %s failed with %d error(s); keeping the running configuration",
                      path, len(exc.problems))
            for problem in exc.problems:
                log.error("reload: %s", problem)
            await self._reload_failed(path, f"{len(exc.problems)} configuration error(s)")
            return

        try:
            runtime = await self._build_next(old, new_config)
        except Exception as exc:  # noqa: BLE001 - any failure keeps the running configuration
            log.error("reload of %s failed; keeping the running configuration: %s: %s",
                      path, type(exc).__name__, exc)
            await self._reload_failed(
                path, f"start-up of the new configuration failed: {type(exc).__name__}")
            return

        runtime.service.carry_over(old.service)
        self._runtime = runtime
        runtime.service.spawn(runtime.service.run_scheduler())
        self._retire(old, close_audit=runtime.service.audit is not old.service.audit)
        await self._audit_event(ConfigEvent("reload", path, new_config.version or "-"))

        if new_config.logging != self._applied_logging:
            try:
                setup_logging(new_config.logging, PROGRAM, previous=self._applied_logging)
                self._applied_logging = new_config.logging
            except OSError as exc:
                # setup_logging replaces the handlers only after the new one exists.
                log.error("reload: cannot switch logging to %s: %s; logging stays as it was",
                          new_config.logging.target, exc)
        for key in RESTART_KEYS:
            if getattr(new_config.policyd, key) != getattr(old.config.policyd, key):
                log.warning("policyd.%s changed; the new value takes effect after a restart", key)
        log.info("configuration reloaded from %s (version %s)", path, new_config.version)

    async def _build_next(self, old: Runtime, config: Config) -> Runtime:
        """Build the Runtime for a reloaded ``config``, reusing the open cache and, when
        the ``audit`` section is unchanged, the audit log."""
        if config.policyd.postfix_version == old.config.policyd.postfix_version:
            postfix_version = old.responder.postfix_version
        else:
            postfix_version = await asyncio.to_thread(detect_postfix_version, config.policyd)
        audit = old.service.audit if config.audit == old.config.audit else None
        return build_runtime(config, postfix_version, cache=old.service.cache, audit=audit)

    def _retire(self, old: Runtime, *, close_audit: bool) -> None:
        """Let the replaced runtime's pending lookups finish in the background, then close it."""
        async def retire() -> None:
            try:
                await old.service.drain(old.config.policyd.lookup_timeout)
            except asyncio.CancelledError:
                await old.service.close()
                raise
            finally:
                if close_audit and old.service.audit is not None:
                    old.service.audit.close()

        task = asyncio.get_running_loop().create_task(retire())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def serve(config: Config) -> int:
    """Run the daemon on the current event loop; return the exit status."""
    try:
        runtime = build_runtime(config, detect_postfix_version(config.policyd))
    except (PostveilError, OSError) as exc:
        log.critical("cannot start: %s", exc)
        return EXIT_CONFIG
    daemon = PolicyDaemon(runtime)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, daemon.request_stop, signum)
    loop.add_signal_handler(signal.SIGHUP, daemon.request_reload)
    return await daemon.run()


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


# -- command line ------------------------------------------------------------------

_EPILOG = f"""configuration:
  --config defaults to ${CONFIG_ENV}, else {DEFAULT_CONFIG_PATH}.
  Check a file first with: postveil check-config PATH

signals:
  TERM, INT  stop: close both listeners, cancel lookups and probes in progress,
             close the facts cache and exit 0
  HUP        reload the configuration file; an invalid file is logged, one line
             per error, and the running configuration stays. Listener and cache
             keys (socketmap_listen, policy_listen, cache_backend, cache_path,
             redis_url, redis_prefix) take effect only after a restart

exit status:
  0   stopped by a signal
  78  invalid configuration, logging or audit key unusable, or a listener
      cannot be opened (EX_CONFIG; the systemd unit's RestartPreventExitStatus=78
      stops pointless restarts)
  1   any other failure
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return parse_daemon_args(
        PROGRAM,
        "Serve Postfix smtp_tls_policy_maps (socketmap) and check_policy_service "
        "from MTA-STS, DANE and STARTTLS monitoring.",
        _EPILOG,
        argv,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = load_daemon_config(PROGRAM, args.config)
    if config is None or not start_logging(PROGRAM, config):
        return EXIT_CONFIG
    log.info("starting with configuration %s (version %s)", config.source, config.version)
    with asyncio.Runner(loop_factory=_new_event_loop) as runner:
        return runner.run(serve(config))


if __name__ == "__main__":
    sys.exit(main())
