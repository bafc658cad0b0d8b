"""Loopback address allocation.

Each fixture that needs a well-known port (SMTP 25, DNS 53, HTTPS 443) gets an
address of its own in 127.0.0.0/8. The second and third octets are chosen per
process so that concurrent test runs on one machine do not collide.
"""

from __future__ import annotations

import os
import random
import socket
import threading

_lock = threading.Lock()
_rng = random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "big"))
_prefix = (_rng.randrange(16, 250), _rng.randrange(1, 250))
_next_host = 10


def allocate_address() -> str:
    """Return a fresh 127.x.y.z address; Linux routes all of 127.0.0.0/8 to lo."""
    global _next_host, _prefix
    with _lock:
        if _next_host > 250:
            _prefix = (_rng.randrange(16, 250), _rng.randrange(1, 250))
            _next_host = 10
        address = f"127.{_prefix[0]}.{_prefix[1]}.{_next_host}"
        _next_host += 1
        return address


def free_port(address: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``address`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def port_open(address: str, port: int) -> bool:
    """Return whether something accepts TCP connections on ``address``:``port``."""
    assert_loopback(address)
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def assert_loopback(address: str) -> None:
    """Raise ValueError unless ``address`` is in 127.0.0.0/8 or is ::1."""
    if not (address.startswith("127.") or address in ("::1", "localhost")):
        raise ValueError(f"test fixtures may only use loopback addresses, got {address!r}")
