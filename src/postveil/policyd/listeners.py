"""Listening sockets of postveil-policyd: ``inet:host:port`` or ``unix:/path``.

Every failure to open one becomes a :class:`ListenerError` that names the
configuration key, the address, the operating system's error and what to change,
so the daemon can log one line and exit with status 78.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from postveil.errors import PostveilError

log = logging.getLogger("postveil.policyd")

UNIX_SOCKET_MODE = 0o666
"""Mode of a unix listener: Postfix runs as another user, so the directory controls access."""


class ListenerError(PostveilError):
    """A listener cannot be opened; the message names the key, address, OS error and fix."""

    def __init__(self, key: str, address: str, problem: str, fix: str) -> None:
        super().__init__(f"cannot listen on {address} (policyd.{key}): {problem}; {fix}")
        self.key = key
        self.address = address


async def open_listener(
    key: str, address: str, factory: Callable[..., Any], *, streams: bool
) -> asyncio.AbstractServer:
    """Open the listener at ``address`` (``inet:`` or ``unix:``); raises ListenerError.

    With ``streams`` the factory is an ``asyncio.start_server`` client callback,
    otherwise a protocol factory. A unix socket left by a process that no longer
    runs is replaced; one that a process still accepts connections on is not.
    """
    if address.startswith("unix:"):
        return await _open_unix(key, address, Path(address.removeprefix("unix:")), factory, streams)
    host, _, port = address.removeprefix("inet:").rpartition(":")
    host = host.strip("[]")
    loop = asyncio.get_running_loop()
    try:
        if streams:
            return await asyncio.start_server(factory, host, int(port), reuse_address=True)
        return await loop.create_server(factory, host, int(port), reuse_address=True)
    except OSError as exc:
        raise ListenerError(key, address, _os_error_text(exc), _bind_fix(key, exc.errno)) from exc


async def _open_unix(
    key: str, address: str, path: Path, factory: Callable[..., Any], streams: bool
) -> asyncio.AbstractServer:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ListenerError(
            key, address, f"cannot create directory {path.parent}: {_os_error_text(exc)}",
            "create it, writable by the daemon's user, or choose another path",
        ) from exc
    _remove_stale_socket(key, address, path)
    loop = asyncio.get_running_loop()
    try:
        if streams:
            server = await asyncio.start_unix_server(factory, str(path))
        else:
            server = await loop.create_unix_server(factory, str(path))
    except OSError as exc:
        raise ListenerError(
            key, address, _os_error_text(exc),
            f"make {path.parent} writable by the daemon's user, or choose a shorter path",
        ) from exc
    try:
        os.chmod(path, UNIX_SOCKET_MODE)
    except OSError as exc:
        server.close()
        raise ListenerError(key, address, f"cannot set mode 0666: {_os_error_text(exc)}",
                            "check the directory's owner") from exc
    return server


def _remove_stale_socket(key: str, address: str, path: Path) -> None:
    """Unlink a socket left by an instance that did not exit cleanly.

    Raises ListenerError when the path is not a socket or another process accepts
    connections on it.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ListenerError(key, address, f"cannot inspect {path}: {_os_error_text(exc)}",
                            "check the directory's permissions") from exc
    if not stat.S_ISSOCK(mode):
        raise ListenerError(key, address, f"{path} exists and is not a socket",
                            "move that file away or choose another path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        pass
    except OSError as exc:
        raise ListenerError(
            key, address,
            f"cannot check whether another process listens on it: {_os_error_text(exc)}",
            "stop the other postveil-policyd, or remove the socket if none runs",
        ) from exc
    else:
        raise ListenerError(
            key, address, "another process (probably another postveil-policyd) is listening on it",
            "stop that instance first, or choose another path",
        )
    finally:
        probe.close()
    log.info("removing stale socket %s (nothing listens on it)", path)
    path.unlink(missing_ok=True)


def _os_error_text(exc: OSError) -> str:
    """Return the system's text for the error; asyncio's bind errors repeat the address."""
    if exc.errno and exc.errno > 0 and not isinstance(exc, socket.gaierror):
        return os.strerror(exc.errno)
    return exc.strerror or str(exc)


def _bind_fix(key: str, error_number: int | None) -> str:
    if error_number == errno.EADDRINUSE:
        return ("another process listens on this port (ss -ltnp shows which); "
                "stop it or choose another port")
    if error_number == errno.EADDRNOTAVAIL:
        return "the host is not an address of this machine; use one that is, for example 127.0.0.1"
    if error_number == errno.EACCES:
        return "ports below 1024 need privileges; choose a port above 1023"
    return f"check policyd.{key}"


def remove_unix_socket(address: str) -> None:
    """Unlink the socket file of a ``unix:`` listener after its server closed."""
    if not address.startswith("unix:"):
        return
    path = Path(address.removeprefix("unix:"))
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not remove socket %s: %s", path, _os_error_text(exc))
