"""``postveil-portal``: serves the portal's pages (:mod:`postveil.portal.web`).

It opens the store and the audit log, listens on ``portal.listen`` (HTTPS with TLS 1.2
or later when ``tls_certificate`` is set, else plain HTTP on loopback behind a TLS
proxy), purges expired messages at start and every hour, and sends systemd READY=1
once it accepts connections. SIGTERM and SIGINT stop accepting, let requests in
progress finish for up to STOP_GRACE seconds, and exit 0. It does not reload its
configuration, except for the master key files, which it reads again when a message's
key names a master key it does not have, or when ``postveil portal rekey`` retired the
key that it digests codes with (:class:`KeyFileReloader`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
import sys

import sdnotify
from aiohttp import web

from postveil import __version__
from postveil.audit import AuditError, AuditLog, DaemonEvent
from postveil.config import CONFIG_ENV, DEFAULT_CONFIG_PATH, Config, load_config
from postveil.errors import ConfigError
from postveil.portal.keys import MasterKey
from postveil.portal.store import PortalError, PortalKeyError, PortalStore, load_keyring
from postveil.portal.web import PORTAL_KEY, Portal, make_app
from postveil.startup import EX_CONFIG, load_daemon_config, parse_daemon_args, start_logging

PROGRAM = "postveil-portal"
log = logging.getLogger("postveil.portal")

PURGE_INTERVAL = 3600.0
"""Seconds between purges of expired messages and sessions."""

STOP_GRACE = 10.0
"""Seconds a stop waits for requests in progress. The systemd unit's TimeoutStopSec
(15 s) is longer."""


def tls_context(certificate: str, key: str) -> ssl.SSLContext:
    """Return a server context for HTTPS with TLS 1.2 or later; raises OSError or
    ssl.SSLError when the files cannot be loaded."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, key)
    return context


class PortalDaemon:
    """The web server over one application, with the purge timer and shutdown."""

    def __init__(self, config: Config, app: web.Application, context: ssl.SSLContext | None):
        self.config = config
        self.app = app
        self.portal: Portal = app[PORTAL_KEY]
        self._context = context
        self._stop = asyncio.Event()
        self._stop_signal: str | None = None

    def request_stop(self, signum: int) -> None:
        if self._stop_signal is None:
            self._stop_signal = signal.Signals(signum).name
            log.info("received %s: stopping", self._stop_signal)
        self._stop.set()

    async def purge(self) -> None:
        """Purge once; a failure is logged, and the next purge tries again."""
        try:
            count = await self.portal.purge()
        except (PortalError, AuditError, OSError) as exc:
            log.error("purge of expired messages failed: %s", exc)
            return
        log.info("purged %d expired message(s)", count)

    async def _purge_hourly(self) -> None:
        while True:
            await asyncio.sleep(PURGE_INTERVAL)
            await self.purge()

    async def run(self) -> int:
        """Serve until SIGTERM or SIGINT; return the exit status (0, or EX_CONFIG when
        the listener cannot be opened)."""
        section = self.config.portal
        host, port = section.listen_address
        runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=STOP_GRACE
        )
        await runner.setup()

        site = web.TCPSite(runner, host, port, ssl_context=self._context)
        try:
            await site.start()
        except OSError as exc:
            log.critical("cannot listen on %s (portal.listen): %s", section.listen, exc.strerror)
            await runner.cleanup()
            return EX_CONFIG

        try:
            await asyncio.to_thread(self.portal.parser.start)
        except OSError as exc:
            # Each parse tries to start it again; until then pages offer the .eml only.
            log.error("cannot start the process that parses messages for pages: %s", exc)
        await self.purge()
        purger = asyncio.create_task(self._purge_hourly())
        await self._audit(DaemonEvent("start", __version__))
        log.info(
            "%s %s ready on %s://%s (links start with %s)",
            PROGRAM,
            __version__,
            "https" if self._context is not None else "http",
            section.listen,
            section.base_url,
        )
        notifier = sdnotify.SystemdNotifier()
        notifier.notify("READY=1")

        await self._stop.wait()
        notifier.notify("STOPPING=1")
        purger.cancel()
        # Closes the listener, then waits up to STOP_GRACE for requests in progress.
        await runner.cleanup()
        await self._audit(DaemonEvent("stop", __version__, self._stop_signal or "stopped"))
        log.info("stopped")
        return 0

    async def _audit(self, record: DaemonEvent) -> None:
        try:
            await asyncio.to_thread(self.portal.audit.append, record)
        except AuditError as exc:
            log.error("audit: cannot record the daemon %s event: %s", record.event, exc)


