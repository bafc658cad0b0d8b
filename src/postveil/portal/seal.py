"""The seal on a portal copy's recipient headers.

The milter adds one ``X-Postveil-Portal-Seal`` header to each copy it sends to the
portal: an HMAC-SHA256, under ``portal.seal_key_file``, of the time and of the
recipient headers in order. The intake (``postveil portal deliver``) stores a message
only when the seal matches and is recent, so a message mailed to the intake address
by anyone else, with recipient headers of its own, cannot make the portal notify anyone.

The seal covers the recipients and the time, not the content. Reusing a seal needs a
sealed copy, and those exist only in the portal, in Postfix's queue and in a bounce of
a portal copy to its sender (docs/portal.md, "Limits").
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from collections.abc import Sequence

from postveil.keyfile import read_key_file
from postveil.portal.store import PortalKeyError

SEAL_HEADER = "X-Postveil-Portal-Seal"
_SEAL_RE = re.compile(r"^\s*v1\s+t=(\d{1,12})\s+m=([0-9a-f]{64})\s*$")


class PortalSeal:
    """Maker and checker of seals under one key."""

    def __init__(self, key: bytes) -> None:
        self._key = hmac.new(key, b"postveil-portal seal", hashlib.sha256).digest()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PortalSeal:
        """Read the key file (64 hex digits). The milter's and the portal's users both
        read it, so group read access is allowed; others must have none."""
        key = read_key_file(
            path,
            name="portal seal key",
            create_hint="create one with 'postveil portal init'",
            error=PortalKeyError,
            forbidden_mode=0o007,
        )
        return cls(key)

    def _mac(self, stamp: int, recipients: Sequence[str]) -> str:
        body = "\n".join(["v1", str(stamp), *recipients]).encode("utf-8", "surrogateescape")
        return hmac.new(self._key, body, hashlib.sha256).hexdigest()

    def make(self, recipients: Sequence[str], now: float | None = None) -> str:
        """Return the header value for a copy with these recipient headers, in this order."""
        stamp = int(time.time() if now is None else now)
        return f"v1 t={stamp} m={self._mac(stamp, recipients)}"

    def check(
        self,
        value: str | None,
        recipients: Sequence[str],
        *,
        max_age: float,
        now: float | None = None,
    ) -> str | None:
        """Return None when ``value`` seals ``recipients`` and is at most ``max_age``
        old, otherwise the reason, for the log."""
        if value is None:
            return "no seal header"
        match = _SEAL_RE.match(value)
        if match is None:
            return "malformed seal header"
        stamp = int(match.group(1))
        now = time.time() if now is None else now
        if stamp > now + 300:
            return "seal dated in the future"
        if stamp < now - max_age:
            return "seal older than portal.seal_max_age"
        if not hmac.compare_digest(match.group(2), self._mac(stamp, recipients)):
            return "seal does not match the recipient headers"
        return None
