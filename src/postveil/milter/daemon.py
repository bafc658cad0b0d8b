"""The postveil-milter process: configuration, socket, signals and shutdown.

libmilter's ``smfi_main`` runs in a worker thread so that the Python main thread
keeps receiving SIGTERM and SIGHUP (libmilter blocks those signals only in the
threads it starts). On SIGTERM the daemon defers every new message at MAIL FROM,
waits up to ``milter.shutdown_timeout`` for messages in flight and exits. A message still unfinished then is cut off; Postfix's
``milter_default_action = tempfail`` defers it, so it is retried, never lost.
"""

from __future__ import annotations

import argparse
import grp
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import Milter
import milter as libmilter  # pymilter's C extension
import sdnotify

from postveil import __version__
from postveil.config import Config, default_config_path, load_config
from postveil.errors import ConfigError
from postveil.log import setup_logging
from postveil.milter.processor import MessageProcessor
from postveil.milter.session import InFlight, PostveilMilter

log = logging.getLogger("postveil.milter")

MILTER_NAME = "postveil"


class MilterDaemon:
    """Owns the current configuration and the libmilter main loop."""

    def __init__(self, processor: MessageProcessor) -> None:
        self._processor = processor
        self._config_lock = threading.Lock()
        self.in_flight = InFlight()
        self._stop_requested = threading.Event()
        self._stop_time: float | None = None
        self._notifier = sdnotify.SystemdNotifier()

    @property
    def processor(self) -> MessageProcessor:
        with self._config_lock:
            return self._processor

    @property
    def config(self) -> Config:
        return self.processor.config

    def reload(self) -> None:
        """Build a new Config from the same file and swap it in; keep the old on error."""
        path = self.config.source
        try:
            new_config = load_config(path)
        except ConfigError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            return
        try:
            processor = MessageProcessor(new_config, audit=self.processor.audit if new_config.audit == self.config.audit else None)
        except Exception as exc:
            log.error("reload failed, keeping the running configuration: %s: %s", type(exc).__name__, exc)
            return
        if new_config.milter.socket != self.config.milter.socket:
            log.warning("milter.socket changed; the new socket takes effect after a restart")
        with self._config_lock:
            self._processor = processor
        log.info("configuration reloaded from %s (version %s)", path, new_config.version)

    # -- libmilter ---------------------------------------------------------------

    def _register(self) -> None:
        Milter.factory = lambda: PostveilMilter(lambda: self.processor, self.in_flight)
        libmilter.set_exception_policy(libmilter.TEMPFAIL)
        Milter.set_flags(
            Milter.ADDHDRS | Milter.CHGHDRS | Milter.CHGBODY | Milter.ADDRCPT | Milter.DELRCPT | Milter.CHGFROM
        )
        libmilter.set_connect_callback(Milter.connect_callback)
        libmilter.set_helo_callback(lambda ctx, host: ctx.getpriv().hello(host))
        libmilter.set_envfrom_callback(lambda ctx, *b: ctx.getpriv().envfrom_bytes(*b))
        libmilter.set_envrcpt_callback(lambda ctx, *b: ctx.getpriv().envrcpt_bytes(*b))
        libmilter.set_header_callback(lambda ctx, f, v: ctx.getpriv().header_bytes(f, v))
        libmilter.set_eoh_callback(lambda ctx: ctx.getpriv().eoh())
        libmilter.set_body_callback(lambda ctx, chunk: ctx.getpriv().body(chunk))
        libmilter.set_eom_callback(lambda ctx: ctx.getpriv().eom())
        libmilter.set_abort_callback(lambda ctx: ctx.getpriv().abort())
        libmilter.set_close_callback(Milter.close_callback)
        section = self.config.milter
        libmilter.setconn(section.socket)
        libmilter.settimeout(int(section.timeout))
        libmilter.register(
            MILTER_NAME,
            data=lambda ctx: ctx.getpriv().data(),
            unknown=lambda ctx, cmd: ctx.getpriv().unknown(cmd),
            negotiate=Milter.negotiate_callback,
        )

    def _open_socket(self) -> None:
        section = self.config.milter
        if section.socket.startswith(("unix:", "local:")):
            path = Path(section.socket.split(":", 1)[1])
            path.parent.mkdir(parents=True, exist_ok=True)
        libmilter.opensocket(True)
        if section.socket.startswith(("unix:", "local:")):
            os.chmod(path, section.socket_mode_bits)
            if section.socket_group:
                os.chown(path, -1, grp.getgrnam(section.socket_group).gr_gid)

    def _serve(self) -> None:
        try:
            libmilter.main()
        except libmilter.error as exc:
            log.error("libmilter stopped with an error: %s", exc)
        finally:
            self._stop_requested.set()

    # -- lifecycle ---------------------------------------------------------------

    def request_stop(self, signum: int, _frame: FrameType | None) -> None:
        if self._stop_time is None:
            self._stop_time = time.monotonic()
            log.info("received %s: stopping", signal.Signals(signum).name)
        self.in_flight.stopping = True
        self._stop_requested.set()

    def run(self) -> int:
        self._register()
        self._open_socket()
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, lambda *_: self.reload())
        worker = threading.Thread(target=self._serve, name="libmilter", daemon=True)
        worker.start()
        log.info("postveil-milter %s listening on %s", __version__, self.config.milter.socket)
        self._notifier.notify("READY=1")
        while not self._stop_requested.wait(0.5):
            pass
        return self._shutdown()

    def _shutdown(self) -> int:
        self._notifier.notify("STOPPING=1")
        self.in_flight.stopping = True
        started = self._stop_time or time.monotonic()
        deadline = started + self.config.milter.shutdown_timeout
        # libmilter is never asked to stop (smfi_stop): that ends open sessions,
        # messages in flight included, and blocks for seconds. Instead new messages
        # are deferred at MAIL FROM while the ones in flight finish, and the process
        # exits; Postfix sees the socket close and reconnects after a restart.
        idle = self.in_flight.wait_idle(max(0.0, deadline - time.monotonic()))
        if idle:
            log.info("no message in flight; exiting")
        else:
            log.warning(
                "%d message(s) still in flight after %.0fs; exiting, Postfix will defer them",
                self.in_flight.count,
                self.config.milter.shutdown_timeout,
            )
        logging.shutdown()
        return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="postveil-milter", description="Inspect and route outgoing mail for Postfix (milter)."
    )
    parser.add_argument("--config", default=default_config_path(), help="configuration file (YAML)")
    parser.add_argument("--version", action="version", version=f"postveil-milter {__version__}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"postveil-milter: {exc}", file=sys.stderr)
        return 78  # EX_CONFIG: systemd does not restart a unit on bad configuration
    setup_logging(config.logging, "postveil-milter")
    try:
        processor = MessageProcessor(config)
    except Exception as exc:
        log.critical("cannot start: %s: %s", type(exc).__name__, exc)
        return 78
    daemon = MilterDaemon(processor)
    code = daemon.run()
    sys.stdout.flush()
    sys.stderr.flush()
    # libmilter's threads may still be inside Python; skip interpreter finalisation.
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
