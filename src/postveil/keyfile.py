"""Key files of 32 random bytes written as 64 hex digits on one line.

The audit trail's HMAC key, the portal's master key and the portal's seal key all use
this form. Errors name the key, the path and the command that fixes them.
"""

from __future__ import annotations

import os
import secrets
import stat

KEY_BYTES = 32

_ACCESS_RULES = {
    0o077: ("group and others must have no access", "600"),
    0o007: ("others must have no access", "640"),
}
"""Forbidden mode bits, with the rule they enforce and the mode that satisfies it."""


def read_key_file(
    path: str | os.PathLike[str],
    *,
    name: str,
    create_hint: str,
    error: type[Exception],
    forbidden_mode: int | None = 0o077,
) -> bytes:
    """Read the key in ``path``. Raise ``error`` when the file cannot be read (with
    ``create_hint``), when its mode has a bit of ``forbidden_mode`` (None skips the
    check), or when it does not contain 64 hex digits. ``name`` names the key."""
    try:
        with open(path, "rb") as handle:
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
            text = handle.read(1024)
    except OSError as exc:
        raise error(f"cannot read {name} {path}: {exc.strerror}; {create_hint}") from exc
    if forbidden_mode is not None and mode & forbidden_mode:
        rule, fix = _ACCESS_RULES[forbidden_mode]
        raise error(f"{name} {path} has mode {mode:04o}: {rule}; run 'chmod {fix} {path}'")
    try:
        key = bytes.fromhex(text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise error(f"invalid {name} {path}: expected 64 hex digits on one line")
    return key


def write_key_file(path: str | os.PathLike[str], mode: int = 0o600) -> bytes:
    """Create ``path`` with a new random key and the given mode, and return the key.

    An existing file is never overwritten: FileExistsError. Other failures raise OSError.
    """
    key = secrets.token_bytes(KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, key.hex().encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return key