async def serve(
    config: Config, store: PortalStore, audit: AuditLog, context: ssl.SSLContext | None
) -> int:
    daemon = PortalDaemon(config, make_app(config, store, audit), context)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, daemon.request_stop, signum)
    loop.add_signal_handler(
        signal.SIGHUP,
        log.warning,
        "SIGHUP: %s does not reload; restart it to apply changes",
        PROGRAM,
    )
    return await daemon.run()


class KeyFileReloader:
    """Read the master key files that the configuration file names now, for a store
    that meets a data key encrypted with a master key it does not have.

    During a rotation of the master key (docs/portal.md), the intake may store messages
    under the new key before this daemon is restarted. Only the key files are taken
    from the new configuration. They decrypt, and the key that ``rekey`` moved the
    store to also digests codes once ``rekey`` retired the daemon's own key
    (:meth:`PortalStore.issue_code`). The daemon encrypts nothing with them and keeps
    every other setting until it is restarted.
    """

    def __init__(self, source: str) -> None:
        self.source = source

    def __call__(self) -> list[MasterKey]:
        """Return the keys; raises PortalKeyError, which the request handler logs."""
        try:
            section = load_config(self.source).portal
        except ConfigError as exc:
            problems = "; ".join(exc.problems)
            raise PortalKeyError(
                f"cannot read the master key files again from {self.source}: {problems}"
            ) from exc
        keyring = load_keyring(section.key_file, section.previous_key_files)
        log.info(
            "read the master key files again from %s: key ids %s",
            self.source,
            ", ".join(keyring.key_ids),
        )
        return list(keyring.keys)


def open_resources(config: Config) -> tuple[PortalStore, AuditLog, ssl.SSLContext | None]:
    """Open the store, the audit log and the TLS context; raises PortalError,
    AuditError, OSError or ssl.SSLError with a message that names the setting."""
    section = config.portal
    if section.base_url is None:
        raise PortalError(
            "portal.base_url is not set: set it to the address at which recipients reach "
            "the portal, for example https://secure.example.org"
        )
    store = PortalStore.open(
        section.store_directory,
        section.key_file,
        section.previous_key_files,
        key_loader=KeyFileReloader(config.source),
    )
    try:
        # Codes are digested with the current key, which must not be one that a
        # rotation moved the store away from.
        store.check_current_key()
        audit = AuditLog(config.audit, program=PROGRAM)
        context = None
        if section.tls_certificate is not None and section.tls_key is not None:
            try:
                context = tls_context(section.tls_certificate, section.tls_key)
            except (OSError, ssl.SSLError) as exc:
                raise PortalError(
                    f"cannot load portal.tls_certificate {section.tls_certificate} and "
                    f"portal.tls_key {section.tls_key}: {exc}"
                ) from exc
    except BaseException:
        store.close()
        raise
    return store, audit, context


_EPILOG = f"""configuration:
  --config defaults to ${CONFIG_ENV}, else {DEFAULT_CONFIG_PATH}. The daemon reads the
  portal, audit and logging sections; portal.base_url must be set.

signals:
  TERM, INT  stop: close the listener, let requests in progress finish (at most
             {STOP_GRACE:g} s) and exit 0
  HUP        ignored with a log line; restart the daemon to apply a new configuration

exit status:
  0   stopped by a signal
  78  invalid configuration, portal.base_url not set, a key file that is missing or
      readable by others, a store or TLS certificate that cannot be opened, or a
      listener that cannot be opened (EX_CONFIG; the systemd unit does not restart on it)
  1   any other failure
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return parse_daemon_args(
        PROGRAM,
        "Serve the pages where portal recipients pick up their messages.",
        _EPILOG,
        argv,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = load_daemon_config(PROGRAM, args.config)
    if config is None or not start_logging(PROGRAM, config):
        return EX_CONFIG
    log.info("starting with configuration %s (version %s)", config.source, config.version)
    try:
        store, audit, context = open_resources(config)
    except (PortalError, AuditError, OSError) as exc:
        log.critical("cannot start: %s", exc)
        return EX_CONFIG
    try:
        return asyncio.run(serve(config, store, audit, context))
    finally:
        store.close()
        audit.close()


if __name__ == "__main__":
    sys.exit(main())
