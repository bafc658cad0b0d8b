"""Netstring framing (``<length>:<bytes>,``) as Postfix's socketmap protocol uses it."""

from __future__ import annotations

from postveil.errors import PostveilError

MAX_LENGTH_DIGITS = 9


class NetstringError(PostveilError):
    """The peer sent bytes that are not a valid netstring; the connection must close."""


def encode(payload: bytes) -> bytes:
    return b"%d:%s," % (len(payload), payload)


class NetstringDecoder:
    """Incremental decoder: feed any split of the stream, collect complete payloads.

    ``max_length`` bounds one payload in bytes; a longer announced length raises
    NetstringError before the payload is buffered.
    """

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self._buffer = bytearray()
        self._pending_length: int | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes and return every payload they complete, in order."""
        self._buffer += data
        payloads: list[bytes] = []
        while True:
            if self._pending_length is None:
                colon = self._buffer.find(b":", 0, MAX_LENGTH_DIGITS + 1)
                if colon < 0:
                    too_long = len(self._buffer) > MAX_LENGTH_DIGITS
                    if too_long or (self._buffer and not self._buffer.isdigit()):
                        raise NetstringError(
                            f"invalid netstring length prefix {bytes(self._buffer[:12])!r}"
                        )
                    return payloads
                digits = bytes(self._buffer[:colon])
                if not digits.isdigit() or (len(digits) > 1 and digits.startswith(b"0")):
                    raise NetstringError(f"invalid netstring length {digits!r}")
                length = int(digits)
                if length > self.max_length:
                    raise NetstringError(
                        f"netstring of {length} bytes exceeds the limit of {self.max_length}"
                    )
                del self._buffer[: colon + 1]
                self._pending_length = length
            length = self._pending_length
            if len(self._buffer) < length + 1:
                return payloads
            if self._buffer[length] != ord(","):
                raise NetstringError("netstring payload is not followed by ','")
            payloads.append(bytes(self._buffer[:length]))
            del self._buffer[: length + 1]
            self._pending_length = None

    @property
    def buffered(self) -> int:
        return len(self._buffer)
