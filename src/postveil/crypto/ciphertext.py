"""Shared pieces of the checks that tell encrypted data from text dressed up as it.

Ciphertext is indistinguishable from random bytes, so about 98 of every 256 of its
bytes are printable ASCII (tab, line feed, carriage return and 0x20 to 0x7E) and long
runs of printable bytes are vanishingly rare. Text, or text with a few bytes mixed in,
fails both measures.
"""

from __future__ import annotations

import math
import re

_PRINTABLE = bytes([9, 10, 13, *range(0x20, 0x7F)])
_PRINTABLE_SHARE = len(_PRINTABLE) / 256
_MAX_DEVIATIONS = 6.0
"""Standard deviations above the mean printable count of random bytes that still
passes. Random data exceeds it with a probability of about 1e-9 (the binomial tail,
computed for 32 bytes to 100 kB)."""

MAX_PRINTABLE_RUN = 32
"""Printable bytes in a row that fail the check. A random byte string of 50 MB has such
a run with a probability of about 2e-6 (0.383 ** 32 per position)."""

_PRINTABLE_RUN_RE = re.compile(b"[\t\n\r\x20-\x7e]{%d}" % MAX_PRINTABLE_RUN)


class NotEncrypted(ValueError):
    """Raised by the format checks when data is not what an encrypted message contains.

    ``code`` is a short identifier for the audit trail and ``reason`` a sentence. Neither
    contains any of the message's text.
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def check_random(data: bytes, label: str) -> None:
    """Raise NotEncrypted when ``data`` looks like text rather than ciphertext.

    ``label`` names the data in the reason, for example ``OpenPGP packets``.
    """
    if not data:
        raise NotEncrypted("empty-ciphertext", f"the {label} contain no encrypted data")
    if _PRINTABLE_RUN_RE.search(data):
        raise NotEncrypted(
            "readable-ciphertext",
            f"the {label} contain {MAX_PRINTABLE_RUN} or more printable bytes in a row, which encrypted data "
            "almost never has",
        )
    printable = len(data) - len(data.translate(None, _PRINTABLE))
    mean = len(data) * _PRINTABLE_SHARE
    limit = mean + _MAX_DEVIATIONS * math.sqrt(mean * (1 - _PRINTABLE_SHARE)) + 1
    if printable > limit:
        share = round(100 * printable / len(data))
        raise NotEncrypted(
            "readable-ciphertext",
            f"{share}% of the bytes of the {label} are printable, far more than in encrypted data",
        )
