"""The postveil-milter process: configuration, socket, signals and shutdown.

libmilter's ``smfi_main`` runs in a worker thread so that the Python main thread
keeps receiving SIGTERM and SIGHUP (libmilter blocks those signals only in the
threads it starts). On SIGTERM the daemon defers every new message at MAIL FROM,
waits up to ``milter.shutdown_timeout`` for messages in flight and exits. A message still unfinished then is cut off; Postfix's
``milter_default_action = tempfail`` defers it, so it is retried, never lost.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import grp
import logging
import os
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import Milter
import milter as libmilter  # pymilter's C extension
import sdnotify

from postveil import __version__
from postveil.audit import AuditError, ConfigEvent, DaemonEvent
from postveil.config import CONFIG_ENV, DEFAULT_CONFIG_PATH, Config, load_config
from postveil.config.milter import MilterSection, parse_milter_socket
from postveil.detection.validators import load_icd10cm
from postveil.errors import ConfigError, PostveilError
from postveil.log import setup_logging
from postveil.milter.processor import MessageProcessor
from postveil.milter.session import InFlight, PostveilMilter
from postveil.startup import EX_CONFIG, load_daemon_config, parse_daemon_args, start_logging

log = logging.getLogger("postveil.milter")

MILTER_NAME = "postveil"
PROGRAM = "postveil-milter"

READY_MESSAGE = "ready, listening on"
"""Logged once the socket has its final mode and group; test harnesses wait for it."""

RESTART_KEYS = ("socket", "timeout")
"""milter keys that libmilter reads once at start-up, so a reload cannot change them."""


class MilterSocketError(PostveilError):
    """The milter socket cannot be opened or set up; ``fix`` tells the administrator what to change."""

    def __init__(self, socket_spec: str, problem: str, fix: str) -> None:
        super().__init__(f"cannot open milter socket {socket_spec}: {problem}; {fix}")
        self.socket_spec = socket_spec
        self.problem = problem
        self.fix = fix


def _warn_unreadable_stores(config: Config) -> None:
    """Log one warning for each key or certificate directory the milter cannot read,
    and for a store of re-injected copies it cannot open.

    The daemon still runs, because mail that needs neither PGP nor S/MIME is unaffected,
    but every message whose route reaches the broken method is deferred (451).
    """
    stores = (
        ("pgp.gnupg_home", config.pgp.gnupg_home, "pgp"),
        ("smime.certificate_dir", config.smime.certificate_dir, "smime"),
    )
    for key, path, method in stores:
        if not os.path.isdir(path):
            problem = "does not exist or is not a directory"
        elif not os.access(path, os.R_OK | os.X_OK):
            problem = f"is not readable by uid {os.getuid()}"
        else:
            continue
        log.warning(
            "%s %s %s; every message whose route reaches %s will be deferred (451)",
            key, path, problem, method,
        )
    problem = _reinject_store_problem(config.milter.reinject_store)
    if problem is not None:
        log.warning(
            "milter.reinject_store %s %s; every message with copies to re-inject (PGP, S/MIME, "
            "portal, notices) will be deferred (451): fix the path or its permissions",
            config.milter.reinject_store, problem,
        )


def _reinject_store_problem(store: str | None) -> str | None:
    """Return why the milter could not open ``store`` now, or None when it can or
    will create it with its directory."""
    if store is None:
        return None
    if os.path.isdir(store):
        return "is a directory, not a file"
    if os.path.exists(store) and not os.access(store, os.R_OK | os.W_OK):
        return f"is not readable and writable by uid {os.getuid()}"
    directory = os.path.dirname(store) or "."
    # SQLite in WAL mode writes two files next to the store, so the directory must be
    # writable even when the store exists. A missing directory is created.
    if os.path.exists(directory) and not os.path.isdir(directory):
        return f"cannot be opened: {directory} is not a directory"
    if os.path.isdir(directory) and not os.access(directory, os.W_OK | os.X_OK):
        return f"cannot be opened: its directory is not writable by uid {os.getuid()}"
    return None


class MilterDaemon:
    """Owns the current configuration and the libmilter main loop."""

    def __init__(self, processor: MessageProcessor) -> None:
        self._processor = processor
        self._config_lock = threading.Lock()
        self.in_flight = InFlight()
        self._stop_requested = threading.Event()
        self._reload_requested = False
        self._stop_time: float | None = None
        self._stop_signal: int | None = None
        self._notifier = sdnotify.SystemdNotifier()
        self._socket_path: Path | None = None
        self._socket_inode: tuple[int, int] | None = None
        self._applied_logging = processor.config.logging
        """The logging section in effect; a reload that failed to apply one retries it."""

    @property
    def processor(self) -> MessageProcessor:
        with self._config_lock:
            return self._processor

    @property
    def config(self) -> Config:
        return self.processor.config

    def _audit_event(self, record: ConfigEvent | DaemonEvent) -> None:
        """Append a daemon or configuration event; a failure is logged, not raised.

        Messages need their own record, so an unwritable audit trail still defers mail.
        """
        try:
            self.processor.audit.append(record)
        except AuditError as exc:
            log.error("audit: cannot record the %s %s event: %s", record.kind, record.event, exc)

    def _reload_failed(self, path: str, error: str) -> None:
        self._audit_event(ConfigEvent("reload_failed", path, self.config.version or "-", error))

    def reload(self) -> None:
        """Build a new Config from the same file and swap it in; keep the old on error.

        Logging and the unix socket's mode and group follow the new file; a changed
        socket or timeout is logged as needing a restart. Each problem is logged as
        its own line, because syslog drops continuation lines.
        """
        old_config = self.config
        path = old_config.source
        try:
            new_config = load_config(path)
        except ConfigError as exc:
            log.error(
                "reload of %s failed with %d error(s); keeping the running configuration",
                path,
                len(exc.problems),
            )
            for problem in exc.problems:
                log.error("reload: %s", problem)
            self._reload_failed(path, f"{len(exc.problems)} configuration error(s)")
            return
        new_section = new_config.milter
        try:
            group_id = _socket_group_id(new_section)
        except MilterSocketError as exc:
            log.error("reload of %s failed; keeping the running configuration: %s", path, exc)
            self._reload_failed(path, "milter.socket_group does not exist")
            return
        try:
            keep_audit = new_config.audit == old_config.audit
            processor = MessageProcessor(new_config, audit=self.processor.audit if keep_audit else None)
        except Exception as exc:
            log.error("reload of %s failed; keeping the running configuration: %s: %s", path, type(exc).__name__, exc)
            self._reload_failed(path, f"start-up of the new configuration failed: {type(exc).__name__}")
            return
        with self._config_lock:
            self._processor = processor
        self._audit_event(ConfigEvent("reload", path, new_config.version or "-"))
        if new_config.logging != self._applied_logging:
            try:
                setup_logging(new_config.logging, PROGRAM, previous=self._applied_logging)
                self._applied_logging = new_config.logging
            except OSError as exc:
                # setup_logging replaces the handlers only after the new one exists.
                log.error("reload: cannot switch logging to %s: %s; logging stays as it was", new_config.logging.target, exc)
        old_section = old_config.milter
        if (new_section.socket_mode, new_section.socket_group) != (old_section.socket_mode, old_section.socket_group):
            self._apply_socket_permissions(new_section, group_id)
        for key in RESTART_KEYS:
            if getattr(new_section, key) != getattr(old_section, key):
                log.warning("milter.%s changed; the new value takes effect after a restart", key)
        log.info("configuration reloaded from %s (version %s)", path, new_config.version)
        _warn_unreadable_stores(new_config)

    def _apply_socket_permissions(self, section: MilterSection, group_id: int | None) -> None:
        """Set the running unix socket's mode and group after a reload; errors are logged."""
        if self._socket_path is None:
            return
        try:
            _set_socket_permissions(self._socket_path, section, group_id)
        except MilterSocketError as exc:
            log.error("reload: %s", exc)
        else:
            log.info("milter socket %s: mode %s, group %s", self._socket_path, section.socket_mode, section.socket_group or "unchanged")

    # -- libmilter ---------------------------------------------------------------

    def _register(self) -> None:
        # On a unix socket only end of message waits for the milter (QUIET_STEPS).
        quiet = parse_milter_socket(self.config.milter.socket)[0] == "unix"
        Milter.factory = lambda: PostveilMilter(lambda: self.processor, self.in_flight, quiet=quiet)
        libmilter.set_exception_policy(libmilter.TEMPFAIL)
        Milter.set_flags(
            Milter.ADDHDRS | Milter.CHGHDRS | Milter.CHGBODY | Milter.ADDRCPT | Milter.DELRCPT | Milter.CHGFROM | Milter.SETSYMLIST
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
        """Open the listening socket, or raise MilterSocketError naming the fix.

        An existing unix socket is removed only when no process accepts a connection
        on it, so a second instance cannot take over a running one's socket. A new
        unix socket is created with at most ``socket_mode``, then set to that mode
        and group.
        """
        section = self.config.milter
        family, address = parse_milter_socket(section.socket)
        if family != "unix":
            _check_inet_address(section.socket, family, address)
            _open_libmilter_socket(section.socket)
            return
        group_id = _socket_group_id(section)
        path = Path(address)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MilterSocketError(
                section.socket,
                f"cannot create directory {path.parent}: {exc.strerror}",
                "create it, writable by the daemon's user",
            ) from exc
        _remove_stale_socket(section.socket, path)
        with _umask_at_least(0o777 & ~section.socket_mode_bits):
            try:
                _open_libmilter_socket(section.socket)
            except MilterSocketError:
                # libmilter sends its reason to syslog only; find the OS error ourselves.
                _check_unix_path(section.socket, path)
                raise
        self._socket_path = path
        self._socket_inode = _inode_of(path)
        _set_socket_permissions(path, section, group_id)

    def _remove_own_socket(self) -> None:
        """Unlink the unix socket unless another process has replaced it since start-up."""
        if self._socket_path is None or _inode_of(self._socket_path) != self._socket_inode:
            return
        try:
            self._socket_path.unlink()
        except OSError as exc:
            log.warning("could not remove milter socket %s: %s", self._socket_path, exc.strerror)

    def _serve(self) -> None:
        try:
            libmilter.main()
        except libmilter.error as exc:
            log.error("libmilter stopped with an error: %s", exc)
        finally:
            self._stop_requested.set()

    # -- lifecycle ---------------------------------------------------------------

    def _request_reload(self, _signum: int, _frame: FrameType | None) -> None:
        self._reload_requested = True

    def request_stop(self, signum: int, _frame: FrameType | None) -> None:
        if self._stop_time is None:
            self._stop_time = time.monotonic()
            self._stop_signal = signum
            log.info("received %s: stopping", signal.Signals(signum).name)
        self.in_flight.stopping = True
        self._stop_requested.set()

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; return the exit status (0, or 78 for a socket problem)."""
        self._register()
        try:
            self._open_socket()
        except MilterSocketError as exc:
            log.critical("%s", exc)
            self._remove_own_socket()
            return EX_CONFIG
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        # The handler only sets a flag for the main loop. reload() appends to the audit
        # log, and a handler interrupts the main thread wherever it is, even in an append.
        signal.signal(signal.SIGHUP, self._request_reload)
        worker = threading.Thread(target=self._serve, name="libmilter", daemon=True)
        worker.start()
        if self.config.uses_only_defaults:
            log.warning("%s sets no key; every default applies", self.config.source)
        self._audit_event(ConfigEvent("load", self.config.source, self.config.version or "-"))
        self._audit_event(DaemonEvent("start", __version__))
        _warn_unreadable_stores(self.config)
        log.info("%s %s %s %s", PROGRAM, __version__, READY_MESSAGE, self.config.milter.socket)
        self._notifier.notify("READY=1")
        while not self._stop_requested.wait(0.2):
            if self._reload_requested:
                self._reload_requested = False
                self.reload()
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
        self._remove_own_socket()
        reason = signal.Signals(self._stop_signal).name if self._stop_signal else "libmilter stopped"
        self._audit_event(DaemonEvent("stop", __version__, reason))
        logging.shutdown()
        return 0


# -- socket helpers ----------------------------------------------------------------


def _socket_group_id(section: MilterSection) -> int | None:
    """Return the gid of ``socket_group`` for a unix socket, None when there is nothing to set."""
    if section.unix_socket_path is None or section.socket_group is None:
        return None
    try:
        return grp.getgrnam(section.socket_group).gr_gid
    except KeyError:
        raise MilterSocketError(
            section.socket,
            f"group {section.socket_group!r} (milter.socket_group) does not exist on this host",
            "create the group, or set milter.socket_group to an existing group such as postfix, "
            "or to null to keep the daemon's own group",
        ) from None


def _check_inet_address(spec: str, family: str, address: str) -> None:
    """Bind a throw-away socket to PORT@HOST so that a failure names the OS error.

    libmilter reports only "cannot open socket" and sends the reason to syslog.
    """
    port_text, _, host = address.partition("@")
    address_family = socket.AF_INET if family == "inet" else socket.AF_INET6
    try:
        resolved = socket.getaddrinfo(host, int(port_text), address_family, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise MilterSocketError(
            spec, f"cannot resolve {host!r}: {exc.strerror}", "write an IP address of this host, for example 127.0.0.1"
        ) from exc
    probe = socket.socket(address_family, socket.SOCK_STREAM)
    try:
        # libmilter sets SO_REUSEADDR too, so the check matches what it will do.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(resolved[0][4])
    except OSError as exc:
        raise MilterSocketError(spec, exc.strerror or str(exc), _bind_fix(exc.errno)) from exc
    finally:
        probe.close()


def _bind_fix(error_number: int | None) -> str:
    if error_number == errno.EADDRINUSE:
        return "another process listens on this port (ss -ltnp shows which); stop it or choose another port"
    if error_number == errno.EADDRNOTAVAIL:
        return "the host is not an address of this machine; use one that is, for example 127.0.0.1"
    if error_number == errno.EACCES:
        return "ports below 1024 need privileges; choose a port above 1023"
    return "check milter.socket"


def _check_unix_path(spec: str, path: Path) -> None:
    """Bind and remove a throw-away socket at ``path`` to find the OS error behind a
    libmilter failure; raise MilterSocketError with it, or return when the bind works."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.bind(str(path))
    except OSError as exc:
        raise MilterSocketError(
            spec, exc.strerror or str(exc), f"make {path.parent} writable by the daemon's user"
        ) from exc
    finally:
        probe.close()
    path.unlink(missing_ok=True)


def _remove_stale_socket(spec: str, path: Path) -> None:
    """Unlink a socket left by an instance that did not exit cleanly.

    Raises MilterSocketError when a process accepts a connection on the socket (another
    postveil-milter is running) or when the path is not a socket at all.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise MilterSocketError(spec, f"cannot inspect {path}: {exc.strerror}", "check the directory's permissions") from exc
    if not stat.S_ISSOCK(mode):
        raise MilterSocketError(spec, f"{path} exists and is not a socket", "move that file away or choose another path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        pass
    except TimeoutError:
        raise MilterSocketError(
            spec,
            "another process listens on it but did not accept a connection within 2s",
            "stop the other postveil-milter first, or give this one a different milter.socket",
        ) from None
    except OSError as exc:
        raise MilterSocketError(
            spec,
            f"cannot check whether another process listens on it: {exc.strerror}",
            "run as a user that may open the socket, or remove it if no postveil-milter runs",
        ) from exc
    else:
        raise MilterSocketError(
            spec,
            "another process (probably another postveil-milter) is already listening on it",
            "stop that instance first, or give this one a different milter.socket",
        )
    finally:
        probe.close()
    log.info("removing stale milter socket %s (nothing listens on it)", path)
    path.unlink(missing_ok=True)


def _open_libmilter_socket(spec: str) -> None:
    try:
        libmilter.opensocket(False)
    except libmilter.error as exc:
        raise MilterSocketError(
            spec,
            f"libmilter failed: {exc}",
            "libmilter logs the system error to syslog; check that the directory exists and is writable",
        ) from exc


@contextlib.contextmanager
def _umask_at_least(bits: int) -> Iterator[None]:
    """Add ``bits`` to the umask inside the block, so a socket bound there is never
    created with more permissions than configured (Postfix may connect at once)."""
    previous = os.umask(0o777)  # os.umask can only read the mask by setting one
    os.umask(previous | bits)
    try:
        yield
    finally:
        os.umask(previous)


def _set_socket_permissions(path: Path, section: MilterSection, group_id: int | None) -> None:
    try:
        os.chmod(path, section.socket_mode_bits)
        if group_id is not None:
            os.chown(path, -1, group_id)
    except OSError as exc:
        raise MilterSocketError(
            section.socket,
            f"cannot set mode {section.socket_mode} and group {section.socket_group} on {path}: {exc.strerror}",
            "run the daemon as a member of milter.socket_group, or change socket_group",
        ) from exc


def _inode_of(path: Path) -> tuple[int, int] | None:
    try:
        status = os.lstat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


# -- command line ------------------------------------------------------------------

_EPILOG = f"""configuration:
  --config defaults to ${CONFIG_ENV}, else {DEFAULT_CONFIG_PATH}.
  Check a file first with: postveil check-config PATH

signals:
  TERM, INT  stop: defer new messages, wait up to milter.shutdown_timeout for
             messages in flight, remove the unix socket and exit 0
  HUP        reload the configuration file; an invalid file is logged, one line
             per error, and the running configuration stays

exit status:
  0   stopped by a signal
  78  invalid configuration, or the socket cannot be opened (EX_CONFIG; the
      systemd unit's RestartPreventExitStatus=78 stops pointless restarts)
  1   any other failure
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return parse_daemon_args(
        PROGRAM,
        "Inspect and route outgoing mail for Postfix (milter).",
        _EPILOG,
        argv,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = load_daemon_config(PROGRAM, args.config)
    if config is None or not start_logging(PROGRAM, config):
        return EX_CONFIG
    try:
        processor = MessageProcessor(config)
    except Exception as exc:
        log.critical("cannot start: %s: %s", type(exc).__name__, exc)
        return EX_CONFIG
    # Load the ICD-10-CM list before Postfix can connect, not during the first
    # message that contains a code-like token.
    load_icd10cm()
    daemon = MilterDaemon(processor)
    code = daemon.run()
    sys.stdout.flush()
    sys.stderr.flush()
    # libmilter's threads may still be inside Python; skip interpreter finalisation.
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
